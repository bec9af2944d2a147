import { once } from 'node:events'
import t from 'tap'
import { Agent, request, type Dispatcher } from 'undici'
import type { ProfileConfig } from '../src/config/types.js'
import { createTestPki } from '../src/simulator/index.js'
import { ALL_ROLES, startBrokerStack } from './helpers/broker.js'
import { createWatchedClock } from './helpers/clock.js'
import { readBody, startUpstream } from './helpers/upstream.js'

const MAX_WAIT_SECONDS = 30
const MAX_ATTEMPTS = 3
/** retry.maxPauseSeconds: the longest pause a Retry-After puts on a budget. */
const MAX_PAUSE_SECONDS = 120
const MAX_QUEUE_SECONDS = 30
const pki = await createTestPki()

const { clock, timers, timersSet } = createWatchedClock()

/** 429s still to answer on a path of the custom upstream before it answers 200. */
const throttled = new Map<string, number>()

/** Answers by path: `/429-then-200` as `throttled` says, errors a request must not be retried after. */
const custom = await startUpstream(t, (req, res, recorded) => {
  readBody(req, recorded).then(() => {
    const path = new URL(req.url as string, custom.url).pathname
    if (path.endsWith('/reset')) return req.socket.destroy()
    if (path.endsWith('/429-then-200')) {
      const left = throttled.get(path) ?? 0
      throttled.set(path, left - 1)
      res.writeHead(left > 0 ? 429 : 200, left > 0 ? { 'retry-after': '2' } : { 'content-type': 'application/json' })
      return res.end()
    }
    const status = Number(/\/(\d{3})$/.exec(path)?.[1] ?? 200)
    const body = JSON.stringify({ error: { code: `Status${status}`, message: 'from the custom upstream', target: `custom-${custom.requests.length}` } })
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'retry-after': '1' })
    res.end(body)
  }, () => res.destroy())
})

const stack = await startBrokerStack(t, {
  clock,
  simulator: { pki, roles: ALL_ROLES, perMinute: 10_000 },
  config: (c) => {
    const first = { ...c.profiles[0] as ProfileConfig, rateLimit: { perMinute: 10_000, perHour: 100_000, maxQueueSeconds: MAX_QUEUE_SECONDS } }
    return {
      ...c,
      retry: { maxWaitSeconds: MAX_WAIT_SECONDS, maxAttempts: MAX_ATTEMPTS, maxPauseSeconds: MAX_PAUSE_SECONDS },
      profiles: [first, { ...first, name: 'custom', basePath: '/custom', upstream: custom.url }]
    }
  }
})
const { defender } = stack.simulator

/** The 429 that the simulator forces, as the client gets it when it is passed back. */
function forced429 (res: Dispatcher.ResponseData) {
  return { error: { code: 'TooManyRequests', message: 'Forced 429 response.', target: res.headers['request-id'] } }
}

/** Past every pause a 429 put on the budgets, so the next scenario starts clean. */
t.afterEach(async () => {
  await clock.tickAsync(61_000)
})

t.test('a GET waits out Retry-After seconds on the clock, then is retried', async (t) => {
  const sent = defender.requests.length
  defender.forceNext(429, { headers: { 'retry-after': '7' } })
  const waiting = timersSet(7_000)
  const pending = request(`${stack.url}/api/alerts?$top=1`)
  await waiting
  t.equal(defender.requests.length - sent, 1, 'one request so far')
  await clock.tickAsync(6_999)
  t.equal(defender.requests.length - sent, 1, 'still waiting 1 ms before Retry-After')
  await clock.tickAsync(1)
  const res = await pending
  const body = await res.body.json() as { value: unknown[] }
  t.equal(res.statusCode, 200, 'the client gets the retry\'s answer')
  t.equal(body.value.length, 1)
  t.equal(res.headers['retry-after'], undefined)
  const seen = defender.requests.slice(sent)
  t.strictSame(seen.map((r) => [r.method, r.url]), [['GET', '/api/alerts?$top=1'], ['GET', '/api/alerts?$top=1']], 'the same request twice')
  t.equal(seen[1]?.headers.authorization, seen[0]?.headers.authorization)
})

