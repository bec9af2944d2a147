import t from 'tap'
import { API_PAGE_SIZE, SAMPLE_ALERT_COUNT, createTestPki, startSimulator } from '../src/simulator/index.js'
import type { Alert, Machine } from '../src/simulator/index.js'
import { defenderClient, walk } from './helpers/defender-client.js'

const ROLES = ['Alert.Read.All', 'Machine.Read.All', 'Ti.ReadWrite', 'Vulnerability.Read.All', 'Software.Read.All']
const pki = await createTestPki()
const sim = await startSimulator({ pki, perMinute: 100_000, roles: ROLES })
t.teardown(() => sim.close())
const call = defenderClient(sim, ROLES)
const { machines, alerts } = sim.defender.data

const ids = (items: ReadonlyArray<{ id: string }>) => items.map((item) => item.id)
const byLastSeen = [...machines].sort((a, b) => a.lastSeen.localeCompare(b.lastSeen))
const middle = (byLastSeen[Math.floor(machines.length / 2)] as Machine).lastSeen
const ip = (machines[5] as Machine).lastIpAddress
const weekAgo = new Date(Date.now() - 7 * 24 * 3600_000).toISOString().slice(0, 10)
const mimikatz = "'Mimikatz' credential theft tool"

t.test('$filter: each operator, function and literal picks the items it should', async (t) => {
  const machineCases: Array<[string, (m: Machine) => boolean]> = [
    ["computerDnsName eq 'dc-01.contoso.local'", (m) => m.computerDnsName === 'dc-01.contoso.local'],
    ["healthStatus ne 'Active'", (m) => m.healthStatus !== 'Active'],
    [`lastSeen gt ${middle}`, (m) => Date.parse(m.lastSeen) > Date.parse(middle)],
    [`lastSeen ge ${middle}`, (m) => Date.parse(m.lastSeen) >= Date.parse(middle)],
    [`lastSeen lt ${middle}`, (m) => Date.parse(m.lastSeen) < Date.parse(middle)],
    [`lastSeen le ${middle}`, (m) => Date.parse(m.lastSeen) <= Date.parse(middle)],
    ['rbacGroupId gt 41', (m) => m.rbacGroupId > 41],
    ['rbacGroupId le 41.5', (m) => m.rbacGroupId <= 41.5],
    ["osPlatform eq 'Windows11' and healthStatus eq 'Active'", (m) => m.osPlatform === 'Windows11' && m.healthStatus === 'Active'],
    ["osPlatform eq 'Linux' or osPlatform eq 'macOS'", (m) => m.osPlatform === 'Linux' || m.osPlatform === 'macOS'],
    ["(osPlatform eq 'Linux' or osPlatform eq 'macOS') and not (healthStatus eq 'Active')", (m) => (m.osPlatform === 'Linux' || m.osPlatform === 'macOS') && m.healthStatus !== 'Active'],
    ["not healthStatus eq 'Active'", (m) => m.healthStatus !== 'Active'],
    ["riskScore in ('High', 'Medium')", (m) => m.riskScore === 'High' || m.riskScore === 'Medium'],
    ["startswith(computerDnsName,'sql-')", (m) => m.computerDnsName.startsWith('sql-')],
    ["endswith(computerDnsName, '.contoso.local') eq false", (m) => !m.computerDnsName.endsWith('.contoso.local')],
    ["contains(computerDnsName,'-srv-')", (m) => m.computerDnsName.includes('-srv-')],
    ["machineTags/any(t: t eq 'Tier0')", (m) => m.machineTags.includes('Tier0')],
    ["machineTags/any(tag: tag eq 'Finance' or tag eq 'VIP')", (m) => m.machineTags.includes('Finance') || m.machineTags.includes('VIP')],
    ['machineTags/any()', (m) => m.machineTags.length > 0],
    [`ipAddresses/any(a: a/ipAddress eq '${ip}')`, (m) => m.ipAddresses.some((a) => a.ipAddress === ip)],
    ['isAadJoined eq true', (m) => m.isAadJoined],
    ['rbacGroupName eq null', (m) => m.rbacGroupName === null],
    ['aadDeviceId ne null', (m) => m.aadDeviceId !== null],
    ["ComputerDnsName eq 'dc-01.contoso.local'", (m) => m.computerDnsName === 'dc-01.contoso.local']
  ]
  for (const [filter, keep] of machineCases) {
    const expected = ids(machines.filter(keep))
    t.ok(expected.length > 0 && expected.length < machines.length, `${filter}: the sample data tells it apart`)
    const answer = await call(`/api/machines?$filter=${encodeURIComponent(filter)}`)
    t.equal(answer.status, 200, filter)
    t.strictSame(ids(answer.body.value), expected, filter)
  }

  const alertCases: Array<[string, (a: Alert) => boolean]> = [
    [`title eq '${mimikatz.replaceAll("'", "''")}'`, (a) => a.title === mimikatz],
    [`alertCreationTime ge ${weekAgo}`, (a) => Date.parse(a.alertCreationTime) >= Date.parse(`${weekAgo}T00:00:00Z`)],
    [`alertCreationTime lt ${weekAgo}T00:00:00Z and severity eq 'High'`, (a) => Date.parse(a.alertCreationTime) < Date.parse(`${weekAgo}T00:00:00Z`) && a.severity === 'High'],
    ['incidentId lt 1300', (a) => a.incidentId < 1300],
    ["status in ('New','InProgress') and category eq 'Malware'", (a) => (a.status === 'New' || a.status === 'InProgress') && a.category === 'Malware'],
    ["relatedUser/userName eq 'svc-backup'", (a) => a.relatedUser?.userName === 'svc-backup'],
    ["mitreTechniques/all(m: startswith(m, 'T10'))", (a) => a.mitreTechniques.every((m) => m.startsWith('T10'))]
  ]
  for (const [filter, keep] of alertCases) {
    const expected = ids(alerts.filter(keep))
    t.ok(expected.length > 0 && expected.length < alerts.length, `${filter}: the sample data tells it apart`)
    const answer = await call(`/api/alerts?$filter=${encodeURIComponent(filter)}`)
    t.equal(answer.status, 200, filter)
    t.strictSame(ids(answer.body.value), expected, filter)
  }
})

