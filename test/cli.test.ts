import { X509Certificate } from 'node:crypto'
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { DEMO_ROLES, startSimulator } from '../src/simulator/index.js'
import { simulatorEnv } from './helpers/broker.js'
import { acceptsConnections, cliEnv, logLines, runCli, spawnCli, stopsCleanly, type CliProcess, type Exit } from './helpers/spawn.js'

const CANARY = 'cnr8Q~CANARY-secret-must-never-be-printed-1'
const OTHER_TENANT_ID = '3f0c6f1e-9d7a-4c55-8f3b-2a1e5d6c7b80'
const PUBLIC_SCOPE = 'https://api.securitycenter.microsoft.com/.default'
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }

const home = t.testdir({})
const simulator = await startSimulator()
t.teardown(() => simulator.close())
const caFile = join(home, 'simulator-ca.pem')
writeFileSync(caFile, simulator.caCertPem)

/** What a user sets to run against the simulator, as the README tells them for a real tenant. */
const userEnv = (extra: Record<string, string> = {}) => cliEnv(home, {
  ...simulatorEnv(simulator),
  BROKER_CA_FILE: caFile,
  ...extra
})

/** Credentials that are well formed and never used: config errors stop the process before any token request. */
const canaryEnv = (extra: Record<string, string> = {}) => cliEnv(home, {
  AZURE_TENANT_ID: OTHER_TENANT_ID,
  AZURE_CLIENT_ID: simulator.clientId,
  AZURE_CLIENT_SECRET: CANARY,
  ...extra
})

const output = (exit: Exit) => exit.stdout + exit.stderr

function lines (text: string): string[] {
  return text.split('\n').filter((line) => line !== '')
}

/** Starts `serve` and reads the address from its 'broker listening' line (JSON: stdout is a pipe). */
async function startServe (t: Test, env: Record<string, string>): Promise<{ cli: CliProcess, url: string, port: number }> {
  const cli = spawnCli(t, ['serve'], { env })
  const line = await cli.waitForLine('stdout', /"msg":"broker listening"/)
  const listen = (JSON.parse(line) as { listen: string }).listen
  return { cli, url: listen, port: Number(new URL(listen).port) }
}

t.test('usage', async (t) => {
  const [help, version, unknownCommand, unknownFlag, extraArgument] = await Promise.all([
    runCli(t, ['--help'], { env: cliEnv(home) }),
    runCli(t, ['--version'], { env: cliEnv(home) }),
    runCli(t, ['frobnicate'], { env: cliEnv(home) }),
    runCli(t, ['serve', '--frobnicate'], { env: cliEnv(home) }),
    runCli(t, ['check', 'extra'], { env: cliEnv(home) })
  ])

  t.equal(help.code, 0, '--help exits 0')
  t.match(help.stdout, /Usage:/, '--help prints usage')
  for (const command of ['serve', 'check', 'demo', 'ca', 'consent']) t.match(help.stdout, new RegExp(`defender-token-broker \\[?${command}\\b`), `usage names ${command}`)
  t.equal(help.stderr, '', '--help writes nothing to stderr')

  t.equal(version.code, 0, '--version exits 0')
  t.equal(version.stdout, `${pkg.version}\n`, "--version prints package.json's version")

  t.equal(unknownCommand.code, 2, 'an unknown command exits 2')
  t.match(unknownCommand.stderr, /^defender-token-broker: unknown command frobnicate\n/, 'and says which')
  t.equal(unknownCommand.stdout, '', 'nothing on stdout')

  t.equal(unknownFlag.code, 2, 'an unknown flag exits 2')
  t.match(unknownFlag.stderr, /^defender-token-broker: Unknown option '--frobnicate'/, 'and says which')
  t.match(unknownFlag.stderr, /Usage:/, 'followed by the usage')

  t.equal(extraArgument.code, 2, 'an unexpected argument exits 2')
  t.match(extraArgument.stderr, /unexpected argument extra/, 'and says which')
})

t.test('serve with no credentials exits 1 with one message and starts no simulator', async (t) => {
  for (const args of [['serve'], []]) {
    const exit = await runCli(t, args, { env: cliEnv(home) })
    const name = args.length === 0 ? 'no command' : 'serve'
    t.equal(exit.code, 1, `${name}: exit code 1`)
    t.equal(exit.stdout, '', `${name}: no log line: nothing was started`)
    t.equal(lines(exit.stderr).length, 1, `${name}: one message`)
    for (const setting of ['AZURE_TENANT_ID', 'AZURE_CLIENT_ID', 'AZURE_CLIENT_SECRET', 'AZURE_CLIENT_CERTIFICATE_PATH', 'npm run demo']) {
      t.ok(exit.stderr.includes(setting), `${name}: the message names ${setting}`)
    }
    t.notMatch(exit.stderr, /demo mode|simulat|listening|ready at/i, `${name}: no simulator, no demo broker`)
  }
})

