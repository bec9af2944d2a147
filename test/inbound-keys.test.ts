import t, { type Test } from 'tap'
import { getGlobalDispatcher, type Dispatcher } from 'undici'
import { startBrokerStack, ALL_ROLES } from './helpers/broker.js'
import { clientFor, newClientKey, sha256, withProfiles } from './helpers/profiles.js'
import { startUpstream } from './helpers/upstream.js'

// Client keys, end to end: who gets in, what everyone else sees, and where a key never goes.

const key = newClientKey()
const otherKey = newClientKey()

const upstream = await startUpstream(t)
const fabrikamUpstream = await startUpstream(t)
const stack = await startBrokerStack(t, {
  simulator: { roles: ALL_ROLES },
  env: { BROKER_UPSTREAM: upstream.url },
  config: (c) => withProfiles(c, [{ name: 'fabrikam', basePath: '/fabrikam', upstream: fabrikamUpstream.url }], [
    clientFor('soar', key),
    clientFor('notebook', otherKey, { profiles: ['fabrikam'] })
  ])
})

/** Every response the clients got, headers and bodies, for the canary search at the end. */
const received: string[] = []

async function send (path: string, headers: Record<string, string> = {}, method: Dispatcher.HttpMethod = 'GET') {
  const res = await getGlobalDispatcher().request({ origin: stack.url, path, method, headers })
  const text = await res.body.text()
  received.push(`${res.statusCode} ${JSON.stringify(res.headers)}\n${text}`)
  return { status: res.statusCode, headers: res.headers, text }
}

const UNAUTHENTICATED = {
  code: 'BrokerUnauthenticated',
  message: 'A valid broker client key is required: send it as "Authorization: Bearer <key>" or "X-Broker-Key: <key>".'
}

/** The one answer anyone without a valid key gets: nothing in it tells a near miss from a wild guess. */
function assertUnauthenticated (t: Test, response: { status: number, headers: Record<string, unknown>, text: string }, what: string) {
  t.equal(response.status, 401, `${what}: 401`)
  t.strictSame(JSON.parse(response.text), { error: { ...UNAUTHENTICATED, target: response.headers['x-request-id'] } }, `${what}: the whole body`)
  return response.text.replace(String(response.headers['x-request-id']), '<id>')
}

t.test('no key, a wrong key, a key of another length or form: one identical 401, nothing forwarded', async (t) => {
  const before = upstream.requests.length + fabrikamUpstream.requests.length
  const wrongSameLength = key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A')
  const cases: Array<[string, Record<string, string>]> = [
    ['no key at all', {}],
    ['a wrong key of the same length, as Bearer', { authorization: `Bearer ${wrongSameLength}` }],
    ['a wrong key of the same length, as X-Broker-Key', { 'x-broker-key': wrongSameLength }],
    ['a key one byte short', { authorization: `Bearer ${key.slice(0, -1)}` }],
    ['the key with a byte more', { authorization: `Bearer ${key}x` }],
    ['a 4 KiB key', { 'x-broker-key': 'k'.repeat(4096) }],
    ['a one-byte key', { 'x-broker-key': 'k' }],
    ['an empty Bearer', { authorization: 'Bearer ' }],
    ['an empty X-Broker-Key', { 'x-broker-key': '' }],
    ['the key in another scheme', { authorization: `Basic ${Buffer.from(`soar:${key}`).toString('base64')}` }],
    ['the key with no scheme', { authorization: key }],
    ['the key\'s SHA-256 instead of the key', { 'x-broker-key': sha256(key) }],
    ['the key in upper case', { 'x-broker-key': key.toUpperCase() }],
    ['a wrong X-Broker-Key next to the right Bearer (X-Broker-Key wins)', { 'x-broker-key': otherKey + 'x', authorization: `Bearer ${key}` }]
  ]
  const bodies = new Set<string>()
  const lengths = new Set<string>()
  for (const [what, headers] of cases) {
    const response = await send('/api/alerts', headers)
    bodies.add(assertUnauthenticated(t, response, what))
    lengths.add(String(response.headers['content-length']))
    t.equal(response.headers['www-authenticate'], undefined, `${what}: no challenge that names a scheme`)
  }
  const query = await send(`/api/alerts?key=${key}&access_token=${key}`)
  bodies.add(assertUnauthenticated(t, query, 'the key in the query string'))
  t.equal(bodies.size, 1, 'every body is the same but for its request id')
  t.equal(lengths.size, 1, 'and of the same length')
  t.equal(upstream.requests.length + fabrikamUpstream.requests.length, before, 'nothing reached an upstream')
  t.equal((await send('/healthz')).status, 200, 'the broker still serves')
})

