import { resolve } from 'node:path'
import { BrokerConfigInvalid } from '../common/errors.js'
import type { BrokerEnvironment } from './environment.js'
import { DEFAULT_EXPECTED_REPLICAS, DEFAULT_REDIS_STORE, type ConfigFile } from './schema.js'
import { fileSecret, inlineSecret } from './secret-files.js'
import type { RedisNode, RedisTarget, SecretSource, SharedRateLimitConfig } from './types.js'

const REDIS_URL_EXAMPLE = 'such as redis://redis:6379 or rediss://user:password@redis.example.com:6380/0'

/**
 * The top-level `rateLimit`: where budgets are kept and how many brokers share them.
 * BROKER_REDIS_URL (or _FILE) wins over the file's url, sentinels or nodes and turns the store into Redis.
 */
export function resolveRateLimit (settings: ConfigFile['rateLimit'], broker: BrokerEnvironment, fileDir: string): SharedRateLimitConfig {
  const expectedReplicas = settings?.expectedReplicas ?? DEFAULT_EXPECTED_REPLICAS
  const fromFile = settings?.store?.type === 'redis' ? settings.store : undefined
  let target: RedisTarget
  if (broker.redisUrl !== undefined) {
    target = { mode: 'single', url: broker.redisUrl }
  } else if (fromFile === undefined) {
    return { store: { type: 'local' }, expectedReplicas }
  } else {
    target = resolveTarget(fromFile, fileDir)
  }
  if (target.mode === 'single') checkRedisUrl(target.url)
  return {
    store: {
      type: 'redis',
      target,
      keyPrefix: fromFile?.keyPrefix ?? DEFAULT_REDIS_STORE.keyPrefix,
      timeoutMs: fromFile?.timeoutMs ?? DEFAULT_REDIS_STORE.timeoutMs
    },
    expectedReplicas
  }
}

type RedisStoreSettings = Extract<NonNullable<NonNullable<ConfigFile['rateLimit']>['store']>, { type: 'redis' }>

const TARGET_SETTINGS = ['url', 'urlFile', 'sentinels', 'nodes'] as const

function resolveTarget (settings: RedisStoreSettings, fileDir: string): RedisTarget {
  const given = TARGET_SETTINGS.filter((key) => settings[key] !== undefined)
  if (given.length === 0) {
    throw new BrokerConfigInvalid('rateLimit.store.url',
      'is required with type redis: set url or urlFile (one Redis), sentinels (a Sentinel group) or nodes (a Redis Cluster), or the BROKER_REDIS_URL environment variable')
  }
  if (given.length > 1) {
    throw new BrokerConfigInvalid(`rateLimit.store.${given[0] ?? 'url'}`,
      `and ${given.slice(1).map((key) => `rateLimit.store.${key}`).join(' and ')} are both set: set only one of url, urlFile, sentinels and nodes`)
  }
  const secret = (key: 'passwordFile' | 'sentinelPasswordFile'): SecretSource | undefined => {
    const file = settings[key]
    return file === undefined ? undefined : fileSecret(resolve(fileDir, file), `rateLimit.store.${key}`)
  }
  if (settings.sentinels === undefined && settings.nodes === undefined) {
    for (const key of ['name', 'username', 'passwordFile', 'sentinelPasswordFile', 'tls'] as const) {
      if (settings[key] !== undefined) {
        throw new BrokerConfigInvalid(`rateLimit.store.${key}`,
          'goes only with sentinels or nodes: with url or urlFile, put the user, password and rediss: scheme in the URL')
      }
    }
    if (settings.url !== undefined) return { mode: 'single', url: inlineSecret(settings.url, 'rateLimit.store.url') }
    return { mode: 'single', url: fileSecret(resolve(fileDir, settings.urlFile ?? ''), 'rateLimit.store.urlFile') }
  }
  const username = settings.username === undefined ? {} : { username: settings.username }
  const password = secret('passwordFile')
  if (settings.sentinels !== undefined) {
    if (settings.name === undefined) {
      throw new BrokerConfigInvalid('rateLimit.store.name',
        'is required with sentinels: set it to the primary group\'s name the sentinels monitor (e.g. mymaster)')
    }
    const { nodes, tls } = parseNodes(settings.sentinels, 'rateLimit.store.sentinels', 26379, settings.tls)
    const sentinelPassword = secret('sentinelPasswordFile')
    return {
      mode: 'sentinel',
      sentinels: nodes,
      name: settings.name,
      tls,
      ...username,
      ...(password === undefined ? {} : { password }),
      ...(sentinelPassword === undefined ? {} : { sentinelPassword })
    }
  }
  for (const key of ['name', 'sentinelPasswordFile'] as const) {
    if (settings[key] !== undefined) {
      throw new BrokerConfigInvalid(`rateLimit.store.${key}`, 'goes only with sentinels: a Redis Cluster has no primary group name nor sentinels')
    }
  }
  const { nodes, tls } = parseNodes(settings.nodes ?? [], 'rateLimit.store.nodes', 6379, settings.tls)
  return { mode: 'cluster', nodes, tls, ...username, ...(password === undefined ? {} : { password }) }
}

