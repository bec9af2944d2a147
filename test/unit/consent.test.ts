import t from 'tap'
import { compilePattern, patternsOverlap } from '../../src/common/path-pattern.js'
import type { ClientConfig, CredentialConfig } from '../../src/config/types.js'
import { DEFENDER_ENDPOINTS, findEndpoint } from '../../src/defender/catalogue.js'
import { adminConsentUrl, neededPermissions, type ConsentProfile } from '../../src/defender/consent.js'
import { hintFor } from '../../src/tokens/token-error.js'

const TENANT = '3f0c6f1e-9d7a-4c55-8f3b-2a1e5d6c7b80'
const CLIENT_ID = '7e1d2c3b-4a59-4687-9a1b-2c3d4e5f6a7b'
const SECRET: CredentialConfig = { type: 'secret', secret: { origin: 'test', read: () => 'never-read' } }

const profile = (extra: Partial<ConsentProfile> = {}): ConsentProfile =>
  ({ tenantId: TENANT, clientId: CLIENT_ID, authorityHost: 'https://login.microsoftonline.com', credential: SECRET, ...extra })

function client (name: string, allow: string[], profiles: string[] = []): ClientConfig {
  return { name, keySha256: '0'.repeat(64), profiles, allow }
}

const permissionsOf = (allow: string[], clients: ClientConfig[] = []) =>
  neededPermissions({ name: 'customer', allow }, clients).permissions.map(({ permission }) => permission)

t.test('patterns overlap when one path can match both', async (t) => {
  const overlap = (a: string, b: string) => patternsOverlap(compilePattern(a), compilePattern(b))
  t.ok(overlap('/api/**', '/api/machines/*/isolate'), '** covers the rest')
  t.ok(overlap('/api/alerts/**', '/api/alerts'), '** also matches nothing')
  t.ok(overlap('/api/machines/abc/isolate', '/api/machines/*/isolate'), 'a literal id meets *')
  t.ok(overlap('/api/machines/findbyip(*)', '/api/machines/*'), 'a call meets *')
  t.ok(overlap("/api/machines/findbyip(ip='10.0.0.1',timestamp=2024-01-01)", '/api/machines/findbyip(*)'), 'a literal call meets its pattern')
  t.notOk(overlap('/api/machines/find(*)', '/api/machines/findbyip(*)'), 'two different functions')
  t.notOk(overlap('/api/alerts', '/api/alerts/*'), 'a segment more')
  t.notOk(overlap('/api/alerts/*', '/api/machines/*'))
  t.notOk(overlap('/api/machines/*/isolate', '/api/machines/*/unisolate'))
})

t.test('the admin-consent URL is the tenant-wide one on the profile\'s sign-in host', async (t) => {
  t.equal(adminConsentUrl(profile()), `https://login.microsoftonline.com/${TENANT}/adminconsent?client_id=${CLIENT_ID}`)
  t.equal(adminConsentUrl(profile({ authorityHost: 'https://login.microsoftonline.us' })),
    `https://login.microsoftonline.us/${TENANT}/adminconsent?client_id=${CLIENT_ID}`, 'the US government sign-in host')
  t.equal(adminConsentUrl(profile({ tenantId: 'contoso.onmicrosoft.com' })),
    `https://login.microsoftonline.com/contoso.onmicrosoft.com/adminconsent?client_id=${CLIENT_ID}`, 'a tenant given by its domain')
  t.equal(adminConsentUrl(profile({ credential: { type: 'managedIdentity' } })), undefined, 'none for a managed identity')
})

