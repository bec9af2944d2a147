import { DEFENDER_ENDPOINTS } from '../defender/catalogue.js'
import type { PathLimit } from './profile-budget.js'

/** A pause the API's 429 put on one of a profile's budgets. */
export interface BudgetPause {
  /** "general", or the action of the endpoint whose own budget it is. */
  budget: string
  /** End of the pause, in ms on this broker's clock. */
  until: number
  /** What set it, e.g. "upstream 429 on GET /api/alerts". */
  cause: string
}

const ACTIONS = new Map<PathLimit, string>(DEFENDER_ENDPOINTS.flatMap((endpoint) =>
  endpoint.rateLimit === undefined ? [] : [[endpoint.rateLimit, endpoint.action] as const]))

/** Every budget a profile may have: the general one, then each endpoint's own. */
export const BUDGET_LIMITS: ReadonlyArray<PathLimit | undefined> = [undefined, ...ACTIONS.keys()]

/** What /status and a refusal call a budget: "general", or the action of the endpoint it belongs to. */
export function budgetName (pathLimit: PathLimit | undefined): string {
  if (pathLimit === undefined) return 'general'
  return ACTIONS.get(pathLimit) ?? `${pathLimit.perMinute} a minute and ${pathLimit.perHour} an hour`
}

/** Longest path a cause quotes: the path is the client's, and a cause is shown to every client of the profile. */
const MAX_CAUSE_PATH = 200

/**
 * What a pause says set it: the API's 429 on the request's method and path: the catalogue's
 * pattern when the endpoint is known (a star for each id), never the query.
 */
export function causeOf429 (method: string, pattern: string | undefined, target: string): string {
  let path = pattern
  if (path === undefined) {
    const query = target.indexOf('?')
    path = query === -1 ? target : target.slice(0, query)
    if (path.length > MAX_CAUSE_PATH) path = `${path.slice(0, MAX_CAUSE_PATH)}…`
  }
  return `upstream 429 on ${method} ${path}`
}
