import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { getGlobalDispatcher, type Dispatcher } from 'undici'
import { startBrokerStack, ALL_ROLES } from './helpers/broker.js'
import { clientFor, withProfiles } from './helpers/profiles.js'
import { startUpstream } from './helpers/upstream.js'

// Rules on clients and profiles, end to end: a request must pass both, whatever spelling of
// the path it uses, and a refusal names the rule set that refused it, never the rules.

const keys = { soar: randomBytes(24).toString('base64url'), reader: randomBytes(24).toString('base64url'), free: randomBytes(24).toString('base64url') }
const CLIENT_RULES = {
  soar: ['GET /api/alerts/**', 'POST /api/machines/*/isolate'],
  reader: ['GET /api/**', 'POST /api/machines/*/unisolate']
}
const READ_ONLY = ['GET /api/**']

const upstream = await startUpstream(t)
const readOnlyUpstream = await startUpstream(t)
const stack = await startBrokerStack(t, {
  simulator: { roles: ALL_ROLES },
  env: { BROKER_UPSTREAM: upstream.url },
  config: (c) => withProfiles(c, [{ name: 'auditors', basePath: '/auditors', upstream: readOnlyUpstream.url, allow: READ_ONLY }], [
    clientFor('soar', keys.soar, { profiles: ['default'], allow: CLIENT_RULES.soar }),
    clientFor('reader', keys.reader, { allow: CLIENT_RULES.reader }),
    clientFor('free', keys.free)
  ])
})

type ClientName = keyof typeof keys

