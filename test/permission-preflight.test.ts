import t, { type Test } from 'tap'
import { getGlobalDispatcher, type Dispatcher } from 'undici'
import { createTestPki } from '../src/simulator/index.js'
import { startBrokerStack } from './helpers/broker.js'
import { samplePath } from './helpers/defender-client.js'

const pki = await createTestPki()
/** Alerts through the write permission (which also allows reading them), and indicators: nothing on machines, no hunting. */
const ROLES = ['Alert.ReadWrite.All', 'Ti.ReadWrite']
const stack = await startBrokerStack(t, { simulator: { pki, roles: ROLES } })
const { defender, entra } = stack.simulator
const machine = defender.data.machines[0]?.id as string

/** The path goes out exactly as given: `request(url)` would normalise it. */
function send (method: Dispatcher.HttpMethod, path: string, body?: string) {
  return getGlobalDispatcher().request({
    origin: stack.url,
    path,
    method,
    ...(body === undefined ? {} : { body, headers: { 'content-type': 'application/json' } })
  })
}

async function assertMissing (t: Test, method: Dispatcher.HttpMethod, path: string, action: string, permission: string, body?: string) {
  const sent = defender.requests.length
  const res = await send(method, path, body)
  const name = `${method} ${path}`
  t.equal(res.statusCode, 403, name)
  t.equal(res.headers['content-type'], 'application/json; charset=utf-8')
  const answer = method === 'HEAD' ? (await res.body.dump(), undefined) : await res.body.json()
  if (method !== 'HEAD') {
    t.strictSame(answer, {
      error: {
        code: 'BrokerMissingPermission',
        message: `The app lacks the permission for ${action}: grant the WindowsDefenderATP application permission ${permission} and grant admin consent.`,
        target: res.headers['x-request-id']
      }
    }, `${name}: names the permission and admin consent`)
  }
  t.equal(defender.requests.length, sent, `${name}: the API is not called`)
}

t.test('the token holds the roles the simulator gave the app', async (t) => {
  const token = await stack.app.profiles[0]?.tokens.get()
  t.strictSame(token?.roles, ROLES)
})

t.test('a call the token\'s roles do not allow: 403 BrokerMissingPermission, without calling the API', async (t) => {
  const actions = defender.machineActions.length
  await assertMissing(t, 'GET', '/api/machines', 'list machines', 'Machine.Read.All')
  await assertMissing(t, 'GET', `/api/machines/${machine}`, 'read a machine', 'Machine.Read.All')
  await assertMissing(t, 'POST', `/api/machines/${machine}/isolate`, 'isolate machines', 'Machine.Isolate', '{"Comment":"c","IsolationType":"Full"}')
  await assertMissing(t, 'POST', `/api/machines/${machine}/runliveresponse`, 'run live response', 'Machine.LiveResponse', '{"Commands":[]}')
  await assertMissing(t, 'POST', '/api/advancedqueries/run', 'run advanced hunting queries', 'AdvancedQuery.Read.All', '{"Query":"DeviceInfo"}')
  await assertMissing(t, 'GET', '/api/alerts/da1/machine', 'read an alert\'s machine', 'Machine.Read.All')
  t.equal(defender.machineActions.length, actions, 'no machine was isolated')
})

t.test('another spelling of the same call is refused alike', async (t) => {
  for (const path of ['/api/Machines', '/API/MACHINES/', '/api/v1.0/machines', '/api/machines?$top=1&$filter=x', `/api/machines/${machine}/%69solate`]) {
    const isolate = path.endsWith('solate')
    await assertMissing(t, isolate ? 'POST' : 'GET', path, isolate ? 'isolate machines' : 'list machines', isolate ? 'Machine.Isolate' : 'Machine.Read.All', isolate ? '{}' : undefined)
  }
  await assertMissing(t, 'HEAD', '/api/machines', 'list machines', 'Machine.Read.All')
})

