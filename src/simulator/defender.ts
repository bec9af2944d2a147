import { EventEmitter } from 'node:events'
import { createServer } from 'node:http'
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http'
import { randomUUID } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import type { Clock } from '../common/clock.js'
import type { AccessTokenClaims } from './entra.js'
import { closeServer, listen, originFor, readBody, sendJson } from './http.js'
import { allows, forbiddenMessage } from './permissions.js'
import { asApiError, compileRoutes, findRoute } from './router.js'
import type { Reply, Route, RouteContext, SimulatorState } from './router.js'
import { ACTION_ROUTES } from './routes-actions.js'
import { ALERT_ROUTES } from './routes-alerts.js'
import { HUNTING_ROUTES } from './routes-hunting.js'
import { INDICATOR_ROUTES } from './routes-indicators.js'
import { MACHINE_ROUTES } from './routes-machines.js'
import { TVM_ROUTES } from './routes-tvm.js'
import { SAMPLE_TENANT_ID, createSampleData } from './sample-data.js'
import type { MachineAction, SampleData } from './sample-data.js'

export type { MachineAction } from './sample-data.js'
export { ACTION_DONE_MS, ACTION_PENDING_MS } from './routes-actions.js'
export { API_PAGE_SIZE, EXPORT_PAGE_SIZE } from './odata-list.js'

export const DEFAULT_PER_MINUTE = 100

const ODATA_JSON = 'application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8'
const MINUTE_MS = 60_000
const ERROR_CODES: Record<number, string> = {
  400: 'BadRequest',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'ResourceNotFound',
  429: 'TooManyRequests',
  500: 'InternalServerError',
  503: 'ServiceUnavailable'
}

export interface DefenderSimulatorOptions {
  /** The Entra simulator's verifier: the claims of a valid token, or null. */
  verifyAccessToken: (token: string) => AccessTokenClaims | null
  host?: string
  port?: number
  clock?: Pick<Clock, 'now'>
  /** Requests a tenant may make in any 60 seconds before getting 429. */
  perMinute?: number
  /** The default and largest page of every list, instead of the API's (10,000 on most OData lists). */
  pageSize?: number
  tenantId?: string
}

export interface RecordedRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
  /** Filled in once the body has been read. */
  body: string
}

export interface ForcedResponse {
  /** Never answer (until close()), for timeout and abort tests. */
  hang?: boolean
  /** Replace the default headers (a 429 gets `Retry-After: 1` by default). */
  headers?: Record<string, string>
  /** A string is sent as is; anything else as JSON. Defaults to the API's error shape. */
  body?: unknown
}

class DefenderSimulator extends EventEmitter<{ request: [RecordedRequest] }> {
  readonly url: string
  readonly requests: RecordedRequest[] = []
  readonly data: SampleData
  /** Machine actions asked for through the API (the sample's own are in `data.machineActions`). */
  readonly machineActions: MachineAction[] = []
  #server: Server
  #options: DefenderSimulatorOptions
  #clock: Pick<Clock, 'now'>
  #perMinute: number
  #state: SimulatorState
  #forced: Array<{ status: number, response: ForcedResponse }> = []
  #budgets = new Map<string, number[]>()
  #routes: Route[]

