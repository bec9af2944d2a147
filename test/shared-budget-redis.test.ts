import t from 'tap'
import { loadConfig } from '../src/config/load.js'
import type { Config, RateLimitConfig } from '../src/config/types.js'
import type { BudgetStore, RateBudget } from '../src/ratelimit/profile-budget.js'
import { startSimulator, type Simulator } from '../src/simulator/index.js'
import { ALL_ROLES, simulatorEnv } from './helpers/broker.js'
import { countStatuses, requireRedis, startBudgetBroker, startRedis, type BudgetBroker } from './helpers/redis.js'
import { readBody, startUpstream, type Upstream, type UpstreamHandler } from './helpers/upstream.js'

interface Teardown {
  teardown: (fn: () => unknown) => void
}

type Broker = BudgetBroker

interface BrokersOptions {
  simulator: Simulator
  upstream: Upstream
  redisUrl: string
  rateLimit: RateLimitConfig
  expectedReplicas?: number
  /** Shorter budget windows than the API's minute and hour. */
  windows?: { minuteMs: number, hourMs: number }
  /** Times a GET is sent when the API answers 429 (1: the 429 is passed back). */
  maxAttempts?: number
  /**
   * rateLimit.store.timeoutMs; 1000 unless given, as other tests share the machine: a Redis
   * found slow by accident would let a broker decide alone, which these tests count.
   */
  timeoutMs?: number
}

/**
 * `count` brokers as separate replicas would run them: each its own app, config and Redis
 * client, all serving the simulator's app (so the same tenant and client id) through one
 * upstream that counts what reaches it, and all on one Redis from BROKER_REDIS_URL.
 */
async function startBrokers (t: Teardown, count: number, options: BrokersOptions): Promise<Broker[]> {
  const { simulator } = options
  return Promise.all(Array.from({ length: count }, async () => {
    const loaded = loadConfig({
      env: { ...simulatorEnv(simulator), BROKER_UPSTREAM: options.upstream.url, BROKER_REDIS_URL: options.redisUrl }
    })
    const config: Config = Object.freeze({
      ...loaded,
      extraCaPem: simulator.caCertPem,
      profiles: loaded.profiles.map((profile) => ({ ...profile, rateLimit: options.rateLimit })),
      retry: { ...loaded.retry, maxAttempts: options.maxAttempts ?? loaded.retry.maxAttempts },
      rateLimit: {
        ...loaded.rateLimit,
        store: { ...loaded.rateLimit.store, timeoutMs: options.timeoutMs ?? 1000 },
        expectedReplicas: options.expectedReplicas ?? 1,
        ...(options.windows === undefined ? {} : { windows: options.windows })
      }
    })
    return await startBudgetBroker(t, config)
  }))
}

interface Answer {
  status: number
  retryAfter: string | null
  body: string
}

async function get (broker: Broker, path = '/api/alerts'): Promise<Answer> {
  const response = await fetch(`${broker.url}${path}`, { signal: AbortSignal.timeout(20_000) })
  return { status: response.status, retryAfter: response.headers.get('retry-after'), body: await response.text() }
}

let reads = 0
/** A read of its own: identical reads in flight at once would share one call and one unit of budget. */
const distinct = () => `/api/alerts?$top=1&$skip=${reads++}`
/** `perBroker` requests sent at once to each broker, all brokers at once, each a read of its own. */
async function burst (brokers: Broker[], perBroker: number): Promise<Answer[]> {
  return Promise.all(brokers.flatMap((broker) => Array.from({ length: perBroker }, () => get(broker, distinct()))))
}

function statuses (answers: Answer[]): Record<number, number> {
  return countStatuses(answers.map((answer) => answer.status))
}

async function storeOf (broker: Broker): Promise<string> {
  const response = await fetch(`${broker.url}/status`, { signal: AbortSignal.timeout(5000) })
  const status = await response.json() as { profiles: Array<{ budget: { store: string } }> }
  return status.profiles[0]?.budget.store ?? ''
}

async function metricsOf (broker: Broker): Promise<string> {
  const response = await fetch(`${broker.url}/metrics`, { signal: AbortSignal.timeout(5000) })
  return response.text()
}

