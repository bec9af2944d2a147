import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { BrokerBadRequest, BrokerBadRequestTarget, type BrokerHttpError } from '../common/errors.js'
import { isOwnPath, pathOf } from '../common/paths.js'
import type { EgressProxy } from './egress-proxy.js'
import { trackConnections, type Connections } from './connections.js'
import { applyConnectionLimits, serverOptions, type ServerLimits } from './limits.js'
import { parserRefusal, protocolViolation, refusedMethod, responseOutstanding, unmetExpectation, upgradeRefusal } from './protocol.js'
import type { Refusals } from './refusal.js'
import { checkRequestTarget } from './request-target.js'

type Handler = (req: IncomingMessage, res: ServerResponse) => void
/** `done` is called once the response is done, by the response's one 'close' listener. */
type ForwardingHandler = (req: IncomingMessage, res: ServerResponse, done: () => void) => void

export interface FrontDoorOptions {
  limits: ServerLimits
  /** Client keys are configured: connections that present none are the first to go. */
  keysRequired: boolean
  refusals: Refusals
  /** The forwarding pipeline: every path that is not one of the broker's own. */
  forward: ForwardingHandler
  /** The egress proxy, when the mode is on; off, a CONNECT gets a 405. */
  egressProxy?: EgressProxy
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** A caller's own request id is kept when it is harmless to log, so traces line up. */
export function requestId (req: IncomingMessage): string {
  const given = req.headers['x-request-id']
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
}

/**
 * Node's HTTP server as the broker runs it, before routing, hooks and everything else: a method
 * that would echo the token back (TRACE), a target that could mean another path or another
 * origin, framing a server behind could read differently, an upgrade, a tunnel, an expectation
 * it cannot meet, or bytes the parser refused, are refused here and go no further. What passes
 * goes to fastify (the own endpoints) or to the forwarding pipeline.
 */
export class FrontDoor {
  /** The refusal says `connection: close`, so no request pipelined behind it may run (RFC 9112 9.6). */
  readonly #refused = new WeakSet<object>()
  readonly #options: FrontDoorOptions
  #connections: Connections | undefined

  constructor (options: FrontDoorOptions) {
    this.#options = options
  }

  /** fastify's `serverFactory`: `ownEndpoints` is fastify's handler. */
  createServer (ownEndpoints: Handler): Server {
    const { limits, refusals, forward, egressProxy } = this.#options
    const server = createServer(serverOptions(limits), (req, res) => {
      if (this.#refused.has(req.socket)) return
      const done = connections.requestStarted(req.socket)
      const refusal = preRoutingRefusal(req)
      if (refusal !== undefined) {
        this.#refuse(refusal, req, res, done)
      } else if (isOwnPath(pathOf(req.url as string))) {
        res.once('close', done)
        ownEndpoints(req, res)
      } else {
        forward(req, res, done)
      }
    })
    server.on('upgrade', (req: IncomingMessage, socket: Duplex) => refusals.refuseSocket(upgradeRefusal(), socket, req))
    // Without a listener Node would drop a CONNECT's connection unanswered.
    server.on('connect', egressProxy === undefined
      ? (req: IncomingMessage, socket: Duplex) => refusals.refuseSocket(refusedMethod('CONNECT') as BrokerHttpError, socket, req)
      : (req: IncomingMessage, socket: Duplex, head: Buffer) => egressProxy.connect(req, socket, head, server))
    server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
      this.#refuse(unmetExpectation(), req, res, connections.requestStarted(req.socket))
    })
    const connections = trackConnections(server, {
      maxConnections: limits.maxConnections,
      unauthenticatedIdleTimeoutMs: limits.unauthenticatedIdleTimeoutMs,
      keysRequired: this.#options.keysRequired
    })
    this.#connections = connections
    return applyConnectionLimits(server, limits)
  }

  /**
   * fastify's `clientErrorHandler`: bytes Node's parser refused never reach a handler; they
   * still get the API's error shape and an id. Bytes after a refusal, or behind a request still
   * being answered, get no answer of their own: it would arrive in place of the one the client
   * is waiting for.
   */
  clientError (err: Error & { code?: string }, socket: Duplex): void {
    if (this.#refused.has(socket)) socket.end()
    else if (responseOutstanding(socket)) socket.destroy()
    else if (err.code !== 'ECONNRESET' && !socket.destroyed) this.#options.refusals.refuseSocket(parserRefusal(err), socket)
  }

  /** Draining: what has nothing in progress is closed at once; the rest as it finishes. */
  closeIdle (): void {
    this.#connections?.closeIdle()
  }

  #refuse (refusal: BrokerHttpError, req: IncomingMessage, res: ServerResponse, done: () => void): void {
    this.#refused.add(req.socket)
    this.#options.refusals.refuseRequest(refusal, req, res, requestId(req), done)
  }
}

function preRoutingRefusal (req: IncomingMessage): BrokerHttpError | undefined {
  const method = refusedMethod(req.method)
  if (method !== undefined) return method
  const target = req.httpVersionMajor === 1
    ? checkRequestTarget(req.url)
    : 'a request line with no HTTP/1.x version (a line break in the target)'
  if (target !== undefined) return new BrokerBadRequestTarget(target)
  const violation = protocolViolation(req)
  return violation === undefined ? undefined : new BrokerBadRequest(violation)
}
