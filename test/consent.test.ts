import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startSimulator, type ConsentGap } from '../src/simulator/index.js'
import { simulatorEnv } from './helpers/broker.js'
import { cliEnv, runCli, type Exit } from './helpers/spawn.js'

const PARTNER_TENANT = '0d4c8f2a-6b1e-4a3d-9c5f-7e8a1b2c3d4e'
const GOV_TENANT = '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d'
const PARTNER_APP = '4e5f6a7b-8c9d-4e0f-a1b2-c3d4e5f6a7b8'
const CANARY = 'cns8Q~CANARY-secret-must-never-be-printed-2'

interface ConsentReport {
  profiles: Array<{
    profile: string
    tenantId: string
    clientId: string
    consentUrl: string | null
    note?: string
    basis: string
    permissions: Array<{ permission: string, words: string, calls: string[] }>
  }>
}

interface CheckReport {
  ok: boolean
  profiles: Array<{ ok: boolean, error?: { code: string, message: string, hint?: string } }>
}

const home = t.testdir({})
const simulator = await startSimulator()
t.teardown(() => simulator.close())
const caFile = join(home, 'simulator-ca.pem')
writeFileSync(caFile, simulator.caCertPem)

const secretProfile = (name: string, tenantId: string, extra: Record<string, unknown> = {}) => ({
  name,
  basePath: `/${name}`,
  tenantId,
  clientId: PARTNER_APP,
  credential: { type: 'secret', secret: CANARY },
  ...extra
})

const configFile = join(home, 'broker.json')
writeFileSync(configFile, JSON.stringify({
  profiles: [
    secretProfile('customer', PARTNER_TENANT, { allow: ['GET /api/alerts/**', 'GET /api/machines/**'] }),
    secretProfile('gov', GOV_TENANT, { cloud: 'gcc-high' }),
    secretProfile('responder', PARTNER_TENANT, { allow: ['GET /api/machines', 'POST /api/machines/*/isolate'] }),
    { name: 'own', basePath: '/own', tenantId: GOV_TENANT, clientId: PARTNER_APP, credential: { type: 'managedIdentity' }, allow: ['GET /api/alerts'] }
  ]
}))

const consent = (args: string[], env: Record<string, string> = {}) => runCli(t, ['consent', '--config', configFile, ...args], { env: cliEnv(home, env) })
const report = (exit: Exit) => JSON.parse(exit.stdout) as ConsentReport
const output = (exit: Exit) => exit.stdout + exit.stderr

t.test('consent prints each profile\'s admin-consent link on its cloud\'s sign-in host, and what it asks for', async (t) => {
  const [human, json] = await Promise.all([consent([]), consent(['--json'])])
  t.equal(human.code, 0, 'exit code 0')
  t.equal(human.stderr, '', 'nothing on stderr')
  const blocks = human.stdout.split('\n\n')
  const block = (name: string) => blocks.find((text) => text.startsWith(`profile ${name}:`)) ?? ''
  t.ok(block('customer').includes(`  consent     https://login.microsoftonline.com/${PARTNER_TENANT}/adminconsent?client_id=${PARTNER_APP}\n`),
    'the public cloud\'s sign-in host')
  t.ok(block('gov').includes(`  consent     https://login.microsoftonline.us/${GOV_TENANT}/adminconsent?client_id=${PARTNER_APP}\n`),
    'GCC High signs in on login.microsoftonline.us')
  t.match(block('customer'), /^ {2}asks for {4}the WindowsDefenderATP application permissions its rules let tools use:$/m)
  t.match(block('customer'), /^ +Alert\.Read\.All +read alerts \(\d+ calls\)$/m, 'a permission, in plain words')
  t.match(block('gov'), /^ {2}asks for {4}every WindowsDefenderATP application permission the broker knows \(no rule limits this profile\):$/m,
    'no rules: everything the catalogue knows, and it says so')
  t.match(block('gov'), /^ +Machine\.Isolate +isolate and release machines/m)
  t.match(block('own'), /^ {2}consent {5}a managed identity has no consent link: an admin assigns it the WindowsDefenderATP app roles/m,
    'a managed identity: no link, and why')
  t.notMatch(block('own'), /adminconsent/, 'no broken URL for it')
  t.match(human.stdout, /then run: defender-token-broker check\n$/, 'what to do after')
  t.notOk(output(human).includes(CANARY), 'never the secret')

  t.equal(json.code, 0)
  const profiles = report(json).profiles
  t.strictSame(profiles.map(({ profile, consentUrl }) => [profile, consentUrl]), [
    ['customer', `https://login.microsoftonline.com/${PARTNER_TENANT}/adminconsent?client_id=${PARTNER_APP}`],
    ['gov', `https://login.microsoftonline.us/${GOV_TENANT}/adminconsent?client_id=${PARTNER_APP}`],
    ['responder', `https://login.microsoftonline.com/${PARTNER_TENANT}/adminconsent?client_id=${PARTNER_APP}`],
    ['own', null]
  ], '--json: the same links')
  t.match(profiles[3], { note: /managed identity has no consent link/ })
  t.strictSame(profiles.map(({ basis }) => basis), ['rules', 'catalogue', 'rules', 'rules'])
  t.notOk(output(json).includes(CANARY), 'never the secret')
})

