import t from 'tap'
import { request } from 'undici'
import { huntingTables } from '../src/simulator/hunting-tables.js'
import { DEMO_PAGE_SIZE, createTestPki, startSimulator } from '../src/simulator/index.js'
import type { Alert, Machine } from '../src/simulator/index.js'
import { startBrokerStack } from './helpers/broker.js'
import { defenderClient } from './helpers/defender-client.js'

type Row = Record<string, unknown>

const HOUR_MS = 3_600_000
// A fixed instant: ago() counts from the simulator's clock, and so does the expected answer.
const NOW = Date.now()
const clock = { now: () => NOW }
const pki = await createTestPki()
const sim = await startSimulator({ pki, clock, perMinute: 100_000, roles: ['AdvancedQuery.Read.All'] })
t.teardown(() => sim.close())
const call = defenderClient(sim, ['AdvancedQuery.Read.All'])
const { machines, alerts } = sim.defender.data
const tables = huntingTables(sim.defender.data)
const processes = tables.get('DeviceProcessEvents')?.rows ?? []
const connections = tables.get('DeviceNetworkEvents')?.rows ?? []

const iso = (ms: unknown): string => new Date(ms as number).toISOString()
const pick = (row: Row, names: readonly string[]): Row => Object.fromEntries(names.map((name) => [name, row[name]]))
/** KQL's has: a whole term, any case; terms are runs of letters and digits. */
const hasTerm = (text: string, term: string): boolean => text.toLowerCase().split(/[^a-z0-9]+/).includes(term.toLowerCase())
const deviceInfo = (m: Machine): Row => ({ Timestamp: m.lastSeen, DeviceId: m.id, DeviceName: m.computerDnsName, OSPlatform: m.osPlatform })
const alertInfo = (a: Alert): Row => ({ Timestamp: a.alertCreationTime, AlertId: a.id, Title: a.title, Category: a.category, Severity: a.severity })
const countBy = <T>(items: readonly T[], key: (item: T) => string, column: string): Row[] => {
  const counts = new Map<string, number>()
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1)
  return [...counts].map(([value, count]) => ({ [column]: value, count_: count }))
}
const byKey = (column: string) => (a: Row, b: Row) => String(a[column]).localeCompare(String(b[column]))

interface Case {
  query: string
  /** The expected rows, from the sample data; `unordered` when the query does not fix an order. */
  expected: Row[]
  columns: string[]
  unordered?: string
  /** Every row of the table: the query reorders or reshapes, it does not filter. */
  everyRow?: true
}

const windowsEleven = machines.filter((m) => m.osPlatform === 'Windows11')
const recent = machines.filter((m) => Date.parse(m.lastSeen) > NOW - 2 * HOUR_MS)
const newestAlerts = [...alerts].sort((a, b) => Date.parse(b.alertCreationTime) - Date.parse(a.alertCreationTime))

