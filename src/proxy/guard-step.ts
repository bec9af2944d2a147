import type { Dispatcher } from 'undici'
import type { Clock } from '../common/clock.js'
import { BrokerBadRequest, BrokerGuardrail } from '../common/errors.js'
import { apiPathSegments, findEndpoint } from '../defender/catalogue.js'
import { dryRunAnswer, type DryRunAnswer } from '../guards/dry-run.js'
import { blockingIndicators } from '../guards/indicators.js'
import { machineFactsOf, machinesNamed, protectedBy, type MachineFacts } from '../guards/machines.js'
import type { BrokerMetrics } from '../observability/metrics.js'
import type { GuardVerdict } from '../observability/request-log.js'
import { upstreamError } from '../outbound/network-failure.js'
import type { Profile } from '../runtime/profiles.js'
import type { Call } from './call.js'
import { REPLAYABLE_BODY_LIMIT } from './request-body.js'

export interface GuardStepOptions {
  dispatcher: Dispatcher
  clock: Clock
  metrics: BrokerMetrics
  responseTimeoutMs: number
}

/** A machine id the broker can put in a path or a filter as it is. */
const MACHINE_ID = /^[A-Za-z0-9._-]{1,128}$/
/** Machines read with one list call when a body names several. */
const LOOKUP_CHUNK = 25
/** A machine, or a page of a few, is small. */
const LOOKUP_BODY_LIMIT = 1024 * 1024

/**
 * The guard rails' step of a state-changing call, after the rules and the permission preflight
 * and before the budget: the indicator allowlist, the protected machines (read from the API,
 * failing closed), then the caps; a dry run then gets its answer here, and nothing goes on.
 * A refusal is a 403 BrokerGuardrail, counted and recorded for the audit with its reason.
 */
