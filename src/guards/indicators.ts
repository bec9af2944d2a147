import { BlockList, isIP } from 'node:net'
import { globMatches } from './machines.js'

/** Indicator actions that block: what an allowlisted value must never get. */
const BLOCKING = new Set(['block', 'alertandblock', 'blockandremediate'])

export interface IndicatorFacts {
  readonly value: string
  readonly type: string
  readonly action: string
}

function property (entity: Record<string, unknown>, name: string): unknown {
  const key = Object.keys(entity).find((candidate) => candidate.toLowerCase() === name)
  return key === undefined ? undefined : entity[key]
}

function indicatorOf (value: unknown): IndicatorFacts | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  const entity = value as Record<string, unknown>
  const indicator = property(entity, 'indicatorvalue')
  const action = property(entity, 'action')
  if (typeof indicator !== 'string' || typeof action !== 'string') return undefined
  const type = property(entity, 'indicatortype')
  return { value: indicator, type: typeof type === 'string' ? type : '', action }
}

/**
 * The blocking indicators a JSON body submits: the body itself (POST /api/indicators) and each
 * of its `Indicators` (POST /api/indicators/import).
 */
export function blockingIndicators (body: unknown): IndicatorFacts[] {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return []
  const batch = property(body as Record<string, unknown>, 'indicators')
  const all = [indicatorOf(body), ...(Array.isArray(batch) ? batch.map(indicatorOf) : [])]
  return all.filter((indicator): indicator is IndicatorFacts => indicator !== undefined && BLOCKING.has(indicator.action.toLowerCase()))
}

/**
 * The allowlist: domains (each covering its subdomains and the URLs on them), `*` patterns,
 * IP addresses and CIDR ranges, URLs (covering what starts with them), file hashes.
 */
export class IndicatorAllowlist {
  readonly #entries: readonly string[]
  readonly #rangeEntries: Array<{ entry: string, list: BlockList }> = []

  constructor (entries: readonly string[]) {
    this.#entries = entries.map((entry) => entry.toLowerCase())
    for (const entry of entries) {
      const [address = '', bits] = entry.split('/')
      const family = isIP(address)
      if (family === 0) continue
      const list = new BlockList()
      const type = family === 4 ? 'ipv4' : 'ipv6'
      if (bits === undefined) list.addAddress(address, type)
      else list.addSubnet(address, Number(bits), type)
      this.#rangeEntries.push({ entry, list })
    }
  }

  /** The entry that covers `value`, or undefined. */
  covering (value: string): string | undefined {
    const lower = value.trim().toLowerCase()
    const host = hostOf(lower)
    for (const { entry, list } of this.#rangeEntries) {
      for (const candidate of [lower, host]) {
        const family = candidate === undefined ? 0 : isIP(candidate)
        if (family !== 0 && list.check(candidate as string, family === 4 ? 'ipv4' : 'ipv6')) return entry
      }
    }
    for (const entry of this.#entries) {
      if (entry.includes('*')) {
        if (globMatches(entry, lower) || (host !== undefined && globMatches(entry, host))) return entry
      } else if (entry.includes('://')) {
        if (lower.startsWith(entry)) return entry
      } else if (isIP(entry.split('/')[0] ?? '') === 0) {
        if (lower === entry || lower.endsWith(`.${entry}`)) return entry
        if (host !== undefined && (host === entry || host.endsWith(`.${entry}`))) return entry
      }
    }
    return undefined
  }
}

/** The host of a URL indicator (with or without a scheme), lower-case; undefined for anything else. */
function hostOf (value: string): string | undefined {
  if (!value.includes('/') && !value.includes(':')) return undefined
  try {
    const host = new URL(value.includes('://') ? value : `http://${value}`).hostname
    return host.startsWith('[') ? host.slice(1, -1) : host
  } catch {
    return undefined
  }
}
