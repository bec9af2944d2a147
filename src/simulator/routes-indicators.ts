import { badRequest, byId, entity, jsonBody, list, shapeOf } from './router.js'
import type { RouteContext, RouteDefinition } from './router.js'
import type { Indicator } from './sample-data.js'

const TYPES = new Set<string>(['FileSha1', 'FileSha256', 'FileMd5', 'CertificateThumbprint', 'IpAddress', 'DomainName', 'Url'])
const ACTIONS = new Set<string>(['Alert', 'AlertAndBlock', 'Allowed', 'Audit', 'Block', 'BlockAndRemediate', 'Warn'])
const SEVERITIES = new Set<string>(['Informational', 'Low', 'Medium', 'High'])
const EXAMPLE = '{"indicatorValue": "...", "indicatorType": "FileSha1", "action": "Alert", "title": "...", "description": "..."}'

function text (body: Record<string, unknown>, name: string, required: boolean, allowed?: Set<string>): string | undefined {
  const value = body[name]
  if (value === undefined || value === null) {
    if (required) throw badRequest(`Request body is incorrect: ${name} is required; send ${EXAMPLE}.`, 'InvalidRequestBody')
    return undefined
  }
  if (typeof value !== 'string' || value.trim() === '' || (allowed !== undefined && !allowed.has(value))) {
    throw badRequest(`Request body is incorrect: ${name} cannot be ${JSON.stringify(value)}.`, 'InvalidRequestBody')
  }
  return value
}

/** Submit or update: an indicator of the same value and type is updated in place, as the API does. */
function submit (ctx: RouteContext) {
  const body = jsonBody(ctx.body, EXAMPLE)
  const indicatorValue = text(body, 'indicatorValue', true) as string
  const indicatorType = text(body, 'indicatorType', true, TYPES) as Indicator['indicatorType']
  const action = text(body, 'action', true, ACTIONS) as Indicator['action']
  const title = text(body, 'title', true) as string
  const description = text(body, 'description', true) as string
  const severity = (text(body, 'severity', false, SEVERITIES) ?? 'Informational') as Indicator['severity']
  const expirationTime = text(body, 'expirationTime', false)
  if (expirationTime !== undefined && Number.isNaN(Date.parse(expirationTime))) throw badRequest('Request body is incorrect: expirationTime is not a date.', 'InvalidRequestBody')
  const now = new Date(ctx.state.clock.now()).toISOString()
  const indicators = ctx.state.data.indicators
  const existing = indicators.find((item) => item.indicatorType === indicatorType && item.indicatorValue.toLowerCase() === indicatorValue.toLowerCase())
  const fields = {
    action,
    title,
    description,
    severity,
    expirationTime: expirationTime ?? null,
    recommendedActions: text(body, 'recommendedActions', false) ?? null,
    application: text(body, 'application', false) ?? null,
    generateAlert: body['generateAlert'] === true,
    rbacGroupNames: Array.isArray(body['rbacGroupNames']) ? body['rbacGroupNames'].map(String) : [],
    lastUpdateTime: now,
    lastUpdatedBy: ctx.claims.appid
  }
  if (existing !== undefined) return entity(ctx.state, 'Indicators', Object.assign(existing, fields))
  const next = indicators.reduce((max, item) => Math.max(max, Number(item.id)), 0) + 1
  const created: Indicator = {
    id: String(next),
    indicatorValue,
    indicatorType,
    ...fields,
    source: ctx.claims.appid,
    sourceType: 'AadApp',
    creationTimeDateTimeUtc: now,
    createdBy: ctx.claims.appid,
    createdBySource: 'PublicApi',
    createdByDisplayName: ctx.claims.appid,
    rbacGroupIds: [],
    mitreTechniques: [],
    category: 1,
    externalId: null
  }
  indicators.push(created)
  return entity(ctx.state, 'Indicators', created)
}

export const INDICATOR_ROUTES: RouteDefinition[] = [
  {
    method: 'GET',
    path: '/api/indicators',
    handle: (ctx) => list(ctx, { shape: shapeOf('Indicator', ctx.state.data.indicators[0]), context: 'Indicators', items: ctx.state.data.indicators })
  },
  { method: 'POST', path: '/api/indicators', handle: submit },
  {
    method: 'DELETE',
    path: '/api/indicators/{id}',
    handle: (ctx) => {
      const indicator = byId(ctx.state.data.indicators, ctx.params[0] ?? '', 'Indicator')
      ctx.state.data.indicators.splice(ctx.state.data.indicators.indexOf(indicator), 1)
      return { status: 204 }
    }
  }
]