t.test('config errors exit 1 naming the setting, never the secret', async (t) => {
  const dir = t.testdir({
    'unknown-key.yaml': [
      'profiles:',
      '  - name: contoso',
      '    basePath: /',
      `    tenantId: ${OTHER_TENANT_ID}`,
      `    clientId: ${simulator.clientId}`,
      `    credential: { type: secret, secret: "${CANARY}" }`,
      'refresh: { beforeSecs: 300 }',
      ''
    ].join('\n'),
    'client-secret': `${CANARY}\n`
  })
  const secretFile = join(dir, 'client-secret')
  chmodSync(secretFile, 0o644)

  const [badPort, unknownKey, openSecretFile] = await Promise.all([
    runCli(t, ['serve'], { env: canaryEnv({ BROKER_PORT: 'abc' }) }),
    runCli(t, ['serve', '--config', join(dir, 'unknown-key.yaml')], { env: cliEnv(home) }),
    runCli(t, ['serve'], { env: cliEnv(home, { AZURE_TENANT_ID: OTHER_TENANT_ID, AZURE_CLIENT_ID: simulator.clientId, AZURE_CLIENT_SECRET_FILE: secretFile }) })
  ])

  t.equal(badPort.code, 1, 'BROKER_PORT=abc: exit code 1')
  t.equal(badPort.stderr, 'defender-token-broker: BROKER_PORT: must be an integer from 0 to 65535\n', 'BROKER_PORT=abc: the setting and what is wrong')

  t.equal(unknownKey.code, 1, 'unknown YAML key: exit code 1')
  t.match(unknownKey.stderr, /^defender-token-broker: refresh\.beforeSecs: is not a known setting/, 'unknown YAML key: its path')

  t.equal(openSecretFile.code, 1, 'secret file readable by others: exit code 1')
  t.ok(openSecretFile.stderr.startsWith(`defender-token-broker: AZURE_CLIENT_SECRET_FILE: the file ${secretFile} is readable by group or others`),
    'secret file readable by others: the setting and the file')
  t.ok(openSecretFile.stderr.includes(`chmod 600 ${secretFile}`), 'secret file readable by others: the chmod that fixes it')

  for (const [name, exit] of Object.entries({ badPort, unknownKey, openSecretFile })) {
    t.equal(exit.stdout, '', `${name}: nothing started`)
    t.equal(lines(exit.stderr).length, 1, `${name}: one message`)
    t.notOk(output(exit).includes(CANARY), `${name}: the secret is not in the output`)
  }
})

t.test('serve on 0.0.0.0 with no client keys', async (t) => {
  const refused = await runCli(t, ['serve'], { env: canaryEnv({ BROKER_HOST: '0.0.0.0', BROKER_PORT: '0' }) })
  t.equal(refused.code, 1, 'refuses to start: exit code 1')
  t.match(refused.stderr, /^defender-token-broker: listen\.host \(BROKER_HOST\): the broker would listen on 0\.0\.0\.0 with no client keys/, 'says why')
  t.match(refused.stderr, /Add a client key/, 'says to add a client key')
  t.match(refused.stderr, /BROKER_ALLOW_UNAUTHENTICATED=true/, 'names the opt-out')
  t.equal(refused.stdout, '', 'never listened')
  t.notOk(output(refused).includes(CANARY), 'the secret is not in the output')

  const { cli, url, port } = await startServe(t, userEnv({ BROKER_HOST: '0.0.0.0', BROKER_PORT: '0', BROKER_ALLOW_UNAUTHENTICATED: 'true' }))
  t.match(url, /^http:\/\/0\.0\.0\.0:\d+$/, 'with BROKER_ALLOW_UNAUTHENTICATED=true it listens on 0.0.0.0')
  const health = await request(`http://127.0.0.1:${port}/healthz`)
  await health.body.dump()
  t.equal(health.statusCode, 200, 'and answers')
  await stopsCleanly(t, cli)
})

