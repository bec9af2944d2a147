import t from 'tap'
import { request } from 'undici'
import { createSampleData } from '../src/simulator/sample-data.js'
import { DEMO_PAGE_SIZE } from '../src/simulator/index.js'
import { acceptsConnections, cliEnv, logLines, spawnCli } from './helpers/spawn.js'

t.test('demo: ready-to-paste curl lines, a working broker, a clean exit', async (t) => {
  const home = t.testdir({})
  const cli = spawnCli(t, ['demo', '--port', '0'], { env: cliEnv(home) })
  await cli.waitForLine('stderr', /^Press Ctrl\+C to stop\.$/)

  const ready = cli.stderr()
  const base = /^The demo broker is ready at (http:\/\/127\.0\.0\.1:\d+): try/m.exec(ready)?.[1]
  t.ok(base, 'the ready text names the URL')
  const url = base ?? ''
  t.ok(ready.includes(`  curl ${url}/api/alerts\n`), 'a curl line for the alerts')
  t.match(ready, /^ {2}curl -X POST http:\/\/127\.0\.0\.1:\d+\/api\/machines\/[0-9a-f]{40}\/isolate \\$/m, 'a curl line for isolating a sample machine')
  t.ok(ready.includes(`https://api.securitycenter.microsoft.com -> ${url}\n`), 'the base URL change a tool makes')

  const warning = logLines(cli.stdout()).find((line) => typeof line.entra === 'string' && typeof line.defender === 'string')
  t.match(warning, { level: 40, msg: /^demo mode: .*no real credential/ }, 'the log says it is the demo')
  const ports = [
    Number(new URL(url).port),
    Number(new URL(String(warning?.entra)).port),
    Number(new URL(String(warning?.defender)).port)
  ]
  t.same(await Promise.all(ports.map((port) => acceptsConnections(port))), [true, true, true], 'broker, Entra and Defender simulators listening')

  const alerts = await request(`${url}/api/alerts`)
  const body = await alerts.body.json() as { value?: unknown[], '@odata.nextLink'?: string }
  t.equal(alerts.statusCode, 200, 'GET /api/alerts: 200')
  t.equal(body.value?.length, DEMO_PAGE_SIZE, 'a page of alerts at the demo\'s page size')
  const nextLink = body['@odata.nextLink']
  t.type(nextLink, 'string', 'an @odata.nextLink: more pages')
  t.equal(String(nextLink).split('/api/')[0], url, '@odata.nextLink points at the broker, not the upstream')

  // The printed $filter example, run as printed: the machines the sample data says, no others.
  const filtered = /^ {2}curl '(http:\/\/127\.0\.0\.1:\d+\/api\/machines\?\$filter=[^']+)'$/m.exec(ready)?.[1]
  t.ok(filtered, 'a curl line with a $filter on machines')
  const example = new URL(filtered ?? url)
  t.equal(example.searchParams.get('$filter'), "osPlatform eq 'Windows11' and healthStatus eq 'Active'", 'the example\'s filter')
  const top = Number(example.searchParams.get('$top'))
  const sample = createSampleData(Date.now())
  const expected = sample.machines
    .filter((machine) => machine.osPlatform === 'Windows11' && machine.healthStatus === 'Active')
  t.ok(expected.length > top, 'the sample data has more matching machines than the example asks for')
  const machines = await request(filtered ?? url)
  const page = await machines.body.json() as { value: Array<{ id: string, osPlatform: string, healthStatus: string }>, '@odata.nextLink'?: string }
  t.equal(machines.statusCode, 200, 'the $filter example: 200')
  t.strictSame(page.value.map((machine) => machine.id), expected.slice(0, top).map((machine) => machine.id), 'the first matching machines of the sample data')
  t.notOk('@odata.nextLink' in page, 'an explicit $top under the page size: no nextLink')

  // The printed hunting example, run as printed: counts of the sample's High alerts by category, largest first.
  const hunting = /^ {2}curl -X POST (http:\/\/127\.0\.0\.1:\d+\/api\/advancedqueries\/run) -H 'content-type: application\/json' \\\n {7}-d '([^']+)'$/m.exec(ready)
  t.ok(hunting, 'a curl line for a hunting query')
  const payload = JSON.parse(hunting?.[2] ?? '{}') as { Query?: string }
  t.equal(payload.Query, 'AlertInfo | where Severity == "High" | summarize count() by Category | order by count_ desc', 'the example\'s query')
  const hunt = await request(hunting?.[1] ?? url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: hunting?.[2] ?? '' })
  const answer = await hunt.body.json() as { Schema: unknown, Results: Array<{ Category: string, count_: number }> }
  t.equal(hunt.statusCode, 200, 'the hunting example: 200')
  t.strictSame(answer.Schema, [{ Name: 'Category', Type: 'String' }, { Name: 'count_', Type: 'Int64' }], 'the columns the query names')
  const counts = new Map<string, number>()
  for (const alert of sample.alerts.filter((alert) => alert.severity === 'High')) counts.set(alert.category, (counts.get(alert.category) ?? 0) + 1)
  t.ok(counts.size > 1, 'High alerts of several categories in the sample data')
  const byCategory = (a: { Category: string }, b: { Category: string }) => a.Category.localeCompare(b.Category)
  t.strictSame([...answer.Results].sort(byCategory), [...counts].map(([Category, count]) => ({ Category, count_: count })).sort(byCategory), 'each category of the High alerts, with its count')
  t.ok(answer.Results.every((row, i) => i === 0 || (answer.Results[i - 1]?.count_ ?? 0) >= row.count_), 'largest count first')

  const readyz = await request(`${url}/readyz`)
  await readyz.body.dump()
  t.equal(readyz.statusCode, 200, 'GET /readyz: 200')

  cli.child.kill('SIGTERM')
  const exit = await cli.waitForExit()
  t.equal(exit.code, 0, 'SIGTERM: exit code 0')
  t.equal(exit.signal, null, 'SIGTERM: handled, not killed')
  t.same(await Promise.all(ports.map((port) => acceptsConnections(port))), [false, false, false], 'nothing left listening on those ports')
})