t.test('the right key, as Bearer or as X-Broker-Key: forwarded with the broker\'s token, never with the key', async (t) => {
  const token = (await stack.app.profiles[0]?.tokens.get())?.value
  const forms: Array<Record<string, string>> = [{ authorization: `Bearer ${key}` }, { 'x-broker-key': key }, { authorization: `bearer ${key}` }, { 'X-Broker-Key': key }]
  for (const headers of forms) {
    const before = upstream.requests.length
    const response = await send('/api/alerts?$top=1', headers)
    const what = Object.entries(headers)[0]?.join(': ').replace(key, '<key>')
    t.equal(response.status, 200, `${what}: 200`)
    const seen = upstream.requests[before]
    t.equal(seen?.headers.authorization, `Bearer ${token}`, `${what}: the upstream got the broker's token`)
    t.equal(seen?.headers['x-broker-key'], undefined, `${what}: and no X-Broker-Key`)
    t.notOk(seen?.rawHeaders.some((value) => value.includes(key)), `${what}: the key is in no header the upstream saw`)
  }
})

t.test('a forwarded request leaves no trace of its key in the logs', async (t) => {
  const response = await send('/api/alerts', { 'x-broker-key': key, 'x-tool-note': 'hello' })
  t.equal(response.status, 200)
  t.notOk(stack.logs.text().includes(key), 'no log line holds the key')
})

t.test('probes need no key; /status and /metrics do', async (t) => {
  t.equal((await send('/healthz')).status, 200, '/healthz without a key')
  t.equal((await send('/readyz')).status, 200, '/readyz without a key')
  assertUnauthenticated(t, await send('/status'), '/status without a key')
  assertUnauthenticated(t, await send('/metrics'), '/metrics without a key')
  assertUnauthenticated(t, await send('/status', { authorization: 'Bearer wrong' }), '/status with a wrong key')
  const status = await send('/status', { authorization: `Bearer ${key}` })
  t.equal(status.status, 200, '/status with the key')
  t.notOk(status.text.includes(key), '/status does not hold the key')
  const metrics = await send('/metrics', { 'x-broker-key': key })
  t.equal(metrics.status, 200, '/metrics with the key')
  t.match(metrics.text, /BrokerUnauthenticated/, 'the refusals are counted by reason')
})

t.test('a client limited to some profiles', async (t) => {
  const before = upstream.requests.length
  const refused = await send('/api/alerts', { 'x-broker-key': otherKey })
  t.equal(refused.status, 403)
  t.strictSame(JSON.parse(refused.text), {
    error: {
      code: 'BrokerForbidden',
      message: 'The request is not allowed: client notebook may not use profile default.',
      target: refused.headers['x-request-id']
    }
  })
  t.equal(upstream.requests.length, before, 'nothing reached the profile it may not use')
  const allowed = await send('/fabrikam/api/alerts', { 'x-broker-key': otherKey })
  t.equal(allowed.status, 200, 'its own profile serves it')
  t.equal(fabrikamUpstream.requests.at(-1)?.url, '/api/alerts')
  t.equal((await send('/fabrikam/api/alerts', { 'x-broker-key': key })).status, 200, 'a client with no profiles listed may use every profile')
})

t.test('keys, right or wrong, appear in no log line and no response', async (t) => {
  const logs = stack.logs.text()
  t.ok(stack.logs.lines.some((line) => line.client === 'soar'), 'clients are logged by name')
  t.ok(stack.logs.lines.some((line) => line.client === 'notebook'))
  for (const [name, value] of Object.entries({ key, otherKey, 'the key\'s digest': sha256(key) })) {
    t.notOk(logs.includes(value), `${name}: in no log line`)
    t.notOk(received.join('\n').includes(value), `${name}: in no response`)
  }
  const upstreamSaw = JSON.stringify([...upstream.requests, ...fabrikamUpstream.requests].map((r) => r.rawHeaders))
  t.notOk(upstreamSaw.includes(key) || upstreamSaw.includes(otherKey), 'in no header an upstream saw')
})
