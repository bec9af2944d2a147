import { createHash } from 'node:crypto'
import { statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { SIGNING_KEY_STATE_FILE } from '../src/broker-tokens/signing-key.js'
import { startSimulator } from '../src/simulator/index.js'
import { ALL_ROLES } from './helpers/broker.js'
import { claimsOf } from './helpers/sign-in.js'
import { cliEnv, spawnCli } from './helpers/spawn.js'
import { runTool } from './helpers/tools.js'

const KEY = 'restart-key-canary-9a8b7c6d5e4f30211203f4e5d6c7b8a9'
const home = t.testdir({})
const simulator = await startSimulator({ roles: ALL_ROLES })
t.teardown(() => simulator.close())
const caFile = join(home, 'simulator-ca.pem')
writeFileSync(caFile, simulator.caCertPem)
const configFile = join(home, 'broker.yaml')
writeFileSync(configFile, `clients:\n  - name: soar\n    keySha256: ${createHash('sha256').update(KEY).digest('hex')}\n`)

/** The shipped entry point, `serve`, on the simulator, listening and holding its first token. */
async function serve (t: Test, env: Record<string, string>): Promise<{ url: string, stop: () => Promise<void> }> {
  const cli = spawnCli(t, ['serve'], {
    env: cliEnv(home, {
      AZURE_TENANT_ID: simulator.tenantId,
      AZURE_CLIENT_ID: simulator.clientId,
      AZURE_CLIENT_SECRET: simulator.clientSecret,
      AZURE_AUTHORITY_HOST: simulator.entra.url,
      BROKER_UPSTREAM: simulator.defender.url,
      BROKER_CA_FILE: caFile,
      BROKER_CONFIG: configFile,
      BROKER_PORT: '0',
      ...env
    })
  })
  const line = await cli.waitForLine('stdout', /"msg":"broker listening"/)
  await cli.waitForLine('stdout', /"msg":"token acquired"/)
  return {
    url: (JSON.parse(line) as { listen: string }).listen,
    stop: async () => {
      cli.child.kill('SIGTERM')
      const exit = await cli.waitForExit()
      t.equal(exit.code, 0, 'stopped cleanly')
      t.notOk(exit.stdout.includes(KEY), 'the key is not in the log')
    }
  }
}

/** curl, as a script would: the v2 form with the key as client_secret. */
async function curlToken (url: string, tenant = simulator.tenantId): Promise<string> {
  const run = await runTool('curl', ['-sS', `${url}/${tenant}/oauth2/v2.0/token`, '-d', 'grant_type=client_credentials', '-d', 'client_id=soar',
    '--data-urlencode', `client_secret=${KEY}`, '-d', 'scope=https://api.securitycenter.microsoft.com/.default'], {})
  return (JSON.parse(run.stdout) as { access_token: string }).access_token
}

async function curlAlerts (url: string, token: string): Promise<{ status: number, body: string }> {
  const run = await runTool('curl', ['-sS', '-w', '\\n%{http_code}', '-H', `Authorization: Bearer ${token}`, `${url}/api/alerts?$top=3`], {})
  const at = run.stdout.lastIndexOf('\n')
  return { status: Number(run.stdout.slice(at + 1)), body: run.stdout.slice(0, at) }
}

function assertRealTokenUpstream (t: Test): void {
  const seen = simulator.defender.requests.at(-1)?.headers.authorization?.replace(/^Bearer /, '')
  t.ok(seen !== undefined && simulator.entra.issuedTokens.includes(seen), 'the API saw a real token from Entra ID')
}

t.test('a broker token handed out before a restart works after it (same state directory)', async (t) => {
  const stateDir = join(home, 'state')
  const first = await serve(t, { BROKER_STATE_DIR: stateDir })
  const token = await curlToken(first.url)
  t.equal(claimsOf(token).sub, 'soar')
  t.equal(statSync(join(stateDir, SIGNING_KEY_STATE_FILE)).mode & 0o777, 0o600, 'the signing key is private')
  await first.stop()

  const second = await serve(t, { BROKER_STATE_DIR: stateDir })
  const alerts = await curlAlerts(second.url, token)
  t.equal(alerts.status, 200, alerts.body)
  t.equal((JSON.parse(alerts.body) as { value: unknown[] }).value.length, 3, 'the tool got its data')
  assertRealTokenUpstream(t)
  t.notOk(simulator.entra.issuedTokens.some((real) => alerts.body.includes(real)), 'and never a real token')

  const elsewhere = await serve(t, { BROKER_STATE_DIR: join(home, 'other-state') })
  t.equal((await curlAlerts(elsewhere.url, token)).status, 401, 'a broker with another key refuses it')
  await Promise.all([second.stop(), elsewhere.stop()])
})

t.test('replicas sharing BROKER_TOKEN_KEY_FILE accept each other\'s tokens', async (t) => {
  const keyFile = join(home, 'token.key')
  writeFileSync(keyFile, `${'s'.repeat(48)}\n`, { mode: 0o600 })
  const [one, two] = await Promise.all([
    serve(t, { BROKER_STATE_DIR: join(home, 'replica-1'), BROKER_TOKEN_KEY_FILE: keyFile }),
    serve(t, { BROKER_STATE_DIR: join(home, 'replica-2'), BROKER_TOKEN_KEY_FILE: keyFile })
  ])
  const token = await curlToken(one.url, 'organizations')
  const alerts = await curlAlerts(two.url, token)
  t.equal(alerts.status, 200, alerts.body)
  assertRealTokenUpstream(t)
  await Promise.all([one.stop(), two.stop()])
})
