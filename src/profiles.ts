import type { Dispatcher } from 'undici'
import type { Clock } from './clock.js'
import type { Config, ProfileConfig } from './config/types.js'
import { createCredential, type Credential } from './credentials/index.js'
import { ProfileBudget } from './ratelimit/profile-budget.js'
import { TokenHolder } from './tokens/token-holder.js'

export interface Profile {
  readonly config: ProfileConfig
  readonly credential: Credential
  readonly tokens: TokenHolder
  readonly budget: ProfileBudget
}

export interface ProfileDeps {
  dispatcher: Dispatcher
  clock: Clock
  random?: () => number
}

export function createProfiles (config: Config, deps: ProfileDeps): Profile[] {
  const timeoutMs = config.refresh.timeoutSeconds * 1000
  return config.profiles.map((profileConfig) => {
    const credential = createCredential(profileConfig, { dispatcher: deps.dispatcher, timeoutMs })
    const tokens = new TokenHolder({
      profile: profileConfig.name,
      credential,
      clock: deps.clock,
      refreshBeforeMs: config.refresh.beforeSeconds * 1000,
      timeoutMs,
      ...(deps.random ? { random: deps.random } : {})
    })
    const budget = new ProfileBudget(profileConfig.name, profileConfig.rateLimit, deps.clock)
    return { config: profileConfig, credential, tokens, budget }
  })
}

export interface ProfileMatch {
  profile: Profile
  /** The request target with the profile's basePath taken off: what the API receives. */
  upstreamTarget: string
}

/** Longest matching basePath wins; a basePath matches whole segments only. */
export function createProfileRouter (profiles: readonly Profile[]) {
  const ordered = [...profiles].sort((a, b) => b.config.basePath.length - a.config.basePath.length)
  return function match (target: string): ProfileMatch | undefined {
    for (const profile of ordered) {
      const base = profile.config.basePath
      if (base === '/') return { profile, upstreamTarget: target }
      if (target.startsWith(base)) {
        const next = target.charCodeAt(base.length)
        if (Number.isNaN(next)) return { profile, upstreamTarget: '/' }
        if (next === 47 /* / */) return { profile, upstreamTarget: target.slice(base.length) }
        if (next === 63 /* ? */) return { profile, upstreamTarget: '/' + target.slice(base.length) }
      }
    }
    return undefined
  }
}
