import { chmodSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { loadConfig, type LoadConfigOptions } from '../../src/config/load.js'
import type { Config } from '../../src/config/types.js'

const TENANT = '00000000-0000-0000-0000-000000000000'
const CLIENT = '11111111-1111-1111-1111-111111111111'
const secretEnv = { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT, AZURE_CLIENT_SECRET: 'inline-secret' }
const CANARY = 'canary-redis-password-0b9e'

function withFile (
  t: { testdir: (fixture?: Record<string, string>) => string },
  settings: Record<string, unknown>,
  env: Record<string, string> = {},
  files: Record<string, string> = {}
): LoadConfigOptions {
  const dir = t.testdir({ 'broker.yaml': stringify(settings), ...files })
  return { argvConfigPath: join(dir, 'broker.yaml'), env: { ...secretEnv, ...env }, cwd: dir }
}

function failure (options: LoadConfigOptions): string {
  try {
    loadConfig(options)
  } catch (err) {
    if ((err as { code?: string }).code !== 'BrokerConfigInvalid') throw err
    return (err as Error).message
  }
  throw new Error('the config loaded')
}

function redisStore (config: Config) {
  const { store } = config.rateLimit
  if (store.type !== 'redis') throw new Error('not a redis store')
  return store
}

t.test('budgets are local, for one broker, unless told otherwise', async (t) => {
  t.same(loadConfig({ env: secretEnv }).rateLimit, { store: { type: 'local' }, expectedReplicas: 1 })
})

t.test('rateLimit.store in the file: a Redis with its key prefix, timeout and the replicas expected', async (t) => {
  const config = loadConfig(withFile(t, {
    rateLimit: {
      store: { type: 'redis', url: `redis://:${CANARY}@redis:6379/2`, keyPrefix: 'soc:', timeoutMs: 80 },
      expectedReplicas: 3
    }
  }))
  const store = redisStore(config)
  t.match(store, { type: 'redis', keyPrefix: 'soc:', timeoutMs: 80 })
  t.equal(store.url.read(), `redis://:${CANARY}@redis:6379/2`)
  t.equal(store.url.origin, 'rateLimit.store.url')
  t.equal(config.rateLimit.expectedReplicas, 3)
  t.throws(() => { (config.rateLimit as { expectedReplicas: number }).expectedReplicas = 9 }, TypeError, 'frozen')
})

t.test('BROKER_REDIS_URL makes the store Redis, with the defaults, and wins over the file\'s url', async (t) => {
  const fromEnv = redisStore(loadConfig({ env: { ...secretEnv, BROKER_REDIS_URL: 'redis://127.0.0.1:6379' } }))
  t.match(fromEnv, { type: 'redis', keyPrefix: 'defender-broker:', timeoutMs: 50 })
  t.equal(fromEnv.url.read(), 'redis://127.0.0.1:6379')

  const both = redisStore(loadConfig(withFile(t, {
    rateLimit: { store: { type: 'redis', url: 'redis://file:6379', keyPrefix: 'soc:' } }
  }, { BROKER_REDIS_URL: 'rediss://env:6380' })))
  t.equal(both.url.read(), 'rediss://env:6380')
  t.equal(both.keyPrefix, 'soc:', 'the file\'s other store settings stay')

  const overLocal = redisStore(loadConfig(withFile(t, { rateLimit: { store: { type: 'local' } } }, { BROKER_REDIS_URL: 'redis://env' })))
  t.equal(overLocal.url.read(), 'redis://env')
})

t.test('the URL may come from a private file, as a docker secret', async (t) => {
  const options = withFile(t, { rateLimit: { store: { type: 'redis', urlFile: 'redis-url' } } }, {}, { 'redis-url': `redis://:${CANARY}@redis:6379\n` })
  const file = join(options.cwd as string, 'redis-url')
  chmodSync(file, 0o600)
  const fromFile = redisStore(loadConfig(options))
  t.equal(fromFile.url.read(), `redis://:${CANARY}@redis:6379`, 'relative to the config file, final line break dropped')
  const fromEnv = redisStore(loadConfig({ env: { ...secretEnv, BROKER_REDIS_URL_FILE: file } }))
  t.equal(fromEnv.url.read(), `redis://:${CANARY}@redis:6379`)

  chmodSync(file, 0o644)
  t.match(failure({ env: { ...secretEnv, BROKER_REDIS_URL_FILE: file } }), /^BROKER_REDIS_URL_FILE: the file .* is readable by group or others: run chmod 600/)
})

t.test('a wrong store is an error naming the setting, never the URL', async (t) => {
  t.equal(failure(withFile(t, { rateLimit: { store: { type: 'redis' } } })),
    'rateLimit.store.url: is required with type redis: set url or urlFile, or the BROKER_REDIS_URL environment variable')
  t.equal(failure(withFile(t, { rateLimit: { store: { type: 'redis', url: 'redis://a', urlFile: '/x' } } })),
    'rateLimit.store.url: and rateLimit.store.urlFile are both set: set only one of them')
  const scheme = failure(withFile(t, { rateLimit: { store: { type: 'redis', url: `https://user:${CANARY}@redis:6379` } } }))
  t.equal(scheme, 'rateLimit.store.url: must use the redis: or rediss: (TLS) scheme, such as redis://redis:6379 or rediss://user:password@redis.example.com:6380/0')
  const path = failure({ env: { ...secretEnv, BROKER_REDIS_URL: `redis://:${CANARY}@redis:6379/budgets` } })
  t.match(path, /^BROKER_REDIS_URL: may have only a database number as its path/)
  t.notMatch(scheme + path, CANARY)
  t.equal(failure({ env: { ...secretEnv, BROKER_REDIS_URL: 'redis://a', BROKER_REDIS_URL_FILE: '/x' } }),
    'BROKER_REDIS_URL: and BROKER_REDIS_URL_FILE are both set: set only one of them')
  t.equal(failure(withFile(t, { rateLimit: { store: { type: 'memcached' } } })),
    'rateLimit.store.type: is not a known type: use one of local, redis')
  t.equal(failure(withFile(t, { rateLimit: { store: { type: 'redis', url: 'redis://a', timeoutMs: 0 } } })),
    'rateLimit.store.timeoutMs: must be at least 1')
  t.equal(failure(withFile(t, { rateLimit: { expectedReplicas: 0 } })), 'rateLimit.expectedReplicas: must be at least 1')
  t.equal(failure(withFile(t, { rateLimit: { perMinute: 10 } })),
    'rateLimit.perMinute: is not a known setting: check its spelling and place against config/schema.json')
})
