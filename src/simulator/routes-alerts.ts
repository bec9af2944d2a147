import { ApiError, badRequest, byId, entity, jsonBody, list, notFound, shapeOf } from './router.js'
import type { RouteContext, RouteDefinition } from './router.js'
import type { Alert, Evidence, SampleData, SampleFile } from './sample-data.js'

const STATUSES = new Set(['New', 'InProgress', 'Resolved'])
const CLASSIFICATIONS = new Set(['TruePositive', 'InformationalExpectedActivity', 'FalsePositive'])
const DETERMINATIONS = new Set(['MultiStagedAttack', 'MaliciousUserActivity', 'CompromisedAccount', 'Malware', 'Phishing',
  'UnwantedSoftware', 'SecurityTesting', 'LineOfBusinessApplication', 'ConfirmedActivity', 'NotMalicious', 'InsufficientData', 'Other'])
const PATCHABLE = new Set(['status', 'assignedto', 'classification', 'determination', 'comment'])

/** An alert as the API lists it: `evidence` empty unless `$expand=evidence` asks for it. */
function view (alert: Alert): Alert & { evidence: Evidence[] } {
  return { ...alert, evidence: [] }
}

export function alertList (ctx: RouteContext, alerts: readonly Alert[]) {
  const evidence = ctx.state.data.evidence
  return list(ctx, {
    shape: shapeOf('Alert', view(ctx.state.data.alerts[0] as Alert)),
    context: 'Alerts',
    items: alerts.map(view),
    expand: { evidence: (alert) => evidence.get(alert.id) ?? [] }
  })
}

function alertOf (ctx: RouteContext): Alert {
  return byId(ctx.state.data.alerts, ctx.params[0] ?? '', 'Alert')
}

/** The API's File entity: the sample's extra `fileName` is not part of it. */
export function fileEntity (file: SampleFile): Omit<SampleFile, 'fileName'> {
  const { fileName: _, ...rest } = file
  return rest
}

export function fileOf (data: SampleData, sha1: string): SampleFile {
  const lower = sha1.toLowerCase()
  if (!/^[0-9a-f]{40}$|^[0-9a-f]{64}$/.test(lower)) throw badRequest(`'${sha1}' is not a SHA-1 or SHA-256 hash.`, 'InvalidInput')
  const file = data.files.find((candidate) => candidate.sha1 === lower || candidate.sha256 === lower)
  if (file === undefined) throw notFound('File', sha1)
  return file
}

function patchAlert (ctx: RouteContext) {
  const alert = alertOf(ctx)
  const body = jsonBody(ctx.body, '{"status": "Resolved", "assignedTo": "...", "classification": "...", "determination": "...", "comment": "..."}')
  for (const key of Object.keys(body)) {
    if (!PATCHABLE.has(key.toLowerCase())) throw badRequest(`Request body is incorrect: '${key}' cannot be updated.`, 'InvalidRequestBody')
  }
  const get = (name: string): unknown => body[Object.keys(body).find((key) => key.toLowerCase() === name) ?? '']
  const check = (name: string, allowed: Set<string> | null): string | undefined => {
    const value = get(name)
    if (value === undefined) return undefined
    if (typeof value !== 'string' || (allowed !== null && !allowed.has(value))) {
      throw badRequest(`Request body is incorrect: ${name} cannot be ${JSON.stringify(value)}.`, 'InvalidRequestBody')
    }
    return value
  }
  const status = check('status', STATUSES) as Alert['status'] | undefined
  const assignedTo = check('assignedto', null)
  const classification = check('classification', CLASSIFICATIONS) as Alert['classification'] | undefined
  const determination = check('determination', DETERMINATIONS)
  const comment = check('comment', null)
  const now = new Date(ctx.state.clock.now()).toISOString()
  if (status !== undefined) {
    alert.status = status
    alert.resolvedTime = status === 'Resolved' ? now : null
  }
  if (assignedTo !== undefined) alert.assignedTo = assignedTo
  if (classification !== undefined) alert.classification = classification
  if (determination !== undefined) alert.determination = determination
  if (comment !== undefined) alert.comments.push({ comment, createdBy: ctx.claims.appid, createdTime: now })
  alert.lastUpdateTime = now
  return entity(ctx.state, 'Alerts', view(alert))
}