  constructor (server: Server, url: string, options: DefenderSimulatorOptions) {
    super()
    this.#server = server
    this.url = url
    this.#options = options
    this.#clock = options.clock ?? { now: () => Date.now() }
    this.#perMinute = options.perMinute ?? DEFAULT_PER_MINUTE
    this.data = createSampleData(this.#clock.now(), options.tenantId ?? SAMPLE_TENANT_ID)
    this.#state = { url, data: this.data, clock: this.#clock, pageSize: options.pageSize, machineActions: this.machineActions }
    this.#routes = compileRoutes([...ALERT_ROUTES, ...MACHINE_ROUTES, ...ACTION_ROUTES, ...TVM_ROUTES, ...INDICATOR_ROUTES, ...HUNTING_ROUTES])
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      this.#handle(req, res).catch(() => {
        if (!res.headersSent) sendJson(res, 500, errorBody('InternalServerError', 'The simulator failed to answer.', randomUUID()))
        else res.destroy()
      })
    })
  }

  /** The next request (whatever it is, before any check) gets this answer; calls queue up. */
  forceNext (status: number, response: ForcedResponse = {}): void {
    this.#forced.push({ status, response })
  }

  /** Each route as `METHOD /api/path` with the permissions it requires, for tests that compare it with the broker's catalogue. */
  routes (): Array<{ method: string, path: string, permissions: readonly string[] }> {
    return this.#routes.map(({ method, path, permissions }) => ({ method, path, permissions }))
  }

  async close (): Promise<void> { await closeServer(this.#server) }

  async #handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const recorded: RecordedRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: '' }
    this.requests.push(recorded)
    this.emit('request', recorded)
    const requestId = randomUUID()
    res.setHeader('request-id', requestId)
    res.setHeader('odata-version', '4.0')
    recorded.body = await readBody(req)

    const forced = this.#forced.shift()
    if (forced !== undefined) return this.#sendForced(res, forced.status, forced.response, requestId)

    const claims = this.#authenticate(req)
    if (claims === null) {
      return this.#error(res, 401, 'Unauthorized', 'Authorization has been denied for this request: send a valid bearer token for this API.', requestId, {
        'www-authenticate': 'Bearer'
      })
    }
    const retryAfter = this.#spend(claims.tid)
    if (retryAfter > 0) {
      return this.#error(res, 429, 'TooManyRequests', `API calls quota exceeded! Maximum allowed ${this.#perMinute} per 1 Minute(s) for tenant ${claims.tid}. Please try again in ${retryAfter} seconds.`, requestId, {
        'retry-after': String(retryAfter)
      })
    }

    const target = new URL(recorded.url, this.url)
    const method = req.method === 'HEAD' ? 'GET' : req.method ?? ''
    const { match, pathKnown } = findRoute(this.#routes, method, target.pathname)
    if (match === undefined) {
      return pathKnown
        ? this.#error(res, 405, 'MethodNotAllowed', `The method ${req.method ?? ''} is not allowed on ${target.pathname}.`, requestId)
        : this.#error(res, 404, 'ResourceNotFound', `No API at ${target.pathname}.`, requestId)
    }
    if (!allows(match.route.permissions, claims.roles ?? [])) {
      return this.#error(res, 403, 'Forbidden', forbiddenMessage(match.route.permissions), requestId)
    }
    const ctx: RouteContext = { state: this.#state, path: target.pathname, query: target.searchParams, params: match.params, body: recorded.body, claims }
    let reply: Reply
    try {
      reply = match.route.handle(ctx)
    } catch (error) {
      const refusal = asApiError(error)
      if (refusal === undefined) throw error
      return this.#error(res, refusal.status, refusal.code, refusal.message, requestId)
    }
    this.#reply(req, res, reply)
  }

  #reply (req: IncomingMessage, res: ServerResponse, reply: Reply): void {
    if (reply.body === undefined) {
      res.writeHead(reply.status, { 'content-length': 0 })
      res.end()
      return
    }
    const gzip = reply.list === true && /\bgzip\b/i.test(String(req.headers['accept-encoding'] ?? ''))
    if (!gzip) return sendJson(res, reply.status, reply.body, {}, ODATA_JSON)
    const compressed = gzipSync(JSON.stringify(reply.body))
    res.writeHead(reply.status, { 'content-type': ODATA_JSON, 'content-encoding': 'gzip', 'content-length': compressed.length, vary: 'Accept-Encoding' })
    res.end(compressed)
  }

  #authenticate (req: IncomingMessage): AccessTokenClaims | null {
    const match = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? '')
    return match?.[1] === undefined ? null : this.#options.verifyAccessToken(match[1])
  }

  /** Seconds to wait when the tenant's budget for the last minute is spent, else 0. */
  #spend (tenantId: string): number {
    const now = this.#clock.now()
    const spent = (this.#budgets.get(tenantId) ?? []).filter((at) => at > now - MINUTE_MS)
    this.#budgets.set(tenantId, spent)
    const oldest = spent[0]
    if (spent.length >= this.#perMinute && oldest !== undefined) {
      return Math.max(1, Math.ceil((oldest + MINUTE_MS - now) / 1000))
    }
    spent.push(now)
    return 0
  }

  #sendForced (res: ServerResponse, status: number, response: ForcedResponse, requestId: string): void {
    if (response.hang === true) return
    const headers = response.headers ?? (status === 429 ? { 'retry-after': '1' } : {})
    const body = response.body ?? (status >= 400 ? errorBody(ERROR_CODES[status] ?? 'Error', `Forced ${status} response.`, requestId) : {})
    sendJson(res, status, body, headers)
  }

  #error (res: ServerResponse, status: number, code: string, message: string, requestId: string, headers: Record<string, string> = {}): void {
    sendJson(res, status, errorBody(code, message, requestId), headers)
  }
}

export type { DefenderSimulator }

/** Starts the Defender for Endpoint API imitation over plain HTTP, for loopback use. */
export async function startDefenderSimulator (options: DefenderSimulatorOptions): Promise<DefenderSimulator> {
  const server = createServer()
  const host = options.host ?? '127.0.0.1'
  const port = await listen(server, host, options.port ?? 0)
  return new DefenderSimulator(server, originFor('http', host, port), options)
}

function errorBody (code: string, message: string, target: string): Record<string, unknown> {
  return { error: { code, message, target } }
}
