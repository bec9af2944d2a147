import type { Clock } from '../common/clock.js'
import { compilePattern, matchesPattern, type PathPattern } from '../common/path-pattern.js'
import type { ActionCapConfig, ClientConfig, GuardsConfig } from '../config/types.js'
import { apiPathSegments } from '../defender/catalogue.js'
import type { Window } from '../ratelimit/budget.js'
import type { Counter, Counts } from './counters.js'
import { IndicatorAllowlist } from './indicators.js'
import { MachineCache } from './machines.js'

export const HOUR_MS = 3_600_000

type Limit = 'perHour' | 'perDay' | 'perClientPerHour' | 'perClientPerDay'

const LIMIT_WORDS: Record<Limit, string> = {
  perHour: 'an hour for the app',
  perDay: 'a day for the app',
  perClientPerHour: 'an hour per client',
  perClientPerDay: 'a day per client'
}

/** A call over a cap: which, what its limit is, and when (this broker's clock) a call frees. */
export interface CapRefusal {
  readonly allow: string
  readonly limit: Limit
  readonly value: number
  readonly freesAt: number
  readonly words: string
}

export interface CapUse {
  readonly allow: string
  readonly limits: Partial<Record<Limit, number>>
  /** Calls counted now in the app's windows. */
  readonly used: Partial<Record<'perHour' | 'perDay', number>>
  /** Calls counted now in each client's windows (the clients that made any). */
  readonly usedByClient: Record<string, Partial<Record<'perClientPerHour' | 'perClientPerDay', number>>>
}

interface Cap {
  readonly config: ActionCapConfig
  readonly method: string
  readonly pattern: PathPattern
  readonly key: string
}

export interface GuardsOptions {
  counts: Counts
  /** Prefix of the counters' names: the app's, so every broker serving the app shares them. */
  appKey: string
  clock: Pick<Clock, 'now'>
  /** The hour's length (tests shorten it; a day is 24 of them). */
  hourMs?: number
}

/**
 * A profile's guard rails, as decisions: which caps a call counts in and whether they have
 * room, whether a machine or an indicator value is protected, and what /status shows. The
 * reads they need (the machines) are made by the forwarder (`proxy/guard-step.ts`).
 */
export class ProfileGuards {
  readonly config: GuardsConfig
  /** Any guard configured; dry runs work without. */
  readonly active: boolean
  readonly machines: MachineCache | undefined
  readonly allowlist: IndicatorAllowlist | undefined
  readonly #caps: readonly Cap[]
  readonly #counts: Counts
  readonly #clock: Pick<Clock, 'now'>
  readonly #hourMs: number
  /** Client names that made a capped call, for /status. */
  readonly #clients = new Set<string>()

