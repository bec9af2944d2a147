import { createHash, randomBytes } from 'node:crypto'
import type { ClientConfig, Config, ProfileConfig } from '../../src/config/types.js'

/** A fresh client key, as `keygen` would make one. */
export function newClientKey (): string {
  return `KEY-${randomBytes(32).toString('base64url')}`
}

/** Lower-case hex SHA-256: what a client entry stores of its key. */
export function sha256 (value: string): string {
  return createHash('sha256').update(value).digest('hex')
}

/** A client entry for `key`; no `profiles` and no `allow` mean every profile and every request. */
export function clientFor (
  name: string,
  key: string,
  scope: { profiles?: readonly string[], allow?: readonly string[] } = {}
): ClientConfig {
  return { name, keySha256: sha256(key), profiles: scope.profiles ?? [], allow: scope.allow ?? [] }
}

/** The loaded config's first profile: the one the environment describes. */
export function firstProfile (config: Config): ProfileConfig {
  const first = config.profiles[0]
  if (first === undefined) throw new TypeError('the config has no profile')
  return first
}

export type ProfileChanges = Pick<ProfileConfig, 'name' | 'basePath'> & Partial<ProfileConfig>

/**
 * The config with more profiles after its first, each a copy of the first with its own name,
 * base path and changes (an upstream, rules, a budget), and, when given, these clients.
 */
export function withProfiles (config: Config, more: readonly ProfileChanges[], clients?: readonly ClientConfig[]): Config {
  const first = firstProfile(config)
  return {
    ...config,
    profiles: [first, ...more.map((changes) => ({ ...first, ...changes }))],
    ...(clients === undefined ? {} : { clients })
  }
}
