/** The broker's own endpoints: no profile may serve a path under them, and nothing under them goes upstream. */
export const RESERVED_PATHS = Object.freeze(['/healthz', '/readyz', '/metrics', '/status'] as const)

/** The own endpoints probes reach without a client key: an orchestrator has none. */
export const OPEN_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz'])

/** The path of a request target: what comes before its query. */
export function pathOf (target: string): string {
  const queryAt = target.indexOf('?')
  return queryAt === -1 ? target : target.slice(0, queryAt)
}

const UNRESERVED = /%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])/g

/** Lower-case, with percent-encoded unreserved characters decoded and the query dropped. */
export function normalizePath (target: string): string {
  return pathOf(target).replace(UNRESERVED, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))).toLowerCase()
}