t.test('a call a held permission allows is forwarded', async (t) => {
  const sent = defender.requests.length
  const list = await send('GET', '/api/alerts?$top=2')
  const body = await list.body.json() as { value: Array<{ id: string }> }
  t.equal(list.statusCode, 200, 'Alert.ReadWrite.All allows reading alerts')
  t.equal(body.value.length, 2)
  const id = body.value[0]?.id as string
  const one = await send('GET', `/api/alerts/${id}`)
  t.match(await one.body.json(), { id })
  t.equal(defender.requests.length - sent, 2)
})

t.test('an endpoint the table does not know passes through to the API', async (t) => {
  for (const [method, path, status, code] of [
    ['GET', '/api/somethingnew', 404, 'ResourceNotFound'],
    ['PUT', '/api/machines', 405, 'MethodNotAllowed']
  ] as const) {
    const sent = defender.requests.length
    const res = await send(method, path, method === 'PUT' ? '{}' : undefined)
    const answer = await res.body.json() as { error: { code: string, target: string } }
    t.equal(res.statusCode, status, `${method} ${path}: the API's answer`)
    t.equal(answer.error.code, code)
    t.equal(answer.error.target, res.headers['request-id'], 'the API\'s own error')
    t.equal(defender.requests.length - sent, 1, `${method} ${path}: forwarded`)
  }
})

t.test('once the permission is granted and a new token carries it, the call goes through', async (t) => {
  const profile = stack.app.profiles[0]
  if (profile === undefined) throw new TypeError('no profile')
  entra.setRoles(stack.simulator.clientId, [...ROLES, 'Machine.Read.All'])
  await assertMissing(t, 'GET', '/api/machines', 'list machines', 'Machine.Read.All')
  const held = await profile.tokens.get()
  await profile.tokens.renew(held.value)
  const sent = defender.requests.length
  const res = await send('GET', '/api/machines')
  await res.body.dump()
  t.equal(res.statusCode, 200, 'the roles of the held token decide')
  t.equal(defender.requests.length - sent, 1)
})

t.test('a per-device export is preflighted with its own permission, not the machine one', async (t) => {
  const vulnerabilities = await startBrokerStack(t, { simulator: { pki, roles: ['Vulnerability.Read.All'] } })
  const sent = vulnerabilities.simulator.defender.requests.length
  const res = await getGlobalDispatcher().request({ origin: vulnerabilities.url, path: '/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=5', method: 'GET' })
  const page = await res.body.json() as { value?: Array<{ deviceId: string }>, error?: { code: string } }
  t.equal(res.statusCode, 200, 'Vulnerability.Read.All alone is enough: forwarded, and the API answers')
  t.equal(page.error?.code, undefined, 'no BrokerMissingPermission')
  t.equal(page.value?.[0]?.deviceId, vulnerabilities.simulator.defender.data.machines[0]?.id, 'the export\'s rows')
  t.equal(vulnerabilities.simulator.defender.requests.length - sent, 1)
  t.equal(vulnerabilities.simulator.defender.requests.at(-1)?.url, '/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=5')

  // An app that can read machines but holds none of the export permissions.
  const machines = await startBrokerStack(t, { simulator: { pki, roles: ['Machine.Read.All', 'Machine.ReadWrite.All'] } })
  const check = async (path: string, action: string, permission: string) => {
    const before = machines.simulator.defender.requests.length
    const answer = await getGlobalDispatcher().request({ origin: machines.url, path, method: 'GET' })
    const body = await answer.body.json() as { error: { code: string, message: string } }
    t.equal(answer.statusCode, 403, `${path}: refused`)
    t.equal(body.error.code, 'BrokerMissingPermission')
    t.equal(body.error.message, `The app lacks the permission for ${action}: grant the WindowsDefenderATP application permission ${permission} and grant admin consent.`,
      `${path}: names ${permission}, not a machine permission`)
    t.equal(machines.simulator.defender.requests.length, before, `${path}: the API is not called`)
  }
  await check('/api/machines/SoftwareVulnerabilitiesByMachine', 'export software vulnerabilities by device', 'Vulnerability.Read.All')
  await check('/api/machines/SoftwareVulnerabilitiesExport', 'export software vulnerabilities by device to files', 'Vulnerability.Read.All')
  await check('/api/machines/SoftwareInventoryByMachine', 'export software inventory by device', 'Software.Read.All')
  await check('/api/machines/SecureConfigurationsAssessmentByMachine', 'export secure configuration assessments by device', 'Vulnerability.Read.All')
  await check(`/api/machines/${machines.simulator.defender.data.machines[0]?.id ?? ''}/logonusers`, 'read a machine\'s logged-on users', 'User.Read.All')
  await check('/api/vulnerabilities/machinesVulnerabilities', 'list vulnerabilities by machine and software', 'Vulnerability.Read.All')

  const before = machines.simulator.defender.requests.length
  const found = await getGlobalDispatcher().request({ origin: machines.url, path: '/api/machines/findbytag?tag=x', method: 'GET' })
  await found.body.dump()
  t.equal(machines.simulator.defender.requests.length - before, 1, 'findbytag: a machine read, forwarded')
})

