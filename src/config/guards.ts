import { isIP } from 'node:net'
import { BrokerConfigInvalid } from '../common/errors.js'
import { checkRule } from './rules.js'
import { DEFAULT_LOOKUP_CACHE_SECONDS, type GuardsFile } from './schema.js'
import type { GuardsConfig } from './types.js'
import { dottedPath, type PathNamer } from './validate.js'

const CAP_LIMITS = ['perHour', 'perDay', 'perClientPerHour', 'perClientPerDay'] as const

/**
 * A profile's guard rails: its own `guards`, each key (actions, protect, indicators) taking the
 * place of the broker-wide one. `at` names the profile's settings, `top` the broker-wide ones.
 */
export function resolveGuards (own: GuardsFile | undefined, broker: GuardsFile | undefined, at: PathNamer): GuardsConfig {
  const pick = <K extends keyof GuardsFile>(key: K): { value: NonNullable<GuardsFile[K]>, where: (segments: string[]) => string } | undefined => {
    const mine = own?.[key]
    if (mine !== undefined) return { value: mine as NonNullable<GuardsFile[K]>, where: (segments) => at(['guards', key, ...segments]) }
    const wide = broker?.[key]
    if (wide !== undefined) return { value: wide as NonNullable<GuardsFile[K]>, where: (segments) => dottedPath('guards')(['guards', key, ...segments]) }
    return undefined
  }
  const actions = pick('actions')
  const protect = pick('protect')
  const indicators = pick('indicators')
  return {
    actions: (actions?.value ?? []).map((cap, index) => {
      const where = (name: string) => actions?.where([String(index), name]) ?? name
      checkRule(cap.allow, where('allow'))
      if (CAP_LIMITS.every((limit) => cap[limit] === undefined)) {
        throw new BrokerConfigInvalid(where('perHour'), 'is missing: a cap needs at least one of perHour, perDay, perClientPerHour and perClientPerDay')
      }
      return { ...cap, allow: `${cap.allow.slice(0, cap.allow.indexOf(' ')).toUpperCase()}${cap.allow.slice(cap.allow.indexOf(' '))}` }
    }),
    ...(protect === undefined
      ? {}
      : {
          protect: {
            tags: (protect.value.tags ?? []).map((tag) => tag.toLowerCase()),
            names: (protect.value.names ?? []).map((name) => name.toLowerCase()),
            ids: (protect.value.ids ?? []).map((id) => id.toLowerCase()),
            lookupCacheSeconds: protect.value.lookupCacheSeconds ?? DEFAULT_LOOKUP_CACHE_SECONDS
          }
        }),
    ...(indicators === undefined
      ? {}
      : { indicators: { allowlist: indicators.value.allowlist.map((entry, index) => checkAllowlistEntry(entry, indicators.where(['allowlist', String(index)]))) } })
  }
}

/** An allowlist entry, trimmed; a `/` after an address makes it a CIDR range, which must be one. */
function checkAllowlistEntry (entry: string, path: string): string {
  const value = entry.trim()
  const slash = value.indexOf('/')
  if (slash > 0 && isIP(value.slice(0, slash)) !== 0) {
    const bits = Number(value.slice(slash + 1))
    const max = isIP(value.slice(0, slash)) === 4 ? 32 : 128
    if (!/^\d{1,3}$/.test(value.slice(slash + 1)) || bits > max) {
      throw new BrokerConfigInvalid(path, `${value} is not a CIDR range: write it as address/bits, bits at most ${max}`)
    }
  }
  if (value === '') throw new BrokerConfigInvalid(path, 'is empty')
  return value
}