t.test('the permissions follow the rules of the profile and of its clients', async (t) => {
  t.strictSame(permissionsOf(['GET /api/alerts']), ['Alert.Read.All'], 'one read, one permission')
  t.strictSame(permissionsOf(['GET /api/alerts', 'PATCH /api/alerts/*']), ['Alert.ReadWrite.All'], 'ReadWrite covers the reads')
  t.strictSame(permissionsOf(['GET /api/machines', 'POST /api/machines/*/isolate']), ['Machine.Read.All', 'Machine.Isolate'])

  const readOnly = neededPermissions({ name: 'customer', allow: ['GET /api/alerts/**', 'GET /api/machines/**'] }, [])
  t.equal(readOnly.basis, 'rules')
  const names = readOnly.permissions.map(({ permission }) => permission)
  t.ok(names.includes('Alert.Read.All') && names.includes('Machine.Read.All'), 'alerts and machines')
  t.strictSame(names.filter((name) => !name.endsWith('.Read.All')), [], `only read permissions: ${names.join(', ')}`)
  for (const { permission, calls } of readOnly.permissions) {
    t.ok(calls.length > 0, `${permission} is asked for the calls that need it`)
    for (const action of calls) {
      const endpoint = DEFENDER_ENDPOINTS.find((entry) => entry.action === action)
      t.equal(endpoint?.method, 'GET', `${action} is a read`)
    }
  }

  const soar = client('soar', ['GET /api/machines', 'POST /api/machines/*/isolate'], ['customer'])
  const other = client('other', ['* /api/**'], ['elsewhere'])
  t.strictSame(permissionsOf([], [soar, other]), ['Machine.Read.All', 'Machine.Isolate'],
    'a profile without rules asks for what the clients that may use it can reach, not the others')
  t.strictSame(permissionsOf(['GET /api/**'], [soar]), ['Machine.Read.All'], 'a call must pass the profile\'s rules and a client\'s')
  t.strictSame(permissionsOf([], [other]), [], 'no client may use the profile: nothing')
})

t.test('with no rules anywhere, everything the catalogue knows', async (t) => {
  for (const clients of [[], [client('all', [])]]) {
    const needs = neededPermissions({ name: 'customer', allow: [] }, clients)
    t.equal(needs.basis, 'catalogue')
    const names = new Set(needs.permissions.map(({ permission }) => permission))
    for (const endpoint of DEFENDER_ENDPOINTS) {
      t.ok(endpoint.permissions.some((permission) => names.has(permission)), `${endpoint.method} ${endpoint.path} is covered`)
    }
    t.ok(names.has('Machine.StopAndQuarantine') && names.has('Machine.LiveResponse'), 'each action\'s own permission')
    t.notOk(names.has('Alert.Read.All'), 'Alert.ReadWrite.All, needed anyway, covers the alert reads')
  }
  t.ok(findEndpoint('POST', '/api/machines/abc/isolate'), 'the catalogue is the one the broker enforces')
})

t.test('consent hints name their case and give the profile\'s link', async (t) => {
  const link = `https://login.microsoftonline.com/${TENANT}/adminconsent?client_id=${CLIENT_ID}`
  const cases: Record<string, RegExp> = {
    AADSTS700016: /^the app is not in this tenant: if it is a multi-tenant \(partner\) app, an admin of this tenant must consent to it: open (\S+); otherwise the client id or the tenant id is wrong$/,
    AADSTS7000229: /^the app has no service principal in this tenant .*: an admin of this tenant creates it by consenting: open (\S+)$/,
    AADSTS65001: /^consent was not given in this tenant: an admin of this tenant must grant the app's permissions: open (\S+)$/,
    AADSTS650051: /^the tenant could not set up the app: the tenant is unmanaged .* or a service principal left from an earlier consent conflicts .*: open (\S+)$/,
    AADSTS650052: /^the app needs access to a service this tenant has not provisioned .*Defender for Endpoint is set up in this tenant, then have an admin consent: open (\S+)$/,
    AADSTS500011: /^the Defender for Endpoint API \(WindowsDefenderATP\) is not in this tenant: Defender for Endpoint is not provisioned here, or consent is missing \(an admin of this tenant: open (\S+)\)/
  }
  const hints = new Set<string>()
  for (const [code, wording] of Object.entries(cases)) {
    const hint = hintFor(code, profile()) ?? ''
    t.equal(wording.exec(hint)?.[1], link, `${code}: its own case, then the link`)
    hints.add(hint.replace(link, ''))
    t.notOk(hint.includes('never-read'), `${code}: no secret`)
  }
  t.equal(hints.size, Object.keys(cases).length, 'each code its own wording')

  t.match(hintFor('AADSTS700016', profile({ authorityHost: 'https://login.microsoftonline.us' })), /open https:\/\/login\.microsoftonline\.us\//, 'the cloud\'s host')
  t.match(hintFor('AADSTS65001', profile({ credential: { type: 'managedIdentity' } })), /a managed identity gets its permissions by app role assignment, not consent/, 'no link for a managed identity')
  t.match(hintFor('AADSTS65001'), /must grant the app's permissions: run defender-token-broker consent for the link$/, 'without a profile, where to get the link')
  t.equal(hintFor('AADSTS7000215', profile()), 'the client secret is wrong: use the secret\'s Value, not its Secret ID', 'other hints are as they were')
  t.equal(hintFor('AADSTS99999', profile()), undefined)
})
