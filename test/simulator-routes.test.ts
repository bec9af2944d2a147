import t from 'tap'
import { findEndpoint } from '../src/defender/catalogue.js'
import { ACTION_DONE_MS, ACTION_PENDING_MS, createTestPki, startSimulator } from '../src/simulator/index.js'
import { ALL_ROLES } from './helpers/broker.js'
import { createTestClock } from './helpers/clock.js'
import { defenderClient, samplePath } from './helpers/defender-client.js'

const pki = await createTestPki()
const clock = createTestClock()
const sim = await startSimulator({ pki, clock, perMinute: 100_000, roles: ALL_ROLES })
t.teardown(() => sim.close())
const call = defenderClient(sim, ALL_ROLES)
const data = sim.defender.data
const machine = data.machines[3]!
const alert = data.alerts.find((a) => a.machineId !== machine.id && data.logonUsers.get(a.machineId)?.some((u) => u.accountName === a.relatedUser?.userName))!
const file = data.files[0]!
const cve = data.softwareVulnerabilities[0]!.cveId
const software = data.software[0]!
const investigation = data.investigations[0]!
const ipAlert = data.alerts.find((a) => data.evidence.get(a.id)?.some((e) => e.entityType === 'Ip'))!
const ip = data.evidence.get(ipAlert.id)!.find((e) => e.entityType === 'Ip')!.ipAddress!
const ZERO = '0000000000000000000000000000000000000000'

