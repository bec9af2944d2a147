import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { stringify } from 'yaml'
import { createTestPki, type Machine } from '../src/simulator/index.js'
import { ALL_ROLES, startBrokerStack, type BrokerStack } from './helpers/broker.js'
import { newClientKey, sha256 } from './helpers/profiles.js'

const SCENARIO = { timeout: 60_000 }
const pki = await createTestPki()
const ISOLATE = JSON.stringify({ Comment: 'playbook run 42', IsolationType: 'Full' })

const KEYS = { soar: newClientKey(), hunter: newClientKey(), third: newClientKey(), rehearsal: newClientKey() }

/** The config file a user would write: the profile from the environment, these guards and clients. */
function configFile (t: Test, guards: unknown, extra: Record<string, unknown> = {}): string {
  const file = join(t.testdir(), 'broker.yaml')
  writeFileSync(file, stringify({
    guards,
    clients: [
      { name: 'soar', keySha256: sha256(KEYS.soar) },
      { name: 'hunter', keySha256: sha256(KEYS.hunter) },
      { name: 'third', keySha256: sha256(KEYS.third) },
      { name: 'rehearsal', keySha256: sha256(KEYS.rehearsal), dryRun: true }
    ],
    ...extra
  }))
  return file
}

async function stackWith (t: Test, guards: unknown): Promise<BrokerStack> {
  return startBrokerStack(t, { simulator: { pki, roles: ALL_ROLES }, env: { BROKER_CONFIG: configFile(t, guards) } })
}

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  json: any
}

async function send (stack: BrokerStack, key: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await request(`${stack.url}${path}`, {
    method: method as 'POST',
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body)
  })
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers, json: text === '' ? undefined : JSON.parse(text) }
}

const isolate = (stack: BrokerStack, key: string, machine: string, headers?: Record<string, string>) =>
  send(stack, key, 'POST', `/api/machines/${machine}/isolate`, ISOLATE, headers)

/** Machines of the sample data no protection below covers, one per call (the API refuses a second isolation of one). */
function ordinaryMachines (stack: BrokerStack): Machine[] {
  return stack.simulator.defender.data.machines.filter((machine) => machine.machineTags.length === 0 && !machine.computerDnsName.startsWith('dc-'))
}

const upstreamCalls = (stack: BrokerStack, method: string, pattern: RegExp) =>
  stack.simulator.defender.requests.filter((recorded) => recorded.method === method && pattern.test(recorded.url)).length

const audits = (stack: BrokerStack) => stack.logs.lines.filter((line) => line.msg === 'audit')

t.test('a loop of isolations stops at the cap per client, then at the cap of the app', SCENARIO, async (t) => {
  const stack = await stackWith(t, { actions: [{ allow: 'POST /api/machines/*/isolate', perHour: 4, perClientPerHour: 2 }] })
  const machines = ordinaryMachines(stack).map((machine) => machine.id)
  const statuses = async (key: string, count: number) => {
    const answers = []
    for (let i = 0; i < count; i++) answers.push(await isolate(stack, key, machines.shift() as string))
    return answers
  }
  const soar = await statuses(KEYS.soar, 3)
  t.same(soar.map((a) => a.status), [201, 201, 403], 'the third isolation of one client is refused')
  const refused = soar[2] as Answer
  t.equal(refused.json.error.code, 'BrokerGuardrail')
  t.match(refused.json.error.message, /the cap on "POST \/api\/machines\/\*\/isolate" allows 2 an hour per client \(perClientPerHour\) and client soar made 2: the next call is allowed at \S+Z \(in \d+ s\)/)
  t.ok(Number(refused.headers['retry-after']) > 3500, 'Retry-After says when it frees')

  // The version in the path is the same endpoint to the API: it counts in the same cap.
  const hunter1 = await send(stack, KEYS.hunter, 'POST', `/api/v1.0/machines/${machines.shift() as string}/isolate`, ISOLATE)
  const hunter2 = await isolate(stack, KEYS.hunter, machines.shift() as string)
  t.same([hunter1.status, hunter2.status], [201, 201], 'another client has its own two')
  const third = await isolate(stack, KEYS.third, machines.shift() as string)
  t.equal(third.status, 403, 'the app\'s four an hour are used: a client with none used is refused too')
  t.match(third.json.error.message, /allows 4 an hour for the app \(perHour\) and the app made 4/)
  t.equal(upstreamCalls(stack, 'POST', /\/isolate$/), 4, 'four isolations reached the API, no more')

  const scan = await send(stack, KEYS.third, 'POST', `/api/machines/${machines.shift() as string}/runantivirusscan`, { Comment: 'scan', ScanType: 'Quick' })
  t.equal(scan.status, 201, 'an action no cap covers goes on')

  const lines = audits(stack).filter((line) => line.code === 'BrokerGuardrail')
  t.equal(lines.length, 2, 'each refusal is an audit line')
  t.match(lines[0], { client: 'soar', method: 'POST', status: 403, guard: 'cap', reason: /perClientPerHour/, machines: [refused.json.error.target === undefined ? String : String] })
  t.equal((lines[1] as { client: string }).client, 'third')

  const status = await send(stack, KEYS.soar, 'GET', '/status')
  const caps = status.json.profiles[0].guards.actions
  t.same(caps, [{
    allow: 'POST /api/machines/*/isolate',
    limits: { perHour: 4, perClientPerHour: 2 },
    used: { perHour: 4 },
    usedByClient: { soar: { perClientPerHour: 2 }, hunter: { perClientPerHour: 2 } }
  }], '/status shows each cap\'s use, per client')
  const metrics = await request(`${stack.url}/metrics`, { headers: { authorization: `Bearer ${KEYS.soar}` } })
  t.match(await metrics.body.text(), /broker_guardrail_refusals_total\{guard="cap",profile="default"\} 2/)
})

