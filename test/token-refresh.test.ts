import t from 'tap'
import { once } from 'node:events'
import type { Config } from '../src/config/types.js'
import type { Credential } from '../src/credentials/index.js'
import { createTestPki } from '../src/simulator/index.js'
import { createTestClock, startBrokerStack, type BrokerStack, getAlerts } from './helpers/broker.js'

const BEFORE_MS = 600_000
const MAX_JITTER_MS = 30_000
const pki = await createTestPki()
/** A scenario that waits on an event that never comes fails here, not at the file's timeout. */
const SCENARIO = { timeout: 20_000 }

interface CredentialWatch {
  calls: number
  inFlight: number
  maxInFlight: number
}

/**
 * Counts the token calls the holder makes and how many overlap. A call ends when it settles or
 * when its signal aborts it (that closes its socket at once; the promise settles a little later).
 */
function watchCredential (credential: Credential): CredentialWatch {
  const watch = { calls: 0, inFlight: 0, maxInFlight: 0 }
  const acquire = credential.acquire.bind(credential)
  credential.acquire = (signal) => {
    watch.calls++
    watch.inFlight++
    watch.maxInFlight = Math.max(watch.maxInFlight, watch.inFlight)
    let ended = false
    const end = () => {
      if (!ended) watch.inFlight--
      ended = true
    }
    signal.addEventListener('abort', end, { once: true })
    const call = acquire(signal)
    call.then(end, end)
    return call
  }
  return watch
}

/** Lifts the broker's own request budget: these loads are about tokens, not rate limits. */
function unlimited (config: Config): Config {
  const rateLimit = { perMinute: 1_000_000, perHour: 1_000_000, maxQueueSeconds: 30 }
  return { ...config, profiles: config.profiles.map((profile) => ({ ...profile, rateLimit })) }
}

function holderOf (stack: BrokerStack) {
  const profile = stack.app.profiles[0]
  if (profile === undefined) throw new TypeError('the stack has no profile')
  return { holder: profile.tokens, watch: watchCredential(profile.credential) }
}

function bearers (stack: BrokerStack): Array<string | undefined> {
  return stack.simulator.defender.requests.map((r) => r.headers.authorization)
}

t.test('a token is refreshed ahead of expiry with no request in flight', SCENARIO, async (t) => {
  const clock = createTestClock()
  const stack = await startBrokerStack(t, { clock, simulator: { pki } })
  const { holder, watch } = holderOf(stack)
  const { entra } = stack.simulator
  const first = holder.status()
  const firstToken = entra.issuedTokens[0]
  if (first.expiresAt === undefined || first.refreshAt === undefined) throw new TypeError('no token held')

  t.ok(first.refreshAt <= first.expiresAt - BEFORE_MS, 'refreshAt is no later than expiry minus refresh.beforeSeconds')
  t.ok(first.refreshAt >= first.expiresAt - BEFORE_MS - MAX_JITTER_MS, 'and earlier only by the jitter')
  t.equal(await getAlerts(stack), 200)
  t.strictSame(bearers(stack), [`Bearer ${firstToken}`], 'a request before the refresh carries the first token')

  clock.tick(first.refreshAt - clock.now() - 1)
  t.equal(watch.calls, 0, 'no token call before refreshAt')
  const acquired = once(holder, 'acquired')
  clock.tick(1)
  t.equal(watch.calls, 1, 'a token call at refreshAt, with no request waiting')
  const [token, refreshed] = await acquired
  t.equal(refreshed, true, 'reported as a refresh')
  t.equal(entra.tokenRequests, 2, 'a second token request reached Entra ID')
  t.equal(token.value, entra.issuedTokens[1], 'the new token is held')
  t.not(token.value, firstToken)
  t.ok(token.expiresAt > first.expiresAt, 'and lives longer than the first')
  t.ok(token.refreshAt <= token.expiresAt - BEFORE_MS && token.refreshAt >= token.expiresAt - BEFORE_MS - MAX_JITTER_MS,
    'the next refresh is scheduled the same way')

  t.equal(await getAlerts(stack), 200)
  t.strictSame(bearers(stack), [`Bearer ${firstToken}`, `Bearer ${token.value}`], 'a request after the refresh carries the new token')
  t.equal(entra.tokenRequests, 2, 'serving it cost no token request')
  const line = stack.logs.lines.find((l) => l.msg === 'token refreshed')
  t.match(line, { level: 30, profile: 'default', nextRefreshAt: new Date(token.refreshAt).toISOString() }, 'the refresh is logged with the next refresh time')
})

