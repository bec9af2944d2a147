import type { Clock } from '../common/clock.js'
import type { AccessTokenClaims } from './entra.js'
import { ODataError } from './odata.js'
import type { EntityShape } from './odata.js'
import { API_PAGE_SIZE, EXPORT_MAX_PAGE_SIZE, exportPage, listPage } from './odata-list.js'
import type { ListSpec } from './odata-list.js'
import { ROUTE_PERMISSIONS } from './permissions.js'
import type { MachineAction, SampleData } from './sample-data.js'

/** What route handlers read and change: the sample tenant and the simulator's settings. */
export interface SimulatorState {
  url: string
  data: SampleData
  clock: Pick<Clock, 'now'>
  /** The `pageSize` option: when set, every list pages at it instead of the API's sizes. */
  pageSize: number | undefined
  /** Machine actions asked for through the API since the start. */
  machineActions: MachineAction[]
}

export interface RouteContext {
  state: SimulatorState
  /** The path as the client sent it (for nextLinks). */
  path: string
  query: URLSearchParams
  /** The `{…}` segments of the route, decoded; a function call's arguments for `name(*)`. */
  params: string[]
  body: string
  claims: AccessTokenClaims
}

export interface Reply {
  status: number
  /** undefined: no body (204). */
  body?: unknown
  /** A list page: compressed when the client accepts gzip, as the API's are. */
  list?: boolean
}

export type Handler = (ctx: RouteContext) => Reply

export interface RouteDefinition {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE'
  /** `/api/...`, lower-case literals, `{id}` a parameter, `name(*)` an OData function call. */
  path: string
  handle: Handler
}

/** An answer in the API's error shape, thrown by handlers. */
export class ApiError extends Error {
  readonly status: number
  readonly code: string

  constructor (status: number, code: string, message: string) {
    super(message)
    this.status = status
    this.code = code
  }
}

export function notFound (kind: string, id: string): ApiError {
  return new ApiError(404, 'ResourceNotFound', `${kind} ${id} was not found.`)
}

export function badRequest (message: string, code = 'BadRequest'): ApiError {
  return new ApiError(400, code, message)
}

/** ODataError as the API's 400. */
export function asApiError (error: unknown): ApiError | undefined {
  if (error instanceof ApiError) return error
  if (error instanceof ODataError) return new ApiError(400, error.code, error.message)
  return undefined
}

const LITERAL = 2
const CALL = 1
const PARAM = 0

interface Segment { rank: number, text: string }

export interface Route extends RouteDefinition {
  permissions: readonly string[]
  segments: Segment[]
}

export interface Match {
  route: Route
  params: string[]
}

export function compileRoutes (definitions: readonly RouteDefinition[]): Route[] {
  return definitions.map((definition) => {
    const permissions = ROUTE_PERMISSIONS[`${definition.method} ${definition.path}`]
    if (permissions === undefined) throw new TypeError(`no permissions listed for ${definition.method} ${definition.path}`)
    const segments = definition.path.split('/').slice(1).map((part): Segment => {
      if (part.startsWith('{')) return { rank: PARAM, text: '' }
      if (part.endsWith('(*)')) return { rank: CALL, text: part.slice(0, -3) }
      return { rank: LITERAL, text: part }
    })
    return { ...definition, permissions, segments }
  })
}

const VERSION = /^v\d+(?:\.\d+)?$/i

function decode (segment: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    return segment
  }
}

/** Path segments as the API routes them: any case, `/api/v1.0/` the same as `/api/`, a trailing `/` ignored. */
export function routeSegments (pathname: string): string[] {
  const segments = pathname.split('/').slice(1).map(decode)
  if (segments.length > 1 && segments.at(-1) === '') segments.pop()
  if (segments[0]?.toLowerCase() === 'api' && VERSION.test(segments[1] ?? '')) segments.splice(1, 1)
  return segments
}

function matchSegments (route: Route, path: string[]): string[] | undefined {
  if (route.segments.length !== path.length) return undefined
  const params: string[] = []
  for (const [i, part] of route.segments.entries()) {
    const segment = path[i] as string
    const lower = segment.toLowerCase()
    if (part.rank === LITERAL && lower !== part.text) return undefined
    if (part.rank === PARAM) {
      if (segment === '') return undefined
      params.push(segment)
    }
    if (part.rank === CALL) {
      if (!lower.startsWith(`${part.text}(`) || !lower.endsWith(')')) return undefined
      params.push(segment.slice(part.text.length + 1, -1))
    }
  }
  return params
}

/** Positive when `a` is more specific than `b`: the first segment where they differ decides. */
function specificity (a: Route, b: Route): number {
  for (let i = 0; i < a.segments.length; i++) {
    const difference = (a.segments[i]?.rank ?? 0) - (b.segments[i]?.rank ?? 0)
    if (difference !== 0) return difference
  }
  return 0
}

/** The most specific route for the method, and whether any route has the path (for 405). */
export function findRoute (routes: readonly Route[], method: string, pathname: string): { match?: Match, pathKnown: boolean } {
  const path = routeSegments(pathname)
  let best: Match | undefined
  let pathKnown = false
  for (const route of routes) {
    const params = matchSegments(route, path)
    if (params === undefined) continue
    pathKnown = true
    if (route.method !== method) continue
    if (best === undefined || specificity(route, best.route) > 0) best = { route, params }
  }
  return best === undefined ? { pathKnown } : { match: best, pathKnown }
}

/** A JSON object request body, or a 400 the API would give. */
export function jsonBody (text: string, example: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text)
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>
  } catch {}
  throw badRequest(`Request body is incorrect: send ${example}.`, 'InvalidRequestBody')
}

/** The page size of a list: the simulator's option, or the API's. */
export function pageSizeOf (state: SimulatorState, apiSize: number): number {
  return state.pageSize ?? apiSize
}

export function entity (state: SimulatorState, context: string, item: object): Reply {
  return { status: 200, body: { '@odata.context': `${state.url}/api/$metadata#${context}/$entity`, ...item } }
}

/** Finds an item by id, case-insensitively, or throws the API's 404. */
export function byId<T extends { id: string }> (items: readonly T[], id: string, kind: string): T {
  const lower = id.toLowerCase()
  const item = items.find((candidate) => candidate.id.toLowerCase() === lower)
  if (item === undefined) throw notFound(kind, id)
  return item
}

/** What a list's `$filter`, `$orderby` and `$select` may name: the properties of its items. */
export function shapeOf (name: string, sample: object | undefined): EntityShape {
  return { name, properties: sample === undefined ? [] : Object.keys(sample) }
}

/** An OData list page of `items`, at the API's page size for it unless the simulator says otherwise. */
export function list<T extends object> (ctx: RouteContext, spec: ListSpec<T>, apiSize = API_PAGE_SIZE): Reply {
  const request = { origin: ctx.state.url, path: ctx.path, query: ctx.query, pageSize: pageSizeOf(ctx.state, apiSize) }
  return { status: 200, body: listPage(request, spec), list: true }
}

/** A page of a per-device export. */
export function exportList (ctx: RouteContext, context: string, rows: readonly object[]): Reply {
  const request = { origin: ctx.state.url, path: ctx.path, query: ctx.query, pageSize: pageSizeOf(ctx.state, EXPORT_MAX_PAGE_SIZE) }
  return { status: 200, body: exportPage(request, context, rows), list: true }
}