function evidenceOf (ctx: RouteContext, type: Evidence['entityType']): Evidence[] {
  return (ctx.state.data.evidence.get(alertOf(ctx).id) ?? []).filter((item) => item.entityType === type)
}

function relatedUser (ctx: RouteContext) {
  const alert = alertOf(ctx)
  const name = alert.relatedUser?.userName
  const logons = [...ctx.state.data.logonUsers.entries()].filter(([, users]) => users.some((user) => user.accountName === name))
  const user = logons[0]?.[1].find((candidate) => candidate.accountName === name)
  if (name === undefined || user === undefined) throw notFound('User of alert', alert.id)
  return {
    status: 200,
    body: {
      '@odata.context': `${ctx.state.url}/api/$metadata#Users/$entity`,
      id: user.id,
      accountName: user.accountName,
      accountDomain: user.accountDomain,
      accountSid: user.accountSid,
      firstSeen: user.firstSeen,
      lastSeen: user.lastSeen,
      mostPrevalentMachineId: logons[0]?.[0] ?? null,
      leastPrevalentMachineId: logons.at(-1)?.[0] ?? null,
      logonTypes: user.logonTypes,
      logOnMachinesCount: logons.length,
      isDomainAdmin: user.isDomainAdmin,
      isOnlyNetworkUser: user.isOnlyNetworkUser
    }
  }
}

export const ALERT_ROUTES: RouteDefinition[] = [
  { method: 'GET', path: '/api/alerts', handle: (ctx) => alertList(ctx, ctx.state.data.alerts) },
  {
    method: 'GET',
    path: '/api/alerts/{id}',
    handle: (ctx) => {
      const alert = alertOf(ctx)
      const expand = ctx.query.get('$expand')
      if (expand !== null && expand.toLowerCase() !== 'evidence') throw new ApiError(400, 'BadRequest', `Invalid ODataQuery: cannot $expand '${expand}' on type 'Alert'.`)
      return entity(ctx.state, 'Alerts', { ...alert, evidence: expand === null ? [] : ctx.state.data.evidence.get(alert.id) ?? [] })
    }
  },
  { method: 'PATCH', path: '/api/alerts/{id}', handle: patchAlert },
  {
    method: 'GET',
    path: '/api/alerts/{id}/machine',
    handle: (ctx) => entity(ctx.state, 'Machines', byId(ctx.state.data.machines, alertOf(ctx).machineId, 'Machine'))
  },
  {
    method: 'GET',
    path: '/api/alerts/{id}/files',
    handle: (ctx) => {
      const hashes = new Set(evidenceOf(ctx, 'File').map((item) => item.sha1))
      const files = ctx.state.data.files.filter((file) => hashes.has(file.sha1)).map(fileEntity)
      return list(ctx, { shape: shapeOf('File', fileEntity(ctx.state.data.files[0] as SampleFile)), context: 'Files', items: files })
    }
  },
  {
    method: 'GET',
    path: '/api/alerts/{id}/ips',
    handle: (ctx) => list(ctx, { shape: shapeOf('Ip', { id: '' }), context: 'Ips', items: evidenceOf(ctx, 'Ip').map((item) => ({ id: item.ipAddress ?? '' })) })
  },
  {
    method: 'GET',
    path: '/api/alerts/{id}/domains',
    handle: (ctx) => list(ctx, { shape: shapeOf('Domain', { host: '' }), context: 'Domains', items: evidenceOf(ctx, 'Url').map((item) => ({ host: new URL(item.url ?? 'http://invalid').hostname })) })
  },
  { method: 'GET', path: '/api/alerts/{id}/user', handle: relatedUser },
  {
    method: 'GET',
    path: '/api/investigations',
    handle: (ctx) => list(ctx, { shape: shapeOf('Investigation', ctx.state.data.investigations[0]), context: 'Investigations', items: ctx.state.data.investigations })
  },
  {
    method: 'GET',
    path: '/api/investigations/{id}',
    handle: (ctx) => entity(ctx.state, 'Investigations', byId(ctx.state.data.investigations, ctx.params[0] ?? '', 'Investigation'))
  }
]
