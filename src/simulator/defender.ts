import { EventEmitter } from 'node:events'
import { createServer } from 'node:http'
import type { IncomingHttpHeaders, IncomingMessage, Server, ServerResponse } from 'node:http'
import { randomUUID } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import type { Clock } from '../clock.js'
import type { AccessTokenClaims } from './entra.js'
import { closeServer, listen, originFor, readBody, sendJson } from './http.js'
import { SAMPLE_TENANT_ID, createMachineAction, createSampleData, runAdvancedQuery } from './sample-data.js'
import type { Machine, MachineAction, SampleData } from './sample-data.js'

export type { MachineAction } from './sample-data.js'

export const DEFAULT_PAGE_SIZE = 10
export const DEFAULT_PER_MINUTE = 100

const ODATA_JSON = 'application/json; odata.metadata=minimal; odata.streaming=true; IEEE754Compatible=false; charset=utf-8'
const MINUTE_MS = 60_000
const ISOLATION_TYPES = new Set(['Full', 'Selective', 'UnManagedDevice'])
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
  /** Default and largest page for list endpoints. */
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

interface Route {
  permissions: readonly string[]
  handle: (ctx: Context) => Promise<void> | void
}

interface Context {
  res: ServerResponse
  query: URLSearchParams
  params: string[]
  body: string
  claims: AccessTokenClaims
  requestId: string
  /** The client sent `Accept-Encoding: gzip`: list pages go out compressed, as the API's do. */
  gzip: boolean
}

const ALERT_READ = ['Alert.Read.All', 'Alert.ReadWrite.All']
const MACHINE_READ = ['Machine.Read.All', 'Machine.ReadWrite.All']

class DefenderSimulator extends EventEmitter<{ request: [RecordedRequest] }> {
  readonly url: string
  readonly requests: RecordedRequest[] = []
  readonly data: SampleData
  readonly machineActions: MachineAction[] = []
  #server: Server
  #options: DefenderSimulatorOptions
  #clock: Pick<Clock, 'now'>
  #perMinute: number
  #pageSize: number
  #forced: Array<{ status: number, response: ForcedResponse }> = []
  #budgets = new Map<string, number[]>()
  #routes: Array<[string, RegExp, Route]>