const CASES: Case[] = [
  {
    query: 'DeviceInfo | where OSPlatform == "Windows11" | project DeviceId, DeviceName',
    columns: ['DeviceId', 'DeviceName'],
    expected: windowsEleven.map((m) => ({ DeviceId: m.id, DeviceName: m.computerDnsName }))
  },
  {
    query: "DeviceInfo | where OSPlatform != 'Linux' | project DeviceName",
    columns: ['DeviceName'],
    expected: machines.filter((m) => m.osPlatform !== 'Linux').map((m) => ({ DeviceName: m.computerDnsName }))
  },
  {
    query: 'DeviceInfo | where DeviceName contains "-SRV-" | project DeviceName, OSPlatform',
    columns: ['DeviceName', 'OSPlatform'],
    expected: machines.filter((m) => m.computerDnsName.toLowerCase().includes('-srv-')).map((m) => ({ DeviceName: m.computerDnsName, OSPlatform: m.osPlatform }))
  },
  {
    query: 'DeviceProcessEvents | where ProcessCommandLine has "ipconfig" | project DeviceId, ProcessCommandLine',
    columns: ['DeviceId', 'ProcessCommandLine'],
    expected: processes.filter((p) => hasTerm(String(p['ProcessCommandLine']), 'ipconfig')).map((p) => pick(p, ['DeviceId', 'ProcessCommandLine']))
  },
  {
    query: 'DeviceInfo | where DeviceName startswith "SQL-" | project DeviceName',
    columns: ['DeviceName'],
    expected: machines.filter((m) => m.computerDnsName.toLowerCase().startsWith('sql-')).map((m) => ({ DeviceName: m.computerDnsName }))
  },
  {
    query: 'AlertInfo | where Severity in ("High", "Informational") | project AlertId, Severity',
    columns: ['AlertId', 'Severity'],
    expected: alerts.filter((a) => a.severity === 'High' || a.severity === 'Informational').map((a) => ({ AlertId: a.id, Severity: a.severity }))
  },
  {
    query: 'DeviceInfo | where Timestamp > ago(2h) | project DeviceId, Timestamp',
    columns: ['DeviceId', 'Timestamp'],
    expected: recent.map((m) => ({ DeviceId: m.id, Timestamp: m.lastSeen }))
  },
  {
    // and binds tighter than or
    query: 'AlertInfo | where Timestamp > ago(3d) and Timestamp < ago(1d) or Severity == "Informational" and Category == "CommandAndControl" | project AlertId',
    columns: ['AlertId'],
    expected: alerts.filter((a) => {
      const at = Date.parse(a.alertCreationTime)
      return (at > NOW - 72 * HOUR_MS && at < NOW - 24 * HOUR_MS) || (a.severity === 'Informational' && a.category === 'CommandAndControl')
    }).map((a) => ({ AlertId: a.id }))
  },
  {
    query: 'AlertInfo | where Severity == "High" and (Category == "Malware" or Category == "Ransomware") | project AlertId, Category',
    columns: ['AlertId', 'Category'],
    expected: alerts.filter((a) => a.severity === 'High' && (a.category === 'Malware' || a.category === 'Ransomware')).map((a) => ({ AlertId: a.id, Category: a.category }))
  },
  {
    query: 'AlertInfo | project Id = AlertId, Title, Timestamp',
    columns: ['Id', 'Title', 'Timestamp'],
    expected: alerts.map((a) => ({ Id: a.id, Title: a.title, Timestamp: a.alertCreationTime })),
    everyRow: true
  },
  {
    query: 'DeviceInfo | take 7 | project Timestamp, DeviceId, DeviceName, OSPlatform',
    columns: ['Timestamp', 'DeviceId', 'DeviceName', 'OSPlatform'],
    expected: machines.slice(0, 7).map(deviceInfo)
  },
  {
    query: 'AlertInfo | limit 4 | project Timestamp, AlertId, Title, Category, Severity',
    columns: ['Timestamp', 'AlertId', 'Title', 'Category', 'Severity'],
    expected: alerts.slice(0, 4).map(alertInfo)
  },
  {
    query: 'AlertInfo | top 5 by Timestamp asc | project AlertId, Timestamp',
    columns: ['AlertId', 'Timestamp'],
    expected: newestAlerts.slice(-5).reverse().map((a) => ({ AlertId: a.id, Timestamp: a.alertCreationTime }))
  },
  {
    query: 'AlertInfo | where Severity == "Low" | top 3 by Timestamp | project AlertId',
    columns: ['AlertId'],
    expected: newestAlerts.filter((a) => a.severity === 'Low').slice(0, 3).map((a) => ({ AlertId: a.id }))
  },
  {
    query: 'AlertInfo | summarize count() by Severity',
    columns: ['Severity', 'count_'],
    expected: countBy(alerts, (a) => a.severity, 'Severity'),
    unordered: 'Severity'
  },
  {
    query: 'DeviceNetworkEvents | where RemotePort == 445 | summarize count() by DeviceName',
    columns: ['DeviceName', 'count_'],
    expected: countBy(connections.filter((c) => c['RemotePort'] === 445), (c) => String(c['DeviceName']), 'DeviceName'),
    unordered: 'DeviceName'
  },
  {
    query: 'DeviceInfo | order by DeviceName asc | project DeviceName',
    columns: ['DeviceName'],
    expected: machines.map((m) => m.computerDnsName).sort().map((name) => ({ DeviceName: name })),
    everyRow: true
  },
  {
    query: 'AlertInfo | where Category == "Discovery" | order by Timestamp | project AlertId',
    columns: ['AlertId'],
    expected: newestAlerts.filter((a) => a.category === 'Discovery').map((a) => ({ AlertId: a.id }))
  }
]

