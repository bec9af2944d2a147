import type { Server, ServerOptions } from 'node:http'

/**
 * What one client may cost the broker. docs/security.md (Server limits) gives the reason for
 * each; the buffered body limit is `REPLAYABLE_BODY_LIMIT` next to the code that buffers.
 */
export interface ServerLimits {
  /** Time from a request's first byte to the end of its headers (slowloris). */
  readonly headersTimeoutMs: number
  /** Time from a request's first byte to the end of its body (slow uploads). */
  readonly requestTimeoutMs: number
  /** An idle keep-alive connection is closed after this. */
  readonly keepAliveTimeoutMs: number
  /** How often Node looks for connections past those timeouts: the cut-off is late by at most this. */
  readonly connectionsCheckingIntervalMs: number
  /** Request line and headers together, in bytes; more is answered 431. */
  readonly maxHeaderSize: number
  /** Requests served on one connection before it is closed. */
  readonly maxRequestsPerSocket: number
  /**
   * Open connections. At the limit a new one closes the oldest idle one, those with no valid
   * client key first; only when all are busy is the new one dropped (connections.ts).
   */
  readonly maxConnections: number
  /** With client keys: a connection that has presented none is closed after this idle. */
  readonly unauthenticatedIdleTimeoutMs: number
}

export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000
export const DEFAULT_REQUEST_TIMEOUT_MS = 300_000
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = 72_000
export const DEFAULT_CONNECTIONS_CHECKING_INTERVAL_MS = 1_000
export const DEFAULT_MAX_HEADER_SIZE = 16 * 1024
export const DEFAULT_MAX_REQUESTS_PER_SOCKET = 1_000
export const DEFAULT_MAX_CONNECTIONS = 256
export const DEFAULT_UNAUTHENTICATED_IDLE_TIMEOUT_MS = 5_000

export const DEFAULT_SERVER_LIMITS: ServerLimits = Object.freeze({
  headersTimeoutMs: DEFAULT_HEADERS_TIMEOUT_MS,
  requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS,
  keepAliveTimeoutMs: DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
  connectionsCheckingIntervalMs: DEFAULT_CONNECTIONS_CHECKING_INTERVAL_MS,
  maxHeaderSize: DEFAULT_MAX_HEADER_SIZE,
  maxRequestsPerSocket: DEFAULT_MAX_REQUESTS_PER_SOCKET,
  maxConnections: DEFAULT_MAX_CONNECTIONS,
  unauthenticatedIdleTimeoutMs: DEFAULT_UNAUTHENTICATED_IDLE_TIMEOUT_MS
})

/**
 * Options for `http.createServer`. The broker makes its own server, so fastify's timeout
 * options never reach it: everything is set here, at creation, where Node checks that the
 * headers timeout is within the request timeout. The lenient parser stays off even when
 * NODE_OPTIONS asks for `--insecure-http-parser`.
 */
export function serverOptions (limits: ServerLimits): ServerOptions {
  return {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionsCheckingInterval: limits.connectionsCheckingIntervalMs,
    maxHeaderSize: limits.maxHeaderSize,
    insecureHTTPParser: false,
    // A missing Host gets the broker's own 400, in the API's error shape (protocol.ts).
    requireHostHeader: false,
    joinDuplicateHeaders: false
  }
}

/**
 * The limits `createServer` takes no option for. `maxConnections` is not Node's (which drops
 * every newcomer at the limit): trackConnections keeps it.
 */
export function applyConnectionLimits (server: Server, limits: ServerLimits): Server {
  server.maxRequestsPerSocket = limits.maxRequestsPerSocket
  return server
}
