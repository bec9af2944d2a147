import type { IncomingMessage, ServerResponse } from 'node:http'
import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'
import { levels, symbols, type DestinationStream, type Logger } from 'pino'
import { changesState } from '../defender/catalogue.js'
import { pathOf } from '../common/paths.js'
import type { AuditLog } from './audit.js'

/** Filled in as a request goes: what its one log line (and audit event) reports. */
export interface RequestFacts {
  profile?: string
  client?: string
  upstreamRequestId?: string
  /** Set once the API's response is being passed on: a stream error then is the API's. */
  upstream?: string
  /** The status of the API's response that was passed on. */
  upstreamStatus?: number
  machineActionId?: string
  /**
   * Whether the request may change something in the tenant, as the endpoint table says of the
   * path it goes to upstream (set once the profile is known); absent, the path as sent decides.
   */
  changesState?: boolean
  /** The broker's error code when it answered itself. */
  code?: string
  /** The answer came with no call of its own: another client's identical read, or the cache. */
  saved?: 'collapsed' | 'cached'
  /** The guard rail that refused the call (cap, protect, indicators), and why. */
  guard?: GuardVerdict
  /** The machines the call names, as the guard rails checked them. */
  machines?: string[]
  /** Answered in the API's shape without the call. */
  dryRun?: true
}

export interface GuardVerdict {
  guard: 'cap' | 'protect' | 'indicators'
  reason: string
}

declare module 'fastify' {
  interface FastifyRequest {
    broker: RequestFacts
  }
}

const INFO = levels.values.info as number

/** A request whose response is done, finished or cut off (or refused before it was whole). */
export interface CompletedRequest {
  id: string
  /** Empty for bytes Node's parser refused. */
  method: string
  /** The path without the query: OData filters can hold names and addresses. */
  path: string
  /** None when the client went away before the head was sent. */
  status: number | undefined
  facts: RequestFacts
  durationMs: number
  /** The client went away before the response was done. */
  aborted: boolean
  error?: Error | null | undefined
}

/**
 * One line per request, with the fields an operator filters on; fastify's own two lines
 * (incoming, completed) would double the volume and carry the headers. The query string is
 * left out: OData filters can hold names and addresses. A request that changes state is
 * also an audit event.
 */
export class RequestLog {
  readonly #audit: AuditLog
  readonly #logger: Logger
  readonly #stream: DestinationStream

  constructor (audit: AuditLog, logger: Logger) {
    this.#audit = audit
    this.#logger = logger
    this.#stream = (logger as unknown as Record<symbol, DestinationStream>)[symbols.streamSym] as DestinationStream
  }

  record ({ id, method, path, status, facts, durationMs, aborted, error }: CompletedRequest): void {
    const duration = Math.round(durationMs * 100) / 100
    if (error) {
      this.#logger.error({
        reqId: id,
        client: facts.client,
        profile: facts.profile,
        method,
        path,
        status,
        durationMs: duration,
        upstreamRequestId: facts.upstreamRequestId,
        code: facts.code,
        ...(aborted ? { aborted } : {}),
        err: { message: error.message, code: (error as { code?: string }).code }
      }, 'request failed')
    } else if (this.#logger.isLevelEnabled('info')) {
      // The line pino would write for these fields, made by hand: it is the one line every
      // request logs, and pino's general path (walking the object, the redaction) cost a
      // forwarded request 7 µs of its 55 under load. None of its fields is a secret.
      let line = `{"level":${INFO},"time":${Date.now()},"reqId":${JSON.stringify(id)}`
      if (facts.client !== undefined) line += `,"client":${JSON.stringify(facts.client)}`
      if (facts.profile !== undefined) line += `,"profile":${JSON.stringify(facts.profile)}`
      line += `,"method":${JSON.stringify(method)},"path":${JSON.stringify(path)}`
      if (status !== undefined) line += `,"status":${status}`
      line += `,"durationMs":${duration}`
      if (facts.upstreamRequestId !== undefined) line += `,"upstreamRequestId":${JSON.stringify(facts.upstreamRequestId)}`
      if (facts.code !== undefined) line += `,"code":${JSON.stringify(facts.code)}`
      if (facts.saved !== undefined) line += `,"saved":"${facts.saved}"`
      if (facts.dryRun === true) line += ',"dryRun":true'
      if (facts.guard !== undefined) line += `,"guard":"${facts.guard.guard}"`
      if (aborted) line += ',"aborted":true'
      this.#stream.write(line + ',"msg":"request"}\n')
    }

    if (!(facts.changesState ?? changesState(method, path))) return
    this.#audit.record({
      reqId: id,
      client: facts.client,
      profile: facts.profile,
      method,
      target: path,
      status,
      upstreamStatus: facts.upstreamStatus,
      upstreamRequestId: facts.upstreamRequestId,
      machineActionId: facts.machineActionId,
      code: facts.code,
      ...(facts.machines === undefined ? {} : { machines: facts.machines }),
      ...(facts.guard === undefined ? {} : { guard: facts.guard.guard, reason: facts.guard.reason }),
      ...(facts.dryRun === true ? { dryRun: true } : {}),
      ...(aborted || error ? { aborted: true } : {})
    })
  }
}

/** The request log of the broker's own endpoints, which fastify serves. */
export class FastifyRequestLog extends LogController {
  readonly #log: RequestLog
  readonly #logged = new WeakSet<FastifyRequest>()

  constructor (log: RequestLog) {
    super()
    this.#log = log
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
    this.#log.record({
      id: request.id,
      ...outcomeOf(request.raw, reply.raw, aborted),
      facts: request.broker ?? {},
      durationMs: reply.elapsedTime,
      aborted,
      error
    })
  }
}

/** The method, path and status a request's log line reports, from Node's request and response. */
export function outcomeOf (req: IncomingMessage, res: ServerResponse, aborted: boolean): Pick<CompletedRequest, 'method' | 'path' | 'status'> {
  return {
    method: req.method ?? '',
    path: pathOf(req.url ?? ''),
    status: aborted && !res.headersSent ? undefined : res.statusCode
  }
}
