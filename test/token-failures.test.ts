import t from 'tap'
import { EventEmitter, once } from 'node:events'
import { createTestPki, type EntraMode } from '../src/simulator/index.js'
import type { TokenFailure } from '../src/tokens/token-error.js'
import type { TokenHolder } from '../src/tokens/token-holder.js'
import { createTestClock, startBrokerStack, startHangingTokenStack, holderOf, nextFailure, getJson } from './helpers/broker.js'

const SKEW_MS = 60_000
const pki = await createTestPki()
/** A scenario that waits on an event that never comes fails here, not at the file's timeout. */
const SCENARIO = { timeout: 20_000 }

/** The failure of the token call under way or just done: it may have failed before we listened. */
function retryAfterSeconds (retryAt: number, now: number): number {
  return Math.max(1, Math.ceil((retryAt - now) / 1000))
}

function tokenUnavailable (seconds: number, target: unknown) {
  return {
    error: {
      code: 'BrokerTokenUnavailable',
      message: `No valid token for profile default: Entra ID did not issue one; retry in ${seconds} s and see /status for the reason.`,
      target
    }
  }
}

/** Reports when `count` calls to the holder's get() have started, i.e. that many requests wait on a token. */
function countWaiting (holder: TokenHolder, count: number): Promise<unknown> {
  const seen = new EventEmitter()
  const get = holder.get.bind(holder)
  let calls = 0
  holder.get = () => {
    const token = get()
    if (++calls === count) seen.emit('all')
    return token
  }
  return once(seen, 'all')
}

t.test('a failed refresh serves the held token until expiry minus 60 s, then 503, then recovers by itself', SCENARIO, async (t) => {
  const clock = createTestClock()
  const stack = await startBrokerStack(t, { clock, simulator: { pki } })
  const holder = holderOf(stack)
  const { entra, defender } = stack.simulator
  const firstToken = entra.issuedTokens[0]
  const { expiresAt, refreshAt } = holder.status()
  if (expiresAt === undefined || refreshAt === undefined) throw new TypeError('no token held')
  const cutoff = expiresAt - SKEW_MS

  entra.setMode('error500')
  let failed = once(holder, 'failed')
  clock.tick(refreshAt - clock.now())
  let [failure, retryAt] = await failed as [TokenFailure, number]
  t.equal(failure.code, 'AADSTS50000', 'the refresh failed with Entra ID\'s code')
  t.equal(retryAt, holder.status().retryAt, 'a retry is scheduled')
  t.equal((await getJson(stack, '/api/alerts?$top=1')).status, 200, 'requests go on')

  let failures = 1
  while (retryAt <= cutoff) {
    failed = once(holder, 'failed')
    clock.tick(retryAt - clock.now())
    ;[failure, retryAt] = await failed as [TokenFailure, number]
    failures++
  }
  t.ok(failures >= 8, `the retries went on failing until the held token was spent (${failures} failures)`)

  clock.tick(cutoff - 1 - clock.now())
  t.equal((await getJson(stack, '/api/alerts?$top=1')).status, 200, 'served 1 ms before expiry minus 60 s')
  t.equal((await getJson(stack, '/readyz')).status, 200, 'and ready')
  t.strictSame(new Set(defender.requests.map((r) => r.headers.authorization)), new Set([`Bearer ${firstToken}`]),
    'every request so far carried the held token')

  clock.tick(1)
  const forwarded = defender.requests.length
  const refused = await getJson(stack, '/api/alerts?$top=1')
  const seconds = retryAfterSeconds(retryAt, clock.now())
  t.equal(refused.status, 503, '503 from expiry minus 60 s on')
  t.strictSame(refused.json, tokenUnavailable(seconds, refused.headers['x-request-id']), 'BrokerTokenUnavailable')
  t.equal(refused.headers['retry-after'], String(seconds), 'Retry-After says when the next attempt is due')
  t.equal(defender.requests.length, forwarded, 'the request never reached the API')
  t.strictSame((await getJson(stack, '/readyz')).json, { status: 'not ready', reasons: { default: 'token expired: AADSTS50000' } })

  entra.setMode('ok')
  const acquired = once(holder, 'acquired')
  clock.tick(retryAt - clock.now())
  const [token, refreshed] = await acquired
  t.equal(refreshed, true, 'the background retry got a token by itself')
  const served = await getJson(stack, '/api/alerts?$top=1')
  t.equal(served.status, 200, 'requests are served again')
  t.equal(defender.requests.at(-1)?.headers.authorization, `Bearer ${token.value}`, 'with the new token')
  t.strictSame((await getJson(stack, '/readyz')).json, { status: 'ready' })
  t.equal(holder.status().lastError, undefined, 'the last error is cleared')
})

