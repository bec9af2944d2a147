import { pino, type Logger } from 'pino'
import type { Dispatcher } from 'undici'
import type { Clock } from '../common/clock.js'
import type { Config, ProfileConfig, RedisTarget } from '../config/types.js'
import { createCredential, type Credential } from '../credentials/index.js'
import { LocalCounts, SharedCounts, type Counts } from '../guards/counters.js'
import { ProfileGuards } from '../guards/guards.js'
import { appKey, createBudgetKeys, DEFAULT_KEY_PREFIX } from '../ratelimit/budget-keys.js'
import { ProfileBudget, type RateBudget } from '../ratelimit/profile-budget.js'
import { RedisBudgetStore, type RedisConnection } from '../ratelimit/redis-budget.js'
import { SharedBudget } from '../ratelimit/shared-budget.js'
import { TokenHolder } from '../tokens/token-holder.js'

export interface Profile {
  readonly config: ProfileConfig
  readonly credential: Credential
  readonly tokens: TokenHolder
  readonly budget: RateBudget
  readonly guards: ProfileGuards
}

export interface ProfileDeps {
  dispatcher: Dispatcher
  clock: Clock
  random?: () => number
  /** Where the shared budgets' store reports losing and finding Redis again. */
  logger?: Logger
}

export function createProfiles (config: Config, deps: ProfileDeps): Profile[] {
  const timeoutMs = config.refresh.timeoutSeconds * 1000
  const { createBudget, counts } = createBudgetFactory(config, deps)
  const { store, windows } = config.rateLimit
  const keyPrefix = store.type === 'redis' ? store.keyPrefix : DEFAULT_KEY_PREFIX
  return config.profiles.map((profileConfig) => {
    const credential = createCredential(profileConfig, { dispatcher: deps.dispatcher, timeoutMs, clock: deps.clock })
    const tokens = new TokenHolder({
      profile: profileConfig.name,
      credential,
      clock: deps.clock,
      refreshBeforeMs: config.refresh.beforeSeconds * 1000,
      timeoutMs,
      after401Ms: config.refresh.after401Seconds * 1000,
      ...(deps.random ? { random: deps.random } : {})
    })
    const guards = new ProfileGuards(profileConfig.guards, {
      counts,
      appKey: appKey(keyPrefix, ...appOf(profileConfig)),
      clock: deps.clock,
      ...(windows === undefined ? {} : { hourMs: windows.hourMs })
    })
    return { config: profileConfig, credential, tokens, budget: createBudget(profileConfig), guards }
  })
}

/**
 * Local budgets, or budgets shared through one Redis client (connected on first use) for all
 * profiles; and the guard rails' counts, kept where the budgets are.
 */
function createBudgetFactory (config: Config, deps: ProfileDeps): { createBudget: (profile: ProfileConfig) => RateBudget, counts: Counts } {
  const { store, expectedReplicas, windows } = config.rateLimit
  if (store.type === 'local') {
    return {
      createBudget: (profile) => new ProfileBudget(profile.name, profile.rateLimit, deps.clock, {
        divideBy: expectedReplicas,
        ...(windows === undefined ? {} : { windows })
      }),
      counts: new LocalCounts(deps.clock, expectedReplicas)
    }
  }
  const redis = new RedisBudgetStore({
    connection: connectionOf(store.target),
    timeoutMs: store.timeoutMs,
    logger: deps.logger ?? pino({ enabled: false }),
    clock: deps.clock,
    ...(config.extraCaPem === undefined ? {} : { extraCaPem: config.extraCaPem })
  })
  return {
    createBudget: (profile) => new SharedBudget({
      profile: profile.name,
      config: profile.rateLimit,
      store: redis,
      keys: createBudgetKeys(store.keyPrefix, ...appOf(profile)),
      clock: deps.clock,
      expectedReplicas,
      ...(windows === undefined ? {} : { windows })
    }),
    counts: new SharedCounts(redis, deps.clock, expectedReplicas)
  }
}

/**
 * The app a profile's budgets belong to. A managed identity given without ids is named by what
 * the config knows of it: brokers share its budgets when they name the identity alike.
 */
function appOf (profile: ProfileConfig): [string, string] {
  const { credential } = profile
  const identity = credential.type === 'managedIdentity'
    ? credential.clientId ?? credential.resourceId ?? credential.objectId ?? `system-assigned:${profile.name}`
    : undefined
  return [profile.tenantId ?? 'managed-identity', profile.clientId ?? identity ?? profile.name]
}

/** The store's target with its passwords read. */
function connectionOf (target: RedisTarget): RedisConnection {
  if (target.mode === 'single') return { mode: 'single', url: target.url.read() }
  const secrets = {
    ...(target.username === undefined ? {} : { username: target.username }),
    ...(target.password === undefined ? {} : { password: target.password.read() })
  }
  if (target.mode === 'cluster') return { mode: 'cluster', nodes: target.nodes, tls: target.tls, ...secrets }
  return {
    mode: 'sentinel',
    sentinels: target.sentinels,
    name: target.name,
    tls: target.tls,
    ...secrets,
    ...(target.sentinelPassword === undefined ? {} : { sentinelPassword: target.sentinelPassword.read() })
  }
}

export interface ProfileMatch {
  profile: Profile
  /** The request target with the profile's basePath taken off: what the API receives. */
  upstreamTarget: string
}

/**
 * Longest matching basePath wins; a basePath matches whole segments only. A request pinned to a
 * profile (by a broker token) goes to it: its basePath taken off when the target starts with
 * it, else the whole target.
 */
export function createProfileRouter (profiles: readonly Profile[]) {
  const ordered = [...profiles].sort((a, b) => b.config.basePath.length - a.config.basePath.length)
  const named = new Map(profiles.map((profile) => [profile.config.name, profile]))
  return function match (target: string, pinned?: string): ProfileMatch | undefined {
    if (pinned !== undefined) {
      const profile = named.get(pinned)
      return profile === undefined ? undefined : { profile, upstreamTarget: underBasePath(profile, target) ?? target }
    }
    for (const profile of ordered) {
      const upstreamTarget = underBasePath(profile, target)
      if (upstreamTarget !== undefined) return { profile, upstreamTarget }
    }
    return undefined
  }
}

/** The target with the profile's basePath taken off; undefined when it is not under it. */
function underBasePath (profile: Profile, target: string): string | undefined {
  const base = profile.config.basePath
  if (base === '/') return target
  if (!target.startsWith(base)) return undefined
  const next = target.charCodeAt(base.length)
  if (Number.isNaN(next)) return '/'
  if (next === 47 /* / */) return target.slice(base.length)
  if (next === 63 /* ? */) return '/' + target.slice(base.length)
  return undefined
}