t.test('ca prints the egress proxy\'s CA certificate, made once in the state directory', async (t) => {
  const stateDir = join(home, 'state-ca')
  const first = await runCli(t, ['ca'], { env: canaryEnv({ BROKER_STATE_DIR: stateDir }) })
  t.equal(first.code, 0, 'exit code 0')
  t.equal(first.stderr, '')
  t.match(first.stdout, /^-----BEGIN CERTIFICATE-----\n[\s\S]+\n-----END CERTIFICATE-----\n$/, 'one PEM certificate, nothing else')
  t.ok(new X509Certificate(first.stdout).ca, 'a CA certificate')
  t.equal(statSync(join(stateDir, 'egress-ca.pem')).mode & 0o777, 0o600, 'its file (with the key) is 0600')
  const again = await runCli(t, ['ca'], { env: canaryEnv({ BROKER_STATE_DIR: stateDir }) })
  t.equal(again.stdout, first.stdout, 'the same certificate the next time')
  const notADirectory = join(home, 'a-file')
  writeFileSync(notADirectory, '')
  const unwritable = await runCli(t, ['ca'], { env: canaryEnv({ BROKER_STATE_DIR: join(notADirectory, 'state') }) })
  t.equal(unwritable.code, 1, 'a state directory that cannot be made: exit code 1')
  t.match(unwritable.stderr, /^defender-token-broker: stateDir: the state directory \S+a-file\/state cannot be created \(ENOTDIR\)/, 'says which and why')
  t.notOk((output(first) + output(again) + output(unwritable)).includes(CANARY), 'the secret is not in the output')
})

t.test('serve with the egress proxy on 0.0.0.0 with no client keys is refused like any other', async (t) => {
  const refused = await runCli(t, ['serve'], { env: canaryEnv({ BROKER_HOST: '0.0.0.0', BROKER_PORT: '0', BROKER_EGRESS_PROXY: '1', BROKER_STATE_DIR: join(home, 'state-refused') }) })
  t.equal(refused.code, 1, 'exit code 1')
  t.match(refused.stderr, /the broker would listen on 0\.0\.0\.0 with no client keys/)
  t.equal(refused.stdout, '', 'never listened')
})