t.test('protected machines: by tag, by name, by id, in the path or the body; read once, then from the cache', SCENARIO, async (t) => {
  const stack = await stackWith(t, { protect: { tags: ['tier0'], names: ['DC-*.contoso.local'], ids: [] } })
  const machines = stack.simulator.defender.data.machines
  const tier0 = machines.find((m) => m.machineTags.includes('Tier0') && !m.computerDnsName.startsWith('dc-')) as Machine
  const dc = machines.find((m) => m.computerDnsName.startsWith('dc-')) as Machine
  const [ordinary, other, third] = ordinaryMachines(stack) as [Machine, Machine, Machine]
  // The sample's domain controllers are tagged Tier0 too: their name alone is checked by a broker protecting names only.
  const byNameOnly = await stackWith(t, { protect: { names: ['DC-*.contoso.local'] } })

  const byTag = await isolate(stack, KEYS.soar, tier0.id)
  t.equal(byTag.status, 403)
  t.equal(byTag.json.error.code, 'BrokerGuardrail')
  t.match(byTag.json.error.message, `machine ${tier0.id} (${tier0.computerDnsName}) is protected: its tag Tier0 is protected`)
  const byName = await send(byNameOnly, KEYS.soar, 'POST', `/api/machines/${dc.id}/restrictcodeexecution`, { Comment: 'contain' })
  t.equal(byName.status, 403)
  t.match(byName.json.error.message, 'its name matches dc-*.contoso.local')
  const tag = await send(stack, KEYS.soar, 'POST', '/api/machines/AddOrRemoveTagForMultipleMachines', { Value: 'quarantine', Action: 'Add', MachineIds: [ordinary.id, dc.id] })
  t.equal(tag.status, 403, 'a machine named in the body is checked too')
  t.equal(upstreamCalls(stack, 'POST', /./) + upstreamCalls(byNameOnly, 'POST', /./), 0, 'no action reached the API')

  const allowed = await isolate(stack, KEYS.soar, ordinary.id)
  t.equal(allowed.status, 201, 'a machine nothing protects is isolated')
  const release = await send(stack, KEYS.soar, 'POST', `/api/machines/${ordinary.id}/unisolate`, { Comment: 'done' })
  t.equal(release.status, 201)
  t.equal(upstreamCalls(stack, 'GET', new RegExp(ordinary.id)), 1, 'the machine was read once (with the refused body\'s list): the actions after found it in the cache')
  await send(stack, KEYS.soar, 'POST', '/api/machines/AddOrRemoveTagForMultipleMachines', { Value: 'reviewed', Action: 'Add', MachineIds: [ordinary.id, other.id, third.id] })
  t.equal(upstreamCalls(stack, 'POST', /addorremovetagformultiplemachines/i), 1, 'machines named in a body, none protected: the call went')
  t.equal(upstreamCalls(stack, 'GET', /\/api\/machines\?\$filter=/), 2, 'the machines a body names not in the cache are read with one filtered list each time')
  t.equal(upstreamCalls(stack, 'GET', new RegExp(`/api/machines/${dc.id}$`)), 0, 'none of them one by one')

  const lines = audits(stack).filter((line) => line.guard === 'protect')
  t.equal(lines.length, 2)
  t.match(lines[0], { client: 'soar', machines: [tier0.id], reason: /tag Tier0/ })
  t.match(lines[1], { machines: [ordinary.id, dc.id] })
  const status = await send(stack, KEYS.soar, 'GET', '/status')
  t.same(status.json.profiles[0].guards.protect, { tags: ['tier0'], names: ['dc-*.contoso.local'], ids: [], lookupCacheSeconds: 60 }, '/status shows the protected set')
})

