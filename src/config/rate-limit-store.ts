import { resolve } from 'node:path'
import { BrokerConfigInvalid } from '../common/errors.js'
import type { BrokerEnvironment } from './environment.js'
import { DEFAULT_EXPECTED_REPLICAS, DEFAULT_REDIS_STORE, type ConfigFile } from './schema.js'
import { fileSecret, inlineSecret } from './secret-files.js'
import type { SecretSource, SharedRateLimitConfig } from './types.js'

const REDIS_URL_EXAMPLE = 'such as redis://redis:6379 or rediss://user:password@redis.example.com:6380/0'

/**
 * The top-level `rateLimit`: where budgets are kept and how many brokers share them.
 * BROKER_REDIS_URL (or _FILE) wins over the file's url and turns the store into Redis.
 */
export function resolveRateLimit (settings: ConfigFile['rateLimit'], broker: BrokerEnvironment, fileDir: string): SharedRateLimitConfig {
  const expectedReplicas = settings?.expectedReplicas ?? DEFAULT_EXPECTED_REPLICAS
  const fromFile = settings?.store?.type === 'redis' ? settings.store : undefined
  let url: SecretSource
  if (broker.redisUrl !== undefined) {
    url = broker.redisUrl
  } else if (fromFile === undefined) {
    return { store: { type: 'local' }, expectedReplicas }
  } else if (fromFile.url !== undefined && fromFile.urlFile !== undefined) {
    throw new BrokerConfigInvalid('rateLimit.store.url', 'and rateLimit.store.urlFile are both set: set only one of them')
  } else if (fromFile.url !== undefined) {
    url = inlineSecret(fromFile.url, 'rateLimit.store.url')
  } else if (fromFile.urlFile !== undefined) {
    url = fileSecret(resolve(fileDir, fromFile.urlFile), 'rateLimit.store.urlFile')
  } else {
    throw new BrokerConfigInvalid('rateLimit.store.url',
      'is required with type redis: set url or urlFile, or the BROKER_REDIS_URL environment variable')
  }
  checkRedisUrl(url)
  return {
    store: {
      type: 'redis',
      url,
      keyPrefix: fromFile?.keyPrefix ?? DEFAULT_REDIS_STORE.keyPrefix,
      timeoutMs: fromFile?.timeoutMs ?? DEFAULT_REDIS_STORE.timeoutMs
    },
    expectedReplicas
  }
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
