import { randomUUID } from 'node:crypto'
import { STATUS_CODES, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import {
  BrokerInternalError, BrokerUpstreamTimeout, BrokerUpstreamUnreachable, errorBody, isBrokerHttpError, requestFault, type BrokerHttpError
} from '../common/errors.js'
import { pathOf } from '../common/paths.js'
import type { BrokerMetrics } from '../observability/metrics.js'
import { outcomeOf, type RequestFacts, type RequestLog } from '../observability/request-log.js'
import { upstreamError } from '../outbound/network-failure.js'
import { FORWARDED_METHODS } from './protocol.js'

export interface RefusalOptions {
  metrics: BrokerMetrics
  requestLog: RequestLog
  logger: Logger
}

const JSON_TYPE = 'application/json; charset=utf-8'

/**
 * The one place a refusal or an error becomes an answer, whatever the broker has to write it
 * to: a fastify reply (the own endpoints), Node's ServerResponse (the forwarding pipeline, and
 * what is refused before routing), or a raw socket (what Node's parser refused, an upgrade, a
 * CONNECT). Each is counted, recorded by the request log in its one shape (and by the audit
 * when it could change state), and answered in the Defender API's error shape with its id.
 */
export class Refusals {
  readonly #metrics: BrokerMetrics
  readonly #requestLog: RequestLog
  readonly #logger: Logger

  constructor ({ metrics, requestLog, logger }: RefusalOptions) {
    this.#metrics = metrics
    this.#requestLog = requestLog
    this.#logger = logger
  }

  /**
   * What the broker answers for an error a request ran into, counted and recorded in `facts`:
   * its own errors as they are; a failure of the API's body once it was being passed on is the
   * API's (502 or 504); anything else the request's fault when Node or fastify said so (a 4xx),
   * a 500 otherwise, which is logged.
   */
  errorFor (error: Error & { statusCode?: number, code?: string }, facts: RequestFacts, id: string): BrokerHttpError {
    const brokerError = this.#classify(error, facts)
    if (brokerError.statusCode >= 500 && !isBrokerHttpError(error)) {
      this.#logger.error({ reqId: id, err: { message: error?.message, code: error?.code } }, 'unexpected error')
    }
    if (brokerError.statusCode < 500) this.#metrics.inboundRejected(brokerError.code)
    else if (facts.profile !== undefined && isUpstreamFailure(brokerError)) this.#metrics.upstreamFailed(facts.profile, brokerError.code)
    facts.code = brokerError.code
    return brokerError
  }

  #classify (error: Error & { statusCode?: number }, facts: RequestFacts): BrokerHttpError {
    if (isBrokerHttpError(error)) return error
    if (facts.upstream !== undefined && error.statusCode === undefined) return upstreamError(error, facts.upstream)
    if (error.statusCode !== undefined && error.statusCode < 500) return requestFault(error.statusCode, error.message)
    return new BrokerInternalError()
  }

  /** An own endpoint's error, through fastify (whose log controller records the request). */
  toReply (error: Error, request: FastifyRequest, reply: FastifyReply): void {
    const brokerError = this.errorFor(error, request.broker ??= {}, request.id)
    reply.code(brokerError.statusCode).headers(headersOf(brokerError)).header('x-request-id', request.id).type(JSON_TYPE)
      .send(errorBody(brokerError, request.id))
  }

  /**
   * A forwarded request's error (the pipeline records it when its response closes). Once part
   * of the API's answer went out, the response is cut off, as the API's was.
   */
  toResponse (error: unknown, res: ServerResponse, id: string, facts: RequestFacts, closing: boolean): void {
    const brokerError = this.errorFor(error as Error, facts, id)
    if (res.headersSent) {
      res.destroy()
      return
    }
    if (res.destroyed) return
    const body = errorBody(brokerError, id)
    const headers: OutgoingHttpHeaders = { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(body), ...headersOf(brokerError), 'x-request-id': id }
    if (closing) headers.connection = 'close'
    res.writeHead(brokerError.statusCode, headers)
    res.end(body)
  }

  /**
   * A request refused before routing, on Node's response: the connection is closed after it,
   * so nothing pipelined behind it runs (RFC 9112 9.6). `done` is called once it is done.
   */
  refuseRequest (error: BrokerHttpError, req: IncomingMessage, res: ServerResponse, id: string, done: () => void): void {
    const startedAt = performance.now()
    const facts: RequestFacts = {}
    this.errorFor(error, facts, id)
    res.once('close', () => {
      const aborted = !res.writableFinished
      this.#requestLog.record({ id, ...outcomeOf(req, res, aborted), facts, durationMs: performance.now() - startedAt, aborted })
      done()
    })
    const body = errorBody(error, id)
    res.writeHead(error.statusCode, {
      'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(body), ...headersOf(error), 'x-request-id': id, connection: 'close'
    })
    res.end(body)
  }

  /**
   * A refusal on a socket no response object owns: bytes Node's parser refused (no request
   * then), or the socket of an upgrade or a CONNECT Node handed over. It is closed after it.
   */
  refuseSocket (error: BrokerHttpError, socket: Duplex, req?: IncomingMessage): void {
    const id = randomUUID()
    const facts: RequestFacts = {}
    this.errorFor(error, facts, id)
    socket.on('error', () => {})
    const written = socket.writable
    if (written) socket.end(rawErrorResponse(error, id), () => socket.destroy())
    else socket.destroy()
    this.#requestLog.record({
      id,
      method: req?.method ?? '',
      path: req === undefined ? '' : pathOf(req.url ?? ''),
      status: written ? error.statusCode : undefined,
      facts,
      durationMs: 0,
      aborted: !written
    })
  }
}

function isUpstreamFailure (error: BrokerHttpError): boolean {
  return error instanceof BrokerUpstreamUnreachable || error instanceof BrokerUpstreamTimeout
}

/**
 * The headers an error answer has besides its body's: `Allow` with a 405 (RFC 9110 15.5.6),
 * `Proxy-Authenticate` with a 407 (15.5.8), `Retry-After` with a wait.
 */
function headersOf (error: BrokerHttpError): Record<string, string> {
  const headers: Record<string, string> = {}
  if (error.statusCode === 405) headers.allow = FORWARDED_METHODS
  if (error.statusCode === 407) headers['proxy-authenticate'] = 'Basic realm="defender-token-broker", charset="UTF-8"'
  if (error.retryAfter !== undefined) headers['retry-after'] = String(error.retryAfter)
  return headers
}

/** A complete HTTP/1.1 error response in the API's error shape, for a socket no response object owns. */
function rawErrorResponse (error: BrokerHttpError, id: string): string {
  const body = errorBody(error, id)
  return `HTTP/1.1 ${error.statusCode} ${STATUS_CODES[error.statusCode] ?? ''}\r\n` +
    `content-type: ${JSON_TYPE}\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\n` +
    Object.entries(headersOf(error)).map(([name, value]) => `${name}: ${value}\r\n`).join('') +
    `x-request-id: ${id}\r\nconnection: close\r\n\r\n${body}`
}