t.test('query keys and values arrive encoded every way clients send them', async (t) => {
  const expected = ids(machines.filter((m) => m.osPlatform === 'Windows11' && m.healthStatus === 'Active'))
  for (const query of [
    "$filter=osPlatform%20eq%20'Windows11'%20and%20healthStatus%20eq%20'Active'",
    '$filter=osPlatform+eq+%27Windows11%27+and+healthStatus+eq+%27Active%27',
    '%24filter=osPlatform%20eq%20%27Windows11%27%20and%20healthStatus%20eq%20%27Active%27',
    `%24filter=${encodeURIComponent("osPlatform eq 'Windows11' and healthStatus eq 'Active'")}`,
    "$filter=osPlatform%20eq%20'Windows11'%20and%20(healthStatus%20eq%20'Active')",
    "$FILTER=osPlatform%20eq%20'Windows11'%20and%20healthStatus%20eq%20'Active'"
  ]) {
    const answer = await call(`/api/machines?${query}`)
    t.equal(answer.status, 200, query)
    t.strictSame(ids(answer.body.value), expected, query)
  }
})

t.test('$top, $skip, $select, $orderby, $count and $expand', async (t) => {
  const top = await call('/api/machines?$top=5')
  t.strictSame(ids(top.body.value), ids(machines.slice(0, 5)), '$top')
  t.notOk('@odata.nextLink' in top.body, '$top under the page size: no nextLink')
  const skip = await call('/api/machines?$skip=230')
  t.strictSame(ids(skip.body.value), ids(machines.slice(230)), '$skip')
  t.strictSame(ids((await call('/api/machines?$skip=3&$top=4')).body.value), ids(machines.slice(3, 7)), '$skip and $top')
  t.strictSame((await call('/api/machines?$top=0')).body.value, [], '$top=0')

  const selected = await call('/api/machines?$top=3&$select=id,computerDnsName,MachineTags')
  t.strictSame(selected.body.value, machines.slice(0, 3).map((m) => ({ id: m.id, computerDnsName: m.computerDnsName, machineTags: m.machineTags })), '$select: those properties only')

  const ordered = [...machines].sort((a, b) => b.riskScore.localeCompare(a.riskScore) || a.computerDnsName.localeCompare(b.computerDnsName))
  const orderby = await call(`/api/machines?$orderby=${encodeURIComponent('riskScore desc, computerDnsName asc')}`)
  t.strictSame(ids(orderby.body.value), ids(ordered), '$orderby on two keys')
  const oldest = await call('/api/alerts?$orderby=alertCreationTime&$top=1')
  t.equal(oldest.body.value[0].id, [...alerts].sort((a, b) => a.alertCreationTime.localeCompare(b.alertCreationTime))[0]?.id, '$orderby ascending by default')

  const counted = await call("/api/machines?$count=true&$top=2&$filter=healthStatus%20eq%20'Active'")
  t.equal(counted.body['@odata.count'], machines.filter((m) => m.healthStatus === 'Active').length, '$count: every match, not the page')
  t.equal(counted.body.value.length, 2)

  const plain = await call('/api/alerts?$top=3')
  t.ok(plain.body.value.every((alert: { evidence: unknown[] }) => Array.isArray(alert.evidence) && alert.evidence.length === 0), 'no evidence unless expanded')
  const expanded = await call('/api/alerts?$top=3&$expand=evidence')
  for (const alert of expanded.body.value) {
    t.strictSame(alert.evidence, sim.defender.data.evidence.get(alert.id), `${alert.id}: its evidence`)
    t.ok(alert.evidence.length > 0)
  }
  const one = await call(`/api/alerts/${alerts[0]?.id ?? ''}?$expand=evidence`)
  t.strictSame(one.body.evidence, sim.defender.data.evidence.get(alerts[0]?.id ?? ''), 'an alert by id with its evidence')
  t.equal(one.body['@odata.context'], `${sim.defender.url}/api/$metadata#Alerts/$entity`)
})