t.test('a machine that cannot be read is not acted on: the guard fails closed', SCENARIO, async (t) => {
  const stack = await stackWith(t, { protect: { ids: ['0000000000000000000000000000000000000000'] } })
  const [first] = ordinaryMachines(stack) as [Machine]
  stack.simulator.defender.forceNext(500)
  const failed = await isolate(stack, KEYS.soar, first.id)
  t.equal(failed.status, 403)
  t.match(failed.json.error.message, `machine ${first.id.toLowerCase()} could not be read to check it against the protected machines (the API answered 500), so the call is refused`)
  const unknown = await isolate(stack, KEYS.soar, 'f'.repeat(40))
  t.equal(unknown.status, 403)
  t.match(unknown.json.error.message, 'the API answered 404: no such machine')
  const listed = await isolate(stack, KEYS.soar, '0000000000000000000000000000000000000000')
  t.equal(listed.status, 403, 'an id the API does not know is refused all the same')
  t.equal(upstreamCalls(stack, 'POST', /./), 0, 'no action reached the API')
  const afterwards = await isolate(stack, KEYS.soar, first.id)
  t.equal(afterwards.status, 201, 'once the read works, the action goes')
  const token = stack.app.profiles[0]?.tokens.usable()?.value as string
  t.ok(token.length > 20)
  const answers = JSON.stringify([failed, unknown, listed, afterwards])
  for (const secret of [token, KEYS.soar, stack.simulator.clientSecret]) {
    t.notOk(stack.logs.text().includes(secret) || answers.includes(secret), 'no token, key or secret in the logs, the audit or the answers')
  }
})

t.test('block indicators on allowlisted values are refused; other indicators go', SCENARIO, async (t) => {
  const stack = await stackWith(t, { indicators: { allowlist: ['contoso.com', '*.windowsupdate.com', '10.0.0.0/8'] } })
  const indicator = (indicatorValue: string, indicatorType: string, action: string) =>
    ({ indicatorValue, indicatorType, action, title: 'playbook', description: 'from a playbook' })
  const cases: Array<[unknown, number]> = [
    [indicator('www.contoso.com', 'DomainName', 'Block'), 403],
    [indicator('https://login.contoso.com/path', 'Url', 'AlertAndBlock'), 403],
    [indicator('download.windowsupdate.com', 'DomainName', 'Block'), 403],
    [indicator('10.20.30.40', 'IpAddress', 'Block'), 403],
    [indicator('contoso.com.evil.example', 'DomainName', 'Block'), 200],
    [indicator('contoso.com', 'DomainName', 'Alert'), 200],
    [indicator('198.51.100.7', 'IpAddress', 'Block'), 200]
  ]
  for (const [body, expected] of cases) {
    const answer = await send(stack, KEYS.soar, 'POST', '/api/indicators', body)
    t.equal(answer.status, expected, JSON.stringify(body))
    if (expected === 403) t.equal(answer.json.error.code, 'BrokerGuardrail')
  }
  const batch = await send(stack, KEYS.soar, 'POST', '/api/indicators/import', { Indicators: [indicator('evil.example', 'DomainName', 'Block'), indicator('mail.contoso.com', 'DomainName', 'Block')] })
  t.equal(batch.status, 403, 'one allowlisted value in a batch refuses the batch')
  t.match(batch.json.error.message, 'the Block indicator on "mail.contoso.com" names a value the allowlist covers (contoso.com)')
  t.equal(upstreamCalls(stack, 'POST', /indicators/), 3, 'only the three allowed submissions reached the API')
  t.equal(audits(stack).filter((line) => line.guard === 'indicators').length, 5)
})

