/** The broker's own endpoints: no profile may serve a path under them, and nothing under them goes upstream. */
export const RESERVED_PATHS = Object.freeze(['/healthz', '/readyz', '/metrics', '/status'] as const)

/**
 * The sign-in endpoints' routes, in fastify's syntax: an Entra ID-shaped token endpoint with
 * the documents MSAL and azure-identity fetch before it, and the managed-identity endpoints.
 * They are the broker's whatever profile's basePath would match, and are reached without a
 * client key: the request's own secret authenticates it.
 */
export const SIGN_IN_ROUTES = Object.freeze({
  tokenV2: '/:tenant/oauth2/v2.0/token',
  tokenV1: '/:tenant/oauth2/token',
  openIdV2: '/:tenant/v2.0/.well-known/openid-configuration',
  openIdV1: '/:tenant/.well-known/openid-configuration',
  keys: '/:tenant/discovery/v2.0/keys',
  instanceDiscovery: '/common/discovery/instance',
  appService: '/msi/token',
  imds: '/metadata/identity/oauth2/token'
} as const)

/** The managed-identity paths with a trailing slash: msal-node's IMDS client sends that. */
export const MANAGED_IDENTITY_SLASHED = Object.freeze([`${SIGN_IN_ROUTES.appService}/`, `${SIGN_IN_ROUTES.imds}/`] as const)

const SIGN_IN_ROUTE_SET: ReadonlySet<string> = new Set([...Object.values(SIGN_IN_ROUTES), ...MANAGED_IDENTITY_SLASHED])
const SIGN_IN_PATH = /^\/(?:[^/]+\/(?:oauth2\/(?:v2\.0\/)?token|(?:v2\.0\/)?\.well-known\/openid-configuration|discovery\/v2\.0\/keys)|common\/discovery\/instance|(?:msi\/token|metadata\/identity\/oauth2\/token)\/?)$/
const OWN_PATHS: ReadonlySet<string> = new Set(RESERVED_PATHS)

/** A path the broker answers itself (never a profile's): its own endpoints and the sign-in ones. */
export function isOwnPath (path: string): boolean {
  return OWN_PATHS.has(path) || SIGN_IN_PATH.test(path)
}

/** A route of the sign-in endpoints (fastify's route URL). */
export function isSignInRoute (route: string): boolean {
  return SIGN_IN_ROUTE_SET.has(route)
}

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