const NODE_EXAMPLE = 'such as redis-0:6379, redis://redis-0:6379 or rediss://redis-0.example.com:6380'

/**
 * host:port, [v6]:port, or a redis:/rediss: URL without user, password or path. TLS when
 * `tls` is true or the entries are rediss: URLs; entries may not mix redis: and rediss:.
 */
function parseNodes (entries: readonly string[], path: string, defaultPort: number, tlsSetting: boolean | undefined): { nodes: RedisNode[], tls: boolean } {
  if (entries.length === 0) throw new BrokerConfigInvalid(path, `is empty: name at least one node, ${NODE_EXAMPLE}`)
  const schemes = new Set<string>()
  const nodes = entries.map((entry, index) => {
    const at = `${path}[${index}]`
    const hasScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(entry)
    let url: URL
    try {
      url = new URL(hasScheme ? entry : `redis://${entry}`)
    } catch {
      throw new BrokerConfigInvalid(at, `must be a host:port ${NODE_EXAMPLE}`)
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
      throw new BrokerConfigInvalid(at, `must use the redis: or rediss: (TLS) scheme, ${NODE_EXAMPLE}`)
    }
    if (url.username !== '' || url.password !== '') {
      throw new BrokerConfigInvalid(at, 'must not hold a user or password: set username and passwordFile instead')
    }
    if (url.hostname === '' || !/^\/?$/.test(url.pathname) || url.search !== '' || url.hash !== '') {
      throw new BrokerConfigInvalid(at, `must be a host and port only, ${NODE_EXAMPLE}`)
    }
    if (hasScheme) schemes.add(url.protocol)
    return { host: url.hostname.replace(/^\[(.*)\]$/, '$1'), port: url.port === '' ? defaultPort : Number(url.port) }
  })
  if (schemes.size > 1) {
    throw new BrokerConfigInvalid(path, 'mixes redis: and rediss: entries: TLS is for all of them or none')
  }
  const urlTls = schemes.has('rediss:')
  if (tlsSetting === false && urlTls) {
    throw new BrokerConfigInvalid('rateLimit.store.tls', `is false but ${path} has rediss: (TLS) entries: drop one of them`)
  }
  return { nodes, tls: tlsSetting === true || urlTls }
}

/** Messages name the setting, never the URL: it may hold a password. */
function checkRedisUrl (source: SecretSource): void {
  let url: URL
  try {
    url = new URL(source.read())
  } catch {
    throw new BrokerConfigInvalid(source.origin, `must be a Redis URL ${REDIS_URL_EXAMPLE}`)
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new BrokerConfigInvalid(source.origin, `must use the redis: or rediss: (TLS) scheme, ${REDIS_URL_EXAMPLE}`)
  }
  if (url.hostname === '') {
    throw new BrokerConfigInvalid(source.origin, `must name the Redis host, ${REDIS_URL_EXAMPLE}`)
  }
  if (!/^\/?\d*$/.test(url.pathname)) {
    throw new BrokerConfigInvalid(source.origin, `may have only a database number as its path, ${REDIS_URL_EXAMPLE}`)
  }
}
