import t from 'tap'
import { request } from 'undici'
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
  t.ok(Array.isArray(body.value) && body.value.length > 0, 'a value array of alerts')
  const nextLink = body['@odata.nextLink']
  t.type(nextLink, 'string', 'an @odata.nextLink: more pages')
  t.equal(String(nextLink).split('/api/')[0], url, '@odata.nextLink points at the broker, not the upstream')

  const readyz = await request(`${url}/readyz`)
  await readyz.body.dump()
  t.equal(readyz.statusCode, 200, 'GET /readyz: 200')

  cli.child.kill('SIGTERM')
  const exit = await cli.waitForExit()
  t.equal(exit.code, 0, 'SIGTERM: exit code 0')
  t.equal(exit.signal, null, 'SIGTERM: handled, not killed')
  t.same(await Promise.all(ports.map((port) => acceptsConnections(port))), [false, false, false], 'nothing left listening on those ports')
})