t.test('what the API refuses gets its 400 error body', async (t) => {
  for (const query of [
    '$filter=nosuchproperty eq 1',
    "$filter=computerDnsName eq 'unterminated",
    "$filter=(healthStatus eq 'Active'",
    "$filter=healthStatus eq 'Active' and",
    '$filter=healthStatus',
    "$filter=healthStatus eq 'Active' )",
    "$filter=healthStatus eq 'Active' xor true",
    "$filter=machineTags/any(t: t eq 'Tier0'",
    '$filter=startswith(computerDnsName)',
    '$filter=lastSeen gt 2024-13-45',
    "$filter=riskScore in ('High'",
    '$orderby=nosuchproperty desc',
    '$orderby=computerDnsName sideways',
    '$select=id,nosuchproperty',
    '$top=-1',
    '$top=ten',
    '$skip=1.5',
    '$count=maybe',
    '$expand=nosuchthing',
    '$search=dc'
  ]) {
    const answer = await call(`/api/machines?${query.replaceAll(' ', '%20')}`)
    t.equal(answer.status, 400, query)
    t.strictSame(answer.body, { error: { code: 'BadRequest', message: answer.body.error.message, target: answer.requestId } }, `${query}: the API's error body`)
    t.match(answer.body.error.message, /^Invalid ODataQuery: /, `${query}: says why`)
  }
  const text = await call('/api/machines?$filter=rbacGroupId%20gt%20\'x\'')
  t.equal(text.status, 400, 'a number compared with a string in gt')
})

t.test('server-driven paging keeps the query and returns each item once', async (t) => {
  const all = await call('/api/alerts')
  t.equal(all.body.value.length, SAMPLE_ALERT_COUNT, `the API's page (${API_PAGE_SIZE}) holds every sample alert`)
  t.notOk('@odata.nextLink' in all.body)

  const small = await startSimulator({ pki, perMinute: 100_000, roles: ROLES, pageSize: 7 })
  t.teardown(() => small.close())
  const get = defenderClient(small, ROLES)
  const filter = "severity eq 'High' and status ne 'Resolved'"
  const expected = ids(small.defender.data.alerts.filter((a) => a.severity === 'High' && a.status !== 'Resolved'))
  const paged = await walk(get, `/api/alerts?$filter=${encodeURIComponent(filter)}&$select=id,severity,status`)
  t.strictSame(ids(paged.items), expected, 'every match once, in order')
  t.equal(paged.links.length, Math.ceil(expected.length / 7) - 1, 'one link per page but the last')
  paged.links.forEach((link, i) => {
    const url = new URL(link)
    t.equal(url.origin, small.defender.url, 'absolute, on the API')
    t.equal(url.searchParams.get('$filter'), filter, 'the filter kept')
    t.equal(url.searchParams.get('$select'), 'id,severity,status', 'the selection kept')
    t.equal(url.searchParams.get('$skip'), String((i + 1) * 7))
  })

  const topped = await walk(get, '/api/machines?$top=20')
  t.strictSame(ids(topped.items), ids(small.defender.data.machines.slice(0, 20)), '$top over the page size: pages up to $top')
  t.equal(topped.links.length, 2)
  t.equal(new URL(topped.links[0] ?? '').searchParams.get('$top'), '13', 'the link asks for what is left of $top')

  const rows = small.defender.data.softwareVulnerabilities
  t.ok(rows.length > 3000, 'thousands of vulnerability rows')
  const big = await startSimulator({ pki, perMinute: 100_000, roles: ROLES })
  t.teardown(() => big.close())
  const exported = await walk(defenderClient(big, ROLES), '/api/machines/SoftwareVulnerabilitiesByMachine?pageSize=1000')
  t.strictSame(exported.items.map((row) => row.id), big.defender.data.softwareVulnerabilities.map((row) => row.id), 'the export: every row once')
  t.equal(exported.links.length, Math.ceil(rows.length / 1000) - 1)
  t.match(exported.links[0], /\/api\/machines\/SoftwareVulnerabilitiesByMachine\?pageSize=1000&\$skiptoken=/, 'export pages carry a $skiptoken')
})
