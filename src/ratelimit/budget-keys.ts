import { DEFENDER_ENDPOINTS } from '../defender/catalogue.js'
import type { PathLimit } from './profile-budget.js'
import type { SlotKeys } from './redis-budget.js'

export const DEFAULT_KEY_PREFIX = 'defender-broker:'

/** The endpoint each of the API's own limits belongs to: brokers name a rule alike whatever object holds it. */
const RULE_NAMES = new Map<PathLimit, string>(DEFENDER_ENDPOINTS.flatMap((endpoint) =>
  endpoint.rateLimit === undefined ? [] : [[endpoint.rateLimit, `${endpoint.method}:${endpoint.path}`] as const]))

/**
 * The Redis keys of a profile's budgets: one per app (tenant id and client id) and rule, so
 * every broker serving that app shares them, whatever it calls the profile. The braces make
 * the app the hash tag: the keys of one decision stay in one slot of a Redis Cluster.
 */
export function createBudgetKeys (keyPrefix: string, tenantId: string, clientId: string) {
  const app = appKey(keyPrefix, tenantId, clientId)
  const cache = new Map<PathLimit | undefined, SlotKeys>()
  return function keysOf (pathLimit: PathLimit | undefined): SlotKeys {
    let keys = cache.get(pathLimit)
    if (keys === undefined) {
      const rule = pathLimit === undefined
        ? 'general'
        : RULE_NAMES.get(pathLimit) ?? `limit:${pathLimit.perMinute}/${pathLimit.perHour}`
      keys = { slots: `${app}:${rule}:slots`, pause: `${app}:${rule}:pause`, cause: `${app}:${rule}:pause-cause` }
      cache.set(pathLimit, keys)
    }
    return keys
  }
}

/** What every key of one app starts with (its hash tag included): the budgets' and the guard rails' caps. */
export function appKey (keyPrefix: string, tenantId: string, clientId: string): string {
  return `${keyPrefix}{${tenantId.toLowerCase()}:${clientId.toLowerCase()}}`
}