t.test('a HEAD is retried too', async (t) => {
  const sent = custom.requests.length
  throttled.set('/api/machines/head/429-then-200', 1)
  const waiting = timersSet(2_000)
  const pending = request(`${stack.url}/custom/api/machines/head/429-then-200`, { method: 'HEAD' })
  await waiting
  await clock.tickAsync(2_000)
  const res = await pending
  await res.body.dump()
  t.equal(res.statusCode, 200)
  t.strictSame(custom.requests.slice(sent).map((r) => r.method), ['HEAD', 'HEAD'])
})

t.test(`at most retry.maxAttempts (${MAX_ATTEMPTS}) attempts, then the last 429 is passed back`, async (t) => {
  const sent = defender.requests.length
  for (let i = 0; i < MAX_ATTEMPTS; i++) defender.forceNext(429, { headers: { 'retry-after': '3' } })
  const pending = request(`${stack.url}/api/alerts`)
  for (let i = 1; i < MAX_ATTEMPTS; i++) {
    await timersSet(3_000)
    t.equal(defender.requests.length - sent, i, `attempt ${i} answered 429`)
    await clock.tickAsync(3_000)
  }
  const res = await pending
  t.equal(res.statusCode, 429)
  t.equal(res.headers['retry-after'], '3', 'Retry-After intact')
  t.strictSame(await res.body.json(), forced429(res), 'the API\'s own body')
  t.equal(defender.requests.length - sent, MAX_ATTEMPTS)
})

t.test('an HTTP-date Retry-After is waited out too', async (t) => {
  const sent = defender.requests.length
  const date = new Date(clock.now() + 12_000).toUTCString()
  defender.forceNext(429, { headers: { 'retry-after': date } })
  const waiting = timersSet(12_000)
  const pending = request(`${stack.url}/api/alerts`)
  await waiting
  await clock.tickAsync(11_999)
  t.equal(defender.requests.length - sent, 1)
  await clock.tickAsync(1)
  const res = await pending
  await res.body.dump()
  t.equal(res.statusCode, 200)
  t.equal(defender.requests.length - sent, 2)
})

t.test(`a Retry-After over retry.maxWaitSeconds (${MAX_WAIT_SECONDS}) is passed back at once, intact`, async (t) => {
  for (const later of [() => String(MAX_WAIT_SECONDS + 1), () => new Date(clock.now() + 60_000).toUTCString()]) {
    const retryAfter = later()
    const sent = defender.requests.length
    defender.forceNext(429, { headers: { 'retry-after': retryAfter } })
    const res = await request(`${stack.url}/api/alerts`)
    t.equal(res.statusCode, 429, retryAfter)
    t.equal(res.headers['retry-after'], retryAfter, 'as the API sent it')
    t.strictSame(await res.body.json(), forced429(res))
    t.equal(defender.requests.length - sent, 1, 'no retry')
    await clock.tickAsync(61_000)
  }
})

t.test('a 429 without a Retry-After the broker can read is passed back at once', async (t) => {
  for (const headers of [{}, { 'retry-after': '-5' }, { 'retry-after': 'soon' }, { 'retry-after': '12 monkeys' }] as Array<Record<string, string>>) {
    const name = headers['retry-after'] ?? 'none'
    const sent = defender.requests.length
    defender.forceNext(429, { headers })
    const res = await request(`${stack.url}/api/alerts`)
    t.equal(res.statusCode, 429, name)
    t.equal(res.headers['retry-after'], headers['retry-after'], `${name}: as sent`)
    t.strictSame(await res.body.json(), forced429(res))
    t.equal(defender.requests.length - sent, 1, `${name}: not retried`)
  }
})

t.test('a fractional Retry-After is rounded up, not read as a date', async (t) => {
  const sent = defender.requests.length
  defender.forceNext(429, { headers: { 'retry-after': '1.5' } })
  const waiting = timersSet(2_000)
  const pending = request(`${stack.url}/api/alerts`)
  await waiting
  t.equal(defender.requests.length - sent, 1)
  await clock.tickAsync(2_000)
  const res = await pending
  await res.body.dump()
  t.equal(res.statusCode, 200)
  t.equal(defender.requests.length - sent, 2)
})