t.test('each route answers with the API\'s shape', async (t) => {
  const ids = (answer: { body: { value: Array<{ id: string }> } }) => answer.body.value.map((item) => item.id)
  const list = (items: ReadonlyArray<{ id: string }>) => items.map((item) => item.id)
  const cases: Array<[string, number, (body: any) => void]> = [
    [`/api/alerts/${alert.id}`, 200, (body) => t.match(body, { id: alert.id, machineId: alert.machineId, evidence: [] })],
    [`/api/alerts/${alert.id}/machine`, 200, (body) => t.match(body, { '@odata.context': `${sim.defender.url}/api/$metadata#Machines/$entity`, id: alert.machineId })],
    [`/api/alerts/${alert.id}/files`, 200, (body) => t.ok(body.value.length > 0 && body.value.every((f: { sha1: string, fileName?: string }) => data.evidence.get(alert.id)?.some((e) => e.sha1 === f.sha1) && f.fileName === undefined))],
    [`/api/alerts/${ipAlert.id}/ips`, 200, (body) => t.ok(body.value.some((item: { id: string }) => item.id === ip))],
    [`/api/alerts/${alert.id}/domains`, 200, (body) => t.ok(Array.isArray(body.value))],
    [`/api/alerts/${alert.id}/user`, 200, (body) => t.match(body, { accountName: alert.relatedUser?.userName, accountDomain: 'contoso' })],
    [`/api/machines/${machine.id}`, 200, (body) => t.match(body, { id: machine.id, computerDnsName: 'dc-01.contoso.local', machineTags: ['Tier0'] })],
    ['/api/machines/DC-01.contoso.local', 200, (body) => t.match(body, { id: machine.id }, 'a machine by its computer name')],
    [`/api/machines/${machine.id}/alerts`, 200, (body) => t.strictSame(body.value.map((a: { id: string }) => a.id), list(data.alerts.filter((a) => a.machineId === machine.id)))],
    [`/api/machines/${machine.id}/software`, 200, (body) => t.strictSame(body.value.map((s: { id: string }) => s.id).sort(),
      [...new Set(data.softwareInventory.filter((row) => row.deviceId === machine.id).map((row) => `${row.softwareVendor}-_-${row.softwareName}`))].sort())],
    [`/api/machines/${machine.id}/vulnerabilities`, 200, (body) => t.strictSame(body.value.map((v: { id: string }) => v.id).sort(),
      [...new Set(data.softwareVulnerabilities.filter((row) => row.deviceId === machine.id).map((row) => row.cveId))].sort())],
    [`/api/machines/${machine.id}/logonusers`, 200, (body) => t.strictSame(body.value, data.logonUsers.get(machine.id))],
    [`/api/machines/findbyip(ip='${machine.lastIpAddress}',timestamp=${machine.lastSeen})`, 200, (body) => t.strictSame(body.value.map((m: { id: string }) => m.id), [machine.id])],
    [`/api/machines/findbyip(ip='${machine.lastIpAddress}',timestamp=2001-01-01T00:00:00Z)`, 400, (body) => t.equal(body.error.code, 'InvalidInput')],
    ['/api/machines/findbyip(ip=\'300.1.1.1\',timestamp=2026-01-01T00:00:00Z)', 400, (body) => t.equal(body.error.code, 'InvalidInput')],
    ['/api/machines/findbytag?tag=tier0', 200, (body) => t.strictSame(body.value.map((m: { id: string }) => m.id), list(data.machines.filter((m) => m.machineTags.includes('Tier0'))))],
    ['/api/machines/findbytag?tag=Fin&useStartsWithFilter=true', 200, (body) => t.strictSame(body.value.map((m: { id: string }) => m.id), list(data.machines.filter((m) => m.machineTags.includes('Finance'))))],
    ['/api/machines/findbytag', 400, (body) => t.equal(body.error.code, 'InvalidInput')],
    ['/api/machines/SoftwareInventoryByMachine', 200, (body) => t.equal(body.value.length, data.softwareInventory.length)],
    ['/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=5', 200, (body) => t.strictSame(body.value.map((r: { id: string }) => r.id), data.softwareVulnerabilities.slice(0, 5).map((r) => r.id))],
    ['/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=0', 400, (body) => t.equal(body.error.code, 'BadRequest')],
    ['/api/machineactions', 200, (body) => t.equal(body.value.length, data.machineActions.length + sim.defender.machineActions.length)],
    [`/api/machineactions/${data.machineActions[0]!.id}`, 200, (body) => t.match(body, { id: data.machineActions[0]!.id, status: 'Succeeded' })],
    ['/api/indicators', 200, (body) => t.strictSame(body.value.map((i: { id: string }) => i.id), list(data.indicators))],
    ['/api/investigations', 200, (body) => t.strictSame(body.value.map((i: { id: string }) => i.id), list(data.investigations))],
    [`/api/investigations/${investigation.id}`, 200, (body) => t.match(body, { id: investigation.id, triggeringAlertId: investigation.triggeringAlertId })],
    [`/api/files/${file.sha1}`, 200, (body) => t.match(body, { sha1: file.sha1, sha256: file.sha256, fileName: undefined })],
    [`/api/files/${file.sha1.toUpperCase()}/alerts`, 200, (body) => t.strictSame(body.value.map((a: { id: string }) => a.id), list(data.alerts.filter((a) => data.evidence.get(a.id)?.some((e) => e.sha1 === file.sha1))))],
    [`/api/files/${file.sha1}/machines`, 200, (body) => t.ok(body.value.length > 0)],
    [`/api/files/${file.sha1}/stats`, 200, (body) => t.match(body, { sha1: file.sha1, topFileNames: [file.fileName] })],
    ['/api/files/nothex', 400, (body) => t.equal(body.error.code, 'InvalidInput')],
    [`/api/ips/${ip}/alerts`, 200, (body) => t.ok(body.value.some((a: { id: string }) => a.id === ipAlert.id))],
    [`/api/ips/${ip}/stats`, 200, (body) => t.match(body, { ipAddress: ip })],
    ['/api/users/contoso%5Cadele.vance/alerts', 200, (body) => t.strictSame(body.value.map((a: { id: string }) => a.id), list(data.alerts.filter((a) => a.relatedUser?.userName === 'adele.vance')))],
    ['/api/users/adele.vance/machines', 200, (body) => t.ok(body.value.length > 0)],
    ['/api/vulnerabilities', 200, (body) => t.equal(body.value.length, data.vulnerabilities.length)],
    [`/api/vulnerabilities/${cve}`, 200, (body) => t.match(body, { id: cve })],
    [`/api/vulnerabilities/${cve}/machineReferences`, 200, (body) => t.ok(body.value.some((m: { id: string }) => m.id === data.softwareVulnerabilities[0]!.deviceId))],
    ['/api/vulnerabilities/machinesVulnerabilities?$top=3', 200, (body) => t.match(body.value[0], { cveId: String, machineId: String, productName: String })],
    ['/api/software', 200, (body) => t.equal(body.value.length, data.software.length)],
    [`/api/software/${software.id}`, 200, (body) => t.match(body, { id: software.id, vendor: software.vendor })],
    [`/api/software/${software.id}/machineReferences`, 200, (body) => t.equal(body.value.length, software.exposedMachines)],
    [`/api/software/${software.id}/vulnerabilities`, 200, (body) => t.ok(body.value.length > 0)]
  ]
  for (const [path, status, check] of cases) {
    const answer = await call(path)
    t.equal(answer.status, status, `GET ${path}: ${status}`)
    check(answer.body)
  }
  t.strictSame(ids(await call('/api/alerts')), list(data.alerts))
})

t.test('every alert\'s machine exists and lists it', async (t) => {
  const machineIds = new Set(data.machines.map((m) => m.id))
  t.ok(data.alerts.every((a) => machineIds.has(a.machineId)), 'each alert\'s machineId is a machine')
  const some = [...new Set(data.alerts.map((a) => a.machineId))].slice(0, 5)
  for (const id of some) {
    const answer = await call(`/api/machines/${id}/alerts`)
    t.strictSame(answer.body.value.map((a: { id: string }) => a.id), data.alerts.filter((a) => a.machineId === id).map((a) => a.id))
  }
})