export function createGuardStep ({ dispatcher, clock, metrics, responseTimeoutMs }: GuardStepOptions) {
  function refuse (call: Call, verdict: GuardVerdict, retryAfterSeconds?: number): never {
    call.request.facts.guard = verdict
    metrics.guardRefused(call.profile.config.name, verdict.guard)
    const error = new BrokerGuardrail(call.profile.config.name, verdict.reason)
    if (retryAfterSeconds !== undefined) error.retryAfter = retryAfterSeconds
    throw error
  }

  /** The request's JSON body, read whole and kept for the call (it is small: an action, an indicator). */
  async function jsonBody (call: Call): Promise<unknown> {
    const { req } = call.request
    if (req.headers['content-encoding'] !== undefined && req.headers['content-encoding'] !== 'identity') {
      throw new BrokerBadRequest('the guard rails read the body of this call, and it is compressed: send it uncompressed')
    }
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of req) {
      size += (chunk as Buffer).length
      if (size > REPLAYABLE_BODY_LIMIT) throw new BrokerBadRequest(`the guard rails read the body of this call, and it is over ${REPLAYABLE_BODY_LIMIT} bytes`)
      chunks.push(chunk as Buffer)
    }
    const bytes = Buffer.concat(chunks, size)
    call.body = { replayable: true, bytes: size === 0 ? null : bytes }
    if (size === 0) return undefined
    try {
      return JSON.parse(bytes.toString('utf8'))
    } catch {
      throw new BrokerBadRequest('the guard rails read the body of this call, and it is not JSON')
    }
  }

  /** GET a path of the API for the guard rails: counted in the budget, with the profile's token. */
  async function read (call: Call, path: string): Promise<{ status: number, json: unknown }> {
    const { profile } = call
    const wait = profile.budget.acquire(findEndpoint('GET', path)?.rateLimit, call.watch)
    if (wait !== undefined) await wait
    const token = profile.tokens.usable() ?? await profile.tokens.get()
    const origin = profile.config.upstream
    const started = performance.now()
    let answer
    try {
      answer = await dispatcher.request({
        origin,
        path,
        method: 'GET',
        headers: { authorization: `Bearer ${token.value}`, accept: 'application/json' },
        headersTimeout: responseTimeoutMs,
        bodyTimeout: responseTimeoutMs
      })
    } catch (err) {
      throw upstreamError(err, origin)
    }
    metrics.upstreamResponse(profile.config.name, 'GET', answer.statusCode, (performance.now() - started) / 1000)
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of answer.body) {
      size += (chunk as Buffer).length
      if (size > LOOKUP_BODY_LIMIT) {
        answer.body.destroy()
        return { status: answer.statusCode, json: undefined }
      }
      chunks.push(chunk as Buffer)
    }
    try {
      return { status: answer.statusCode, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) }
    } catch {
      return { status: answer.statusCode, json: undefined }
    }
  }

  /**
   * The machines `ids` name, from the cache or read from the API (one GET for one machine, a
   * filtered list for several); a machine the API does not give back refuses the call.
   */
  async function lookUp (call: Call, ids: readonly string[]): Promise<MachineFacts[]> {
    const cache = call.profile.guards.machines
    if (cache === undefined) return []
    const now = clock.now()
    const found = new Map<string, MachineFacts>()
    const missing: string[] = []
    for (const id of ids) {
      if (!MACHINE_ID.test(id)) refuse(call, { guard: 'protect', reason: `${JSON.stringify(id.slice(0, 130))} is not a machine id the broker can check against the protected machines` })
      const kept = cache.get(id, now)
      if (kept === undefined) missing.push(id)
      else found.set(id, kept)
    }
    const failed = (id: string, why: string): never =>
      refuse(call, { guard: 'protect', reason: `machine ${id} could not be read to check it against the protected machines (${why}), so the call is refused` })
    if (missing.length === 1) {
      const id = missing[0] as string
      const { status, json } = await read(call, `/api/machines/${encodeURIComponent(id)}`)
      const machine = status === 200 ? machineFactsOf(json) : undefined
      if (machine === undefined) return failed(id, describeFailure(status))
      cache.set(id, machine, clock.now())
      found.set(id, machine)
    } else {
      for (let at = 0; at < missing.length; at += LOOKUP_CHUNK) {
        const chunk = missing.slice(at, at + LOOKUP_CHUNK)
        const filter = chunk.map((id) => `id eq '${id}'`).join(' or ')
        const { status, json } = await read(call, `/api/machines?$filter=${encodeURIComponent(filter)}`)
        const list = status === 200 && typeof json === 'object' && json !== null && Array.isArray((json as { value?: unknown }).value)
          ? ((json as { value: unknown[] }).value).map(machineFactsOf)
          : undefined
        if (list === undefined) return failed(chunk[0] as string, describeFailure(status))
        for (const machine of list) if (machine !== undefined) cache.set(machine.id, machine, clock.now())
        for (const id of chunk) {
          const machine = list.find((candidate) => candidate?.id.toLowerCase() === id.toLowerCase())
          if (machine === undefined) return failed(id, 'the API did not return it')
          found.set(id, machine)
        }
      }
    }
    return ids.map((id) => found.get(id) as MachineFacts)
  }

  /** Undefined when the call may go on; a dry run's answer when it is one. Throws the refusals. */
  return async function guard (call: Call, profile: Profile): Promise<DryRunAnswer | undefined> {
    const { request, method, upstreamTarget } = call
    const { facts } = request
    const dryRun = request.caller?.dryRun === true || dryRunAsked(request.req.headers['x-broker-dry-run'])
    const guards = profile.guards
    if (!guards.active && !dryRun) return undefined
    const segments = apiPathSegments(upstreamTarget)
    const submitsIndicators = method === 'POST' && segments[1] === 'indicators' && (segments.length === 2 || segments[2] === 'import')
    const body = dryRun || guards.machines !== undefined || (guards.allowlist !== undefined && submitsIndicators)
      ? await jsonBody(call)
      : undefined

    if (guards.allowlist !== undefined && submitsIndicators) {
      for (const indicator of blockingIndicators(body)) {
        const entry = guards.allowlist.covering(indicator.value)
        if (entry !== undefined) {
          refuse(call, { guard: 'indicators', reason: `the ${indicator.action} indicator on ${JSON.stringify(indicator.value.slice(0, 300))} names a value the allowlist covers (${entry}): blocking it is refused` })
        }
      }
    }

    const named = machinesNamed(upstreamTarget, body)
    if (named.length > 0) facts.machines = named
    let machines: MachineFacts[] = []
    if (guards.config.protect !== undefined && named.length > 0) {
      machines = await lookUp(call, named)
      for (const machine of machines) {
        const why = protectedBy(guards.config.protect, machine)
        if (why !== undefined) {
          refuse(call, { guard: 'protect', reason: `machine ${machine.id}${machine.computerDnsName === null ? '' : ` (${machine.computerDnsName})`} is protected: ${why}` })
        }
      }
    }

    const cap = await guards.count(method, upstreamTarget, request.caller?.name ?? '-', dryRun)
    if (cap !== undefined) {
      refuse(call, { guard: 'cap', reason: cap.words }, Number.isFinite(cap.freesAt) ? Math.max(1, Math.ceil((cap.freesAt - clock.now()) / 1000)) : undefined)
    }
    if (!dryRun) return undefined
    facts.dryRun = true
    metrics.dryRun(profile.config.name)
    return dryRunAnswer({
      method,
      upstreamTarget,
      body,
      upstream: profile.config.upstream,
      requestor: request.caller?.name ?? 'defender-token-broker',
      machine: machines[0],
      now: clock.now()
    })
  }
}

/** `X-Broker-Dry-Run`: true or 1 asks for a dry run; false, 0 or none does not; anything else is refused, as a typo must not make the call real. */
function dryRunAsked (value: string | string[] | undefined): boolean {
  if (value === undefined) return false
  const text = (Array.isArray(value) ? value.join(',') : value).trim().toLowerCase()
  if (text === 'true' || text === '1') return true
  if (text === 'false' || text === '0') return false
  throw new BrokerBadRequest('X-Broker-Dry-Run must be true or false')
}

function describeFailure (status: number): string {
  if (status === 404) return 'the API answered 404: no such machine'
  if (status === 403) return 'the API answered 403: the app needs Machine.Read.All to read machines'
  if (status === 200) return 'the API\'s answer was not a machine'
  return `the API answered ${status}`
}