t.test('a dry run answers in the API\'s shape and reaches nothing upstream', SCENARIO, async (t) => {
  const stack = await stackWith(t, { actions: [{ allow: 'POST /api/machines/*/isolate', perClientPerHour: 1 }] })
  const [first, second] = ordinaryMachines(stack) as [Machine, Machine]
  const before = stack.simulator.defender.requests.length
  const dry = await isolate(stack, KEYS.rehearsal, first.id)
  t.equal(dry.status, 201)
  t.equal(dry.headers['x-broker-dry-run'], 'true')
  t.match(dry.json, {
    '@odata.context': `${stack.simulator.defender.url}/api/$metadata#MachineActions/$entity`,
    id: /^dryrun-[0-9a-f-]{36}$/,
    type: 'Isolate',
    status: 'Pending',
    machineId: first.id.toLowerCase(),
    requestor: 'rehearsal',
    requestorComment: 'playbook run 42',
    scope: 'Full'
  })
  const byHeader = await isolate(stack, KEYS.soar, first.id, { 'x-broker-dry-run': 'true' })
  t.equal(byHeader.status, 201, 'a request asking with X-Broker-Dry-Run gets one too')
  t.match(byHeader.json.id, /^dryrun-/)
  const indicator = await send(stack, KEYS.soar, 'POST', '/api/indicators', { indicatorValue: 'evil.example', indicatorType: 'DomainName', action: 'Block', title: 't', description: 'd' }, { 'x-broker-dry-run': '1' })
  t.match(indicator, { status: 200, json: { id: /^dryrun-/, indicatorValue: 'evil.example', action: 'Block' } })
  const remove = await send(stack, KEYS.soar, 'DELETE', '/api/indicators/1', undefined, { 'x-broker-dry-run': 'true' })
  t.equal(remove.status, 204)
  t.equal(stack.simulator.defender.requests.length, before, 'no request of any kind reached the API')

  const again = await isolate(stack, KEYS.rehearsal, second.id)
  t.equal(again.status, 403, 'a dry run meets the caps as the real call would')
  const real = await isolate(stack, KEYS.soar, second.id, { 'x-broker-dry-run': 'false' })
  t.equal(real.status, 201, 'and does not use them up: the real call still has its one')
  t.notOk(JSON.parse(stack.simulator.defender.requests.at(-1)?.headers['x-broker-dry-run'] === undefined ? 'false' : 'true'), 'X-Broker-Dry-Run is not sent upstream')
  const typo = await isolate(stack, KEYS.soar, second.id, { 'x-broker-dry-run': 'yes' })
  t.equal(typo.status, 400, 'a value that is neither true nor false is refused: a typo must not make the call real')

  const lines = audits(stack).filter((line) => line.dryRun === true)
  t.equal(lines.length, 4, 'each dry run is an audit line that says so')
  t.match(lines[0], { client: 'rehearsal', status: 201, machineActionId: dry.json.id, machines: [first.id.toLowerCase()] })
  const status = await send(stack, KEYS.soar, 'GET', '/status')
  t.same(status.json.profiles[0].guards.dryRunClients, ['rehearsal'])
})

t.test('with no guards configured, calls go as before and /status shows none', SCENARIO, async (t) => {
  const stack = await stackWith(t, undefined)
  const [first] = ordinaryMachines(stack) as [Machine]
  const answer = await isolate(stack, KEYS.soar, first.id)
  t.equal(answer.status, 201)
  t.equal(upstreamCalls(stack, 'GET', /./), 0, 'no machine read')
  const status = await send(stack, KEYS.soar, 'GET', '/status')
  t.equal(status.json.profiles[0].guards.dryRunClients[0], 'rehearsal', 'only the dry-run client is listed')
  t.same(status.json.profiles[0].guards.actions, [])
})
