import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import t from 'tap'
import { request } from 'undici'
import { REPLAYABLE_BODY_LIMIT } from '../src/proxy/request-body.js'
import { createTestPki } from '../src/simulator/index.js'
import { ALL_ROLES, createTestClock, startBrokerStack } from './helpers/broker.js'
import { withProfiles } from './helpers/profiles.js'
import { readBody, startUpstream } from './helpers/upstream.js'

/** A scenario that waits on an event that never comes fails here, not at the file's timeout. */
const SCENARIO = { timeout: 15_000 }
const pki = await createTestPki()
const clock = createTestClock()
/** refresh.after401Seconds: at most one token request set off by 401s per profile in this time. */
const AFTER_401_SECONDS = 20

/** Tokens the custom upstream refuses, as the API refuses a revoked one. */
const refused = new Set<string>()
/** While set, 401s are held back until this many have been asked for, then all sent at once. */
let gather: { count: number, held: Array<() => void> } | undefined

function unauthorized (res: ServerResponse, id: string): void {
  res.writeHead(401, { 'content-type': 'application/json; charset=utf-8', 'www-authenticate': 'Bearer error="invalid_token"', 'request-id': id })
  res.end(JSON.stringify({ error: { code: 'Unauthorized', message: 'Authorization has been denied for this request.', target: id } }))
}

const custom = await startUpstream(t, (req, res, recorded) => {
  readBody(req, recorded).then((body) => {
    const token = (req.headers.authorization ?? '').replace(/^Bearer /, '')
    if (!refused.has(token)) {
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' })
      return res.end(JSON.stringify({ value: [], bytes: body.length }))
    }
    const id = `upstream-${custom.requests.length}`
    if (gather === undefined) return unauthorized(res, id)
    gather.held.push(() => unauthorized(res, id))
    if (gather.held.length === gather.count) for (const send of gather.held) send()
  }, () => res.destroy())
})

const stack = await startBrokerStack(t, {
  clock,
  simulator: { pki, roles: ALL_ROLES },
  config: (c) => ({
    ...withProfiles(c, [{ name: 'custom', basePath: '/custom', upstream: custom.url }]),
    refresh: { ...c.refresh, after401Seconds: AFTER_401_SECONDS }
  })
})
const { entra, defender } = stack.simulator
const [main, other] = stack.app.profiles
if (main === undefined || other === undefined) throw new TypeError('two profiles expected')

function bearer (authorization: string | undefined): string {
  return (authorization ?? '').replace(/^Bearer /, '')
}

/** Each scenario starts past the last one's 401-triggered token request. */
t.afterEach(async () => {
  await clock.tickAsync(AFTER_401_SECONDS * 1000)
})

t.test('one 401: the token is dropped, one fresh one fetched, the request replayed once', SCENARIO, async (t) => {
  const old = (await main.tokens.get()).value
  const tokenRequests = entra.tokenRequests
  const sent = defender.requests.length
  defender.forceNext(401)
  const res = await request(`${stack.url}/api/alerts?$top=2`)
  const body = await res.body.json() as { value: unknown[] }
  t.equal(res.statusCode, 200, 'the client never sees the 401')
  t.equal(body.value.length, 2)
  t.equal(entra.tokenRequests, tokenRequests + 1, 'exactly one token request')
  const seen = defender.requests.slice(sent)
  t.equal(seen.length, 2, 'the request went up twice')
  t.equal(bearer(seen[0]?.headers.authorization), old, 'first with the refused token')
  const fresh = (await main.tokens.get()).value
  t.not(fresh, old, 'the profile holds a new token')
  t.equal(fresh, entra.issuedTokens.at(-1))
  t.equal(bearer(seen[1]?.headers.authorization), fresh, 'the replay carries the new one')
  t.equal(seen[1]?.url, '/api/alerts?$top=2', 'the same request')

  const next = await request(`${stack.url}/api/alerts`)
  await next.body.dump()
  t.equal(bearer(defender.requests.at(-1)?.headers.authorization), fresh, 'later requests carry it too')
  t.equal(entra.tokenRequests, tokenRequests + 1)
})