t.test('a POST 429 is passed back as is, never retried', async (t) => {
  const sent = defender.requests.length
  defender.forceNext(429, { headers: { 'retry-after': '2' } })
  const res = await request(`${stack.url}/api/advancedqueries/run`, { method: 'POST', body: '{"Query":"DeviceInfo | take 1"}', headers: { 'content-type': 'application/json' } })
  t.equal(res.statusCode, 429)
  t.equal(res.headers['retry-after'], '2')
  t.strictSame(await res.body.json(), forced429(res))
  t.equal(defender.requests.length - sent, 1, 'sent once')
  await clock.tickAsync(2_000)
  t.equal(defender.requests.length - sent, 1, 'and not again after the Retry-After')
})

t.test('no retry of a non-idempotent request on any error', async (t) => {
  for (const method of ['POST', 'PUT', 'PATCH', 'DELETE'] as const) {
    for (const status of [429, 500, 502, 503]) {
      const sent = custom.requests.length
      const res = await request(`${stack.url}/custom/api/x/${status}`, { method, body: method === 'DELETE' ? undefined : '{}' })
      const body = await res.body.json()
      t.equal(res.statusCode, status, `${method} ${status}: passed back`)
      t.strictSame(body, { error: { code: `Status${status}`, message: 'from the custom upstream', target: `custom-${sent + 1}` } })
      t.equal(res.headers['retry-after'], '1')
      t.equal(custom.requests.length - sent, 1, `${method} ${status}: sent once`)
      await clock.tickAsync(1_000)
    }
    const sent = custom.requests.length
    const res = await request(`${stack.url}/custom/api/x/reset`, { method, body: method === 'DELETE' ? undefined : '{}' })
    t.equal(res.statusCode, 502, `${method} reset: 502`)
    t.strictSame(await res.body.json(), {
      error: {
        code: 'BrokerUpstreamUnreachable',
        message: `The Defender API at ${custom.url} could not be reached: connection reset (UND_ERR_SOCKET). Check the network, proxy and upstream settings.`,
        target: res.headers['x-request-id']
      }
    })
    t.equal(custom.requests.length - sent, 1, `${method} reset: sent once`)
  }
  for (const status of [500, 502, 503]) {
    const sent = custom.requests.length
    const res = await request(`${stack.url}/custom/api/x/${status}`)
    await res.body.dump()
    t.equal(res.statusCode, status, `GET ${status}: only a 429 is waited out`)
    t.equal(custom.requests.length - sent, 1)
  }
})

t.test('a client that goes away while the broker waits out a Retry-After: nothing is sent again', async (t) => {
  const sent = defender.requests.length
  defender.forceNext(429, { headers: { 'retry-after': '9' } })
  const waiting = timersSet(9_000)
  const abort = new AbortController()
  // A client of its own, closed at the end: no connection it opened is left for the broker to drain.
  const client = new Agent()
  t.teardown(() => client.destroy())
  const pending = request(`${stack.url}/api/alerts`, { signal: abort.signal, dispatcher: client })
  await waiting
  const cleared = once(timers, 'cleared')
  abort.abort()
  await t.rejects(pending, { name: 'AbortError' })
  await cleared
  await clock.tickAsync(9_000)
  t.equal(defender.requests.length - sent, 1, 'the wait was dropped with the client')
})

interface Pause {
  budget: string
  until: string
  cause: string
}

/** The pauses /status shows for the first profile. */
async function pausesOf (): Promise<Pause[]> {
  const res = await request(`${stack.url}/status`)
  const status = await res.body.json() as { profiles: Array<{ budget: { pauses: Pause[] } }> }
  return status.profiles[0]?.budget.pauses ?? []
}

async function hunt (): Promise<Dispatcher.ResponseData> {
  return request(`${stack.url}/api/advancedqueries/run`, { method: 'POST', body: '{"Query":"DeviceInfo | take 1"}', headers: { 'content-type': 'application/json' } })
}

/** The broker's refusal while a 429's pause holds the budget back. */
function pausedRefusal (res: Dispatcher.ResponseData, what: string, until: number, cause: string) {
  const seconds = res.headers['retry-after']
  return {
    error: {
      code: 'BrokerRateLimited',
      message: `The ${what} of profile default is paused until ${new Date(until).toISOString()} by the Defender API's 429 (${cause}): retry in ${seconds} s.`,
      target: res.headers['x-request-id']
    }
  }
}

