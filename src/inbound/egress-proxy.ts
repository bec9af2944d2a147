import { randomUUID } from 'node:crypto'
import type { IncomingMessage, Server } from 'node:http'
import { connect, type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { TLSSocket, type SecureContext } from 'node:tls'
import {
  BrokerBadRequest, BrokerBadRequestTarget, BrokerInternalError, BrokerProxyAuthenticationRequired, BrokerTunnelRefused, BrokerTunnelUnreachable,
  type BrokerHttpError
} from '../common/errors.js'
import type { TunnelTarget } from '../config/types.js'
import { hostKey, type InterceptedKind, type Tunnel } from '../egress/hosts.js'
import type { Logger } from 'pino'
import type { RequestLog } from '../observability/request-log.js'
import type { Client } from './client-keys.js'
import { markAuthenticated, markCarrier } from './connections.js'
import type { Refusals } from './refusal.js'

export interface EgressProxyOptions {
  /** `host:port` of every host whose TLS the broker terminates, and what it serves there. */
  intercepted: ReadonlyMap<string, InterceptedKind>
  tunnelAllow: readonly TunnelTarget[]
  /** The TLS context of an intercepted host (a leaf certificate from the broker's CA). */
  contextFor: (host: string) => Promise<SecureContext>
  /** Client keys are configured: a CONNECT must carry one in `Proxy-Authorization`. */
  keysRequired: boolean
  verify: (key: string | undefined) => Client | undefined
  refusals: Refusals
  requestLog: RequestLog
  /** Time allowed to reach a tunnel's host. */
  connectTimeoutMs: number
  logger: Logger
}

/** A connection the egress proxy opened inside an intercepted CONNECT. */
export interface TunnelConnection extends Tunnel {
  /** The client whose key came in the CONNECT's `Proxy-Authorization`, if any. */
  readonly client: Client | undefined
}

const TUNNEL = Symbol('egress tunnel')
type MarkedSocket = Socket & { [TUNNEL]?: TunnelConnection }

/**
 * The intercepted CONNECT a request's connection came through, or undefined for a direct one
 * (and once Node has let go of a request's socket, which it does while a body still arrives
 * after the response ended).
 */
export function tunnelOf (socket: Socket | null): TunnelConnection | undefined {
  return socket === null ? undefined : (socket as MarkedSocket)[TUNNEL]
}

/** `host:port`, the authority-form of a CONNECT (RFC 9112 3.2.3): a name or an IP literal, and a port. */
const AUTHORITY = /^([A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5})$/
const ESTABLISHED = 'HTTP/1.1 200 Connection Established\r\n\r\n'

/**
 * The egress proxy: what a CONNECT gets when the mode is on. To an Entra ID sign-in host or a
 * Defender API host the broker answers itself: it terminates TLS with a certificate for that
 * host from its own CA and hands the connection to its own HTTP server, so what the tool sends
 * meets the same front door, gate and pipeline as a direct request. A host of the tunnel
 * allowlist gets a blind tunnel; any other host a 403, and nothing is dialled. With client keys,
 * a CONNECT without a valid one in `Proxy-Authorization` gets a 407 before anything else.
 */
export class EgressProxy {
  readonly #options: EgressProxyOptions
  readonly #allowed: ReadonlySet<string>

  constructor (options: EgressProxyOptions) {
    this.#options = options
    this.#allowed = new Set(options.tunnelAllow.map(({ host, port }) => hostKey(host, port)))
  }

  /** The server's 'connect' event. */
  connect (req: IncomingMessage, socket: Duplex, head: Buffer, server: Server): void {
    const { refusals, intercepted } = this.#options
    const refuse = (error: BrokerHttpError) => refusals.refuseSocket(error, socket, req)
    const target = AUTHORITY.exec(req.url ?? '')
    const port = Number(target?.[2])
    if (target === null || port < 1 || port > 65535) return refuse(new BrokerBadRequestTarget('a CONNECT target that is not host:port'))
    const host = (target[1] as string).toLowerCase()
    let client: Client | undefined
    if (this.#options.keysRequired) {
      client = this.#options.verify(proxyKey(req.headers['proxy-authorization']))
      if (client === undefined) return refuse(new BrokerProxyAuthenticationRequired())
    }
    // A tool waits for the 200 before its TLS hello; bytes before it would be lost to the TLS layer.
    if (head.length > 0) return refuse(new BrokerBadRequest('it sent bytes after its CONNECT before the tunnel was established'))
    const key = hostKey(host, port)
    const kind = intercepted.get(key)
    if (kind !== undefined) {
      this.#intercept(req, socket as Socket, server, { host, port, kind, client })
    } else if (this.#allowed.has(key)) {
      this.#tunnel(req, socket as Socket, host, port, client)
    } else {
      refuse(new BrokerTunnelRefused(key))
    }
  }

  #intercept (req: IncomingMessage, socket: Socket, server: Server, tunnel: TunnelConnection): void {
    socket.on('error', noop)
    this.#options.contextFor(tunnel.host).then((secureContext) => {
      if (socket.destroyed) return
      markCarrier(socket)
      socket.write(ESTABLISHED)
      const tls = new TLSSocket(socket, { isServer: true, secureContext, ALPNProtocols: ['http/1.1'] }) as MarkedSocket
      tls[TUNNEL] = tunnel
      let secured = false
      tls.once('secure', () => { secured = true })
      // The first thing to go wrong when a tool is set up: it does not trust the broker's CA yet.
      tls.once('error', (err: NodeJS.ErrnoException) => {
        if (!secured) {
          this.#options.logger.warn({ host: tunnel.host, code: err.code },
            'egress proxy: TLS with the tool failed; a tool must trust the broker\'s CA (defender-token-broker ca)')
        }
      })
      this.#record(req, tunnel.client, performance.now())
      // The same server, so the same front door, limits, gate and pipeline serve what comes through.
      // It counts as a client's once a request passes the gate on it, like any connection.
      server.emit('connection', tls)
    }, () => this.#options.refusals.refuseSocket(new BrokerInternalError(), socket, req))
  }

  /** A blind tunnel: bytes both ways, nothing read, no token added, no proxy of the broker's own used. */
  #tunnel (req: IncomingMessage, socket: Socket, host: string, port: number, client: Client | undefined): void {
    const startedAt = performance.now()
    const upstream = connect({ host: host.replace(/^\[(.*)\]$/, '$1'), port })
    let established = false
    upstream.setTimeout(this.#options.connectTimeoutMs, () => upstream.destroy(Object.assign(new Error('timed out'), { code: 'ETIMEDOUT' })))
    socket.on('error', noop)
    socket.once('close', () => upstream.destroy())
    upstream.once('connect', () => {
      established = true
      upstream.setTimeout(0)
      socket.setTimeout(0)
      if (client !== undefined) markAuthenticated(socket)
      socket.write(ESTABLISHED)
      socket.pipe(upstream).pipe(socket)
      this.#record(req, client, startedAt)
    })
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (established) socket.destroy()
      else this.#options.refusals.refuseSocket(new BrokerTunnelUnreachable(hostKey(host, port), err.code ?? 'network'), socket, req)
    })
  }

  /** The CONNECT in the request log, as it was granted; what goes through an intercepted one has lines of its own. */
  #record (req: IncomingMessage, client: Client | undefined, startedAt: number): void {
    this.#options.requestLog.record({
      id: randomUUID(),
      method: 'CONNECT',
      path: req.url ?? '',
      status: 200,
      facts: { changesState: false, ...(client === undefined ? {} : { client: client.name }) },
      durationMs: performance.now() - startedAt,
      aborted: false
    })
  }
}

/** The key in a CONNECT's `Proxy-Authorization`: the password of Basic (what a proxy URL's user:key@ sends), or Bearer. */
export function proxyKey (header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  const [scheme = '', value = ''] = header.trim().split(/\s+/, 2)
  if (/^bearer$/i.test(scheme)) return value
  if (!/^basic$/i.test(scheme)) return undefined
  const decoded = Buffer.from(value, 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  return colon === -1 ? decoded : decoded.slice(colon + 1)
}

function noop (): void {}