t.test('unknown ids: 404 ResourceNotFound with the API\'s body', async (t) => {
  for (const path of [
    `/api/alerts/da${'0'.repeat(18)}_1`, `/api/alerts/da${'0'.repeat(18)}_1/machine`, `/api/machines/${ZERO}`,
    `/api/machines/${ZERO}/alerts`, `/api/machines/${ZERO}/software`, `/api/machines/${ZERO}/logonusers`,
    '/api/machineactions/00000000-0000-4000-8000-000000000000', '/api/investigations/1', `/api/files/${ZERO}`,
    '/api/vulnerabilities/CVE-1999-0001', '/api/software/nobody-_-nothing', '/api/nosuchthing', '/api/machines/x/y/z'
  ]) {
    const answer = await call(path)
    t.equal(answer.status, 404, path)
    t.strictSame(answer.body, { error: { code: 'ResourceNotFound', message: answer.body.error.message, target: answer.requestId } }, `${path}: the API's body`)
  }
  const deleted = await call(`/api/indicators/${ZERO}`, { method: 'DELETE' })
  t.equal(deleted.status, 404, 'DELETE an unknown indicator')
  const wrong = await call('/api/machines', { method: 'PUT', body: '{}' })
  t.match(wrong, { status: 405, body: { error: { code: 'MethodNotAllowed' } } }, 'PUT on a list: 405')
})

t.test('/api/v1.0, any case and a trailing slash reach the same route', async (t) => {
  const expected = (await call(`/api/machines/${machine.id}`)).body
  for (const path of [`/api/v1.0/machines/${machine.id}`, `/API/Machines/${machine.id.toUpperCase()}`, `/api/machines/${machine.id}/`, `/api/v1.0/MACHINES/${machine.id}/`]) {
    const answer = await call(path)
    t.equal(answer.status, 200, path)
    t.strictSame(answer.body, expected, `${path}: the same machine`)
  }
  const v1 = await call('/api/v1.0/alerts?$top=1')
  t.equal(v1.body.value[0].id, data.alerts[0]?.id, '/api/v1.0/alerts lists alerts')
})

t.test('each route refuses a token without its permissions with the API\'s 403, and agrees with the broker\'s catalogue', async (t) => {
  const none = defenderClient(sim, [])
  for (const route of sim.defender.routes()) {
    const path = samplePath(data, route.path)
    const answer = await none(path, { method: route.method as 'GET', body: route.method === 'GET' ? undefined : '{}' })
    t.equal(answer.status, 403, `${route.method} ${path}`)
    t.strictSame(answer.body, {
      error: {
        code: 'Forbidden',
        message: `The application does not have any of the required application permissions (${route.permissions.join(', ')}) to access the resource.`,
        target: answer.requestId
      }
    }, `${route.method} ${route.path}: names the permissions`)
    t.strictSame(findEndpoint(route.method, path)?.permissions, route.permissions, `${route.method} ${route.path}: the broker's catalogue asks for the same permissions`)
  }
  const one = defenderClient(sim, ['Alert.ReadWrite.All'])
  t.equal((await one('/api/alerts?$top=1')).status, 200, 'the write permission reads too')
  t.equal((await one('/api/machines?$top=1')).status, 403, 'but not machines')
})

