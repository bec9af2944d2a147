import t from 'tap'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { createTestPki } from '../src/simulator/index.js'
import type { TokenFailure } from '../src/tokens/token-error.js'
import { createTestClock, holderOf, nextFailure, startBrokerStack, startHangingTokenStack, getJson, type JsonReply } from './helpers/broker.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/
const SCOPE = 'https://api.securitycenter.microsoft.com/.default'
const pki = await createTestPki()
/** A scenario that waits on an event that never comes fails here, not at the file's timeout. */
const SCENARIO = { timeout: 20_000 }

/** `path` goes out as written: a URL would resolve encoded dot-segments first. */

function iso (ms: number | undefined): string | undefined {
  return ms === undefined ? undefined : new Date(ms).toISOString()
}

t.test('/healthz is always 200; /readyz is 503 with reasons until the first token, then 200', SCENARIO, async (t) => {
  const clock = createTestClock()
  const { stack, tokenRequested } = await startHangingTokenStack(t, { clock, simulator: { pki } })
  const holder = holderOf(stack)
  await tokenRequested

  const health = async (when: string) => {
    const reply = await getJson(stack, '/healthz')
    t.same([reply.status, reply.json], [200, { status: 'ok' }], `/healthz ${when}`)
  }
  const ready = async (when: string, status: number, body: unknown) => {
    const reply = await getJson(stack, '/readyz')
    t.same([reply.status, reply.json], [status, body], `/readyz ${when}`)
  }

  await health('while the first token request hangs')
  await ready('while the first token request hangs', 503, { status: 'not ready', reasons: { default: 'no token yet' } })

  const failed = once(holder, 'failed')
  clock.tick(10_000)
  const [, retryAt] = await failed as [TokenFailure, number]
  await health('after the token request failed')
  await ready('after the token request failed', 503, { status: 'not ready', reasons: { default: 'no token yet: BrokerTokenTimeout' } })

  stack.simulator.entra.setMode('ok')
  const acquired = once(holder, 'acquired')
  clock.tick(retryAt - clock.now())
  await acquired
  await health('with a token')
  await ready('with a token', 200, { status: 'ready' })
  t.equal(stack.simulator.defender.requests.length, 0, 'none of this went upstream')
})

t.test('/status lists every profile, its token and its last error', SCENARIO, async (t) => {
  const clock = createTestClock()
  const fabrikam = { tenantId: '22222222-2222-4000-8000-000000000003', clientId: '33333333-3333-4000-8000-000000000004' }
  const configFile = join(t.testdir(), 'broker.json')
  const stack = await startBrokerStack(t, {
    clock,
    ready: false,
    simulator: { pki, roles: ['Alert.Read.All', 'Machine.Read.All'] },
    env: { BROKER_CONFIG: configFile, BROKER_UPSTREAM: undefined },
    beforeStart: (simulator) => {
      simulator.entra.addApp({ ...fabrikam, secret: 'abc8Q~fabrikam-secret-registered-01234567', roles: ['Alert.Read.All'] })
      writeFileSync(configFile, JSON.stringify({
        profiles: [
          {
            name: 'contoso',
            basePath: '/',
            tenantId: simulator.tenantId,
            clientId: simulator.clientId,
            credential: { type: 'secret', secret: simulator.clientSecret },
            upstream: simulator.defender.url
          },
          {
            name: 'fabrikam',
            basePath: '/fabrikam',
            ...fabrikam,
            credential: { type: 'secret', secret: 'abc8Q~fabrikam-secret-not-registered-0123' },
            upstream: simulator.defender.url
          }
        ]
      }))
    }
  })
  const { entra, defender, tenantId, clientId } = stack.simulator
  const token = await holderOf(stack, 0).get()
  const [failure, retryAt] = await nextFailure(holderOf(stack, 1))
  t.equal(failure.code, 'AADSTS7000215')

  const reply = await getJson(stack, '/status')
  t.equal(reply.status, 200)
  t.match(reply.headers['content-type'], /^application\/json/)
  const body = reply.json as { time: string, profiles: Array<Record<string, unknown>> }
  t.equal(body.time, iso(clock.now()))
  t.strictSame(body.profiles.map((profile) => profile.name), ['contoso', 'fabrikam'], 'one entry per profile, in config order')
  const [contoso, fab] = body.profiles
  t.has(contoso, {
    name: 'contoso',
    basePath: '/',
    tenantId,
    clientId,
    credential: 'secret',
    cloud: 'public',
    authority: `${entra.url}/${tenantId}`,
    upstream: defender.url,
    scope: SCOPE,
    token: {
      state: 'valid',
      expiresAt: iso(token.expiresAt),
      expiresInSeconds: Math.round((token.expiresAt - clock.now()) / 1000),
      refreshAt: iso(token.refreshAt),
      roles: ['Alert.Read.All', 'Machine.Read.All']
    }
  }, 'contoso: where it points and the token it holds')
  t.equal(contoso?.lastError, undefined, 'contoso: no last error')
  t.equal(contoso?.nextAttemptAt, undefined, 'contoso: no retry pending')
  t.has(fab, {
    name: 'fabrikam',
    basePath: '/fabrikam',
    tenantId: fabrikam.tenantId,
    clientId: fabrikam.clientId,
    credential: 'secret',
    authority: `${entra.url}/${fabrikam.tenantId}`,
    upstream: defender.url,
    scope: SCOPE,
    token: { state: 'none', roles: [] },
    nextAttemptAt: iso(retryAt),
    lastError: { code: 'AADSTS7000215', message: failure.message, at: iso(failure.at) }
  }, 'fabrikam: no token, and why, with the AADSTS code')
  t.match((fab?.lastError as { message?: string }).message, /^[^\n]*AADSTS7000215: Invalid client secret provided/)

  const readyz = await getJson(stack, '/readyz')
  t.same([readyz.status, readyz.json], [503, { status: 'not ready', reasons: { fabrikam: 'no token yet: AADSTS7000215' } }],
    'not ready while one profile has no token, and the reason names it')
  t.notMatch(JSON.stringify(body), token.value, 'no token in /status')
  t.notMatch(JSON.stringify(body), /8Q~/, 'no secret in /status')
})