t.test('Entra ID\'s refresh_in wins when it comes earlier', SCENARIO, async (t) => {
  const clock = createTestClock()
  const stack = await startBrokerStack(t, { clock, simulator: { pki, refreshInSeconds: 1200 } })
  const { holder, watch } = holderOf(stack)
  const { expiresAt, refreshAt } = holder.status()
  if (expiresAt === undefined || refreshAt === undefined) throw new TypeError('no token held')
  // refresh_in is counted from issue, expires_in (3599) too: refresh at expiry - 2399 s.
  const due = expiresAt - 2_399_000
  t.ok(refreshAt <= due, 'no later than refresh_in')
  t.ok(refreshAt >= due - MAX_JITTER_MS, 'earlier only by the jitter')
  t.ok(refreshAt < expiresAt - BEFORE_MS - MAX_JITTER_MS, 'well before refresh.beforeSeconds would have it')

  const acquired = once(holder, 'acquired')
  clock.tick(refreshAt - clock.now())
  t.equal(watch.calls, 1, 'refreshed at that time')
  t.equal((await acquired)[1], true)
  t.equal(stack.simulator.entra.tokenRequests, 2)
})

t.test('refresh.beforeSeconds wins when refresh_in comes later', SCENARIO, async (t) => {
  const clock = createTestClock()
  const stack = await startBrokerStack(t, { clock, simulator: { pki, refreshInSeconds: 3300 } })
  const { holder } = holderOf(stack)
  const { expiresAt, refreshAt } = holder.status()
  if (expiresAt === undefined || refreshAt === undefined) throw new TypeError('no token held')
  t.ok(refreshAt <= expiresAt - BEFORE_MS, 'no later than expiry minus refresh.beforeSeconds')
  t.ok(refreshAt >= expiresAt - BEFORE_MS - MAX_JITTER_MS, 'earlier only by the jitter')
})

t.test('a token that lives shorter than refresh.beforeSeconds is refreshed at about half its life', SCENARIO, async (t) => {
  const clock = createTestClock()
  const stack = await startBrokerStack(t, { clock, simulator: { pki, tokenLifetimeSeconds: 300 } })
  const { holder, watch } = holderOf(stack)
  const status = holder.status()
  const token = await holder.get()
  if (status.refreshAt === undefined) throw new TypeError('no token held')
  const half = (token.expiresAt - token.acquiredAt) / 2
  t.ok(half > 149_000 && half <= 150_000, 'the token lives 300 s')
  t.ok(status.refreshAt <= token.acquiredAt + half, 'no later than half its life')
  t.ok(status.refreshAt >= token.acquiredAt + half * 0.9, 'earlier only by the jitter (10 % at most)')

  const acquired = once(holder, 'acquired')
  clock.tick(status.refreshAt - clock.now())
  t.equal(watch.calls, 1)
  const [next, refreshed] = await acquired
  t.equal(refreshed, true)
  t.equal(next.value, stack.simulator.entra.issuedTokens[1])
  t.equal(await getAlerts(stack), 200)
  t.strictSame(bearers(stack), [`Bearer ${next.value}`], 'the request carries the refreshed token')
})

t.test('on a short-lived token, a refresh_in earlier than half its life still wins', SCENARIO, async (t) => {
  const clock = createTestClock()
  const stack = await startBrokerStack(t, { clock, simulator: { pki, tokenLifetimeSeconds: 300, refreshInSeconds: 60 } })
  const { holder } = holderOf(stack)
  const { expiresAt, refreshAt } = holder.status()
  if (expiresAt === undefined || refreshAt === undefined) throw new TypeError('no token held')
  const due = expiresAt - 240_000
  t.ok(refreshAt <= due, 'no later than refresh_in (60 s), not at half the life (150 s)')
  t.ok(refreshAt >= due - 6_000, 'earlier only by the jitter')
})

