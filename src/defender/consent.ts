import { compilePattern, patternsOverlap, type PathPattern } from '../common/path-pattern.js'
import type { ClientConfig, ProfileConfig } from '../config/types.js'
import { DEFENDER_ENDPOINTS, PERMISSION_WORDS, type DefenderEndpoint } from './catalogue.js'

export type ConsentProfile = Pick<ProfileConfig, 'tenantId' | 'clientId' | 'authorityHost' | 'credential'>

/**
 * Where an admin of the profile's tenant consents to its app, on the cloud's sign-in host:
 * Microsoft's tenant-wide admin-consent URL, `https://{host}/{tenant}/adminconsent?client_id=…`,
 * which asks for every permission the app registration lists and needs no redirect URI (the
 * `/v2.0/adminconsent` form requires a registered `redirect_uri` and a `scope`). Undefined for a
 * managed identity: its permissions are app role assignments, not consent.
 */
export function adminConsentUrl (profile: ConsentProfile): string | undefined {
  if (profile.credential.type === 'managedIdentity' || profile.tenantId === undefined || profile.clientId === undefined) return undefined
  const url = new URL(`/${encodeURIComponent(profile.tenantId)}/adminconsent`, profile.authorityHost)
  url.searchParams.set('client_id', profile.clientId)
  return url.href
}

export interface NeededPermission {
  /** A WindowsDefenderATP application permission, e.g. `Alert.Read.All`. */
  permission: string
  /** What it allows in plain words. */
  words: string
  /** The calls the rules let through that need it, e.g. `list alerts`. */
  calls: string[]
}

export interface ConsentNeeds {
  /**
   * `rules` when the profile's rules, or those of the clients that may use it, limit which calls
   * reach the API; `catalogue` when nothing does, so every call the catalogue knows is counted.
   */
  basis: 'rules' | 'catalogue'
  permissions: NeededPermission[]
}

interface Rule {
  method: string
  pattern: PathPattern
}

type Rules = readonly Rule[]

/**
 * The WindowsDefenderATP application permissions a profile's app needs: one for each catalogue
 * endpoint that its `allow` rules, and those of the clients that may use it, let a request reach.
 * Where an endpoint accepts several, its first (the least-privileged, the one to grant first) is
 * asked for, unless it is a Read permission whose ReadWrite one is needed anyway.
 */
export function neededPermissions (profile: Pick<ProfileConfig, 'name' | 'allow'>, clients: readonly ClientConfig[]): ConsentNeeds {
  const profileRules = parseRules(profile.allow)
  const users = clients.filter((client) => client.profiles.length === 0 || client.profiles.includes(profile.name))
  const clientRules = users.map((client) => parseRules(client.allow))
  const reachable = DEFENDER_ENDPOINTS.filter((endpoint) =>
    allows(profileRules, endpoint) && (clients.length === 0 || clientRules.some((rules) => allows(rules, endpoint))))
  const unlimited = profileRules.length === 0 && (clients.length === 0 || clientRules.some((rules) => rules.length === 0))
  return { basis: unlimited ? 'catalogue' : 'rules', permissions: choosePermissions(reachable) }
}

function choosePermissions (endpoints: readonly DefenderEndpoint[]): NeededPermission[] {
  const calls = new Map<string, DefenderEndpoint[]>()
  for (const endpoint of endpoints) {
    const first = endpoint.permissions[0] as string
    calls.set(first, [...(calls.get(first) ?? []), endpoint])
  }
  // A ReadWrite permission that is needed anyway covers the calls its Read permission was chosen for.
  for (const [permission, needing] of calls) {
    const readWrite = permission.replace(/\.Read\.All$/, '.ReadWrite.All')
    const wider = calls.get(readWrite)
    if (readWrite === permission || wider === undefined || !needing.every((endpoint) => endpoint.permissions.includes(readWrite))) continue
    calls.set(readWrite, [...wider, ...needing])
    calls.delete(permission)
  }
  const order = Object.keys(PERMISSION_WORDS)
  return [...calls.keys()]
    .sort((a, b) => order.indexOf(a) - order.indexOf(b))
    .map((permission) => ({
      permission,
      words: PERMISSION_WORDS[permission] ?? permission,
      calls: [...new Set((calls.get(permission) ?? []).map((endpoint) => endpoint.action))]
    }))
}

function parseRules (rules: readonly string[]): Rules {
  return rules.map((rule) => {
    const space = rule.indexOf(' ')
    return { method: rule.slice(0, space).toUpperCase(), pattern: compilePattern(rule.slice(space + 1)) }
  })
}

/** Whether some request the rules let through reaches the endpoint; no rules let everything through. */
function allows (rules: Rules, endpoint: DefenderEndpoint): boolean {
  if (rules.length === 0) return true
  const pattern = compilePattern(endpoint.path)
  return rules.some((rule) => (rule.method === '*' || rule.method === endpoint.method) && patternsOverlap(rule.pattern, pattern))
}