t.test('every response carries x-request-id', SCENARIO, async (t) => {
  const stack = await startBrokerStack(t, { simulator: { pki } })
  const replies: Array<[string, JsonReply]> = [
    ['/healthz', await getJson(stack, '/healthz')],
    ['/readyz', await getJson(stack, '/readyz')],
    ['/status', await getJson(stack, '/status')],
    ['a forwarded 200', await getJson(stack, '/api/alerts?$top=1')],
    ['a forwarded 404', await getJson(stack, '/api/nothing-here')],
    ['a refused target', await getJson(stack, '/api/%2e%2e/machines')],
    ['a misdirected Host', await getJson(stack, '/api/alerts', { host: 'attacker.example' })]
  ]
  t.same(replies.map(([, reply]) => reply.status), [200, 200, 200, 200, 404, 400, 421])
  const ids = new Set<unknown>()
  for (const [what, reply] of replies) {
    t.match(reply.headers['x-request-id'], UUID, `${what} has one`)
    ids.add(reply.headers['x-request-id'])
  }
  t.equal(ids.size, replies.length, 'each its own')
  for (const [what, reply] of replies.slice(5)) {
    t.equal((reply.json as { error: { target: unknown } }).error.target, reply.headers['x-request-id'], `${what}: the error body names it`)
  }
})

t.test('a caller\'s safe x-request-id is echoed, an unsafe one replaced', SCENARIO, async (t) => {
  const stack = await startBrokerStack(t, { simulator: { pki } })
  const safe = 'trace-42.span:7'
  for (const path of ['/healthz', '/api/alerts?$top=1', '/api/%2e%2e/machines']) {
    const reply = await getJson(stack, path, { 'x-request-id': safe })
    t.equal(reply.headers['x-request-id'], safe, `${path}: echoed`)
  }
  const refused = await getJson(stack, '/api/%2e%2e/machines', { 'x-request-id': safe })
  t.equal((refused.json as { error: { target: unknown } }).error.target, safe, 'and named in the error body')
  t.ok(stack.logs.lines.some((line) => line.reqId === safe && line.path === '/api/alerts'), 'and in the log line')

  for (const [what, unsafe] of [['spaces', 'id with spaces'], ['200 characters', 'a'.repeat(200)], ['a quote and braces', 'x"}{"level":60']] as const) {
    const reply = await getJson(stack, '/api/alerts?$top=1', { 'x-request-id': unsafe })
    t.equal(reply.status, 200)
    t.match(reply.headers['x-request-id'], UUID, `${what}: replaced by the broker's own`)
    t.notOk(stack.logs.text().includes(unsafe), `${what}: never logged`)
  }
})

t.test('the reserved names are the broker\'s whatever the method: nothing goes upstream', async (t) => {
  const stack = await startBrokerStack(t)
  const before = stack.simulator.defender.requests.length
  for (const path of ['/healthz', '/readyz', '/metrics', '/status']) {
    const res = await request(`${stack.url}${path}`, { method: 'POST', body: '{}', headers: { 'content-type': 'application/json' } })
    const id = res.headers['x-request-id']
    t.equal(res.statusCode, 404, `POST ${path}`)
    t.strictSame(await res.body.json(), {
      error: { code: 'BrokerNotFound', message: `No profile serves ${path}: check the base URL and the profiles' basePath.`, target: id }
    })
  }
  t.equal(stack.simulator.defender.requests.length, before, 'the API saw none of them')
})