t.test('each KQL operator answers the rows the sample data says, with a Schema that follows the query', async (t) => {
  for (const { query, expected, columns, unordered, everyRow } of CASES) {
    const answer = await call('/api/advancedqueries/run', { method: 'POST', body: { Query: query } })
    t.equal(answer.status, 200, query)
    t.strictSame(answer.body.Schema.map((column: { Name: string }) => column.Name), columns, `${query}: the schema's columns`)
    const total = query.startsWith('DeviceInfo') ? machines.length : query.startsWith('AlertInfo') ? alerts.length : Infinity
    if (everyRow === true) t.equal(expected.length, total, `${query}: every row`)
    else t.ok(expected.length > 0 && expected.length < total, `${query}: the sample data tells it apart`)
    const results: Row[] = answer.body.Results
    if (unordered === undefined) t.strictSame(results, expected, query)
    else t.strictSame([...results].sort(byKey(unordered)), [...expected].sort(byKey(unordered)), query)
  }

  // has looks for whole terms: "config" is inside "ipconfig" (contains finds it), not a term of its own.
  const hunt = async (query: string): Promise<Row[]> => (await call('/api/advancedqueries/run', { method: 'POST', body: { Query: query } })).body.Results
  const contains = processes.filter((p) => String(p['ProcessCommandLine']).toLowerCase().includes('config')).map((p) => pick(p, ['DeviceId']))
  t.ok(contains.length > 0, 'some command lines contain "config"')
  t.strictSame(await hunt('DeviceProcessEvents | where ProcessCommandLine contains "config" | project DeviceId'), contains, 'contains "config"')
  t.strictSame(await hunt('DeviceProcessEvents | where ProcessCommandLine has "config" | project DeviceId'),
    processes.filter((p) => hasTerm(String(p['ProcessCommandLine']), 'config')).map((p) => pick(p, ['DeviceId'])), 'has "config": no whole term')
})

t.test('the hunting tables agree with the sample entities', async (t) => {
  const names = new Map(machines.map((m) => [m.id, m.computerDnsName]))
  for (const name of ['DeviceInfo', 'DeviceProcessEvents', 'DeviceNetworkEvents']) {
    const rows = tables.get(name)?.rows ?? []
    t.ok(rows.length >= machines.length, `${name} has rows for the sample machines`)
    t.ok(rows.every((row) => names.get(String(row['DeviceId'])) === row['DeviceName']), `${name}: each DeviceId is a sample machine, under its name`)
  }
  t.strictSame(tables.get('AlertInfo')?.rows.map((row) => [row['AlertId'], iso(row['Timestamp']), row['Title'], row['Severity']]),
    alerts.map((a) => [a.id, a.alertCreationTime, a.title, a.severity]), 'an AlertInfo row per alert, with its time, title and severity')
  for (const alert of alerts.slice(0, 20)) {
    const evidence = sim.defender.data.evidence.get(alert.id)?.find((item) => item.entityType === 'Process')
    t.ok(processes.some((p) => p['DeviceId'] === alert.machineId && p['SHA1'] === evidence?.sha1), `the process of alert ${alert.id} is on its machine`)
  }
  t.equal(huntingTables(sim.defender.data), tables, 'built once per sample data')
})

