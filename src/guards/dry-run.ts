import { randomUUID } from 'node:crypto'
import { apiPathSegments } from '../defender/catalogue.js'
import type { MachineFacts } from './machines.js'

/** The machine actions the API answers with a MachineAction entity, by the path's last segment. */
const MACHINE_ACTIONS: Readonly<Record<string, { type: string, scope?: string, file?: string }>> = {
  isolate: { type: 'Isolate', scope: 'isolationtype' },
  unisolate: { type: 'Unisolate' },
  restrictcodeexecution: { type: 'RestrictCodeExecution' },
  unrestrictcodeexecution: { type: 'UnrestrictCodeExecution' },
  runantivirusscan: { type: 'RunAntiVirusScan', scope: 'scantype' },
  collectinvestigationpackage: { type: 'CollectInvestigationPackage' },
  offboard: { type: 'Offboard' },
  stopandquarantinefile: { type: 'StopAndQuarantineFile', file: 'sha1' },
  runliveresponse: { type: 'LiveResponse' }
}

export interface DryRunRequest {
  method: string
  upstreamTarget: string
  /** The request's JSON body, when it had one. */
  body: unknown
  /** The API's origin, for `@odata.context`. */
  upstream: string
  /** Who asks: the client's name. */
  requestor: string
  /** The machine the path names, as read for the protection (absent when not read). */
  machine: MachineFacts | undefined
  now: number
}

export interface DryRunAnswer {
  status: number
  body: Record<string, unknown> | undefined
  /** Marked as a dry run: `dryrun-` and a UUID. */
  id: string
}

function property (body: unknown, name: string): unknown {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined
  const key = Object.keys(body).find((candidate) => candidate.toLowerCase() === name)
  return key === undefined ? undefined : (body as Record<string, unknown>)[key]
}

function text (value: unknown): string | null {
  return typeof value === 'string' ? value : null
}

/**
 * The answer the API would give a state-changing call, without the call: a machine action in
 * its shape, Pending (201); an indicator as submitted (200); 204 for a DELETE; otherwise the
 * body sent back with a dry-run id (200). Ids start with `dryrun-`, so no tool can take one for
 * a real action.
 */
export function dryRunAnswer (request: DryRunRequest): DryRunAnswer {
  const id = `dryrun-${randomUUID()}`
  const segments = apiPathSegments(request.upstreamTarget)
  const time = new Date(request.now).toISOString()
  const context = (set: string) => `${request.upstream}/api/$metadata#${set}/$entity`
  if (request.method === 'DELETE') return { status: 204, body: undefined, id }
  const action = segments[0] === 'api' && segments[1] === 'machines' && segments.length === 4 ? MACHINE_ACTIONS[segments[3] as string] : undefined
  if (action !== undefined && request.method === 'POST') {
    const sha1 = action.file === undefined ? undefined : text(property(request.body, action.file))
    return {
      status: 201,
      id,
      body: {
        '@odata.context': context('MachineActions'),
        id,
        type: action.type,
        title: null,
        requestor: request.requestor,
        requestorComment: text(property(request.body, 'comment')),
        status: 'Pending',
        machineId: request.machine?.id ?? segments[2],
        computerDnsName: request.machine?.computerDnsName ?? null,
        creationDateTimeUtc: time,
        lastUpdateDateTimeUtc: time,
        cancellationRequestor: null,
        cancellationComment: null,
        cancellationDateTimeUtc: null,
        errorHResult: 0,
        scope: action.scope === undefined ? null : text(property(request.body, action.scope)),
        externalId: null,
        requestSource: 'PublicApi',
        relatedFileInfo: sha1 === undefined || sha1 === null ? null : { fileIdentifier: sha1, fileIdentifierType: 'Sha1' },
        commands: [],
        troubleshootInfo: null
      }
    }
  }
  if (request.method === 'POST' && segments.length === 2 && segments[1] === 'indicators') {
    const fields = typeof request.body === 'object' && request.body !== null && !Array.isArray(request.body) ? request.body as Record<string, unknown> : {}
    return {
      status: 200,
      id,
      body: {
        '@odata.context': context('Indicators'),
        id,
        ...fields,
        source: request.requestor,
        createdBy: request.requestor,
        createdBySource: 'PublicApi',
        creationTimeDateTimeUtc: time,
        lastUpdateTime: time
      }
    }
  }
  const fields = typeof request.body === 'object' && request.body !== null && !Array.isArray(request.body) ? request.body as Record<string, unknown> : {}
  return { status: 200, id, body: { ...fields, id } }
}