/** Resolves when the budget's store becomes `store`, or rejects after `ms`. */
function storeSwitch (budget: RateBudget, store: BudgetStore, ms = 10_000): Promise<void> {
  if (budget.store === store) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the budget did not switch to ${store} in ${ms} ms`)), ms)
    budget.onStoreChange((now) => {
      if (now === store) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
}

const arrivals = new WeakMap<Upstream, number[]>()
/** Answers 200 and notes when each request arrived. */
function timedUpstream (t: Teardown, handler?: UpstreamHandler): Promise<Upstream> {
  const times: number[] = []
  return startUpstream(t, (req, res, recorded) => {
    times.push(performance.now())
    if (handler !== undefined) return handler(req, res, recorded)
    readBody(req, recorded).then(() => {
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' })
      res.end('{"value":[]}')
    }, () => res.destroy())
  }).then((upstream) => {
    arrivals.set(upstream, times)
    return upstream
  })
}

const RATE_LIMITED = /"code":"BrokerRateLimited"/

if (requireRedis(t)) {
  t.test('three brokers sharing a budget of N a minute send at most N upstream between them', async (t) => {
    const redis = await startRedis(t)
    const simulator = await startSimulator()
    t.teardown(() => simulator.close())
    const upstream = await timedUpstream(t)
    const perMinute = 12
    const brokers = await startBrokers(t, 3, {
      simulator, upstream, redisUrl: redis.url, rateLimit: { perMinute, perHour: 1500, maxQueueSeconds: 0 }
    })

    const answers = await burst(brokers, perMinute)
    t.equal(upstream.requests.length, perMinute, `${perMinute} of ${answers.length} requests reached the API`)
    t.same(statuses(answers), { 200: perMinute, 429: 2 * perMinute })
    for (const refused of answers.filter((answer) => answer.status === 429)) {
      t.match(refused.body, RATE_LIMITED)
      t.ok(Number(refused.retryAfter) >= 59 && Number(refused.retryAfter) <= 60, `Retry-After ${refused.retryAfter}`)
    }
    for (const broker of brokers) {
      const response = await fetch(`${broker.url}/status`)
      const status = await response.json() as { profiles: Array<{ budget: unknown }> }
      t.same(status.profiles[0]?.budget, { store: 'redis', perMinuteLeft: 0, perHourLeft: 1500 - perMinute, queued: 0, pauses: [] },
        'every broker\'s /status shows the shared budget')
    }
  })

  t.test('the decision is global and the wait local: queued requests of three brokers keep to one window', async (t) => {
    const redis = await startRedis(t)
    const simulator = await startSimulator()
    t.teardown(() => simulator.close())
    const upstream = await timedUpstream(t)
    const windowMs = 1000
    const perWindow = 5
    const brokers = await startBrokers(t, 3, {
      simulator,
      upstream,
      redisUrl: redis.url,
      rateLimit: { perMinute: perWindow, perHour: 1000, maxQueueSeconds: 5 },
      windows: { minuteMs: windowMs, hourMs: 60_000 }
    })

    const started = performance.now()
    const answers = await burst(brokers, perWindow)
    t.same(statuses(answers), { 200: 3 * perWindow }, 'every request waited its turn and was sent')
    const times = (arrivals.get(upstream) ?? []).slice().sort((a, b) => a - b)
    t.equal(times.length, 3 * perWindow)
    // The k-th group of 5 may not be sent before k windows have passed since the first decision,
    // which came after `started`, whichever broker holds it. Arrivals can only be later than
    // that (a busy test process delivers late, never early), so the bound holds exactly, with
    // a few ms for timers rounding.
    for (let i = perWindow; i < times.length; i++) {
      const group = Math.floor(i / perWindow)
      const after = (times[i] as number) - started
      t.ok(after >= group * windowMs - 5, `request ${i + 1} came ${Math.round(after)} ms after the burst began (group ${group})`)
    }
  })

  t.test('Redis killed: each broker falls back to its share and no request fails; Redis back: shared again', async (t) => {
    const redis = await startRedis(t)
    const simulator = await startSimulator()
    t.teardown(() => simulator.close())
    const upstream = await timedUpstream(t)
    const perMinute = 30
    const brokers = await startBrokers(t, 3, {
      simulator, upstream, redisUrl: redis.url, expectedReplicas: 3, rateLimit: { perMinute, perHour: 1500, maxQueueSeconds: 0 }
    })

    t.same(statuses(await burst(brokers, 4)), { 200: 12 }, 'shared: 12 of 30')
    t.same(await Promise.all(brokers.map(storeOf)), ['redis', 'redis', 'redis'])

    const fallen = Promise.all(brokers.map((broker) => storeSwitch(broker.budget, 'local-fallback')))
    await redis.kill()
    const during = await burst(brokers, 4)
    t.same(statuses(during), { 200: 12 }, 'with Redis gone, every request still gets its answer from the API')
    await fallen
    t.same(await Promise.all(brokers.map(storeOf)), ['local-fallback', 'local-fallback', 'local-fallback'])
    t.same(statuses(await burst(brokers, 4)), { 200: 6, 429: 6 },
      'each broker keeps to 30 / 3 = 10 a minute, counting the 4 it sent through Redis and the 4 since: 2 more each')
    for (const broker of brokers) {
      const metrics = await metricsOf(broker)
      t.match(metrics, /broker_ratelimit_store_fallbacks_total\{profile="default"\} 1\n/)
      t.match(metrics, /broker_ratelimit_store_shared\{profile="default"\} 0\n/)
      const warnings = broker.logs.lines.filter((line) => line.level === 40 && /rate-limit store unreachable/.test(String(line.msg)))
      t.equal(warnings.length, 1, 'the switch is logged once')
    }

    const back = Promise.all(brokers.map((broker) => storeSwitch(broker.budget, 'redis')))
    await redis.restart()
    await back
    t.same(await Promise.all(brokers.map(storeOf)), ['redis', 'redis', 'redis'])
    const before = upstream.requests.length
    const shared = await burst(brokers, 15)
    t.equal(upstream.requests.length - before, perMinute,
      'shared again: the new Redis lets 30 through between the three (alone they would allow 0)')
    t.same(statuses(shared), { 200: perMinute, 429: 45 - perMinute })
    for (const broker of brokers) {
      t.match(await metricsOf(broker), /broker_ratelimit_store_shared\{profile="default"\} 1\n/)
    }
  })

  t.test('a hung Redis costs a request about timeoutMs, then the broker decides alone until Redis answers', async (t) => {
    const redis = await startRedis(t)
    const simulator = await startSimulator()
    t.teardown(() => simulator.close())
    const upstream = await timedUpstream(t)
    const [broker] = await startBrokers(t, 1, {
      simulator, upstream, redisUrl: redis.url, timeoutMs: 200, rateLimit: { perMinute: 100, perHour: 1500, maxQueueSeconds: 0 }
    }) as [Broker]
    t.equal((await get(broker)).status, 200)

    redis.freeze()
    const started = performance.now()
    const answers = await Promise.all([get(broker, distinct()), get(broker, distinct()), get(broker, distinct())])
    const elapsed = performance.now() - started
    t.same(statuses(answers), { 200: 3 }, 'no request fails because Redis hangs')
    t.ok(elapsed < 2000, `answered in ${Math.round(elapsed)} ms (timeoutMs is 200)`)
    t.equal(broker.budget.store, 'local-fallback')
    t.equal(await storeOf(broker), 'local-fallback')

    redis.thaw()
    const back = storeSwitch(broker.budget, 'redis')
    // Once Redis is fallen silent without closing the connection, the next requests probe it.
    let probes = 0
    while (broker.budget.store !== 'redis' && probes++ < 50) {
      t.equal((await get(broker)).status, 200)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    await back
    t.equal(broker.budget.store, 'redis')
    t.equal((await get(broker)).status, 200)
  })

  t.test('a 429 one broker sees pauses the profile for every broker', async (t) => {
    const redis = await startRedis(t)
    const simulator = await startSimulator()
    t.teardown(() => simulator.close())

    t.test('a pause longer than maxQueueSeconds: the others refuse at once', async (t) => {
      let throttled = false
      const upstream = await timedUpstream(t, (req, res, recorded) => {
        readBody(req, recorded).then(() => {
          if (!throttled) {
            throttled = true
            res.writeHead(429, { 'retry-after': '30', 'content-type': 'application/json' })
            return res.end('{"error":{"code":"TooManyRequests"}}')
          }
          res.writeHead(200, { 'content-type': 'application/json' })
          res.end('{"value":[]}')
        }, () => res.destroy())
      })
      const [a, b, c] = await startBrokers(t, 3, {
        simulator, upstream, redisUrl: redis.url, maxAttempts: 1, rateLimit: { perMinute: 100, perHour: 1500, maxQueueSeconds: 5 }
      }) as [Broker, Broker, Broker]
      t.equal((await get(a)).status, 429, 'the API\'s 429 is passed back')
      const others = await Promise.all([get(b), get(c), get(a)])
      for (const answer of others) {
        t.equal(answer.status, 429)
        t.match(answer.body, RATE_LIMITED)
        t.ok(Number(answer.retryAfter) >= 29 && Number(answer.retryAfter) <= 30, `Retry-After ${answer.retryAfter}`)
      }
      t.equal(upstream.requests.length, 1, 'nothing more reached the API')
    })

    t.test('a pause within maxQueueSeconds: the others wait it out', async (t) => {
      let throttledAt: number | undefined
      const upstream = await timedUpstream(t, (req, res, recorded) => {
        readBody(req, recorded).then(() => {
          if (throttledAt === undefined) {
            throttledAt = performance.now()
            res.writeHead(429, { 'retry-after': '1', 'content-type': 'application/json' })
            return res.end('{"error":{"code":"TooManyRequests"}}')
          }
          res.writeHead(200, { 'content-type': 'application/json' })
          res.end('{"value":[]}')
        }, () => res.destroy())
      })
      // The first test's pause (30 s) is on the same app: another Redis database keeps this one apart.
      const [a, b, c] = await startBrokers(t, 3, {
        simulator, upstream, redisUrl: `${redis.url}/1`, maxAttempts: 1, rateLimit: { perMinute: 100, perHour: 1500, maxQueueSeconds: 5 }
      }) as [Broker, Broker, Broker]
      t.equal((await get(a)).status, 429)
      const others = await Promise.all([get(b), get(c)])
      t.same(statuses(others), { 200: 2 })
      const times = arrivals.get(upstream) ?? []
      t.equal(times.length, 3)
      for (const time of times.slice(1)) {
        const after = time - (throttledAt as number)
        t.ok(after >= 1000 - 50, `sent ${Math.round(after)} ms after the 429 with Retry-After: 1`)
      }
    })
  })
  t.test('a 429 pauses only the budget it was counted against, for every broker, at most retry.maxPauseSeconds; /status and the refusal say so', async (t) => {
    const redis = await startRedis(t)
    const simulator = await startSimulator({ roles: ALL_ROLES })
    t.teardown(() => simulator.close())
    let throttle: string | undefined
    const upstream = await timedUpstream(t, (req, res, recorded) => {
      readBody(req, recorded).then(() => {
        const retryAfter = throttle
        throttle = undefined
        if (retryAfter !== undefined) {
          res.writeHead(429, { 'retry-after': retryAfter, 'content-type': 'application/json' })
          return res.end('{"error":{"code":"TooManyRequests"}}')
        }
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end('{"value":[]}')
      }, () => res.destroy())
    })
    const [a, b] = await startBrokers(t, 2, {
      simulator, upstream, redisUrl: redis.url, maxAttempts: 1, rateLimit: { perMinute: 100, perHour: 1500, maxQueueSeconds: 5 }
    }) as [Broker, Broker]
    const hunt = async (broker: Broker): Promise<Answer> => {
      const response = await fetch(`${broker.url}/api/advancedqueries/run`, {
        method: 'POST', body: '{"Query":"DeviceInfo"}', headers: { 'content-type': 'application/json' }, signal: AbortSignal.timeout(20_000)
      })
      return { status: response.status, retryAfter: response.headers.get('retry-after'), body: await response.text() }
    }

    throttle = '99999999999999999999'
    const started = Date.now()
    t.equal((await hunt(a)).status, 429, 'the API\'s 429 is passed back')
    const cause = 'upstream 429 on POST /api/advancedqueries/run'
    t.equal((await get(b)).status, 200, 'the general budget is not paused')
    const refused = await hunt(b)
    t.equal(refused.status, 429)
    t.ok(Number(refused.retryAfter) >= 290 && Number(refused.retryAfter) <= 300, `Retry-After ${refused.retryAfter}: the default cap of 300 s`)
    const { error } = JSON.parse(refused.body) as { error: { code: string, message: string } }
    t.equal(error.code, 'BrokerRateLimited')
    t.match(error.message, /^The budget for run advanced hunting queries of profile default is paused until \d{4}-\d\d-\d\dT[\d:.]+Z by the Defender API's 429 \(upstream 429 on POST \/api\/advancedqueries\/run\): retry in \d+ s\.$/)
    const response = await fetch(`${b.url}/status`, { signal: AbortSignal.timeout(5000) })
    const status = await response.json() as { profiles: Array<{ budget: { store: string, pauses: Array<{ budget: string, until: string, cause: string }> } }> }
    const budget = status.profiles[0]?.budget
    t.equal(budget?.store, 'redis', 'still shared: Redis took the capped pause')
    t.match(budget?.pauses, [{ budget: 'run advanced hunting queries', cause }], 'the other broker\'s /status shows the pause and its cause')
    t.equal(budget?.pauses.length, 1)
    const until = Date.parse(budget?.pauses[0]?.until ?? '')
    t.ok(until - started > 290_000 && until - started <= 301_000, `the pause ends ${Math.round((until - started) / 1000)} s after the 429`)
    t.equal(upstream.requests.length, 2, 'the refused query never reached the API')
  })
}
