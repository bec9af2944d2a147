import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Client } from '../inbound/client-keys.js'
import type { Refusals } from '../inbound/refusal.js'
import { outcomeOf, type RequestLog } from '../observability/request-log.js'
import { ForwardedRequest } from './forwarded-request.js'

export interface ForwardingPipelineOptions {
  /** The request id: the caller's own when it is harmless to log, else a new one. */
  requestId: (req: IncomingMessage) => string
  /** Who may use the broker: throws the refusal, returns the client whose key was presented. */
  admit: (req: IncomingMessage, openPath: boolean) => Client | undefined
  forward: (request: ForwardedRequest) => Promise<void>
  requestLog: RequestLog
  refusals: Refusals
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
  const { requestId, admit, forward, requestLog, refusals, closing } = options

  function answer (request: ForwardedRequest, err: unknown): void {
    refusals.toResponse(err, request.res, request.id, request.facts, request.closing)
  }

  /** `done` is the connection's: called once the response is done. */
  return function handle (req: IncomingMessage, res: ServerResponse, done: () => void): void {
    // Node hands over a request pipelined behind another at once, its response queued until the
    // earlier ones are done (it has no socket until then): it waits its turn, so the API sees
    // one request at a time per connection, in order.
    if (res.socket === null) {
      awaitTurn(req, res, () => handle(req, res, done), done)
      return
    }
    const request = new ForwardedRequest(requestId(req), req, res, performance.now(), closing())
    // The response's one 'close' listener: the log line, the client's watch, the connection.
    res.once('close', () => {
      const aborted = !res.writableFinished
      requestLog.record({ id: request.id, ...outcomeOf(req, res, aborted), facts: request.facts, durationMs: performance.now() - request.startedAt, aborted })
      request.client.closed(!aborted)
      done()
    })
    try {
      request.caller = admit(req, false)
      if (request.caller !== undefined) request.facts.client = request.caller.name
    } catch (err) {
      answer(request, err)
      return
    }
    forward(request).catch((err: unknown) => answer(request, err))
  }
}

/** Starts the request once Node gives `res` its socket; never, when the connection closes first (then `dropped`). */
function awaitTurn (req: IncomingMessage, res: ServerResponse, start: () => void, dropped: () => void): void {
  const begin = () => {
    req.off('close', drop)
    start()
  }
  const drop = () => {
    res.off('socket', begin)
    dropped()
  }
  res.once('socket', begin)
  req.once('close', drop)
}
