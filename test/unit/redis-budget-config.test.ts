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

function urlOf (store: ReturnType<typeof redisStore>): string {
  if (store.target.mode !== 'single') throw new Error(`a ${store.target.mode} store`)
  return store.target.url.read()
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
  t.equal(urlOf(store), `redis://:${CANARY}@redis:6379/2`)
  t.equal(store.target.mode === 'single' && store.target.url.origin, 'rateLimit.store.url')
  t.equal(config.rateLimit.expectedReplicas, 3)
  t.throws(() => { (config.rateLimit as { expectedReplicas: number }).expectedReplicas = 9 }, TypeError, 'frozen')
})

t.test('BROKER_REDIS_URL makes the store Redis, with the defaults, and wins over the file\'s url', async (t) => {
  const fromEnv = redisStore(loadConfig({ env: { ...secretEnv, BROKER_REDIS_URL: 'redis://127.0.0.1:6379' } }))
  t.match(fromEnv, { type: 'redis', keyPrefix: 'defender-broker:', timeoutMs: 50 })
  t.equal(urlOf(fromEnv), 'redis://127.0.0.1:6379')

  const both = redisStore(loadConfig(withFile(t, {
    rateLimit: { store: { type: 'redis', url: 'redis://file:6379', keyPrefix: 'soc:' } }
  }, { BROKER_REDIS_URL: 'rediss://env:6380' })))
  t.equal(urlOf(both), 'rediss://env:6380')
  t.equal(both.keyPrefix, 'soc:', 'the file\'s other store settings stay')

  const overLocal = redisStore(loadConfig(withFile(t, { rateLimit: { store: { type: 'local' } } }, { BROKER_REDIS_URL: 'redis://env' })))
  t.equal(urlOf(overLocal), 'redis://env')
})

t.test('the URL may come from a private file, as a docker secret', async (t) => {
  const options = withFile(t, { rateLimit: { store: { type: 'redis', urlFile: 'redis-url' } } }, {}, { 'redis-url': `redis://:${CANARY}@redis:6379\n` })
  const file = join(options.cwd as string, 'redis-url')
  chmodSync(file, 0o600)
  const fromFile = redisStore(loadConfig(options))
  t.equal(urlOf(fromFile), `redis://:${CANARY}@redis:6379`, 'relative to the config file, final line break dropped')
  const fromEnv = redisStore(loadConfig({ env: { ...secretEnv, BROKER_REDIS_URL_FILE: file } }))
  t.equal(urlOf(fromEnv), `redis://:${CANARY}@redis:6379`)

  chmodSync(file, 0o644)
  t.match(failure({ env: { ...secretEnv, BROKER_REDIS_URL_FILE: file } }), /^BROKER_REDIS_URL_FILE: the file .* is readable by group or others: run chmod 600/)
})