t.test('the permissions follow the rules: a read-only profile asks only for read permissions', async (t) => {
  const [customer, responder] = (await Promise.all([consent(['--profile', 'customer', '--json']), consent(['--profile', 'responder', '--json'])]))
    .map((exit) => report(exit).profiles)
  t.equal(customer?.length, 1, '--profile: that profile only')
  const readOnly = customer?.[0]?.permissions.map(({ permission }) => permission) ?? []
  t.ok(readOnly.includes('Alert.Read.All') && readOnly.includes('Machine.Read.All'), `alerts and machines: ${readOnly.join(', ')}`)
  t.strictSame(readOnly.filter((name) => !name.endsWith('.Read.All')), [], 'nothing but .Read.All permissions')
  t.strictSame(responder?.[0]?.permissions, [
    { permission: 'Machine.Read.All', words: 'read machines', calls: ['list machines'] },
    { permission: 'Machine.Isolate', words: 'isolate and release machines', calls: ['isolate machines'] }
  ], 'a list and an action: their two permissions, with the calls that need them')
})

t.test('consent needs no token and no network', async (t) => {
  const before = simulator.entra.tokenRequests
  const exit = await consent(['--profile', 'customer'], { AZURE_AUTHORITY_HOST: simulator.entra.url })
  t.equal(exit.code, 0)
  t.ok(exit.stdout.includes(`${simulator.entra.url}/${PARTNER_TENANT}/adminconsent?client_id=${PARTNER_APP}`), 'the configured sign-in host')
  t.equal(simulator.entra.tokenRequests, before, 'no token request')
})

t.test('an unknown --profile exits 2 and names the profiles', async (t) => {
  const [unknown, elsewhere] = await Promise.all([
    consent(['--profile', 'fabrikam']),
    runCli(t, ['check', '--profile', 'customer', '--config', configFile], { env: cliEnv(home) })
  ])
  t.equal(unknown.code, 2, 'exit code 2')
  t.equal(unknown.stderr, 'defender-token-broker: no profile named fabrikam: the profiles are customer, gov, responder, own\n')
  t.equal(unknown.stdout, '', 'nothing on stdout')
  t.equal(elsewhere.code, 2, '--profile with another command: exit code 2')
  t.match(elsewhere.stderr, /^defender-token-broker: --profile is for consent only\n/)
})

t.test('check in a tenant where the partner app is not consented', async (t) => {
  const tenants: Record<ConsentGap, string> = {
    appNotFound: '6c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f',
    noServicePrincipal: '6c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e50',
    notConsented: '6c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e51',
    serviceNotProvisioned: '6c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e52',
    resourceNotFound: '6c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e53'
  }
  for (const [gap, tenantId] of Object.entries(tenants)) {
    simulator.entra.withholdConsent({ tenantId, clientId: simulator.clientId, gap: gap as ConsentGap })
  }
  const check = (tenantId: string, args: string[] = []) => runCli(t, ['check', ...args], {
    env: cliEnv(home, { ...simulatorEnv(simulator), BROKER_CA_FILE: caFile, AZURE_TENANT_ID: tenantId })
  })
  const link = (tenantId: string) => `${simulator.entra.url}/${tenantId}/adminconsent?client_id=${simulator.clientId}`

  t.test('AADSTS700016, what it means here, and the consent link; then consent is granted and check is OK', async (t) => {
    const tenantId = tenants.appNotFound
    const failed = await check(tenantId)
    t.equal(failed.code, 1, 'exit code 1')
    t.match(failed.stdout, /^profile default: FAILED$/m)
    t.match(failed.stdout, new RegExp(`^ +error +AADSTS700016: .*Description: AADSTS700016: Application with identifier '${simulator.clientId}' was not found in the directory '${tenantId}'`, 'm'))
    t.ok(failed.stdout.includes(`  hint        the app is not in this tenant: if it is a multi-tenant (partner) app, an admin of this tenant must consent to it: open ${link(tenantId)}; otherwise the client id or the tenant id is wrong\n`),
      'the hint, with the link for this tenant and app')
    t.notOk(output(failed).includes(simulator.clientSecret), 'never the secret')

    simulator.entra.grantConsent(tenantId, simulator.clientId)
    const granted = await check(tenantId)
    t.equal(granted.code, 0, 'after consent: exit code 0')
    t.match(granted.stdout, /^profile default: OK$/m)
    t.match(granted.stdout, /^ +can read alerts$/m, 'with the app\'s roles')
  })

  t.test('each code its own case, each with the link', async (t) => {
    const wording: Record<Exclude<ConsentGap, 'appNotFound'>, [string, RegExp]> = {
      noServicePrincipal: ['AADSTS7000229', /^the app has no service principal in this tenant/],
      notConsented: ['AADSTS65001', /^consent was not given in this tenant/],
      serviceNotProvisioned: ['AADSTS650052', /^the app needs access to a service this tenant has not provisioned/],
      resourceNotFound: ['AADSTS500011', /^the Defender for Endpoint API \(WindowsDefenderATP\) is not in this tenant/]
    }
    const entries = Object.entries(wording) as Array<[keyof typeof wording, [string, RegExp]]>
    const exits = await Promise.all(entries.map(([gap]) => check(tenants[gap], ['--json'])))
    entries.forEach(([gap, [code, start]], index) => {
      const exit = exits[index] as Exit
      t.equal(exit.code, 1, `${gap}: exit code 1`)
      const error = (JSON.parse(exit.stdout) as CheckReport).profiles[0]?.error
      t.equal(error?.code, code, `${gap}: ${code}`)
      t.match(error?.message, `${code}: `, `${gap}: Entra ID's message`)
      t.match(error?.hint, start, `${gap}: its own wording`)
      t.ok(error?.hint?.includes(`open ${link(tenants[gap])}`), `${gap}: the consent link`)
      t.notOk(output(exit).includes(simulator.clientSecret), `${gap}: never the secret`)
    })
  })
})