t.test('two 401s: the second is passed back as the API sent it, after one token request', SCENARIO, async (t) => {
  const tokenRequests = entra.tokenRequests
  const sent = defender.requests.length
  const challenge = { 'www-authenticate': 'Bearer error="invalid_token"' }
  defender.forceNext(401, { headers: challenge })
  defender.forceNext(401, { headers: challenge })
  const res = await request(`${stack.url}/api/machines`)
  const body = await res.body.json()
  t.equal(res.statusCode, 401)
  t.equal(res.headers['www-authenticate'], challenge['www-authenticate'])
  t.strictSame(body, { error: { code: 'Unauthorized', message: 'Forced 401 response.', target: res.headers['request-id'] } },
    'the API\'s own error body, its target the API\'s request id')
  t.not(res.headers['x-request-id'], res.headers['request-id'], 'the broker\'s own id beside it')
  t.equal(defender.requests.length - sent, 2, 'one replay, no more')
  t.equal(entra.tokenRequests, tokenRequests + 1, 'one token request')
})

t.test('concurrent 401s from many requests share one token request', SCENARIO, async (t) => {
  const old = (await other.tokens.get()).value
  refused.add(old)
  const count = 30
  gather = { count, held: [] }
  t.teardown(() => { gather = undefined })
  const tokenRequests = entra.tokenRequests
  const sent = custom.requests.length
  const responses = await Promise.all(Array.from({ length: count }, async (_, i) => {
    const res = await request(`${stack.url}/custom/api/alerts?n=${i}`)
    await res.body.dump()
    return res.statusCode
  }))
  t.strictSame(new Set(responses), new Set([200]), 'every request served')
  t.equal(entra.tokenRequests, tokenRequests + 1, 'one token request for all of them')
  const seen = custom.requests.slice(sent)
  const fresh = (await other.tokens.get()).value
  t.equal(seen.length, count * 2, 'each went up twice')
  t.equal(seen.filter((r) => bearer(r.headers.authorization) === old).length, count, 'each once with the refused token')
  t.equal(seen.filter((r) => bearer(r.headers.authorization) === fresh).length, count, 'and once with the one new token')
  t.equal(bearer(defender.requests.at(-1)?.headers.authorization), (await main.tokens.get()).value, 'the other profile kept its token')
})

t.test('a POST with a small JSON body is replayed with the same body', SCENARIO, async (t) => {
  const machine = defender.data.machines[0]?.id as string
  const body = '{"Comment":"isolate after a 401","IsolationType":"Selective"}'
  const tokenRequests = entra.tokenRequests
  const sent = defender.requests.length
  const actions = defender.machineActions.length
  defender.forceNext(401)
  const res = await request(`${stack.url}/api/machines/${machine}/isolate`, { method: 'POST', body, headers: { 'content-type': 'application/json' } })
  const action = await res.body.json() as { type: string, requestorComment: string, machineId: string }
  t.equal(res.statusCode, 201)
  t.match(action, { type: 'Isolate', requestorComment: 'isolate after a 401', machineId: machine })
  t.equal(defender.machineActions.length, actions + 1, 'one machine action: the refused request did nothing')
  const seen = defender.requests.slice(sent)
  t.strictSame(seen.map((r) => [r.method, r.body, r.headers['content-length']]), [
    ['POST', body, String(body.length)],
    ['POST', body, String(body.length)]
  ], 'the replay carries the same body')
  t.equal(entra.tokenRequests, tokenRequests + 1)
})

t.test('a body the broker did not keep is not replayed: the 401 is passed back', SCENARIO, async (t) => {
  const bodies: Array<[string, () => Buffer | Readable, number]> = [
    ['a body over 1 MiB', () => Buffer.alloc(REPLAYABLE_BODY_LIMIT + 1, 'a'), REPLAYABLE_BODY_LIMIT + 1],
    ['a chunked body', () => Readable.from([Buffer.from('{"Query":'), Buffer.from('"DeviceInfo"}')]), Buffer.byteLength('{"Query":"DeviceInfo"}')]
  ]
  for (const [name, body, length] of bodies) {
    const old = (await other.tokens.get()).value
    refused.add(old)
    const tokenRequests = entra.tokenRequests
    const sent = custom.requests.length
    const res = await request(`${stack.url}/custom/api/libraryfiles`, { method: 'POST', body: body() })
    const answer = await res.body.json()
    t.equal(res.statusCode, 401, `${name}: the API's 401`)
    t.strictSame(answer, {
      error: { code: 'Unauthorized', message: 'Authorization has been denied for this request.', target: res.headers['request-id'] }
    }, `${name}: passed back whole`)
    t.equal(res.headers['www-authenticate'], 'Bearer error="invalid_token"')
    const seen = custom.requests.slice(sent)
    t.equal(seen.length, 1, `${name}: sent once`)
    t.equal(seen[0]?.body.length, length, `${name}: whole`)

    const next = await request(`${stack.url}/custom/api/alerts`)
    await next.body.dump()
    t.equal(next.statusCode, 200, `${name}: the next request is served`)
    t.equal(custom.requests.length - sent, 2, `${name}: at its first try: the refused token was replaced meanwhile`)
    t.not(bearer(custom.requests.at(-1)?.headers.authorization), old)
    t.equal(entra.tokenRequests, tokenRequests + 1, `${name}: with one token request`)
    await clock.tickAsync(AFTER_401_SECONDS * 1000)
  }
})

