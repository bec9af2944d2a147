import { ApiError, badRequest, byId, entity, jsonBody, list, shapeOf } from './router.js'
import type { RouteContext, RouteDefinition } from './router.js'
import { createMachineAction } from './sample-data.js'
import type { MachineAction, MachineActionType } from './sample-data.js'

/** A new action waits this long as Pending, then is InProgress until ACTION_DONE_MS after its creation, then has Succeeded. */
export const ACTION_PENDING_MS = 2000
export const ACTION_DONE_MS = 5000

interface ActionKind {
  type: MachineActionType
  /** The body's option besides Comment, its allowed values, and whether it may be left out. */
  option?: { name: string, values: readonly string[], fallback?: string }
}

const ACTIONS: Record<string, ActionKind> = {
  isolate: { type: 'Isolate', option: { name: 'IsolationType', values: ['Full', 'Selective', 'UnManagedDevice'], fallback: 'Full' } },
  unisolate: { type: 'Unisolate' },
  restrictcodeexecution: { type: 'RestrictCodeExecution' },
  unrestrictcodeexecution: { type: 'UnrestrictCodeExecution' },
  runantivirusscan: { type: 'RunAntiVirusScan', option: { name: 'ScanType', values: ['Quick', 'Full'], fallback: 'Quick' } },
  collectinvestigationpackage: { type: 'CollectInvestigationPackage' },
  offboard: { type: 'Offboard' },
  stopandquarantinefile: { type: 'StopAndQuarantineFile', option: { name: 'Sha1', values: [] } }
}

/** Moves an action on to where the clock says it is by now. */
export function advance (action: MachineAction, nowMs: number): MachineAction {
  if (action.status !== 'Pending' && action.status !== 'InProgress') return action
  const created = Date.parse(action.creationDateTimeUtc)
  const elapsed = nowMs - created
  if (elapsed >= ACTION_DONE_MS) {
    action.status = 'Succeeded'
    action.lastUpdateDateTimeUtc = new Date(created + ACTION_DONE_MS).toISOString()
  } else if (elapsed >= ACTION_PENDING_MS) {
    action.status = 'InProgress'
    action.lastUpdateDateTimeUtc = new Date(created + ACTION_PENDING_MS).toISOString()
  }
  return action
}

function allActions (ctx: RouteContext): MachineAction[] {
  const now = ctx.state.clock.now()
  return [...ctx.state.data.machineActions, ...ctx.state.machineActions].map((action) => advance(action, now))
}

function property (body: Record<string, unknown>, name: string): unknown {
  const key = Object.keys(body).find((candidate) => candidate.toLowerCase() === name.toLowerCase())
  return key === undefined ? undefined : body[key]
}

function act (kind: ActionKind) {
  return (ctx: RouteContext) => {
    const machine = byId(ctx.state.data.machines, ctx.params[0] ?? '', 'Machine')
    const option = kind.option
    const example = `{"Comment": "<why>"${option === undefined ? '' : `, "${option.name}": ${option.values.length > 0 ? option.values.map((value) => `"${value}"`).join(' | ') : '"<value>"'}`}}`
    const body = jsonBody(ctx.body, example)
    const comment = property(body, 'Comment')
    const value = option === undefined ? undefined : property(body, option.name) ?? option.fallback
    const valid = typeof comment === 'string' && comment.trim() !== '' &&
      (option === undefined || (typeof value === 'string' && (option.values.length === 0 ? /^[0-9a-f]{40}$/i.test(value) : option.values.includes(value))))
    if (!valid) throw badRequest(`Request body is incorrect: send ${example}.`, 'InvalidRequestBody')
    const now = ctx.state.clock.now()
    const running = allActions(ctx).find((action) => action.machineId === machine.id && action.type === kind.type && (action.status === 'Pending' || action.status === 'InProgress'))
    if (running !== undefined) {
      throw badRequest(`Action of type ${kind.type} on machine ${machine.id} is already in progress (machine action ${running.id}).`, 'ActiveRequestAlreadyExists')
    }
    const action = createMachineAction({
      machine,
      type: kind.type,
      requestor: ctx.claims.appid,
      comment: comment as string,
      scope: option === undefined || option.name === 'Sha1' ? null : value as string,
      nowMs: now,
      ...(option?.name === 'Sha1' ? { relatedFileSha1: (value as string).toLowerCase() } : {})
    })
    ctx.state.machineActions.push(action)
    return { ...entity(ctx.state, 'MachineActions', action), status: 201 }
  }
}

export const ACTION_ROUTES: RouteDefinition[] = [
  ...Object.entries(ACTIONS).map(([name, kind]): RouteDefinition => ({ method: 'POST', path: `/api/machines/{id}/${name}`, handle: act(kind) })),
  {
    method: 'GET',
    path: '/api/machineactions',
    handle: (ctx) => list(ctx, { shape: shapeOf('MachineAction', ctx.state.data.machineActions[0]), context: 'MachineActions', items: allActions(ctx) })
  },
  { method: 'GET', path: '/api/machineactions/{id}', handle: (ctx) => entity(ctx.state, 'MachineActions', byId(allActions(ctx), ctx.params[0] ?? '', 'Machine action')) },
  {
    method: 'POST',
    path: '/api/machineactions/{id}/cancel',
    handle: (ctx) => {
      const action = byId(allActions(ctx), ctx.params[0] ?? '', 'Machine action')
      const comment = property(jsonBody(ctx.body, '{"Comment": "<why>"}'), 'Comment')
      if (typeof comment !== 'string' || comment.trim() === '') throw badRequest('Request body is incorrect: send {"Comment": "<why>"}.', 'InvalidRequestBody')
      if (action.status !== 'Pending' && action.status !== 'InProgress') {
        throw new ApiError(400, 'InvalidRequest', `Machine action ${action.id} is ${action.status}: only a pending or running action can be cancelled.`)
      }
      const now = new Date(ctx.state.clock.now()).toISOString()
      Object.assign(action, { status: 'Cancelled', lastUpdateDateTimeUtc: now, cancellationRequestor: ctx.claims.appid, cancellationComment: comment, cancellationDateTimeUtc: now })
      return entity(ctx.state, 'MachineActions', action)
    }
  }
]
