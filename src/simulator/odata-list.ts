import { ODataError, compareBy, parseFilter, parseOrderBy, parseSelect } from './odata.js'
import type { EntityShape } from './odata.js'

/** The API's largest page on its OData lists (`$top` up to 10,000; a longer list pages). */
export const API_PAGE_SIZE = 10_000
/** The per-device exports: `pageSize` defaults to 50,000 rows and goes up to 200,000. */
export const EXPORT_PAGE_SIZE = 50_000
export const EXPORT_MAX_PAGE_SIZE = 200_000

const OPTIONS = new Set(['$filter', '$top', '$skip', '$select', '$orderby', '$count', '$expand', '$format', '$skiptoken'])

export interface ListRequest {
  /** The simulator's origin. */
  origin: string
  /** The path as the client sent it, for the nextLink. */
  path: string
  query: URLSearchParams
  /** The page size of this list. */
  pageSize: number
}

export interface ListSpec<T> {
  shape: EntityShape
  /** `@odata.context` after `$metadata#`, e.g. `Machines`. */
  context: string
  items: readonly T[]
  /** `$expand` values this list knows, each adding one property to an item. */
  expand?: Record<string, (item: T) => unknown>
}

/** The query options by name; the names arrive `$filter`, `%24filter` (decoded by URLSearchParams) or in any case. */
export function odataOptions (query: URLSearchParams): Map<string, string> {
  const options = new Map<string, string>()
  for (const [name, value] of query) {
    const lower = name.toLowerCase()
    if (!lower.startsWith('$')) continue
    if (!OPTIONS.has(lower)) throw new ODataError(`Invalid ODataQuery: the query option '${name}' is not supported.`)
    if (options.has(lower)) throw new ODataError(`Invalid ODataQuery: the query option '${name}' was given more than once.`)
    options.set(lower, value)
  }
  return options
}

function count (name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value.trim())) throw new ODataError(`Invalid ODataQuery: ${name} must be a non-negative integer, not '${value}'.`)
  return Number(value)
}

/** One page of an OData list, as the API answers it: filtered, ordered, paged, selected. */
export function listPage<T extends object> (request: ListRequest, spec: ListSpec<T>): Record<string, unknown> {
  const options = odataOptions(request.query)
  const filterText = options.get('$filter')
  const orderText = options.get('$orderby')
  const selectText = options.get('$select')
  const expandText = options.get('$expand')
  const countText = options.get('$count')?.toLowerCase()
  const top = count('$top', options.get('$top'))
  const skip = count('$skip', options.get('$skip')) ?? 0
  if (countText !== undefined && countText !== 'true' && countText !== 'false') throw new ODataError(`Invalid ODataQuery: $count must be true or false, not '${countText}'.`)
  const expansions = expandText === undefined || expandText.trim() === '' ? [] : expandText.split(',').map((name) => name.trim())
  for (const name of expansions) {
    if (spec.expand?.[name.toLowerCase()] === undefined) throw new ODataError(`Invalid ODataQuery: could not find a navigation property named '${name}' on type '${spec.shape.name}' to $expand.`)
  }
  const select = selectText === undefined ? undefined : parseSelect(selectText, spec.shape)

  let items = spec.items as ReadonlyArray<Record<string, unknown>>
  if (filterText !== undefined) {
    const filter = parseFilter(filterText, spec.shape)
    items = items.filter(filter)
  }
  if (orderText !== undefined) items = [...items].sort(compareBy(parseOrderBy(orderText, spec.shape)))

  const size = Math.min(top ?? request.pageSize, request.pageSize)
  const page = items.slice(skip, skip + size).map((item) => {
    let out: Record<string, unknown> = { ...item }
    for (const name of expansions) out[name.toLowerCase()] = spec.expand?.[name.toLowerCase()]?.(item as T)
    if (select !== undefined) out = Object.fromEntries([...select, ...expansions.map((name) => name.toLowerCase())].map((key) => [key, out[key]]))
    return out
  })
  const body: Record<string, unknown> = { '@odata.context': `${request.origin}/api/$metadata#${spec.context}` }
  if (countText === 'true') body['@odata.count'] = items.length
  body['value'] = page
  const end = skip + size
  const wanted = top === undefined ? items.length : Math.min(items.length, skip + top)
  if (size > 0 && end < wanted) {
    body['@odata.nextLink'] = `${request.origin}${request.path}?${nextQuery(request.query, top === undefined ? undefined : top - size, end)}`
  }
  return body
}

/** The request's query with `$skip` moved on (and `$top` what is left of it), everything else as sent. */
function nextQuery (query: URLSearchParams, top: number | undefined, skip: number): string {
  const rest = [...query].filter(([name]) => !['$top', '$skip'].includes(name.toLowerCase()))
    .map(([name, value]) => `${encodeURIComponent(name).replace(/^%24/, '$')}=${encodeURIComponent(value)}`)
  return [...rest, ...(top === undefined ? [] : [`$top=${top}`]), `$skip=${skip}`].join('&')
}

/**
 * A page of a per-device export (`SoftwareVulnerabilitiesByMachine` and its kind): `pageSize`
 * rows, then an `@odata.nextLink` carrying a `$skiptoken`, as the API's exports page.
 */
export function exportPage (request: ListRequest, context: string, rows: readonly object[]): Record<string, unknown> {
  const size = count('pageSize', request.query.get('pageSize') ?? undefined) ?? Math.min(EXPORT_PAGE_SIZE, request.pageSize)
  if (size < 1 || size > EXPORT_MAX_PAGE_SIZE) throw new ODataError(`Invalid pageSize: it must be between 1 and ${EXPORT_MAX_PAGE_SIZE}.`)
  const pageSize = Math.min(size, request.pageSize)
  const token = request.query.get('$skiptoken')
  let start = 0
  if (token !== null) {
    const parsed = readSkipToken(token)
    if (parsed === undefined) throw new ODataError('Invalid $skiptoken.')
    start = parsed
  }
  const body: Record<string, unknown> = {
    '@odata.context': `${request.origin}/api/$metadata#${context}`,
    value: rows.slice(start, start + pageSize)
  }
  if (start + pageSize < rows.length) {
    const skiptoken = Buffer.from(JSON.stringify({ LastRowId: start + pageSize, Version: '1.0' })).toString('base64')
    body['@odata.nextLink'] = `${request.origin}${request.path}?pageSize=${pageSize}&$skiptoken=${encodeURIComponent(skiptoken)}`
  }
  return body
}

function readSkipToken (token: string): number | undefined {
  try {
    const parsed = JSON.parse(Buffer.from(token, 'base64').toString('utf8')) as { LastRowId?: unknown }
    return typeof parsed.LastRowId === 'number' && Number.isInteger(parsed.LastRowId) && parsed.LastRowId >= 0 ? parsed.LastRowId : undefined
  } catch {
    return undefined
  }
}