t.test('retries back off from 1 s, doubling up to 5 min, with jitter in the upper half of each step', SCENARIO, async (t) => {
  const clock = createTestClock()
  const stack = await startBrokerStack(t, {
    clock, ready: false, simulator: { pki }, beforeStart: (simulator) => simulator.entra.setMode('error500')
  })
  const holder = holderOf(stack)
  const delays: number[] = []
  let [failure, retryAt] = await nextFailure(holder)
  for (let attempt = 1; attempt <= 12; attempt++) {
    delays.push(retryAt - failure.at)
    t.equal(holder.status().retryAt, retryAt, `status() shows retry ${attempt}`)
    const failed = once(holder, 'failed')
    clock.tick(retryAt - clock.now())
    ;[failure, retryAt] = await failed as [TokenFailure, number]
  }
  delays.forEach((delay, i) => {
    const step = Math.min(300_000, 1000 * 2 ** i)
    t.ok(delay >= step / 2 && delay <= step, `retry ${i + 1} after ${delay} ms, within [${step / 2}, ${step}]`)
  })
  t.ok(delays.slice(9).every((delay) => delay >= 150_000 && delay <= 300_000), 'capped at 5 min')
  t.equal(stack.simulator.entra.tokenRequests, 13, 'one token request per attempt')
  t.equal(stack.simulator.defender.requests.length, 0)
})

t.test('a token endpoint that hangs', SCENARIO, async (t) => {
  for (const [label, timeoutSeconds] of [['default 10 s', undefined], ['refresh.timeoutSeconds 3', 3]] as const) {
    t.test(`fails the call after ${label} on the injected clock; requests waiting for the first token get 503`, async (t) => {
      const clock = createTestClock()
      const { stack, tokenRequested } = await startHangingTokenStack(t, {
        clock,
        simulator: { pki },
        ...(timeoutSeconds === undefined ? {} : { config: (config) => ({ ...config, refresh: { ...config.refresh, timeoutSeconds } }) })
      })
      const holder = holderOf(stack)
      const started = clock.now()
      await tokenRequested
      const waiting = countWaiting(holder, 20)
      const replies = Promise.all(Array.from({ length: 20 }, () => getJson(stack, '/api/alerts')))
      await waiting

      const failed = once(holder, 'failed')
      clock.tick((timeoutSeconds ?? 10) * 1000)
      const [failure, retryAt] = await failed as [TokenFailure, number]
      t.strictSame(failure, {
        code: 'BrokerTokenTimeout',
        message: `the token request took longer than ${timeoutSeconds ?? 10} s`,
        at: started + (timeoutSeconds ?? 10) * 1000
      }, 'a timeout, exactly when the injected clock reached it')
      for (const reply of await replies) {
        const seconds = retryAfterSeconds(retryAt, clock.now())
        t.same([reply.status, reply.headers['retry-after'], reply.json], [503, String(seconds), tokenUnavailable(seconds, reply.headers['x-request-id'])])
      }
      t.equal(stack.simulator.entra.tokenRequests, 1, 'the 20 waiting requests shared the one token request')
      t.equal(stack.simulator.defender.requests.length, 0, 'nothing reached the API')
      t.strictSame((await getJson(stack, '/readyz')).json, { status: 'not ready', reasons: { default: 'no token yet: BrokerTokenTimeout' } })
    })
  }
})

const BAD_ANSWERS: Array<[EntraMode, string]> = [
  ['error500', 'AADSTS50000'],
  ['garbage', 'invalid_response'],
  ['empty', 'BrokerTokenInvalid'],
  ['notJwt', 'BrokerTokenInvalid'],
  ['expired', 'BrokerTokenInvalid']
]

t.test('each bad answer of the token endpoint is a failure, and no request goes out with it', SCENARIO, async (t) => {
  for (const [mode, code] of BAD_ANSWERS) {
    t.test(`${mode} for the first token: not ready, 503, nothing forwarded`, async (t) => {
      const clock = createTestClock()
      const stack = await startBrokerStack(t, {
        clock, ready: false, simulator: { pki }, beforeStart: (simulator) => simulator.entra.setMode(mode)
      })
      const holder = holderOf(stack)
      const [failure, retryAt] = await nextFailure(holder)
      t.equal(failure.code, code)
      const readyz = await getJson(stack, '/readyz')
      t.same([readyz.status, readyz.json], [503, { status: 'not ready', reasons: { default: `no token yet: ${code}` } }])
      const reply = await getJson(stack, '/api/alerts')
      const seconds = retryAfterSeconds(retryAt, clock.now())
      t.same([reply.status, reply.headers['retry-after'], reply.json], [503, String(seconds), tokenUnavailable(seconds, reply.headers['x-request-id'])])

      const failed = once(holder, 'failed')
      clock.tick(retryAt - clock.now())
      t.equal((await failed)[0].code, code, 'the retry fails alike')
      t.equal((await getJson(stack, '/api/alerts')).status, 503)
      t.equal(holder.status().state, 'none')
      t.equal(stack.simulator.defender.requests.length, 0, 'the API never received a request')
    })

    t.test(`${mode} on refresh: the held token is kept, the bad one never sent`, async (t) => {
      const clock = createTestClock()
      const stack = await startBrokerStack(t, { clock, simulator: { pki } })
      const holder = holderOf(stack)
      const { entra, defender } = stack.simulator
      const held = entra.issuedTokens[0]
      const { refreshAt } = holder.status()
      if (refreshAt === undefined) throw new TypeError('no token held')
      entra.setMode(mode)
      const failed = once(holder, 'failed')
      clock.tick(refreshAt - clock.now())
      t.equal((await failed)[0].code, code)
      t.equal((await getJson(stack, '/api/alerts?$top=1')).status, 200)
      t.equal((await getJson(stack, '/readyz')).status, 200, 'still ready: the held token is valid')
      t.equal(holder.status().state, 'valid')
      t.strictSame(defender.requests.map((r) => r.headers.authorization), [`Bearer ${held}`], 'the API only saw the held token')
      t.equal(entra.issuedTokens.length, ['notJwt', 'expired'].includes(mode) ? 2 : 1, 'whatever the endpoint handed out was dropped')
    })
  }
})