t.test('a machine action goes Pending, InProgress, Succeeded on the simulator\'s clock', async (t) => {
  const target = data.machines[10]!
  const isolate = await call(`/api/machines/${target.id}/isolate`, { method: 'POST', body: { Comment: 'contain', IsolationType: 'Selective' } })
  t.match(isolate, { status: 201, body: { type: 'Isolate', status: 'Pending', machineId: target.id, scope: 'Selective', requestorComment: 'contain', requestor: sim.clientId } })
  const id = isolate.body.id
  const again = await call(`/api/machines/${target.id}/isolate`, { method: 'POST', body: { Comment: 'again' } })
  t.match(again, { status: 400, body: { error: { code: 'ActiveRequestAlreadyExists' } } }, 'one isolation at a time')
  const states: string[] = []
  for (const step of [0, ACTION_PENDING_MS - 1, 1, ACTION_DONE_MS - ACTION_PENDING_MS - 1, 1, 60_000]) {
    clock.tick(step)
    states.push((await call(`/api/machineactions/${id}`)).body.status)
  }
  t.strictSame(states, ['Pending', 'Pending', 'InProgress', 'InProgress', 'Succeeded', 'Succeeded'])
  const listed = await call(`/api/machineactions?$filter=machineId%20eq%20'${target.id}'%20and%20status%20eq%20'Succeeded'`)
  t.ok(listed.body.value.some((action: { id: string }) => action.id === id), 'the list filters on the new status')

  for (const [name, body, type] of [
    ['unisolate', { Comment: 'release' }, 'Unisolate'],
    ['restrictCodeExecution', { Comment: 'lock' }, 'RestrictCodeExecution'],
    ['unrestrictCodeExecution', { Comment: 'unlock' }, 'UnrestrictCodeExecution'],
    ['runAntiVirusScan', { Comment: 'scan', ScanType: 'Full' }, 'RunAntiVirusScan'],
    ['collectInvestigationPackage', { Comment: 'collect' }, 'CollectInvestigationPackage'],
    ['StopAndQuarantineFile', { Comment: 'stop', Sha1: file.sha1 }, 'StopAndQuarantineFile'],
    ['offboard', { Comment: 'bye' }, 'Offboard']
  ] as const) {
    const answer = await call(`/api/machines/${target.id}/${name}`, { method: 'POST', body })
    t.match(answer, { status: 201, body: { type, status: 'Pending', machineId: target.id } }, name)
  }
  const scan = sim.defender.machineActions.find((action) => action.type === 'RunAntiVirusScan')
  const cancelled = await call(`/api/machineactions/${scan?.id ?? ''}/cancel`, { method: 'POST', body: { Comment: 'not now' } })
  t.match(cancelled, { status: 200, body: { status: 'Cancelled', cancellationComment: 'not now' } }, 'a pending action can be cancelled')
  t.equal((await call(`/api/machineactions/${id}/cancel`, { method: 'POST', body: { Comment: 'late' } })).status, 400, 'a finished one cannot')
  for (const [name, body] of [['isolate', { IsolationType: 'Full' }], ['isolate', '{not json'], ['runAntiVirusScan', { Comment: 'x', ScanType: 'Deep' }], ['StopAndQuarantineFile', { Comment: 'x', Sha1: 'abc' }]] as const) {
    const answer = await call(`/api/machines/${data.machines[11]!.id}/${name}`, { method: 'POST', body })
    t.match(answer, { status: 400, body: { error: { code: 'InvalidRequestBody' } } }, `${name} ${JSON.stringify(body)}: 400`)
  }
  t.equal((await call(`/api/machines/${ZERO}/isolate`, { method: 'POST', body: { Comment: 'x' } })).status, 404, 'an unknown machine')
})

t.test('alerts are updated with PATCH, indicators submitted and deleted', async (t) => {
  const target = data.alerts[7]!
  const patched = await call(`/api/alerts/${target.id}`, { method: 'PATCH', body: { status: 'Resolved', classification: 'FalsePositive', determination: 'Other', assignedTo: 'soc@contoso.com', comment: 'benign' } })
  t.match(patched, { status: 200, body: { id: target.id, status: 'Resolved', classification: 'FalsePositive', assignedTo: 'soc@contoso.com', resolvedTime: new Date(clock.now()).toISOString() } })
  t.match(patched.body.comments.at(-1), { comment: 'benign', createdBy: sim.clientId })
  t.equal((await call(`/api/alerts/${target.id}`)).body.status, 'Resolved', 'the change holds')
  t.match(await call(`/api/alerts/${target.id}`, { method: 'PATCH', body: { status: 'Done' } }), { status: 400, body: { error: { code: 'InvalidRequestBody' } } })
  t.match(await call(`/api/alerts/${target.id}`, { method: 'PATCH', body: { severity: 'Low' } }), { status: 400 }, 'severity cannot be patched')

  const body = { indicatorValue: '198.51.100.200', indicatorType: 'IpAddress', action: 'Block', title: 'c2', description: 'known C2' }
  const created = await call('/api/indicators', { method: 'POST', body })
  t.match(created, { status: 200, body: { ...body, id: String, createdBy: sim.clientId } })
  const updated = await call('/api/indicators', { method: 'POST', body: { ...body, action: 'Audit' } })
  t.match(updated, { status: 200, body: { id: created.body.id, action: 'Audit' } }, 'the same value and type: updated in place')
  t.match(await call('/api/indicators', { method: 'POST', body: { ...body, indicatorType: 'Nope' } }), { status: 400, body: { error: { code: 'InvalidRequestBody' } } })
  const found = await call('/api/indicators?$filter=indicatorValue%20eq%20\'198.51.100.200\'')
  t.strictSame(found.body.value.map((i: { id: string }) => i.id), [created.body.id])
  const deleted = await call(`/api/indicators/${created.body.id}`, { method: 'DELETE' })
  t.equal(deleted.status, 204)
  t.equal((await call(`/api/indicators/${created.body.id}`, { method: 'DELETE' })).status, 404, 'gone')
})