  constructor (server: Server, url: string, options: DefenderSimulatorOptions) {
    super()
    this.#server = server
    this.url = url
    this.#options = options
    this.#clock = options.clock ?? { now: () => Date.now() }
    this.#perMinute = options.perMinute ?? DEFAULT_PER_MINUTE
    this.#pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE
    this.data = createSampleData(this.#clock.now(), options.tenantId ?? SAMPLE_TENANT_ID)
    this.#routes = [
      ['GET', /^\/api\/alerts$/, { permissions: ALERT_READ, handle: (ctx) => this.#list(ctx, 'alerts', 'Alerts', this.data.alerts) }],
      ['GET', /^\/api\/alerts\/([^/]+)$/, { permissions: ALERT_READ, handle: (ctx) => this.#one(ctx, 'Alerts', this.data.alerts) }],
      ['GET', /^\/api\/machines$/, { permissions: MACHINE_READ, handle: (ctx) => this.#list(ctx, 'machines', 'Machines', this.data.machines) }],
      // A literal path under /api/machines/ is listed before the machine by id, which the first match wins.
      ['GET', /^\/api\/machines\/SoftwareVulnerabilitiesByMachine$/i, {
        permissions: ['Vulnerability.Read.All'],
        handle: (ctx) => this.#list(ctx, 'machines/SoftwareVulnerabilitiesByMachine', 'Collection(microsoft.windowsDefenderATP.api.AssetVulnerability)', this.data.machines.map(assetVulnerability))
      }],
      ['GET', /^\/api\/machines\/([^/]+)$/, { permissions: MACHINE_READ, handle: (ctx) => this.#one(ctx, 'Machines', this.data.machines) }],
      ['POST', /^\/api\/machines\/([^/]+)\/isolate$/, { permissions: ['Machine.Isolate'], handle: (ctx) => this.#isolate(ctx) }],
      ['POST', /^\/api\/advancedqueries\/run$/, { permissions: ['AdvancedQuery.Read.All'], handle: (ctx) => this.#hunt(ctx) }]
    ]
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
    const matches = this.#routes.flatMap(([method, pattern, route]) => {
      const match = pattern.exec(target.pathname)
      return match === null ? [] : [{ method, route, params: match.slice(1).map(decodeSegment) }]
    })
    const found = matches.find((m) => m.method === req.method)
    if (found === undefined) {
      return matches.length > 0
        ? this.#error(res, 405, 'MethodNotAllowed', `The method ${req.method ?? ''} is not allowed on ${target.pathname}.`, requestId)
        : this.#error(res, 404, 'ResourceNotFound', `No API at ${target.pathname}.`, requestId)
    }
    const roles = claims.roles ?? []
    if (!found.route.permissions.some((permission) => roles.includes(permission))) {
      return this.#error(res, 403, 'Forbidden', `The application does not have any of the required application permissions (${found.route.permissions.join(', ')}) to access the resource.`, requestId)
    }
    const gzip = /\bgzip\b/i.test(String(req.headers['accept-encoding'] ?? ''))
    await found.route.handle({ res, query: target.searchParams, params: found.params, body: recorded.body, claims, requestId, gzip })
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

  #list (ctx: Context, path: string, entitySet: string, items: readonly object[]): void {
    const top = parseCount(ctx.query.get('$top'))
    const skip = parseCount(ctx.query.get('$skip'))
    if (top === null || skip === null) {
      return this.#error(ctx.res, 400, 'BadRequest', 'Invalid OData query: $top and $skip must be non-negative integers.', ctx.requestId)
    }
    const size = Math.min(top ?? this.#pageSize, this.#pageSize)
    const start = skip ?? 0
    const body: Record<string, unknown> = {
      '@odata.context': `${this.url}/api/$metadata#${entitySet}`,
      value: items.slice(start, start + size)
    }
    if (size > 0 && start + size < items.length) {
      body['@odata.nextLink'] = `${this.url}/api/${path}?${nextQuery(ctx.query, size, start + size)}`
    }
    if (!ctx.gzip) return sendJson(ctx.res, 200, body, {}, ODATA_JSON)
    const compressed = gzipSync(JSON.stringify(body))
    ctx.res.writeHead(200, { 'content-type': ODATA_JSON, 'content-encoding': 'gzip', 'content-length': compressed.length, vary: 'Accept-Encoding' })
    ctx.res.end(compressed)
  }

  #one (ctx: Context, entitySet: string, items: ReadonlyArray<{ id: string }>): void {
    const id = ctx.params[0] ?? ''
    const item = items.find((candidate) => candidate.id.toLowerCase() === id.toLowerCase())
    if (item === undefined) {
      return this.#error(ctx.res, 404, 'ResourceNotFound', `${entitySet.slice(0, -1)} ${id} was not found.`, ctx.requestId)
    }
    sendJson(ctx.res, 200, { '@odata.context': `${this.url}/api/$metadata#${entitySet}/$entity`, ...item }, {}, ODATA_JSON)
  }

  #isolate (ctx: Context): void {
    const machine = this.#machine(ctx.params[0] ?? '')
    if (machine === undefined) {
      return this.#error(ctx.res, 404, 'ResourceNotFound', `Machine ${ctx.params[0] ?? ''} was not found.`, ctx.requestId)
    }
    const body = parseJsonObject(ctx.body)
    const comment = body?.['Comment']
    const isolationType = body?.['IsolationType'] ?? 'Full'
    if (typeof comment !== 'string' || comment.trim() === '' || typeof isolationType !== 'string' || !ISOLATION_TYPES.has(isolationType)) {
      return this.#error(ctx.res, 400, 'InvalidRequestBody', 'Request body is incorrect: send {"Comment": "<why>", "IsolationType": "Full" | "Selective"}.', ctx.requestId)
    }
    const action = createMachineAction({ machine, type: 'Isolate', requestor: ctx.claims.appid, comment, scope: isolationType, nowMs: this.#clock.now() })
    this.machineActions.push(action)
    sendJson(ctx.res, 201, { '@odata.context': `${this.url}/api/$metadata#MachineActions/$entity`, ...action }, {}, ODATA_JSON)
  }

  #hunt (ctx: Context): void {
    const query = parseJsonObject(ctx.body)?.['Query']
    if (typeof query !== 'string' || query.trim() === '') {
      return this.#error(ctx.res, 400, 'InvalidRequestBody', 'Request body is incorrect: send {"Query": "<KQL>"}.', ctx.requestId)
    }
    sendJson(ctx.res, 200, runAdvancedQuery(this.data.machines, query))
  }

  #machine (id: string): Machine | undefined {
    return this.data.machines.find((machine) => machine.id.toLowerCase() === id.toLowerCase())
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

/** One row of the software vulnerabilities export for a machine: its operating system, no CVE. */
function assetVulnerability (machine: Machine): Record<string, unknown> {
  const software = machine.osPlatform.toLowerCase()
  return {
    id: `${machine.id}_${software}_${machine.osVersion ?? ''}__`,
    deviceId: machine.id,
    rbacGroupName: machine.rbacGroupName,
    deviceName: machine.computerDnsName,
    osPlatform: machine.osPlatform,
    osVersion: machine.osVersion,
    softwareVendor: 'microsoft',
    softwareName: software,
    softwareVersion: machine.osVersion,
    cveId: null,
    vulnerabilitySeverityLevel: null,
    lastSeenTimestamp: machine.lastSeen,
    firstSeenTimestamp: machine.firstSeen,
    exploitabilityLevel: 'NoExploit'
  }
}

function decodeSegment (segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    return segment
  }
}

function errorBody (code: string, message: string, target: string): Record<string, unknown> {
  return { error: { code, message, target } }
}

/** undefined when absent, null when not a non-negative integer. */
function parseCount (value: string | null): number | undefined | null {
  if (value === null) return undefined
  return /^\d+$/.test(value) ? Number(value) : null
}

function nextQuery (query: URLSearchParams, top: number, skip: number): string {
  const rest = [...query].filter(([name]) => name !== '$top' && name !== '$skip')
    .map(([name, value]) => `${encodeURIComponent(name).replace(/^%24/, '$')}=${encodeURIComponent(value)}`)
  return [...rest, `$top=${top}`, `$skip=${skip}`].join('&')
}

function parseJsonObject (text: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(text)
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? value as Record<string, unknown> : undefined
  } catch {
    return undefined
  }
}
