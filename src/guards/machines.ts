import { segmentsOf } from '../common/path-pattern.js'
import type { ProtectConfig } from '../config/types.js'

/** What the protection looks at in a machine the API returned. */
export interface MachineFacts {
  readonly id: string
  readonly computerDnsName: string | null
  readonly machineTags: readonly string[]
}

const VERSION = /^v\d+(\.\d+)?$/
/** A literal under /api/machines/ that a state-changing call uses instead of a machine id. */
const MANY_MACHINES = 'addorremovetagformultiplemachines'
/** Body properties that name machines, compared case-insensitively. */
const MACHINE_PROPERTIES = new Set(['machineid', 'machineids', 'deviceid', 'deviceids'])

/**
 * The machines a state-changing call names: the id in `/api/machines/{id}/...` (whatever the
 * action, known to the catalogue or not), and every `machineId`/`MachineIds` (or `deviceId`)
 * at the top of its JSON body.
 */
export function machinesNamed (upstreamTarget: string, body: unknown): string[] {
  const named: string[] = []
  const segments = segmentsOf(upstreamTarget)
  if (segments[0] === 'api' && VERSION.test(segments[1] ?? '')) segments.splice(1, 1)
  // Ids compare lower-case, as segmentsOf gives them: the API's machine ids are hex.
  if (segments[0] === 'api' && segments[1] === 'machines' && segments[2] !== undefined && segments[2] !== '' && segments[2] !== MANY_MACHINES) {
    named.push(segments[2])
  }
  if (typeof body === 'object' && body !== null && !Array.isArray(body)) {
    for (const [name, value] of Object.entries(body)) {
      if (!MACHINE_PROPERTIES.has(name.toLowerCase())) continue
      for (const id of Array.isArray(value) ? value : [value]) named.push(typeof id === 'string' ? id.toLowerCase() : String(id))
    }
  }
  return [...new Set(named)]
}

/** Why a machine is protected, in words, or undefined when it is not. */
export function protectedBy (protect: ProtectConfig, machine: MachineFacts): string | undefined {
  const id = machine.id.toLowerCase()
  if (protect.ids.includes(id)) return 'its id is listed in guards.protect.ids'
  const tag = machine.machineTags.find((tag) => protect.tags.includes(tag.toLowerCase()))
  if (tag !== undefined) return `its tag ${tag} is protected`
  const name = machine.computerDnsName?.toLowerCase()
  if (name !== undefined) {
    const pattern = protect.names.find((pattern) => globMatches(pattern, name))
    if (pattern !== undefined) return `its name matches ${pattern}`
  }
  return undefined
}

/** Whether `value` matches `pattern`: `*` any run of characters, `?` one; both lower-case. */
export function globMatches (pattern: string, value: string): boolean {
  let p = 0
  let v = 0
  let star = -1
  let resume = 0
  while (v < value.length) {
    if (p < pattern.length && (pattern[p] === '?' || pattern[p] === value[v])) {
      p++
      v++
    } else if (p < pattern.length && pattern[p] === '*') {
      star = p++
      resume = v
    } else if (star !== -1) {
      p = star + 1
      v = ++resume
    } else {
      return false
    }
  }
  while (pattern[p] === '*') p++
  return p === pattern.length
}

/** A machine as the API's JSON has it, or undefined when it is not one. */
export function machineFactsOf (value: unknown): MachineFacts | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const entity = value as Record<string, unknown>
  if (typeof entity.id !== 'string') return undefined
  const tags = Array.isArray(entity.machineTags) ? entity.machineTags.filter((tag): tag is string => typeof tag === 'string') : []
  return { id: entity.id, computerDnsName: typeof entity.computerDnsName === 'string' ? entity.computerDnsName : null, machineTags: tags }
}

/** Machines read for the protection, kept `ttlMs` by id (lower-case); a few thousand at most. */
export class MachineCache {
  readonly #ttlMs: number
  readonly #entries = new Map<string, { machine: MachineFacts, at: number }>()
  static readonly LIMIT = 4096

  constructor (ttlMs: number) {
    this.#ttlMs = ttlMs
  }

  get (id: string, now: number): MachineFacts | undefined {
    const entry = this.#entries.get(id.toLowerCase())
    if (entry === undefined) return undefined
    if (now - entry.at >= this.#ttlMs) {
      this.#entries.delete(id.toLowerCase())
      return undefined
    }
    return entry.machine
  }

  set (id: string, machine: MachineFacts, now: number): void {
    if (this.#ttlMs === 0) return
    if (this.#entries.size >= MachineCache.LIMIT) this.#entries.delete(this.#entries.keys().next().value as string)
    this.#entries.set(id.toLowerCase(), { machine, at: now })
  }
}
