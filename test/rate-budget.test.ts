import { once } from 'node:events'
import t, { type Test } from 'tap'
import { Agent, request, type Dispatcher } from 'undici'
import type { ProfileConfig } from '../src/config/types.js'
import { findEndpoint } from '../src/defender/catalogue.js'
import { createTestPki } from '../src/simulator/index.js'
import { ALL_ROLES, startBrokerStack } from './helpers/broker.js'
import { createWatchedClock } from './helpers/clock.js'

const PER_MINUTE = 3
const MAX_QUEUE_SECONDS = 30
const HUNTING_PER_MINUTE = 45
const pki = await createTestPki()

const { clock, timers, timersSet } = createWatchedClock()

const stack = await startBrokerStack(t, {
  clock,
  simulator: { pki, roles: ALL_ROLES, perMinute: 10_000 },
  config: (c) => ({
    ...c,
    profiles: [{ ...c.profiles[0] as ProfileConfig, rateLimit: { perMinute: PER_MINUTE, perHour: 1500, maxQueueSeconds: MAX_QUEUE_SECONDS } }]
  })
})
const { defender } = stack.simulator

let reads = 0
/** Each read its own (`$skip` differs): identical reads in flight at once would share one call and one unit of budget. */
async function get (path = `/api/alerts?$top=1&$skip=${reads++}`): Promise<number> {
  const res = await request(`${stack.url}${path}`)
  await res.body.dump()
  return res.statusCode
}

async function hunt (): Promise<number> {
  const res = await request(`${stack.url}/api/advancedqueries/run`, {
    method: 'POST',
    body: '{"Query":"DeviceInfo | take 1"}',
    headers: { 'content-type': 'application/json' }
  })
  await res.body.dump()
  return res.statusCode
}

async function budgetStatus (): Promise<Record<string, unknown>> {
  const res = await request(`${stack.url}/status`)
  const status = await res.body.json() as { profiles: Array<{ budget: Record<string, unknown> }> }
  return status.profiles[0]?.budget ?? {}
}

async function queueDepthMetric (): Promise<number | undefined> {
  const res = await request(`${stack.url}/metrics`)
  const text = await res.body.text()
  const value = /^broker_ratelimit_queue_depth\{profile="default"\} (\d+)$/m.exec(text)?.[1]
  return value === undefined ? undefined : Number(value)
}

async function assertRefused (t: Test, res: Dispatcher.ResponseData, seconds: number): Promise<void> {
  t.equal(res.statusCode, 429)
  t.equal(res.headers['retry-after'], String(seconds))
  t.strictSame(await res.body.json(), {
    error: {
      code: 'BrokerRateLimited',
      message: `The local budget of profile default is spent: retry in ${seconds} s.`,
      target: res.headers['x-request-id']
    }
  })
}

/** Every window empty again before the next scenario. */
t.afterEach(async () => {
  await clock.tickAsync(120_000)
})

t.test(`over ${PER_MINUTE} a minute: a request waits its turn in the queue, or is refused at once`, async (t) => {
  const sent = defender.requests.length
  t.strictSame(await Promise.all([get(), get(), get()]), [200, 200, 200], 'the budget\'s worth goes at once')
  t.match(await budgetStatus(), { perMinuteLeft: 0, queued: 0 })

  await clock.tickAsync(40_000)
  const waiting = timersSet(20_000)
  const fourth = get()
  await waiting
  t.equal(defender.requests.length - sent, 3, 'the fourth is held back')
  const bothWaiting = timersSet(20_000, 2)
  const fifth = get()
  const sixth = get()
  await bothWaiting
  t.match(await budgetStatus(), { perMinuteLeft: 0, queued: 3 }, '/status shows the queue')
  t.equal(await queueDepthMetric(), 3, '/metrics shows it as broker_ratelimit_queue_depth')

  const refused = await request(`${stack.url}/api/alerts?$top=1`)
  await assertRefused(t, refused, 80)
  t.equal(defender.requests.length - sent, 3, 'a refused request never reaches the API')

  await clock.tickAsync(19_999)
  t.equal(defender.requests.length - sent, 3, 'nothing goes before its slot')
  await clock.tickAsync(1)
  t.strictSame(await Promise.all([fourth, fifth, sixth]), [200, 200, 200], 'the queued ones go when the clock passes')
  t.equal(defender.requests.length - sent, 6)
  t.match(await budgetStatus(), { queued: 0 })
  t.equal(await queueDepthMetric(), 0)
})