async function send (client: ClientName, method: Dispatcher.HttpMethod, path: string) {
  const res = await getGlobalDispatcher().request({
    origin: stack.url,
    path,
    method,
    headers: { 'x-broker-key': keys[client], ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
    body: method === 'POST' ? '{"Comment":"rules","IsolationType":"Full"}' : null
  })
  return { status: res.statusCode, id: res.headers['x-request-id'], text: await res.body.text() }
}

function seenCount (): number {
  return upstream.requests.length + readOnlyUpstream.requests.length
}

async function assertForwarded (t: Test, client: ClientName, method: Dispatcher.HttpMethod, path: string) {
  const readOnly = path.startsWith('/auditors/')
  const target = readOnly ? readOnlyUpstream : upstream
  const before = target.requests.length
  const response = await send(client, method, path)
  const what = `${client} ${method} ${path}`
  t.equal(response.status, 200, `${what}: forwarded`)
  t.equal(target.requests.length, before + 1, `${what}: one request upstream`)
  t.equal(target.requests.at(-1)?.method, method)
  t.equal(target.requests.at(-1)?.url, readOnly ? path.slice('/auditors'.length) : path, `${what}: arrived as sent`)
}

async function assertForbidden (t: Test, client: ClientName, method: Dispatcher.HttpMethod, path: string, refusedBy: string) {
  const before = seenCount()
  const response = await send(client, method, path)
  const what = `${client} ${method} ${path}`
  t.equal(response.status, 403, `${what}: 403`)
  t.strictSame(JSON.parse(response.text), {
    error: { code: 'BrokerForbidden', message: `The request is not allowed: ${refusedBy}.`, target: response.id }
  }, `${what}: the whole body, naming ${refusedBy.replace(/^the /, '')}`)
  for (const rule of [...CLIENT_RULES.soar, ...CLIENT_RULES.reader, ...READ_ONLY]) {
    if (response.text.includes(rule)) t.fail(`${what}: the answer gives away the rule ${rule}`)
  }
  t.equal(seenCount(), before, `${what}: nothing forwarded`)
}

t.test('a client\'s rules: what they name passes, nothing else does', async (t) => {
  await assertForwarded(t, 'soar', 'GET', '/api/alerts/da637')
  await assertForwarded(t, 'soar', 'HEAD', '/api/alerts/da637')
  await assertForwarded(t, 'soar', 'POST', '/api/machines/abc/isolate')
  await assertForbidden(t, 'soar', 'GET', '/api/machines', 'the rules of client soar do not allow it')
  await assertForbidden(t, 'soar', 'POST', '/api/machines/abc/unisolate', 'the rules of client soar do not allow it')
  await assertForbidden(t, 'soar', 'DELETE', '/api/alerts/da637', 'the rules of client soar do not allow it')
  await assertForbidden(t, 'soar', 'POST', '/api/machines/abc/def/isolate', 'the rules of client soar do not allow it')
  await assertForbidden(t, 'soar', 'POST', '/api/machines/isolate', 'the rules of client soar do not allow it')
  await assertForbidden(t, 'soar', 'POST', '/api/machines/abc/isolate/', 'the rules of client soar do not allow it')
  await assertForbidden(t, 'soar', 'POST', '/api/machines/abc/isolate;x', 'the rules of client soar do not allow it')
  await assertForbidden(t, 'soar', 'POST', '/api/machines/abc/isolate.json', 'the rules of client soar do not allow it')
})

t.test('encoded paths: the rules see the path the API will see', async (t) => {
  // The API decodes %61 to a: isol%61te is isolate, and only a client allowed to isolate may send it.
  await assertForbidden(t, 'reader', 'POST', '/api/machines/x/isol%61te', 'the rules of client reader do not allow it')
  await assertForbidden(t, 'reader', 'POST', '/api/machines/x/%69%73%6f%6c%61%74%65', 'the rules of client reader do not allow it')
  await assertForbidden(t, 'reader', 'POST', '/api/machines/x/ISOLATE', 'the rules of client reader do not allow it')
  await assertForbidden(t, 'reader', 'POST', '/%61pi/machines/x/isolate', 'the rules of client reader do not allow it')
  await assertForbidden(t, 'reader', 'POST', '/api/machines/x/unisol%61te%20', 'the rules of client reader do not allow it')
  await assertForwarded(t, 'reader', 'POST', '/api/machines/x/unisol%61te')
  await assertForwarded(t, 'reader', 'POST', '/API/Machines/x/UnIsolate')
  await assertForwarded(t, 'soar', 'POST', '/api/machines/x/isol%61te')
  await assertForwarded(t, 'soar', 'GET', '/api/%61lerts/x')
  // An encoded / or dot-segment never reaches the rules: the request target check refuses it first.
  for (const path of ['/api/alerts%2f..%2fmachines/x/isolate', '/api/alerts/%2e%2e/machines/x/isolate', '/api/alerts/..%2Fmachines']) {
    const before = seenCount()
    const response = await send('soar', 'POST', path)
    t.equal(response.status, 400, `${path}: 400`)
    t.equal(JSON.parse(response.text).error.code, 'BrokerBadRequestTarget')
    t.equal(seenCount(), before, `${path}: nothing forwarded`)
  }
})

t.test('a client limited to a profile may not use another', async (t) => {
  await assertForbidden(t, 'soar', 'GET', '/auditors/api/alerts/x', 'client soar may not use profile auditors')
})

t.test('a read-only profile (allow: ["GET /api/**"]) refuses every write, whoever asks', async (t) => {
  for (const client of ['free', 'reader'] as const) {
    await assertForwarded(t, client, 'GET', '/auditors/api/alerts')
    await assertForwarded(t, client, 'HEAD', '/auditors/api/machines')
  }
  // A client with no rules of its own: the profile's rules alone decide.
  await assertForbidden(t, 'free', 'POST', '/auditors/api/machines/x/isolate', 'the rules of profile auditors do not allow it')
  await assertForbidden(t, 'free', 'POST', '/auditors/api/advancedqueries/run', 'the rules of profile auditors do not allow it')
  await assertForbidden(t, 'free', 'DELETE', '/auditors/api/indicators/1', 'the rules of profile auditors do not allow it')
  await assertForbidden(t, 'free', 'PATCH', '/auditors/api/alerts/1', 'the rules of profile auditors do not allow it')
  await assertForbidden(t, 'free', 'GET', '/auditors/other', 'the rules of profile auditors do not allow it')
  await assertForbidden(t, 'free', 'POST', '/auditors/api/machines/x/isol%61te', 'the rules of profile auditors do not allow it')
  // The client's rules allow unisolate; the profile's do not: both must agree.
  await assertForbidden(t, 'reader', 'POST', '/auditors/api/machines/x/unisolate', 'the rules of profile auditors do not allow it')
  // And the other way round: the client's rules refuse first, and say so.
  await assertForbidden(t, 'reader', 'GET', '/auditors/other', 'the rules of client reader do not allow it')
})

t.test('the broker still serves, and its refusals are counted', async (t) => {
  const metrics = await getGlobalDispatcher().request({ origin: stack.url, path: '/metrics', method: 'GET', headers: { 'x-broker-key': keys.free } })
  t.equal(metrics.statusCode, 200)
  t.match(await metrics.body.text(), /BrokerForbidden/)
  await assertForwarded(t, 'free', 'GET', '/api/alerts')
})
