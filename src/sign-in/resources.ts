import type { ProfileConfig } from '../config/types.js'

/** The WindowsDefenderATP application's id: a resource name tools use for the API. */
export const WINDOWS_DEFENDER_ATP_APP_ID = 'fc780465-2017-40d4-a0c5-307022471b92'

/** The Defender API's names, besides a profile's own scope and upstream. */
const DEFENDER_RESOURCES = [
  'https://api.securitycenter.microsoft.com',
  'https://api.securitycenter.windows.com',
  'https://securitycenter.onmicrosoft.com/windowsatpservice',
  WINDOWS_DEFENDER_ATP_APP_ID
]

/** Scopes MSAL adds for sign-ins of users; a client-credentials request may carry them and they mean nothing here. */
const OPENID_SCOPES = new Set(['openid', 'profile', 'offline_access', 'email'])
const DEFAULT_SUFFIX = '/.default'

function canonical (resource: string): string {
  return resource.trim().replace(/\/+$/, '').toLowerCase()
}

/** The resource names a profile's tokens are asked for under: its scope's, its upstream, and the API's names. */
export function acceptedResources (profile: ProfileConfig): ReadonlySet<string> {
  const scopeResource = profile.scope.endsWith(DEFAULT_SUFFIX) ? profile.scope.slice(0, -DEFAULT_SUFFIX.length) : profile.scope
  return new Set([scopeResource, profile.upstream, ...DEFENDER_RESOURCES].map(canonical))
}

export function isAcceptedResource (resources: ReadonlySet<string>, resource: string): boolean {
  return resources.has(canonical(resource))
}

export type ScopeReading =
  | { resource: string }
  | { fault: 'none' | 'several' }
  | { fault: 'no-default' | 'foreign', scope: string }

/**
 * The one resource a v2 `scope` asks for: its `/.default` scope, the OpenID ones aside. A scope
 * without `/.default` is Entra's AADSTS1002012; one of another resource, the broker's refusal.
 */
export function readScope (scope: string, resources: ReadonlySet<string>): ScopeReading {
  const asked = scope.split(/\s+/).filter((one) => one !== '' && !OPENID_SCOPES.has(one.toLowerCase()))
  if (asked.length === 0) return { fault: 'none' }
  const found: string[] = []
  for (const one of asked) {
    if (!one.endsWith(DEFAULT_SUFFIX)) {
      return isAcceptedResource(resources, one.replace(/\/[^/]*$/, '')) || isAcceptedResource(resources, one)
        ? { fault: 'no-default', scope: one }
        : { fault: 'foreign', scope: one }
    }
    const resource = one.slice(0, -DEFAULT_SUFFIX.length)
    if (!isAcceptedResource(resources, resource)) return { fault: 'foreign', scope: one }
    found.push(resource)
  }
  return found.length === 1 ? { resource: found[0] as string } : { fault: 'several' }
}