t.test('a wrong secret fails with AADSTS7000215, shown in /status and logged with a hint', SCENARIO, async (t) => {
  const clock = createTestClock()
  const stack = await startBrokerStack(t, {
    clock,
    ready: false,
    simulator: { pki },
    beforeStart: (simulator) => simulator.entra.setSecret(simulator.clientId, 'abc8Q~a-different-secret-0123456789abcde')
  })
  const holder = holderOf(stack)
  const [failure, retryAt] = await nextFailure(holder)
  t.equal(failure.code, 'AADSTS7000215')
  t.match(failure.message, /AADSTS7000215: Invalid client secret provided/)

  const status = await getJson(stack, '/status')
  const profile = (status.json as { profiles: Array<Record<string, unknown>> }).profiles[0]
  t.strictSame(profile?.lastError, {
    code: 'AADSTS7000215',
    message: failure.message,
    at: new Date(failure.at).toISOString(),
    hint: 'the client secret is wrong: use the secret\'s Value, not its Secret ID'
  })
  t.equal(profile?.nextAttemptAt, new Date(retryAt).toISOString())
  t.strictSame(profile?.token, { state: 'none', roles: [] })

  const lines = stack.logs.lines.filter((line) => line.msg === 'token request failed')
  t.equal(lines.length, 1, 'one line per failed call')
  t.strictSame(lines[0], {
    level: 40,
    time: lines[0]?.time,
    profile: 'default',
    code: 'AADSTS7000215',
    error: failure.message,
    hint: 'the client secret is wrong: use the secret\'s Value, not its Secret ID',
    retryAt: new Date(retryAt).toISOString(),
    msg: 'token request failed'
  })
  const readyz = await getJson(stack, '/readyz')
  t.same([readyz.status, readyz.json], [503, { status: 'not ready', reasons: { default: 'no token yet: AADSTS7000215' } }])
  t.equal(stack.simulator.defender.requests.length, 0)
})

t.test('a tenant where the app is not consented: AADSTS700016, and the consent link in /status and the log', SCENARIO, async (t) => {
  const customer = '5b7c9d1e-2f3a-4b5c-8d6e-7f8091a2b3c4'
  const stack = await startBrokerStack(t, {
    ready: false,
    simulator: { pki, unconsented: [{ tenantId: customer }] },
    env: { AZURE_TENANT_ID: customer }
  })
  const { entra, clientId } = stack.simulator
  const link = `${entra.url}/${customer}/adminconsent?client_id=${clientId}`
  const [failure, retryAt] = await nextFailure(holderOf(stack))
  t.equal(failure.code, 'AADSTS700016')
  t.match(failure.message, `AADSTS700016: Application with identifier '${clientId}' was not found in the directory '${customer}'. ` +
    'This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.')
  const hint = `the app is not in this tenant: if it is a multi-tenant (partner) app, an admin of this tenant must consent to it: open ${link}; ` +
    'otherwise the client id or the tenant id is wrong'

  const status = await getJson(stack, '/status')
  const profile = (status.json as { profiles: Array<Record<string, unknown>> }).profiles[0]
  t.strictSame(profile?.lastError, { code: 'AADSTS700016', message: failure.message, at: new Date(failure.at).toISOString(), hint }, '/status: the hint with the link')

  const lines = stack.logs.lines.filter((line) => line.msg === 'token request failed')
  t.match(lines[0], { profile: 'default', code: 'AADSTS700016', hint, retryAt: new Date(retryAt).toISOString() }, 'the log line: the same hint')
  t.notOk(JSON.stringify(status.json).includes(stack.simulator.clientSecret), 'no secret in /status')
  t.notOk(JSON.stringify(stack.logs.lines).includes(stack.simulator.clientSecret), 'no secret in the log')
})
