import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { startManagedIdentityEndpoint, startSimulator } from '../src/simulator/index.js'
import { SYSTEM_IDENTITY, USER_IDENTITY } from './helpers/managed-identity.js'
import { cliEnv, logLines, runCli, spawnCli, stopsCleanly, type CliProcess } from './helpers/spawn.js'

// A managed identity with nothing but what the platform sets: the built CLI, spawned with the
// App Service variables (IDENTITY_ENDPOINT, IDENTITY_HEADER) or the IMDS opt-in, against the
// managed-identity stand-in, whose tokens the Defender simulator accepts.

const IDENTITY_HEADER = 'canary-identity-header-5b2e8d1f9a'
const home = t.testdir({})
const simulator = await startSimulator()
t.teardown(() => simulator.close())
const endpoint = await startManagedIdentityEndpoint({
  entra: simulator.entra,
  identities: [SYSTEM_IDENTITY, USER_IDENTITY],
  identityHeader: IDENTITY_HEADER
})
t.teardown(() => endpoint.close())

const appService = { IDENTITY_ENDPOINT: endpoint.appServiceEndpoint, IDENTITY_HEADER }
const imds = { BROKER_MANAGED_IDENTITY: 'true', AZURE_POD_IDENTITY_AUTHORITY_HOST: endpoint.url }

const env = (extra: Record<string, string>) => cliEnv(home, { BROKER_UPSTREAM: simulator.defender.url, BROKER_PORT: '0', ...extra })

interface Served {
  cli: CliProcess
  url: string
  listening: Record<string, unknown>
}

/** Starts `serve`, waits for its first token, and returns the 'broker listening' line. */
async function serve (t: Test, variables: Record<string, string>, args: string[] = []): Promise<Served> {
  const cli = spawnCli(t, ['serve', ...args], { env: variables })
  const line = await cli.waitForLine('stdout', /"msg":"broker listening"/)
  await cli.waitForLine('stdout', /"msg":"token acquired"/)
  const listening = JSON.parse(line) as Record<string, unknown>
  return { cli, url: String(listening.listen), listening }
}

async function alerts (url: string): Promise<number> {
  const res = await request(`${url}/api/alerts?$top=1`)
  await res.body.dump()
  return res.statusCode
}

t.test('App Service: IDENTITY_ENDPOINT and IDENTITY_HEADER are all it takes', async (t) => {
  const seen = endpoint.requests.length
  const { cli, url, listening } = await serve(t, env(appService))
  const said = logLines(cli.stdout()).find((line) => line.credential === 'managedIdentity' && line.profile === 'default')
  t.match(said, {
    source: 'IDENTITY_ENDPOINT (App Service)',
    msg: 'no secret, certificate or federated token is set: profile default uses the managed identity found by IDENTITY_ENDPOINT (App Service)'
  }, 'a start-up line says the managed identity is used, and which variable it came from')
  t.match(listening, { profiles: [{ name: 'default', basePath: '/', credential: 'managedIdentity', credentialSource: 'IDENTITY_ENDPOINT (App Service)' }] })
  t.match(endpoint.requests.slice(seen), [{ source: 'appService', headers: { 'x-identity-header': IDENTITY_HEADER } }], 'the token came from the App Service endpoint')
  t.equal(await alerts(url), 200, 'the API accepts the identity\'s token')
  await stopsCleanly(t, cli)
  t.notOk((cli.stdout() + cli.stderr()).includes(IDENTITY_HEADER), 'the endpoint\'s secret header is in no output')
})

t.test('IMDS: BROKER_MANAGED_IDENTITY=true, with AZURE_CLIENT_ID naming a user-assigned identity', async (t) => {
  const seen = endpoint.requests.length
  const { cli, url, listening } = await serve(t, env({ ...imds, AZURE_CLIENT_ID: USER_IDENTITY.clientId }))
  t.match(listening, { profiles: [{ credential: 'managedIdentity', credentialSource: 'BROKER_MANAGED_IDENTITY: AZURE_POD_IDENTITY_AUTHORITY_HOST (IMDS)' }] })
  t.match(endpoint.requests.slice(seen), [{ source: 'imds', query: { client_id: USER_IDENTITY.clientId } }], 'IMDS asked for the user-assigned identity')
  t.equal(await alerts(url), 200)
  await stopsCleanly(t, cli)
})

t.test('without the opt-in, no variable announces IMDS: nothing configured is still exit 1', async (t) => {
  const exit = await runCli(t, ['serve'], { env: cliEnv(home, { AZURE_POD_IDENTITY_AUTHORITY_HOST: endpoint.url }) })
  t.equal(exit.code, 1)
  t.match(exit.stderr, /^defender-token-broker: No credentials configured: .*BROKER_MANAGED_IDENTITY=true.*npm run demo/)
  t.equal(exit.stdout, '', 'nothing started')
})

t.test('a file profile with only a name and a managedIdentity credential serves requests', async (t) => {
  const dir = t.testdir({})
  const file = join(dir, 'broker.yaml')
  writeFileSync(file, `profiles:\n  - name: soc\n    upstream: ${simulator.defender.url}\n    credential: { type: managedIdentity }\n`)
  const { cli, url, listening } = await serve(t, cliEnv(home, { ...appService, BROKER_PORT: '0' }), ['--config', file])
  t.match(listening, { config: file, profiles: [{ name: 'soc', basePath: '/', credential: 'managedIdentity', credentialSource: 'IDENTITY_ENDPOINT (App Service)' }] })
  t.equal(await alerts(url), 200, 'served at /')
  const status = await request(`${url}/status`)
  const profile = ((await status.body.json()) as { profiles: Array<Record<string, unknown>> }).profiles[0]
  t.match(profile, { name: 'soc', credential: 'managedIdentity', token: { state: 'valid' } })
  t.notOk(profile !== undefined && 'authority' in profile, 'no authority: the endpoint hands out the tokens')
  await stopsCleanly(t, cli)
})

t.test('check shows the tenant and client id the token names, and no authority', async (t) => {
  const [human, json] = await Promise.all([
    runCli(t, ['check'], { env: env(appService) }),
    runCli(t, ['check', '--json'], { env: env({ ...imds, AZURE_CLIENT_ID: USER_IDENTITY.clientId }) })
  ])
  t.equal(human.code, 0, 'exit code 0')
  t.match(human.stdout, /^profile default: OK$/m)
  t.match(human.stdout, new RegExp(`^ +tenant +${SYSTEM_IDENTITY.tenantId}$`, 'm'), 'the tid claim')
  t.match(human.stdout, new RegExp(`^ +client id +${SYSTEM_IDENTITY.clientId} \\(managedIdentity\\)$`, 'm'), 'the appid claim')
  t.match(human.stdout, /^ +source +IDENTITY_ENDPOINT \(App Service\)$/m, 'where the identity was found')
  t.notMatch(human.stdout, /authority/, 'no authority line')

  t.equal(json.code, 0)
  const report = JSON.parse(json.stdout) as { profiles: Array<Record<string, unknown>> }
  t.match(report.profiles[0], {
    ok: true,
    tenantId: USER_IDENTITY.tenantId,
    clientId: USER_IDENTITY.clientId,
    credential: 'managedIdentity',
    roles: USER_IDENTITY.roles
  })
  t.notOk(report.profiles[0] !== undefined && 'authority' in report.profiles[0], 'no authority')
  for (const token of endpoint.issuedTokens) t.notOk(human.stdout.includes(token) || json.stdout.includes(token), 'the token is not printed')
  t.notOk((human.stdout + human.stderr).includes(IDENTITY_HEADER), 'nor the header secret')
})