t.test('check against the simulator', async (t) => {
  const authority = `${simulator.entra.url}/${simulator.tenantId}`
  const [human, json, wrongSecret, unknownTenant] = await Promise.all([
    runCli(t, ['check'], { env: userEnv() }),
    runCli(t, ['check', '--json'], { env: userEnv() }),
    runCli(t, ['check'], { env: userEnv({ AZURE_CLIENT_SECRET: CANARY }) }),
    runCli(t, ['check', '--json'], { env: userEnv({ AZURE_TENANT_ID: OTHER_TENANT_ID }) })
  ])

  t.test('prints what the token allows', async (t) => {
    t.equal(human.code, 0, 'exit code 0')
    t.equal(human.stderr, '', 'nothing on stderr')
    const out = human.stdout
    t.match(out, /^profile default: OK$/m, 'the profile succeeded')
    t.match(out, new RegExp(`^ +tenant +${simulator.tenantId}$`, 'm'), 'tenant')
    t.match(out, new RegExp(`^ +client id +${simulator.clientId} \\(secret\\)$`, 'm'), 'client id and credential type')
    t.ok(out.includes(`authority   ${authority}\n`), 'authority')
    t.ok(out.includes(`scope       ${PUBLIC_SCOPE}\n`), 'scope')
    const expires = /^ +expires +(\S+)$/m.exec(out)?.[1]
    t.ok(expires !== undefined && Date.parse(expires) > Date.now(), 'expiry, in the future')
    t.ok(out.includes(`roles       ${DEMO_ROLES.join(', ')}\n`), 'the roles claim')
    t.match(out, /^ +can read alerts$/m, 'in plain words: can read alerts')
    t.match(out, /^ +can isolate and release machines$/m, 'in plain words: can isolate')
    t.match(out, /^ +cannot run live response$/m, 'in plain words: cannot run live response')
  })

  t.test('--json', async (t) => {
    t.equal(json.code, 0, 'exit code 0')
    const report = JSON.parse(json.stdout) as { ok: boolean, profiles: Array<Record<string, unknown>> }
    t.equal(report.ok, true, 'ok: true')
    t.equal(report.profiles.length, 1, 'one profile')
    const profile = report.profiles[0] ?? {}
    t.match(profile, {
      profile: 'default',
      ok: true,
      tenantId: simulator.tenantId,
      clientId: simulator.clientId,
      credential: 'secret',
      authority,
      scope: PUBLIC_SCOPE,
      upstream: simulator.defender.url,
      expiresAt: String
    }, 'the same facts')
    t.same(profile.roles, DEMO_ROLES, 'the roles claim')
    t.ok(Date.parse(String(profile.expiresAt)) > Date.now(), 'expiry, in the future')
    t.ok(Array.isArray(profile.allows) && profile.allows.includes('can read alerts') && profile.allows.includes('cannot run live response'),
      'the plain-words lines')
  })

  t.test('no secret or token in a successful check', async (t) => {
    for (const exit of [human, json]) {
      t.notOk(output(exit).includes(simulator.clientSecret), 'no secret')
      for (const token of simulator.entra.issuedTokens) t.notOk(output(exit).includes(token), 'no token')
    }
  })

  t.test('a wrong secret', async (t) => {
    t.equal(wrongSecret.code, 1, 'exit code 1')
    t.match(wrongSecret.stdout, /^profile default: FAILED$/m, 'the profile failed')
    t.match(wrongSecret.stdout, /^ +error +AADSTS7000215: /m, 'the AADSTS code')
    t.match(wrongSecret.stdout, /^ +hint +.*use the secret's Value, not its Secret ID$/m, 'the hint about Value vs Secret ID')
    t.notOk(output(wrongSecret).includes(CANARY), 'never the secret')
  })

  t.test('an unknown tenant', async (t) => {
    t.equal(unknownTenant.code, 1, 'exit code 1')
    const report = JSON.parse(unknownTenant.stdout) as { ok: boolean, profiles: Array<{ ok: boolean, error?: { code: string, hint?: string } }> }
    t.equal(report.ok, false, 'ok: false')
    t.match(report.profiles[0], { ok: false, error: { code: 'AADSTS90002', hint: /tenant does not exist/ } }, 'AADSTS90002 and its hint')
    t.notOk(output(unknownTenant).includes(simulator.clientSecret), 'never the secret')
  })
})

t.test('serve against the simulator', async (t) => {
  t.test('forwards, then exits 0 on SIGTERM', async (t) => {
    const { cli, url, port } = await startServe(t, userEnv({ BROKER_PORT: '0' }))
    t.match(url, /^http:\/\/127\.0\.0\.1:\d+$/, 'listens on loopback by default')
    const res = await request(`${url}/api/alerts`)
    const body = await res.body.json() as { value?: unknown[] }
    t.equal(res.statusCode, 200, 'GET /api/alerts: 200')
    t.ok(Array.isArray(body.value) && body.value.length > 0, 'with alerts')

    cli.child.kill('SIGTERM')
    const exit = await cli.waitForExit()
    t.equal(exit.code, 0, 'exit code 0')
    t.equal(exit.signal, null, 'handled, not killed')
    const logs = logLines(exit.stdout)
    t.equal(logs.length, lines(exit.stdout).length, 'every stdout line is pino JSON')
    t.ok(logs.some((line) => line.msg === 'request' && line.path === '/api/alerts' && line.status === 200), 'the request was logged')
    t.ok(logs.some((line) => line.signal === 'SIGTERM'), 'the shutdown was logged')
    t.notOk(output(exit).includes(simulator.clientSecret), 'no secret in the output')
    for (const token of simulator.entra.issuedTokens) t.notOk(output(exit).includes(token), 'no token in the output')
    t.equal(await acceptsConnections(port), false, 'nothing listening any more')
  })

  t.test('reads the secret from a private file, exits 0 on SIGINT', async (t) => {
    const dir = t.testdir({ 'client-secret': `${simulator.clientSecret}\n` })
    const secretFile = join(dir, 'client-secret')
    chmodSync(secretFile, 0o600)
    const env = userEnv({ BROKER_PORT: '0', AZURE_CLIENT_SECRET_FILE: secretFile })
    delete env.AZURE_CLIENT_SECRET
    const { cli, url, port } = await startServe(t, env)
    const res = await request(`${url}/api/machines?$top=1`)
    const body = await res.body.json() as { value?: unknown[] }
    t.equal(res.statusCode, 200, 'GET /api/machines: 200')
    t.equal(body.value?.length, 1, 'one machine')

    cli.child.kill('SIGINT')
    const exit = await cli.waitForExit()
    t.equal(exit.code, 0, 'exit code 0')
    t.ok(logLines(exit.stdout).some((line) => line.signal === 'SIGINT'), 'the shutdown was logged')
    t.notOk(output(exit).includes(simulator.clientSecret), 'no secret in the output')
    t.equal(await acceptsConnections(port), false, 'nothing listening any more')
  })
})