t.test('a path the table does not know gets no preflight: a token with no role at all is forwarded, and the API decides', async (t) => {
  const stack = await startBrokerStack(t, { simulator: { pki, roles: [] } })
  t.strictSame((await stack.app.profiles[0]?.tokens.get())?.roles, [], 'the token holds no role')
  for (const [method, path] of [['GET', '/api/somethingNew'], ['GET', '/api/machines/SomethingNewByMachine/more'], ['POST', '/api/somethingNew/run']] as const) {
    const sent = stack.simulator.defender.requests.length
    const res = await getGlobalDispatcher().request({ origin: stack.url, path, method, ...(method === 'POST' ? { body: '{}', headers: { 'content-type': 'application/json' } } : {}) })
    const answer = await res.body.json() as { error: { code: string, target: string } }
    t.equal(res.statusCode, 404, `${method} ${path}: the API's answer`)
    t.equal(answer.error.code, 'ResourceNotFound', 'not BrokerMissingPermission')
    t.equal(answer.error.target, res.headers['request-id'], 'the API\'s own error')
    t.equal(stack.simulator.defender.requests.length - sent, 1, `${method} ${path}: forwarded`)
  }
  const known = await getGlobalDispatcher().request({ origin: stack.url, path: '/api/alerts', method: 'GET' })
  t.match(await known.body.json(), { error: { code: 'BrokerMissingPermission' } }, 'while a known path is preflighted')
})

t.test('for every route the simulator serves, the broker\'s preflight and the API\'s own check agree', async (t) => {
  const token = await stack.app.profiles[0]?.tokens.get()
  for (const route of defender.routes()) {
    const path = samplePath(defender.data, route.path)
    const body = route.method === 'GET' ? undefined : '{}'
    const before = defender.requests.length
    const viaBroker = await send(route.method as Dispatcher.HttpMethod, path, body)
    const text = await viaBroker.body.text()
    const answer = (text === '' ? {} : JSON.parse(text)) as { error?: { code: string, message: string } }
    const direct = await getGlobalDispatcher().request({
      origin: defender.url,
      path,
      method: route.method as Dispatcher.HttpMethod,
      headers: { authorization: `Bearer ${token?.value ?? ''}`, 'content-type': 'application/json' },
      body
    })
    const apiText = await direct.body.text()
    const api = (apiText === '' ? {} : JSON.parse(apiText)) as { error?: { code: string, message: string } }
    const name = `${route.method} ${route.path}`
    if (answer.error?.code === 'BrokerMissingPermission') {
      t.equal(defender.requests.length - before, 1, `${name}: refused by the broker without calling the API`)
      t.equal(direct.statusCode, 403, `${name}: the API refuses it too`)
      const named = /permission (\S+) and grant admin consent/.exec(answer.error.message)?.[1]
      t.ok(named !== undefined && api.error?.message.includes(`(${named}`), `${name}: the broker names ${named}, the first the API lists`)
    } else {
      t.equal(defender.requests.length - before, 2, `${name}: forwarded`)
      t.not(direct.statusCode, 403, `${name}: the API does not refuse it`)
      // A second DELETE or POST finds the first one's change: only reads must answer alike.
      if (route.method === 'GET') t.equal(viaBroker.statusCode, direct.statusCode, `${name}: the same answer through the broker`)
    }
  }
})
