import { setTimeout as delay } from 'node:timers/promises'
import t from 'tap'
import { systemClock } from '../../src/common/clock.js'
import { createLogger } from '../../src/observability/logger.js'
import { SlidingBudget, type Window } from '../../src/ratelimit/budget.js'
import { createBudgetKeys } from '../../src/ratelimit/budget-keys.js'
import { RedisBudgetStore, type SlotKeys } from '../../src/ratelimit/redis-budget.js'
import { SharedBudget } from '../../src/ratelimit/shared-budget.js'
import { DEFENDER_ENDPOINTS } from '../../src/defender/catalogue.js'
import { createLogSink, createTestClock, type LogSink } from '../helpers/broker.js'
import { freePort } from '../helpers/programs.js'
import { requireRedis, startRedis } from '../helpers/redis.js'

interface Teardown {
  teardown: (fn: () => unknown) => void
}

let prefixes = 0
function keysFor (name: string): SlotKeys {
  return createBudgetKeys(`test-${process.pid}-${++prefixes}:`, '00000000-0000-0000-0000-000000000000', name)(undefined)
}

function createStore (t: Teardown, url: string, options: { logs?: LogSink, timeoutMs?: number, probeIntervalMs?: number } = {}) {
  const store = new RedisBudgetStore({
    url,
    timeoutMs: options.timeoutMs ?? 1000,
    logger: createLogger({ level: 'debug', destination: (options.logs ?? createLogSink()).stream }),
    clock: systemClock,
    ...(options.probeIntervalMs === undefined ? {} : { probeIntervalMs: options.probeIntervalMs })
  })
  t.teardown(() => store.close())
  return store
}