  constructor (config: GuardsConfig, options: GuardsOptions) {
    this.config = config
    this.#counts = options.counts
    this.#clock = options.clock
    this.#hourMs = options.hourMs ?? HOUR_MS
    this.#caps = config.actions.map((cap, index) => {
      const space = cap.allow.indexOf(' ')
      return {
        config: cap,
        method: cap.allow.slice(0, space),
        pattern: compilePattern(cap.allow.slice(space + 1)),
        key: `${options.appKey}:guard:${index}:${cap.allow}`
      }
    })
    this.machines = config.protect === undefined ? undefined : new MachineCache(config.protect.lookupCacheSeconds * 1000)
    this.allowlist = config.indicators === undefined ? undefined : new IndicatorAllowlist(config.indicators.allowlist)
    this.active = this.#caps.length > 0 || this.machines !== undefined || this.allowlist !== undefined
  }

  /**
   * Counts a state-changing call in every cap that covers it, or refuses it when one is full.
   * A dry run counts in counters of its own: it meets the caps as the real call would, without
   * using them up.
   */
  async count (method: string, upstreamTarget: string, client: string, dryRun: boolean): Promise<CapRefusal | undefined> {
    const caps = this.#covering(method, upstreamTarget)
    if (caps.length === 0) return undefined
    this.#clients.add(client)
    const counters: Array<{ counter: Counter, cap: Cap, limits: Limit[] }> = []
    for (const cap of caps) {
      const suffix = dryRun ? ':dry' : ''
      const app = this.#windows(cap.config, ['perHour', 'perDay'])
      if (app.windows.length > 0) counters.push({ counter: { key: `${cap.key}${suffix}:app`, windows: app.windows }, cap, limits: app.limits })
      const own = this.#windows(cap.config, ['perClientPerHour', 'perClientPerDay'])
      if (own.windows.length > 0) counters.push({ counter: { key: `${cap.key}${suffix}:client:${client}`, windows: own.windows }, cap, limits: own.limits })
    }
    const taken = this.#counts.take(counters.map(({ counter }) => counter))
    const decision = taken instanceof Promise ? await taken : taken
    if (decision.granted) return undefined
    const { cap, limits } = counters[decision.counter] as (typeof counters)[number]
    const limit = limits[decision.window] as Limit
    const value = cap.config[limit] as number
    return { allow: cap.config.allow, limit, value, freesAt: decision.freesAt, words: capWords(cap.config.allow, limit, value, client, decision.freesAt, this.#clock.now()) }
  }

  /** Each cap's limits and what is used of them now (real calls, not dry runs). */
  async use (): Promise<CapUse[]> {
    const clients = [...this.#clients]
    return Promise.all(this.#caps.map(async (cap) => {
      const app = this.#windows(cap.config, ['perHour', 'perDay'])
      const own = this.#windows(cap.config, ['perClientPerHour', 'perClientPerDay'])
      const counters: Counter[] = []
      if (app.windows.length > 0) counters.push({ key: `${cap.key}:app`, windows: app.windows })
      if (own.windows.length > 0) for (const client of clients) counters.push({ key: `${cap.key}:client:${client}`, windows: own.windows })
      const counted = counters.length === 0 ? [] : await this.#counts.used(counters)
      const used: CapUse['used'] = {}
      const usedByClient: CapUse['usedByClient'] = {}
      let next = 0
      if (app.windows.length > 0) {
        const row = counted[next++] ?? []
        app.limits.forEach((limit, i) => { used[limit as 'perHour' | 'perDay'] = row[i] ?? 0 })
      }
      if (own.windows.length > 0) {
        for (const client of clients) {
          const row = counted[next++] ?? []
          if (row.every((n) => n === 0)) continue
          const entry: CapUse['usedByClient'][string] = {}
          own.limits.forEach((limit, i) => { entry[limit as 'perClientPerHour' | 'perClientPerDay'] = row[i] ?? 0 })
          usedByClient[client] = entry
        }
      }
      const limits: CapUse['limits'] = {}
      for (const limit of Object.keys(LIMIT_WORDS) as Limit[]) if (cap.config[limit] !== undefined) limits[limit] = cap.config[limit]
      return { allow: cap.config.allow, limits, used, usedByClient }
    }))
  }

  #covering (method: string, upstreamTarget: string): Cap[] {
    if (this.#caps.length === 0) return []
    const upper = method.toUpperCase()
    const segments = apiPathSegments(upstreamTarget)
    return this.#caps.filter((cap) => (cap.method === '*' || cap.method === upper) && matchesPattern(cap.pattern, segments))
  }

  #windows (cap: ActionCapConfig, limits: readonly Limit[]): { windows: Window[], limits: Limit[] } {
    const windows: Window[] = []
    const set: Limit[] = []
    for (const limit of limits) {
      const value = cap[limit]
      if (value === undefined) continue
      windows.push({ ms: limit.endsWith('PerHour') || limit === 'perHour' ? this.#hourMs : 24 * this.#hourMs, limit: value })
      set.push(limit)
    }
    return { windows, limits: set }
  }
}

function capWords (allow: string, limit: Limit, value: number, client: string, freesAt: number, now: number): string {
  const who = limit.startsWith('perClient') ? `client ${client} made ${value}` : `the app made ${value}`
  const frees = Number.isFinite(freesAt)
    ? `the next call is allowed at ${new Date(freesAt).toISOString()} (in ${Math.max(1, Math.ceil((freesAt - now) / 1000))} s)`
    : 'no call is allowed while the limit is 0'
  return `the cap on "${allow}" allows ${value} ${LIMIT_WORDS[limit]} (${limit}) and ${who}: ${frees}`
}

/** The guard rails of a profile in plain lines, for `check`: none when it has none. */
export function describeGuards (config: GuardsConfig, dryRunClients: readonly string[]): string[] {
  const lines: string[] = []
  for (const cap of config.actions) {
    const limits = (Object.keys(LIMIT_WORDS) as Limit[]).flatMap((limit) => cap[limit] === undefined ? [] : [`${cap[limit]} ${LIMIT_WORDS[limit]}`])
    lines.push(`cap "${cap.allow}": ${limits.join(', ')}`)
  }
  const protect = config.protect
  if (protect !== undefined) {
    const parts = [
      protect.tags.length > 0 ? `tags ${protect.tags.join(', ')}` : '',
      protect.names.length > 0 ? `names ${protect.names.join(', ')}` : '',
      protect.ids.length > 0 ? `${protect.ids.length} machine id(s)` : ''
    ].filter((part) => part !== '')
    lines.push(`protected machines: ${parts.length > 0 ? parts.join('; ') : 'none listed'} (read before each action, kept ${protect.lookupCacheSeconds} s; a failed read refuses the action)`)
  }
  if (config.indicators !== undefined) {
    lines.push(`no Block/AlertAndBlock/BlockAndRemediate indicator on: ${config.indicators.allowlist.join(', ')}`)
  }
  if (dryRunClients.length > 0) lines.push(`dry run for client(s): ${dryRunClients.join(', ')}`)
  return lines
}

/** The clients whose state-changing calls through `profile` are dry runs. */
export function dryRunClientsOf (clients: readonly ClientConfig[], profile: string): string[] {
  return clients
    .filter((client) => client.dryRun === true && (client.profiles.length === 0 || client.profiles.includes(profile)))
    .map((client) => client.name)
}