t.test('requests during a refresh keep the held token, never wait and cost no token request', SCENARIO, async (t) => {
  const clock = createTestClock()
  const stack = await startBrokerStack(t, { clock, config: unlimited, simulator: { pki, perMinute: 10_000 } })
  const { holder, watch } = holderOf(stack)
  const { entra } = stack.simulator
  const firstToken = entra.issuedTokens[0]
  const { refreshAt } = holder.status()
  if (refreshAt === undefined) throw new TypeError('no token held')

  entra.setMode('hang')
  const refreshing = once(entra, 'token-request')
  clock.tick(refreshAt - clock.now())
  await refreshing

  // The refresh hangs: had any request waited on it, none would finish.
  const statuses = await Promise.all(Array.from({ length: 50 }, () => getAlerts(stack)))
  t.strictSame(new Set(statuses), new Set([200]), 'all 50 served while the refresh is pending')
  t.strictSame(new Set(bearers(stack)), new Set([`Bearer ${firstToken}`]), 'each with the held token')
  t.equal(entra.tokenRequests, 2, 'no token request beyond the pending refresh')
  t.equal(watch.calls, 1)
  t.equal(holder.status().state, 'valid')

  entra.setMode('ok')
  const failed = once(holder, 'failed')
  clock.tick(10_000)
  const [failure, retryAt] = await failed
  t.equal(failure.code, 'BrokerTokenTimeout', 'the hanging refresh timed out')
  const acquired = once(holder, 'acquired')
  clock.tick(retryAt - clock.now())
  const [token, refreshed] = await acquired
  t.equal(refreshed, true)
  t.equal(await getAlerts(stack), 200)
  t.equal(bearers(stack).at(-1), `Bearer ${token.value}`, 'the next request carries the refreshed token')
  t.equal(watch.maxInFlight, 1)
})

t.test('at most one token request in flight under load', SCENARIO, async (t) => {
  t.test('when the refresh comes due under 200 concurrent requests', async (t) => {
    const clock = createTestClock()
    const stack = await startBrokerStack(t, { clock, config: unlimited, simulator: { pki, perMinute: 10_000 } })
    const { holder, watch } = holderOf(stack)
    const { refreshAt } = holder.status()
    if (refreshAt === undefined) throw new TypeError('no token held')
    const acquired = once(holder, 'acquired')
    const load = Array.from({ length: 100 }, () => getAlerts(stack))
    clock.tick(refreshAt - clock.now())
    const more = Array.from({ length: 100 }, () => getAlerts(stack))
    const statuses = await Promise.all([...load, ...more])
    await acquired
    t.strictSame(new Set(statuses), new Set([200]), 'all 200 served')
    t.equal(stack.simulator.entra.tokenRequests, 2, 'one refresh')
    t.equal(watch.calls, 1)
    t.equal(watch.maxInFlight, 1)
  })

  t.test('when the API refused the token and 200 requests need a new one', async (t) => {
    const clock = createTestClock()
    const stack = await startBrokerStack(t, { clock, config: unlimited, simulator: { pki, perMinute: 10_000 } })
    const { holder, watch } = holderOf(stack)
    const { entra } = stack.simulator
    const refused = entra.issuedTokens[0] ?? ''
    const renewals = Array.from({ length: 20 }, () => holder.renew(refused))
    const statuses = await Promise.all(Array.from({ length: 200 }, () => getAlerts(stack)))
    const renewed = await Promise.all(renewals)
    t.equal(entra.tokenRequests, 2, 'one token request for all of them')
    t.equal(watch.calls, 1)
    t.equal(watch.maxInFlight, 1)
    t.strictSame(new Set(renewed.map((token) => token.value)), new Set([entra.issuedTokens[1]]), 'every renewal got the one new token')
    t.strictSame(new Set(statuses), new Set([200]), 'all 200 served')
    t.strictSame(new Set(bearers(stack)), new Set([`Bearer ${entra.issuedTokens[1]}`]), 'none with the refused token')
  })
})
