import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Logger } from 'pino'
import { BrokerBadRequestTarget, errorBody } from '../errors.js'
import type { Client } from '../inbound/client-keys.js'
import type { BrokerMetrics } from '../observability/metrics.js'
import type { RequestLog } from '../observability/request-log.js'
import { brokerErrorFor } from './forward.js'
import { ForwardedRequest } from './forwarded-request.js'
import { pathOf } from './request-target.js'

export interface ForwardingPipelineOptions {
  /** The request id: the caller's own when it is harmless to log, else a new one. */
  requestId: (req: IncomingMessage) => string
  /** Who may use the broker: throws the refusal, returns the client whose key was presented. */
  admit: (req: IncomingMessage, openPath: boolean) => Client | undefined
  forward: (request: ForwardedRequest) => Promise<void>
  requestLog: RequestLog
  metrics: BrokerMetrics
  logger: Logger
  /** True once shutdown has begun: every response then says `connection: close`. */
  closing: () => boolean
}

/**
 * Every request bound for the API, from Node's server straight to the forwarder: the request
 * id, the inbound checks, the forwarder, the error in the API's shape, and the log line. The
 * broker's own endpoints go through fastify; this path is a proxy's, and runs for every call a
 * tool makes, so it keeps to what each request needs.
 */
export function createForwardingPipeline (options: ForwardingPipelineOptions) {
  const { requestId, admit, forward, requestLog, metrics, logger, closing } = options

  function answer (request: ForwardedRequest, err: unknown): void {
    const brokerError = brokerErrorFor(err as Error, request.facts, metrics,
      (unexpected) => logger.error({ reqId: request.id, err: unexpected }, 'unexpected error'))
    const res = request.res
    if (res.headersSent) {
      // Part of the API's answer went out already: cut it off, as the API's was.
      res.destroy()
      return
    }
    if (res.destroyed) return
    const body = errorBody(brokerError, request.id)
    request.send(brokerError.statusCode, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      ...(brokerError.retryAfter === undefined ? {} : { 'retry-after': String(brokerError.retryAfter) })
    }, body)
  }

  return function handle (req: IncomingMessage, res: ServerResponse): void {
    // Node hands over a request pipelined behind another at once, its response queued until the
    // earlier ones are done (it has no socket until then): it waits its turn, so the API sees
    // one request at a time per connection, in order.
    if (res.socket === null) {
      awaitTurn(req, res, handle)
      return
    }
    const request = new ForwardedRequest(requestId(req), req, res, performance.now(), closing())
    res.once('close', () => {
      requestLog.record({
        id: request.id,
        req,
        res,
        facts: request.facts,
        durationMs: performance.now() - request.startedAt,
        aborted: !res.writableFinished
      })
    })
    try {
      const undecodable = undecodablePath(req.url as string)
      if (undecodable) throw new BrokerBadRequestTarget('a percent-encoding that does not decode to UTF-8')
      request.caller = admit(req, false)
      if (request.caller !== undefined) request.facts.client = request.caller.name
    } catch (err) {
      answer(request, err)
      return
    }
    forward(request).catch((err: unknown) => answer(request, err))
  }
}

/** Starts `handle` once Node gives `res` its socket; never, when the connection closes first. */
function awaitTurn (req: IncomingMessage, res: ServerResponse, handle: (req: IncomingMessage, res: ServerResponse) => void): void {
  const start = () => {
    req.off('close', drop)
    handle(req, res)
  }
  const drop = () => res.off('socket', start)
  res.once('socket', start)
  req.once('close', drop)
}

/** A path whose percent-encodings are not UTF-8 (the request target checks saw to the rest). */
function undecodablePath (target: string): boolean {
  const path = pathOf(target)
  if (!path.includes('%')) return false
  try {
    decodeURIComponent(path)
    return false
  } catch {
    return true
  }
}