/** Resolves at the store's next switch to `shared`, or rejects after `ms`. */
function nextSwitch (store: RedisBudgetStore, shared: boolean, ms = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the store did not switch to shared=${shared} in ${ms} ms`)), ms)
    store.onChange((now) => {
      if (now === shared) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
}

const MINUTE: Window = { ms: 60_000, limit: 3 }
const HOUR: Window = { ms: 3_600_000, limit: 5 }

if (requireRedis(t)) {
  t.test('the script hands out the slots SlidingBudget would, on the Redis server\'s clock', async (t) => {
    const redis = await startRedis(t)
    const store = createStore(t, redis.url)
    const keys = keysFor('differential')
    const windows: Window[] = [{ ms: 120, limit: 3 }, { ms: 400, limit: 6 }]
    const maxWaitMs = 250
    let reference: SlidingBudget | undefined
    let clock: ReturnType<typeof createTestClock> | undefined
    let granted = 0
    let refused = 0
    for (let i = 0; i < 60; i++) {
      const decision = await store.take(keys, windows, maxWaitMs)
      clock ??= createTestClock(decision.now)
      reference ??= new SlidingBudget(windows, clock)
      clock.tick(decision.now - clock.now())
      const expected = reference.nextSlot()
      t.equal(decision.at, expected, `decision ${i}: the same slot`)
      t.equal(decision.granted, expected - decision.now <= maxWaitMs, `decision ${i}: granted only within maxWait`)
      if (decision.granted) {
        reference.take()
        granted++
      } else {
        refused++
      }
      t.same(windows.map((w, index) => Math.max(0, w.limit - (decision.used[index] as number))), reference.remaining(),
        `decision ${i}: the same slots left`)
      await delay(i % 7 === 0 ? 60 : 5)
    }
    t.ok(granted > 10 && refused > 5, `both kinds of decision were tried (${granted} granted, ${refused} refused)`)
  })

  t.test('a refused request keeps no slot, and a pause holds back every store\'s next slot', async (t) => {
    const redis = await startRedis(t)
    const one = createStore(t, redis.url)
    const two = createStore(t, redis.url)
    const keys = keysFor('refusal')
    t.match(await one.take(keys, [MINUTE, HOUR], 0), { granted: true, waitMs: 0 })
    t.match(await two.take(keys, [MINUTE, HOUR], 0), { granted: true, waitMs: 0 })
    t.match(await one.take(keys, [MINUTE, HOUR], 0), { granted: true, waitMs: 0, used: [3, 3] })
    const refusedOne = await two.take(keys, [MINUTE, HOUR], 30_000)
    t.equal(refusedOne.granted, false, 'the minute is spent: a wait of about 60 s is over 30 s')
    t.ok(refusedOne.waitMs > 59_000 && refusedOne.waitMs <= 60_000, `wait ${refusedOne.waitMs}`)
    const refusedTwo = await one.take(keys, [MINUTE, HOUR], 30_000)
    t.equal(refusedTwo.at, refusedOne.at, 'the refusal took no slot: the next request is offered the same one')
    t.same(await one.used(keys, [MINUTE, HOUR]), [3, 3])
    const queued = await two.take(keys, [MINUTE, HOUR], 120_000)
    t.match(queued, { granted: true, at: refusedOne.at }, 'a caller that may wait gets that slot')
    t.same(await one.used(keys, [MINUTE, HOUR]), [4, 4], 'a slot for later counts as used')

    const paused = keysFor('pause')
    await one.pause(paused, 500, 'upstream 429 on GET /api/alerts')
    const held = await two.take(paused, [MINUTE, HOUR], 1000)
    t.ok(held.waitMs > 400 && held.waitMs <= 500, `the other store waits out the pause (${held.waitMs} ms)`)
    await two.pause(paused, 100, 'upstream 429 on GET /api/machines')
    const still = await one.take(paused, [MINUTE, HOUR], 1000)
    t.ok(still.waitMs > 300, 'a shorter pause does not cut a longer one short')
  })

  t.test('a store that loses Redis says so once, and is shared again when Redis is back', async (t) => {
    const password = 'canary-redis-password-7f3a'
    const redis = await startRedis(t, { password })
    const logs = createLogSink()
    const store = createStore(t, redis.url, { logs })
    const keys = keysFor('outage')
    t.match(await store.take(keys, [MINUTE, HOUR], 0), { granted: true })
    t.equal(store.shared, true)

    const lost = nextSwitch(store, false)
    await redis.kill()
    await lost
    t.equal(store.usable(), false, 'no decision goes to a Redis that is gone')
    t.equal(store.shared, false)

    const found = nextSwitch(store, true)
    await redis.restart()
    await found
    t.equal(store.usable(), true)
    t.match(await store.take(keys, [MINUTE, HOUR], 0), { granted: true, waitMs: 0, used: [1, 1] }, 'the new Redis is empty')

    const warnings = logs.lines.filter((line) => line.level === 40)
    t.equal(warnings.length, 1, 'one warning for the outage, whatever the reconnection attempts')
    t.match(warnings[0], { redis: `redis://127.0.0.1:${redis.port}`, msg: /rate-limit store unreachable/ })
    t.equal(logs.lines.filter((line) => /answers again/.test(String(line.msg))).length, 1)
    t.notMatch(logs.text(), password, 'the password in the URL is never logged')
  })

  t.test('a broker started while Redis is down decides alone at once, and shares once Redis is up', async (t) => {
    const port = await freePort()
    const logs = createLogSink()
    const store = createStore(t, `redis://127.0.0.1:${port}`, { logs, timeoutMs: 50 })
    const started = performance.now()
    await t.rejects(store.take(keysFor('late'), [MINUTE, HOUR], 0), { code: 'ECONNREFUSED' })
    t.ok(performance.now() - started < 1000, 'a refused connection is not waited for')
    t.equal(store.usable(), false)
    t.match(logs.lines.filter((line) => line.level === 40), [{ reason: 'ECONNREFUSED' }])

    const found = nextSwitch(store, true)
    await startRedis(t, { port })
    await found
    t.match(await store.take(keysFor('late'), [MINUTE, HOUR], 0), { granted: true })
  })

  t.test('a hung Redis times out in timeoutMs, and a probe finds it again', async (t) => {
    const redis = await startRedis(t)
    const logs = createLogSink()
    const store = createStore(t, redis.url, { logs, timeoutMs: 50, probeIntervalMs: 20 })
    const keys = keysFor('hung')
    await store.take(keys, [MINUTE, HOUR], 0)
    redis.freeze()
    const started = performance.now()
    await t.rejects(store.take(keys, [MINUTE, HOUR], 0), /timed out/)
    const elapsed = performance.now() - started
    t.ok(elapsed < 500, `gave up after ${Math.round(elapsed)} ms`)
    t.equal(store.shared, false)
    t.equal(store.usable(), false)
    redis.thaw()
    const found = nextSwitch(store, true)
    const probing = setInterval(() => store.usable(), 10)
    t.teardown(() => clearInterval(probing))
    await found
    clearInterval(probing)
    t.equal(store.usable(), true)
    t.match(logs.lines.filter((line) => line.level === 40), [{ reason: 'Command timed out' }])
  })

  t.test('shared budgets: one FIFO for every broker, their share of it while Redis is away', async (t) => {
    const redis = await startRedis(t)
    const clock = systemClock
    const config = { perMinute: 2, perHour: 100, maxQueueSeconds: 0 }
    const keys = createBudgetKeys(`test-${process.pid}-shared:`, '00000000-0000-0000-0000-000000000000', '11111111-1111-1111-1111-111111111111')
    const one = new SharedBudget({ profile: 'p', config, store: createStore(t, redis.url), keys, clock, expectedReplicas: 2 })
    const twoStore = createStore(t, redis.url)
    const two = new SharedBudget({ profile: 'p', config, store: twoStore, keys, clock, expectedReplicas: 2 })
    const stores: string[] = []
    two.onStoreChange((store) => stores.push(store))

    await one.acquire(undefined)
    await two.acquire(undefined)
    await t.rejects(Promise.resolve(one.acquire(undefined)), { code: 'BrokerRateLimited', statusCode: 429, retryAfter: 60 })
    t.match(await two.report(), { store: 'redis', perMinuteLeft: 0, perHourLeft: 98, queued: 0 }, 'both brokers\' requests count')
    const hunting = DEFENDER_ENDPOINTS.find((endpoint) => endpoint.path === '/api/advancedqueries/run')?.rateLimit
    await t.resolves(Promise.resolve(two.acquire(hunting)), 'a rule with its own limit has its own shared budget')

    const lost = nextSwitch(twoStore, false)
    await redis.kill()
    await lost
    t.equal(two.store, 'local-fallback')
    t.same(stores, ['local-fallback'])
    t.throws(() => two.acquire(undefined), { code: 'BrokerRateLimited' },
      'alone, it keeps to 2 / 2 = 1 a minute, and remembers the request it sent through Redis')
    t.match(await two.report(), { store: 'local-fallback', queued: 0 })
    t.equal(two.acquire(hunting), undefined, 'the rule\'s share (45 / 2) is not spent')
  })
  t.test('a shared budget\'s waiter whose client goes away gives its slot back in Redis', async (t) => {
    const redis = await startRedis(t)
    const clock = createTestClock()
    const config = { perMinute: 1, perHour: 100, maxQueueSeconds: 300 }
    const keys = createBudgetKeys(`test-${process.pid}-release:`, '00000000-0000-0000-0000-000000000000', '11111111-1111-1111-1111-111111111111')
    const store = createStore(t, redis.url)
    const budget = new SharedBudget({ profile: 'p', config, store, keys, clock, expectedReplicas: 1 })
    await budget.acquire(undefined)
    const leaving = new AbortController()
    const waiting = budget.acquire(undefined, leaving) as Promise<void>
    // The decision is made in Redis, then the wait is on the clock: leave once it waits.
    while (budget.status().queued === 0) await delay(5)
    leaving.abort(new Error('client gone'))
    await t.rejects(waiting, /client gone/)
    for (let i = 0; i < 100 && (await store.used(keys(undefined), [MINUTE, HOUR]))[0] !== 1; i++) await delay(5)
    t.same(await store.used(keys(undefined), [MINUTE, HOUR]), [1, 1], 'only the request sent counts in Redis')
    const next = await store.take(keys(undefined), [{ ms: 60_000, limit: 1 }], 300_000)
    t.ok(next.waitMs > 55_000 && next.waitMs <= 60_000, `the next request gets the slot given back, ${next.waitMs} ms away, not two minutes`)
    t.equal(budget.status().queued, 0)
  })
}