t.test(`advanced hunting has its own budget of ${HUNTING_PER_MINUTE} a minute`, async (t) => {
  t.match(findEndpoint('POST', '/api/advancedqueries/run')?.rateLimit, { perMinute: HUNTING_PER_MINUTE }, 'from the endpoint table')
  const sent = defender.requests.length
  t.strictSame(await Promise.all([get(), get(), get()]), [200, 200, 200])
  await assertRefused(t, await request(`${stack.url}/api/alerts`), 60)

  const hunts = await Promise.all(Array.from({ length: HUNTING_PER_MINUTE }, () => hunt()))
  t.strictSame(new Set(hunts), new Set([200]), `${HUNTING_PER_MINUTE} queries go while the general budget is spent`)
  t.equal(defender.requests.length - sent, 3 + HUNTING_PER_MINUTE)
  const over = await request(`${stack.url}/api/advancedqueries/run`, { method: 'POST', body: '{"Query":"DeviceInfo"}' })
  await assertRefused(t, over, 60)
  t.equal(defender.requests.length - sent, 3 + HUNTING_PER_MINUTE, 'the query over budget never reaches the API')

  await clock.tickAsync(50_000)
  const waiting = timersSet(10_000)
  const queued = hunt()
  await waiting
  t.match(await budgetStatus(), { queued: 1 })
  await clock.tickAsync(10_000)
  t.equal(await queued, 200, 'and waits its turn within maxQueueSeconds')
})

t.test('an upstream 429 with Retry-After pauses the budget it was counted against', async (t) => {
  const machine = defender.data.machines[0]?.id as string
  const sent = defender.requests.length
  defender.forceNext(429, { headers: { 'retry-after': '20' } })
  const throttled = await request(`${stack.url}/api/machines/${machine}/isolate`, { method: 'POST', body: '{"Comment":"c"}' })
  await throttled.body.dump()
  t.equal(throttled.statusCode, 429, 'the POST gets the API\'s 429')

  const waiting = timersSet(20_000)
  const next = get()
  await waiting
  t.equal(defender.requests.length - sent, 1, 'the next request waits out the pause')
  t.match(await budgetStatus(), { queued: 1 })
  t.equal(await hunt(), 200, 'a budget of its own is not paused')
  await clock.tickAsync(20_000)
  t.equal(await next, 200)

  await clock.tickAsync(60_000)
  defender.forceNext(429, { headers: { 'retry-after': String(MAX_QUEUE_SECONDS + 15) } })
  const long = await request(`${stack.url}/api/machines/${machine}/isolate`, { method: 'POST', body: '{"Comment":"c"}' })
  await long.body.dump()
  t.equal(long.headers['retry-after'], String(MAX_QUEUE_SECONDS + 15))
  const until = new Date(clock.now() + (MAX_QUEUE_SECONDS + 15) * 1000).toISOString()
  const before = defender.requests.length
  const refused = await request(`${stack.url}/api/alerts`)
  t.equal(refused.statusCode, 429)
  t.equal(refused.headers['retry-after'], String(MAX_QUEUE_SECONDS + 15))
  t.strictSame(await refused.body.json(), {
    error: {
      code: 'BrokerRateLimited',
      message: `The general budget of profile default is paused until ${until} by the Defender API's 429 (upstream 429 on POST /api/machines/*/isolate): retry in ${MAX_QUEUE_SECONDS + 15} s.`,
      target: refused.headers['x-request-id']
    }
  }, 'the refusal says it is the API\'s pause, and until when')
  t.equal(defender.requests.length, before, 'a pause longer than maxQueueSeconds refuses at once, upstream untouched')
  t.match(await budgetStatus(), { pauses: [{ budget: 'general', until, cause: 'upstream 429 on POST /api/machines/*/isolate' }] })
})

t.test('a queued request whose client goes away gives its slot back: the next one takes it', async (t) => {
  const sent = defender.requests.length
  t.strictSame(await Promise.all([get(), get(), get()]), [200, 200, 200], 'the minute\'s budget is spent')
  await clock.tickAsync(40_000)

  // A client of its own, closed at the end: no connection it opened is left for the broker to drain.
  const client = new Agent()
  t.teardown(() => client.destroy())
  const abort = new AbortController()
  const allWaiting = timersSet(20_000, 3)
  const leaving = request(`${stack.url}/api/alerts?$top=1`, { signal: abort.signal, dispatcher: client })
  const queued = [get(), get()]
  await allWaiting
  t.match(await budgetStatus(), { queued: 3 }, 'three requests wait for the slots freed in 20 s')

  const cleared = once(timers, 'cleared')
  abort.abort()
  await t.rejects(leaving, { name: 'AbortError' })
  await cleared
  t.match(await budgetStatus(), { queued: 2 }, 'the one whose client left is out of the queue')

  const waiting = timersSet(20_000)
  const next = get()
  await waiting
  t.match(await budgetStatus(), { queued: 3 }, 'a new request takes the slot given back, within maxQueueSeconds')
  await clock.tickAsync(20_000)
  t.strictSame(await Promise.all([...queued, next]), [200, 200, 200])
  t.equal(defender.requests.length - sent, 6, 'the request whose client left was never sent')
})
