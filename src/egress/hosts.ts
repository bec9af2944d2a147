import { CLOUD_PRESETS, KNOWN_UPSTREAM_HOSTS } from '../config/clouds.js'
import type { CloudName, Config } from '../config/types.js'
import type { Profile, ProfileMatch } from '../runtime/profiles.js'

/** What the broker serves on an intercepted host: Entra ID's sign-in (the token endpoint), or the Defender API. */
export type InterceptedKind = 'sign-in' | 'api'

/** A CONNECT the egress proxy intercepted: what the connection inside it was opened for. */
export interface Tunnel {
  /** Lower-case host name of the CONNECT. */
  readonly host: string
  readonly port: number
  readonly kind: InterceptedKind
}

const HTTPS_PORT = 443

/**
 * The sign-in hosts tools use in each cloud: the authority host, and the aliases Microsoft's
 * own guides and libraries still send (login.windows.net in the seed's v1 token request).
 */
const SIGN_IN_ALIASES: Readonly<Record<CloudName, readonly string[]>> = Object.freeze({
  public: ['login.windows.net', 'login.microsoft.com'],
  gcc: ['login.windows.net', 'login.microsoft.com'],
  'gcc-high': [],
  dod: []
})

/** `host:port` as the intercepted hosts are keyed. */
export function hostKey (host: string, port: number): string {
  return `${host.toLowerCase()}:${port}`
}

/**
 * The hosts the egress proxy terminates TLS for, and nothing else: the sign-in hosts of the
 * profiles' clouds, the Defender API hosts Microsoft documents, and each profile's upstream.
 */
export function interceptedHosts (config: Pick<Config, 'profiles'>): ReadonlyMap<string, InterceptedKind> {
  const hosts = new Map<string, InterceptedKind>()
  for (const host of KNOWN_UPSTREAM_HOSTS) hosts.set(hostKey(host, HTTPS_PORT), 'api')
  for (const profile of config.profiles) {
    const upstream = new URL(profile.upstream)
    hosts.set(hostKey(upstream.hostname, portOf(upstream)), 'api')
    for (const host of [new URL(CLOUD_PRESETS[profile.cloud].authorityHost).hostname, ...SIGN_IN_ALIASES[profile.cloud]]) {
      hosts.set(hostKey(host, HTTPS_PORT), 'sign-in')
    }
  }
  return hosts
}

function portOf (url: URL): number {
  if (url.port !== '') return Number(url.port)
  return url.protocol === 'https:' ? HTTPS_PORT : 80
}

/**
 * Which profile a request inside a tunnel goes to, its path unchanged: a broker token's profile,
 * else the one whose upstream is the tunnel's host, else the only profile; with several, the
 * usual basePath routing. What comes through a sign-in host's tunnel is never the API's.
 */
export function createTunnelRouter (profiles: readonly Profile[], route: (target: string, pinned?: string) => ProfileMatch | undefined) {
  const byUpstream = new Map(profiles.map((profile) => {
    const upstream = new URL(profile.config.upstream)
    return [hostKey(upstream.hostname, portOf(upstream)), profile]
  }))
  const only = profiles.length === 1 ? profiles[0] : undefined
  return function routeTunnelled (tunnel: Tunnel, target: string, pinned?: string): ProfileMatch | undefined {
    if (tunnel.kind !== 'api') return undefined
    if (pinned !== undefined) return route(target, pinned)
    const profile = byUpstream.get(hostKey(tunnel.host, tunnel.port)) ?? only
    return profile === undefined ? route(target) : { profile, upstreamTarget: target }
  }
}
