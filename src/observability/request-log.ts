import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { changesState, type AuditLog } from './audit.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** Filled in as the request goes: what its one log line (and audit event) reports. */
    broker: {
      profile?: string
      client?: string
      upstreamRequestId?: string
      /** Set once the API's response is being passed on: a stream error then is the API's. */
      upstream?: string
      /** The status of the API's response that was passed on. */
      upstreamStatus?: number
      machineActionId?: string
      /** The broker's error code when it answered itself. */
      code?: string
    }
  }
}

/**
 * One line per request, with the fields an operator filters on; fastify's own two lines
 * (incoming, completed) would double the volume and carry the headers. The query string is
 * left out: OData filters can hold names and addresses. A request that changes state is
 * also an audit event.
 */
export class RequestLog extends LogController {
  readonly #audit: AuditLog
  readonly #lines: Logger
  readonly #logged = new WeakSet<FastifyRequest>()

  constructor (audit: AuditLog, logger: Logger) {
    super()
    this.#audit = audit
    // The line is made of the fields below and nothing else, none of them a secret's: the
    // logger's redaction, which walks every object logged, has nothing to find in it.
    this.#lines = logger.child({}, { redact: [] })
  }

  override incomingRequest (request: FastifyRequest, reply: FastifyReply): void {
    // A response the client walks away from never finishes, and fastify reports only finished ones.
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) this.#complete(undefined, request, reply, true)
    })
  }

  override requestCompleted (error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    this.#complete(error, request, reply, false)
  }

  #complete (error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply, aborted: boolean): void {
    if (this.#logged.has(request)) return
    this.#logged.add(request)
    const broker = request.broker ?? {}
    const method = request.raw.method ?? ''
    const url = request.raw.url ?? ''
    const queryAt = url.indexOf('?')
    const path = queryAt === -1 ? url : url.slice(0, queryAt)
    const status = aborted && !reply.raw.headersSent ? undefined : reply.statusCode
    const line = {
      reqId: request.id,
      client: broker.client,
      profile: broker.profile,
      method,
      path,
      status,
      durationMs: Math.round(reply.elapsedTime * 100) / 100,
      upstreamRequestId: broker.upstreamRequestId,
      code: broker.code,
      ...(aborted ? { aborted } : {})
    }
    if (error) request.log.error({ ...line, reqId: undefined, err: { message: error.message, code: (error as { code?: string }).code } }, 'request failed')
    else this.#lines.info(line, 'request')

    if (!changesState(method)) return
    this.#audit.record({
      reqId: request.id,
      client: broker.client,
      profile: broker.profile,
      method,
      target: path,
      status,
      upstreamStatus: broker.upstreamStatus,
      upstreamRequestId: broker.upstreamRequestId,
      machineActionId: broker.machineActionId,
      code: broker.code,
      ...(aborted || error ? { aborted: true } : {})
    })
  }
}