t.test('a 429 pauses only the budget it was counted against; the refusal and /status say so', async (t) => {
  const huntingCause = 'upstream 429 on POST /api/advancedqueries/run'
  const huntingUntil = clock.now() + 45_000
  defender.forceNext(429, { headers: { 'retry-after': '45' } })
  const throttledHunt = await hunt()
  await throttledHunt.body.dump()
  t.equal(throttledHunt.statusCode, 429, 'the API\'s 429 is passed back')
  t.strictSame(await pausesOf(), [{ budget: 'run advanced hunting queries', until: new Date(huntingUntil).toISOString(), cause: huntingCause }],
    '/status shows the pause of the hunting budget')

  const sent = defender.requests.length
  const alerts = await request(`${stack.url}/api/alerts`)
  await alerts.body.dump()
  t.equal(alerts.statusCode, 200, 'requests counted against the general budget are not paused')
  const refusedHunt = await hunt()
  t.equal(refusedHunt.statusCode, 429)
  t.equal(refusedHunt.headers['retry-after'], '45')
  t.strictSame(await refusedHunt.body.json(), pausedRefusal(refusedHunt, 'budget for run advanced hunting queries', huntingUntil, huntingCause),
    'the refusal names the pause, its end and its cause')

  await clock.tickAsync(5_000)
  const generalUntil = clock.now() + 50_000
  defender.forceNext(429, { headers: { 'retry-after': '50' } })
  const throttled = await request(`${stack.url}/api/alerts?$top=5&$filter=severity eq 'High'`)
  await throttled.body.dump()
  t.equal(throttled.statusCode, 429)
  const generalCause = 'upstream 429 on GET /api/alerts'
  t.strictSame(await pausesOf(), [
    { budget: 'general', until: new Date(generalUntil).toISOString(), cause: generalCause },
    { budget: 'run advanced hunting queries', until: new Date(huntingUntil).toISOString(), cause: huntingCause }
  ], 'each pause, its end and its cause (the path without its query)')
  const refused = await request(`${stack.url}/api/machines`)
  t.equal(refused.statusCode, 429)
  t.equal(refused.headers['retry-after'], '50')
  t.strictSame(await refused.body.json(), pausedRefusal(refused, 'general budget', generalUntil, generalCause))
  t.equal(defender.requests.length - sent, 2, 'no refused request reached the API')

  await clock.tickAsync(40_000)
  t.strictSame(await pausesOf(), [{ budget: 'general', until: new Date(generalUntil).toISOString(), cause: generalCause }], 'an ended pause is gone')
  const hunting = await hunt()
  await hunting.body.dump()
  t.equal(hunting.statusCode, 200, 'the hunting budget serves again at the end of its pause')
  await clock.tickAsync(10_000)
  t.strictSame(await pausesOf(), [])
})

t.test(`a Retry-After past retry.maxPauseSeconds (${MAX_PAUSE_SECONDS}) pauses that long, no longer`, async (t) => {
  for (const retryAfter of ['99999999999999999999', String(10 ** 12), 'Thu, 01 Jan 2099 00:00:00 GMT']) {
    const until = clock.now() + MAX_PAUSE_SECONDS * 1000
    defender.forceNext(429, { headers: { 'retry-after': retryAfter } })
    const throttled = await request(`${stack.url}/api/alerts`)
    await throttled.body.dump()
    t.equal(throttled.statusCode, 429, `${retryAfter}: the API's 429`)
    t.equal(throttled.headers['retry-after'], retryAfter, `${retryAfter}: passed back as the API sent it`)
    t.strictSame(await pausesOf(), [{ budget: 'general', until: new Date(until).toISOString(), cause: 'upstream 429 on GET /api/alerts' }],
      `${retryAfter}: /status shows a pause of ${MAX_PAUSE_SECONDS} s`)
    const refused = await request(`${stack.url}/api/alerts`)
    await refused.body.dump()
    t.equal(refused.statusCode, 429)
    t.equal(refused.headers['retry-after'], String(MAX_PAUSE_SECONDS), `${retryAfter}: the refusal says ${MAX_PAUSE_SECONDS} s`)
    await clock.tickAsync(MAX_PAUSE_SECONDS * 1000)
    const served = await request(`${stack.url}/api/alerts`)
    await served.body.dump()
    t.equal(served.statusCode, 200, `${retryAfter}: served once the capped pause is over`)
  }
})