t.test('the types of the Schema: datetimes, numbers and booleans as the API names them', async (t) => {
  const answer = await call('/api/advancedqueries/run', { method: 'POST', body: { Query: 'DeviceNetworkEvents | take 1 | project Timestamp, RemotePort, DeviceName' } })
  t.strictSame(answer.body.Schema, [{ Name: 'Timestamp', Type: 'DateTime' }, { Name: 'RemotePort', Type: 'Int32' }, { Name: 'DeviceName', Type: 'String' }])
  const summary = await call('/api/advancedqueries/run', { method: 'POST', body: { Query: 'DeviceInfo | summarize count() by IsAzureADJoined' } })
  t.strictSame(summary.body.Schema, [{ Name: 'IsAzureADJoined', Type: 'Boolean' }, { Name: 'count_', Type: 'Int64' }])
  t.strictSame([...summary.body.Results].sort((a: Row, b: Row) => Number(a['IsAzureADJoined']) - Number(b['IsAzureADJoined'])),
    [false, true].map((joined) => ({ IsAzureADJoined: joined, count_: machines.filter((m) => m.isAadJoined === joined).length })))
})

t.test('a query the simulator cannot read: the API\'s 400 with the reason', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['DeviceInfo | wher OSPlatform == "Linux"', /^Syntax error: Query could not be parsed at 'wher' on line \[1,14\]/],
    ['DeviceInfo | where OSPlatform == ', /^Syntax error: .*expected a column, a literal or a function call/],
    ['DeviceInfo | take ten', /expected a whole number of rows/],
    ['DeviceInfo | where "unclosed', /a string literal is not closed/],
    ['DeviceInfo | where NoSuchColumn == 1', /^'where' operator: Failed to resolve column or scalar expression named 'NoSuchColumn'/],
    ['DeviceInfo | where OSBuild == "x"', /^'where' operator: /],
    ['DeviceInfo | summarize', /^Syntax error: Query could not be parsed at '<end of query>' on line \[1,23\]/],
    ['DeviceInfo | summarize DeviceName', /^'summarize' operator: expected an aggregation/],
    ['DeviceInfo | where DeviceName', /^'where' operator: the predicate is a string, not a bool/],
    ['DeviceInfo | top 3', /expected 'by'/],
    ['EmailEvents | take 1', /^Failed to resolve table or column expression named 'EmailEvents'/],
    ['DeviceInfo |', /expected an operator/]
  ]
  for (const [query, message] of cases) {
    const answer = await call('/api/advancedqueries/run', { method: 'POST', body: { Query: query } })
    t.equal(answer.status, 400, query)
    t.match(answer.body, { error: { code: 'BadRequest', message, target: answer.requestId } }, query)
    t.strictSame(Object.keys(answer.body.error).sort(), ['code', 'message', 'target'], `${query}: the API's error shape`)
  }
  for (const body of ['{not json', '{"Query": ""}', '{"Query": 3}', '{"query2": "DeviceInfo"}']) {
    const answer = await call('/api/advancedqueries/run', { method: 'POST', body })
    t.strictSame(answer.body, { error: { code: 'InvalidRequestBody', message: 'Request body is incorrect: send {"Query": "<KQL>"}.', target: answer.requestId } }, body)
  }
})

t.test('through the broker in demo mode: a hunting query\'s results follow the query', async (t) => {
  const stack = await startBrokerStack(t, { simulator: { pki, pageSize: DEMO_PAGE_SIZE } })
  const data = stack.simulator.defender.data
  const query = 'DeviceInfo | where OSPlatform startswith "WindowsServer" | summarize count() by OSPlatform | order by OSPlatform asc'
  const res = await request(`${stack.url}/api/v1.0/AdvancedQueries/Run`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ Query: query })
  })
  t.equal(res.statusCode, 200)
  const answer = await res.body.json() as { Schema: unknown, Results: Row[] }
  t.strictSame(answer.Schema, [{ Name: 'OSPlatform', Type: 'String' }, { Name: 'count_', Type: 'Int64' }])
  const expected = countBy(data.machines.filter((m) => m.osPlatform.startsWith('WindowsServer')), (m) => m.osPlatform, 'OSPlatform').sort(byKey('OSPlatform'))
  t.ok(expected.length > 1, 'several server platforms in the sample data')
  t.strictSame(answer.Results, expected)

  const refused = await request(`${stack.url}/api/advancedqueries/run`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ Query: 'DeviceInfo | sort DeviceName' })
  })
  t.equal(refused.statusCode, 400, 'an unreadable query: the API\'s 400 passes through the broker')
  t.match(await refused.body.json(), { error: { code: 'BadRequest', message: /^Syntax error: / } })
})