t.test('no fresh token to be had: 503 BrokerTokenUnavailable, and the held token keeps serving until a replacement exists', SCENARIO, async (t) => {
  const old = (await main.tokens.get()).value
  entra.setMode('error500')
  t.teardown(() => entra.setMode('ok'))
  const tokenRequests = entra.tokenRequests
  const sent = defender.requests.length
  defender.forceNext(401)
  const res = await request(`${stack.url}/api/alerts`)
  const body = await res.body.json()
  t.equal(res.statusCode, 503)
  t.match(res.headers['retry-after'], /^\d+$/)
  t.strictSame(body, {
    error: {
      code: 'BrokerTokenUnavailable',
      message: `No valid token for profile default: Entra ID did not issue one; retry in ${res.headers['retry-after']} s and see /status for the reason.`,
      target: res.headers['x-request-id']
    }
  })
  t.equal(defender.requests.length - sent, 1, 'no replay without a fresh token')
  t.equal(entra.tokenRequests, tokenRequests + 1, 'one token request, refused')

  const again = await request(`${stack.url}/api/alerts`)
  await again.body.dump()
  t.equal(again.statusCode, 200, 'the next request is served: the held token was kept')
  t.equal(bearer(defender.requests.at(-1)?.headers.authorization), old, 'with the held token')
  t.match(main.tokens.status(), { state: 'valid' }, '/status: the held token is valid')
  t.equal(entra.tokenRequests, tokenRequests + 1, 'no token request for it')

  // The holder's own retry replaces the token once Entra ID answers again.
  entra.setMode('ok')
  const acquired = once(main.tokens, 'acquired')
  await clock.tickAsync((main.tokens.status().retryAt ?? clock.now()) - clock.now())
  await acquired
  t.not((await main.tokens.get()).value, old, 'replaced by the scheduled retry')
})

t.test(`at most one 401-triggered token request per refresh.after401Seconds (${AFTER_401_SECONDS} s): a 401 within it is passed back`, SCENARIO, async (t) => {
  const tokenRequests = entra.tokenRequests
  const sent = defender.requests.length
  defender.forceNext(401)
  const first = await request(`${stack.url}/api/alerts`)
  await first.body.dump()
  t.equal(first.statusCode, 200, 'the first 401: a fresh token and a replay')
  t.equal(entra.tokenRequests, tokenRequests + 1)
  const fresh = (await main.tokens.get()).value

  await clock.tickAsync(AFTER_401_SECONDS * 1000 - 1)
  defender.forceNext(401)
  const second = await request(`${stack.url}/api/alerts`)
  const body = await second.body.json()
  t.equal(second.statusCode, 401, 'a 401 within the window is passed back')
  t.strictSame(body, { error: { code: 'Unauthorized', message: 'Forced 401 response.', target: second.headers['request-id'] } }, 'as the API sent it')
  t.equal(entra.tokenRequests, tokenRequests + 1, 'no token request for it')
  t.equal(defender.requests.length - sent, 3, 'no replay')
  t.equal((await main.tokens.get()).value, fresh, 'the held token is kept')

  await clock.tickAsync(1)
  defender.forceNext(401)
  const third = await request(`${stack.url}/api/alerts`)
  await third.body.dump()
  t.equal(third.statusCode, 200, 'once the window has passed, a 401 gets a fresh token and a replay again')
  t.equal(entra.tokenRequests, tokenRequests + 2)
  t.equal(defender.requests.length - sent, 5)
})