t.test('a wrong store is an error naming the setting, never the URL', async (t) => {
  t.equal(failure(withFile(t, { rateLimit: { store: { type: 'redis' } } })),
    'rateLimit.store.url: is required with type redis: set url or urlFile (one Redis), sentinels (a Sentinel group) or nodes (a Redis Cluster), or the BROKER_REDIS_URL environment variable')
  t.equal(failure(withFile(t, { rateLimit: { store: { type: 'redis', url: 'redis://a', urlFile: '/x' } } })),
    'rateLimit.store.url: and rateLimit.store.urlFile are both set: set only one of url, urlFile, sentinels and nodes')
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

t.test('a Sentinel group: its sentinels, the primary group\'s name and the passwords from private files', async (t) => {
  const options = withFile(t, {
    rateLimit: {
      store: {
        type: 'redis',
        sentinels: ['sentinel-0:26380', 'redis://sentinel-1', '[::1]:26381'],
        name: 'budgets',
        username: 'broker',
        passwordFile: 'redis-password',
        sentinelPasswordFile: 'sentinel-password'
      }
    }
  }, {}, { 'redis-password': `${CANARY}\n`, 'sentinel-password': 'sentinel-canary' })
  chmodSync(join(options.cwd as string, 'redis-password'), 0o600)
  chmodSync(join(options.cwd as string, 'sentinel-password'), 0o600)
  const { target } = redisStore(loadConfig(options))
  if (target.mode !== 'sentinel') throw new Error(`a ${target.mode} store`)
  t.same(target.sentinels, [{ host: 'sentinel-0', port: 26380 }, { host: 'sentinel-1', port: 26379 }, { host: '::1', port: 26381 }])
  t.equal(target.name, 'budgets')
  t.equal(target.username, 'broker')
  t.equal(target.tls, false)
  t.equal(target.password?.read(), CANARY)
  t.equal(target.sentinelPassword?.read(), 'sentinel-canary')

  chmodSync(join(options.cwd as string, 'redis-password'), 0o644)
  t.match(failure(options), /^rateLimit\.store\.passwordFile: the file .* is readable by group or others: run chmod 600/)
})

t.test('a Redis Cluster: some of its nodes; TLS from tls: true or rediss: entries', async (t) => {
  const plain = redisStore(loadConfig(withFile(t, { rateLimit: { store: { type: 'redis', nodes: ['redis-0:7000', 'redis-1:7001'] } } }))).target
  t.same(plain, { mode: 'cluster', nodes: [{ host: 'redis-0', port: 7000 }, { host: 'redis-1', port: 7001 }], tls: false })
  const byUrl = redisStore(loadConfig(withFile(t, { rateLimit: { store: { type: 'redis', nodes: ['rediss://cache.example.com:6380'] } } }))).target
  t.match(byUrl, { mode: 'cluster', nodes: [{ host: 'cache.example.com', port: 6380 }], tls: true })
  const bySetting = redisStore(loadConfig(withFile(t, { rateLimit: { store: { type: 'redis', nodes: ['cache.example.com'], tls: true } } }))).target
  t.match(bySetting, { mode: 'cluster', nodes: [{ host: 'cache.example.com', port: 6379 }], tls: true })
  const sentinelTls = redisStore(loadConfig(withFile(t, { rateLimit: { store: { type: 'redis', sentinels: ['rediss://s:26379'], name: 'm' } } }))).target
  t.match(sentinelTls, { mode: 'sentinel', tls: true })
  const fromEnv = redisStore(loadConfig(withFile(t, { rateLimit: { store: { type: 'redis', nodes: ['redis-0:7000'] } } }, { BROKER_REDIS_URL: 'redis://env' })))
  t.equal(urlOf(fromEnv), 'redis://env', 'BROKER_REDIS_URL wins over nodes')
})

t.test('a wrong Sentinel or Cluster setting is an error naming it, never a password', async (t) => {
  const store = (settings: Record<string, unknown>) => withFile(t, { rateLimit: { store: { type: 'redis', ...settings } } })
  t.equal(failure(store({ url: 'redis://a', nodes: ['b:1'] })),
    'rateLimit.store.url: and rateLimit.store.nodes are both set: set only one of url, urlFile, sentinels and nodes')
  t.equal(failure(store({ sentinels: ['a:1'], nodes: ['b:1'] })),
    'rateLimit.store.sentinels: and rateLimit.store.nodes are both set: set only one of url, urlFile, sentinels and nodes')
  t.equal(failure(store({ sentinels: ['a:1'] })),
    'rateLimit.store.name: is required with sentinels: set it to the primary group\'s name the sentinels monitor (e.g. mymaster)')
  t.equal(failure(store({ nodes: ['b:1'], name: 'm' })),
    'rateLimit.store.name: goes only with sentinels: a Redis Cluster has no primary group name nor sentinels')
  t.equal(failure(store({ url: 'redis://a', passwordFile: '/x' })),
    'rateLimit.store.passwordFile: goes only with sentinels or nodes: with url or urlFile, put the user, password and rediss: scheme in the URL')
  t.equal(failure(store({ nodes: [`redis://:${CANARY}@b:1`] })),
    'rateLimit.store.nodes[0]: must not hold a user or password: set username and passwordFile instead')
  t.equal(failure(store({ nodes: ['b:1', 'http://c:2'] })),
    'rateLimit.store.nodes[1]: must use the redis: or rediss: (TLS) scheme, such as redis-0:6379, redis://redis-0:6379 or rediss://redis-0.example.com:6380')
  t.equal(failure(store({ nodes: ['b:1/2'] })),
    'rateLimit.store.nodes[0]: must be a host and port only, such as redis-0:6379, redis://redis-0:6379 or rediss://redis-0.example.com:6380')
  t.equal(failure(store({ nodes: ['redis://b:1', 'rediss://c:2'] })),
    'rateLimit.store.nodes: mixes redis: and rediss: entries: TLS is for all of them or none')
  t.equal(failure(store({ nodes: ['rediss://b:1'], tls: false })),
    'rateLimit.store.tls: is false but rateLimit.store.nodes has rediss: (TLS) entries: drop one of them')
  t.match(failure(store({ nodes: ['b:1'], passwordFile: 'missing' })), /^rateLimit\.store\.passwordFile: the file .*missing does not exist/)
  t.equal(failure(store({ nodes: [] })), 'rateLimit.store.nodes: is empty: name at least one node, such as redis-0:6379, redis://redis-0:6379 or rediss://redis-0.example.com:6380')
})
