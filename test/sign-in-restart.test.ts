import { createHash } from 'node:crypto'
import { statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { SIGNING_KEY_STATE_FILE } from '../src/broker-tokens/signing-key.js'
import { startSimulator } from '../src/simulator/index.js'
import { ALL_ROLES } from './helpers/broker.js'
import { claimsOf, get, postForm } from './helpers/sign-in.js'
import { cliEnv, spawnCli } from './helpers/spawn.js'

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

/** A script's token request: the v2 form with the key as client_secret. */
async function tokenFrom (url: string, tenant = simulator.tenantId): Promise<string> {
  const answer = await postForm(`${url}/${tenant}/oauth2/v2.0/token`, {
    grant_type: 'client_credentials', client_id: 'soar', client_secret: KEY, scope: 'https://api.securitycenter.microsoft.com/.default'
  })
  return answer.json.access_token as string
}

async function alertsWith (url: string, token: string): Promise<{ status: number, body: string }> {
  const answer = await get(`${url}/api/alerts?$top=3`, { authorization: `Bearer ${token}` })
  return { status: answer.status, body: answer.text }
}

function assertRealTokenUpstream (t: Test): void {
  const seen = simulator.defender.requests.at(-1)?.headers.authorization?.replace(/^Bearer /, '')
  t.ok(seen !== undefined && simulator.entra.issuedTokens.includes(seen), 'the API saw a real token from Entra ID')
}

t.test('a broker token handed out before a restart works after it (same state directory)', async (t) => {
  const stateDir = join(home, 'state')
  const first = await serve(t, { BROKER_STATE_DIR: stateDir })
  const token = await tokenFrom(first.url)
  t.equal(claimsOf(token).sub, 'soar')
  t.equal(statSync(join(stateDir, SIGNING_KEY_STATE_FILE)).mode & 0o777, 0o600, 'the signing key is private')
  await first.stop()

  const second = await serve(t, { BROKER_STATE_DIR: stateDir })
  const alerts = await alertsWith(second.url, token)
  t.equal(alerts.status, 200, alerts.body)
  t.equal((JSON.parse(alerts.body) as { value: unknown[] }).value.length, 3, 'the tool got its data')
  assertRealTokenUpstream(t)
  t.notOk(simulator.entra.issuedTokens.some((real) => alerts.body.includes(real)), 'and never a real token')

  const elsewhere = await serve(t, { BROKER_STATE_DIR: join(home, 'other-state') })
  t.equal((await alertsWith(elsewhere.url, token)).status, 401, 'a broker with another key refuses it')
  await Promise.all([second.stop(), elsewhere.stop()])
})

t.test('replicas sharing BROKER_TOKEN_KEY_FILE accept each other\'s tokens', async (t) => {
  const keyFile = join(home, 'token.key')
  writeFileSync(keyFile, `${'s'.repeat(48)}\n`, { mode: 0o600 })
  const [one, two] = await Promise.all([
    serve(t, { BROKER_STATE_DIR: join(home, 'replica-1'), BROKER_TOKEN_KEY_FILE: keyFile }),
    serve(t, { BROKER_STATE_DIR: join(home, 'replica-2'), BROKER_TOKEN_KEY_FILE: keyFile })
  ])
  const token = await tokenFrom(one.url, 'organizations')
  const alerts = await alertsWith(two.url, token)
  t.equal(alerts.status, 200, alerts.body)
  assertRealTokenUpstream(t)
  await Promise.all([one.stop(), two.stop()])
})
