import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { getGlobalDispatcher, type Dispatcher } from 'undici'
import { loadConfig } from '../src/config/load.js'
import { inlineSecret } from '../src/config/secret-files.js'
import type { ProfileConfig } from '../src/config/types.js'
import type { Profile } from '../src/runtime/profiles.js'
import { nextFailure, startBrokerStack } from './helpers/broker.js'
import { clientFor, newClientKey, sha256 } from './helpers/profiles.js'
import { startUpstream } from './helpers/upstream.js'

// /status and /metrics with client keys: they follow the client's rules like any path, and a
// client limited to some profiles sees nothing of the others (tenants, apps, roles, errors).

/** Another customer of the MSSP, with roles no other profile's token carries. */
const FABRIKAM = {
  tenantId: '22222222-2222-4222-8222-222222222222',
  clientId: '33333333-3333-4333-8333-333333333333',
  secret: 'fab8Q~fabrikam-secret-canary-0000000000000',
  roles: ['Alert.Read.All', 'Machine.Isolate', 'Machine.LiveResponse']
}
/** A third one whose secret is wrong: its /status entry holds an AADSTS error. */
const BROKEN = {
  tenantId: '44444444-4444-4444-8444-444444444444',
  clientId: '55555555-5555-4555-8555-555555555555',
  secret: 'brk8Q~broken-secret-canary-000000000000000'
}

const keys = {
  /** No rules: may do anything, own endpoints included. */
  admin: newClientKey(),
  /** API calls only. */
  soar: newClientKey(),
  /** Scrapes and nothing else. */
  prometheus: newClientKey(),
  /** Reads /status and nothing else. */
  dashboard: newClientKey(),
  /** Limited to the default profile, with the own endpoints allowed. */
  contoso: newClientKey()
}
const clients = [
  clientFor('admin', keys.admin),
  clientFor('soar', keys.soar, { allow: ['GET /api/**', 'POST /api/advancedqueries/run'] }),
  clientFor('prometheus', keys.prometheus, { allow: ['GET /metrics'] }),
  clientFor('dashboard', keys.dashboard, { allow: ['GET /status'] }),
  clientFor('contoso', keys.contoso, { profiles: ['default'], allow: ['GET /api/**', 'GET /status', 'GET /metrics'] })
]

const upstream = await startUpstream(t)
const fabrikamUpstream = await startUpstream(t)
const brokenUpstream = await startUpstream(t)
const stack = await startBrokerStack(t, {
  simulator: { roles: ['Alert.Read.All'] },
  env: { BROKER_UPSTREAM: upstream.url },
  ready: false,
  beforeStart: (simulator) => {
    simulator.entra.addApp({ tenantId: FABRIKAM.tenantId, clientId: FABRIKAM.clientId, secret: FABRIKAM.secret, roles: FABRIKAM.roles })
    simulator.entra.addApp({ tenantId: BROKEN.tenantId, clientId: BROKEN.clientId, secret: 'the-right-one-is-not-configured', roles: [] })
  },
  config: (c) => {
    const first = c.profiles[0] as ProfileConfig
    const profile = (name: string, basePath: string, app: { tenantId: string, clientId: string, secret: string }, url: string): ProfileConfig => ({
      ...first,
      name,
      basePath,
      tenantId: app.tenantId,
      clientId: app.clientId,
      credential: { type: 'secret', secret: inlineSecret(app.secret, `profiles.${name}.credential.secret`) },
      upstream: url
    })
    return {
      ...c,
      profiles: [
        // The profile's rules are about its API: they do not govern the broker's own endpoints.
        { ...first, allow: ['GET /api/**'] },
        profile('fabrikam', '/fabrikam', FABRIKAM, fabrikamUpstream.url),
        profile('broken', '/broken', BROKEN, brokenUpstream.url)
      ],
      clients
    }
  }
})
{
  const [first, fabrikam, broken] = stack.app.profiles as [Profile, Profile, Profile]
  await Promise.all([first.tokens.get(), fabrikam.tokens.get(), nextFailure(broken.tokens)])
}

async function send (path: string, headers: Record<string, string> = {}, method: Dispatcher.HttpMethod = 'GET') {
  const res = await getGlobalDispatcher().request({ origin: stack.url, path, method, headers })
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers, text }
}
const as = (name: keyof typeof keys) => ({ authorization: `Bearer ${keys[name]}` })

function assertRefused (t: Test, response: { status: number, headers: Record<string, unknown>, text: string }, status: number, code: string, message: string, what: string) {
  t.equal(response.status, status, `${what}: ${status}`)
  t.strictSame(JSON.parse(response.text), { error: { code, message, target: response.headers['x-request-id'] } }, `${what}: the whole body`)
}

/** Every sample line's `profile` label, e.g. from `broker_token_expiry_seconds{profile="x"} 3`. */
function profilesIn (exposition: string): Set<string> {
  return new Set([...exposition.matchAll(/^[a-z_]+\{[^}]*\bprofile="([^"]+)"/gm)].map((match) => match[1] as string))
}

t.test('with clients configured, no key gets 401 on /status and /metrics; the probes stay open', async (t) => {
  const message = 'A valid broker client key is required: send it as "Authorization: Bearer <key>" or "X-Broker-Key: <key>".'
  for (const path of ['/status', '/metrics']) {
    assertRefused(t, await send(path), 401, 'BrokerUnauthenticated', message, `${path} without a key`)
    assertRefused(t, await send(path, { authorization: 'Bearer not-a-key' }), 401, 'BrokerUnauthenticated', message, `${path} with a wrong key`)
  }
  t.equal((await send('/healthz')).status, 200, '/healthz without a key')
  t.equal((await send('/readyz')).status, 503, '/readyz without a key: answered (one profile has no token)')
})

t.test('a key whose rules do not allow GET /status or GET /metrics gets 403', async (t) => {
  const refused = (client: string) => `The request is not allowed: the rules of client ${client} do not allow it.`
  assertRefused(t, await send('/status', as('soar')), 403, 'BrokerForbidden', refused('soar'), 'an API-only key on /status')
  assertRefused(t, await send('/metrics', as('soar')), 403, 'BrokerForbidden', refused('soar'), 'an API-only key on /metrics')
  assertRefused(t, await send('/status', as('prometheus')), 403, 'BrokerForbidden', refused('prometheus'), 'a scrape-only key on /status')
  assertRefused(t, await send('/metrics', as('dashboard')), 403, 'BrokerForbidden', refused('dashboard'), 'a status-only key on /metrics')
  assertRefused(t, await send('/api/alerts', as('prometheus')), 403, 'BrokerForbidden', refused('prometheus'), 'a scrape-only key on the API')
  t.equal(upstream.requests.length, 0, 'nothing went upstream')
  const refusals = stack.logs.lines.filter((line) => line.code === 'BrokerForbidden' && line.path === '/status')
  t.ok(refusals.some((line) => line.client === 'soar'), 'the refusal is logged with the client\'s name')
})

t.test('a key whose rules allow them reads them; GET allows HEAD; the profile\'s rules do not apply', async (t) => {
  const metrics = await send('/metrics', as('prometheus'))
  t.equal(metrics.status, 200, 'the scrape-only key scrapes')
  t.match(metrics.text, /broker_inbound_rejections_total\{reason="BrokerForbidden"\}/, 'the refusals above are counted')
  const status = await send('/status', as('dashboard'))
  t.equal(status.status, 200, 'the status-only key reads /status')
  t.same(JSON.parse(status.text).profiles.map((p: { name: string }) => p.name), ['default', 'fabrikam', 'broken'], 'every profile: the key is not limited to some')
  t.equal((await send('/status', as('dashboard'), 'HEAD')).status, 200, 'HEAD /status with a GET rule')
  t.equal((await send('/status', as('admin'))).status, 200, 'a key with no rules may do anything, /status included')
  t.equal((await send('/metrics', as('admin'))).status, 200, 'and /metrics')
})

t.test('a client limited to one profile sees only that profile in /status', async (t) => {
  const full = await send('/status', as('admin'))
  for (const canary of [FABRIKAM.tenantId, FABRIKAM.clientId, 'Machine.Isolate', BROKEN.tenantId, BROKEN.clientId, 'AADSTS7000215']) {
    t.ok(full.text.includes(canary), `an unlimited client sees ${canary} (the canary is real)`)
  }

  const limited = await send('/status', as('contoso'))
  t.equal(limited.status, 200)
  const body = JSON.parse(limited.text) as { profiles: Array<{ name: string, tenantId: string, token: { roles: string[] } }> }
  t.same(body.profiles.map((p) => p.name), ['default'], 'only its own profile')
  t.equal(body.profiles[0]?.tenantId, stack.simulator.tenantId)
  t.same(body.profiles[0]?.token.roles, ['Alert.Read.All'])
  for (const canary of ['fabrikam', FABRIKAM.tenantId, FABRIKAM.clientId, fabrikamUpstream.url, 'Machine.Isolate', 'Machine.LiveResponse',
    'broken', BROKEN.tenantId, BROKEN.clientId, brokenUpstream.url, 'AADSTS7000215', 'invalid_client']) {
    t.notOk(limited.text.includes(canary), `not ${canary}`)
  }
})

t.test('a client limited to one profile sees only that profile\'s series in /metrics, and the broker-wide ones', async (t) => {
  // Series for every profile: a forwarded request each, and the token events.
  t.equal((await send('/fabrikam/api/alerts', as('admin'))).status, 200)
  t.equal((await send('/api/alerts', as('admin'))).status, 200)

  const full = await send('/metrics', as('admin'))
  t.same([...profilesIn(full.text)].sort(), ['broken', 'default', 'fabrikam'], 'an unlimited client sees every profile\'s series')

  const limited = await send('/metrics', as('contoso'))
  t.equal(limited.status, 200)
  t.match(limited.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.same([...profilesIn(limited.text)], ['default'], 'only its own profile\'s series')
  t.notOk(/fabrikam|broken/.test(limited.text), 'no other profile\'s name anywhere')
  t.match(limited.text, /^broker_token_expiry_seconds\{profile="default"\} /m)
  t.match(limited.text, /^broker_upstream_requests_total\{method="GET",profile="default",status="200"\} 1$/m)
  t.match(limited.text, /^broker_upstream_request_duration_seconds_bucket\{le="\+Inf",profile="default"\} 1$/m)
  t.match(limited.text, /^broker_inbound_rejections_total\{reason="BrokerUnauthenticated"\} \d+$/m, 'the broker-wide series, with no profile label')
  t.match(limited.text, /^process_cpu_user_seconds_total \d/m, 'and the process metrics')
  const samples = (text: string) => text.split('\n').filter((line) => line !== '' && !line.startsWith('#'))
  const others = samples(full.text).filter((line) => /profile="(fabrikam|broken)"/.test(line)).length
  t.ok(others > 0)
  // Series are compared by name and labels: values move between two scrapes, and a scrape may add a series.
  const series = (line: string) => line.slice(0, line.lastIndexOf(' '))
  const kept = new Set(samples(limited.text).map(series))
  const lost = samples(full.text).filter((line) => !/profile="(fabrikam|broken)"/.test(line) && !kept.has(series(line)))
  t.same(lost, [], 'the others\' samples are gone, nothing else')
})

t.test('a rule "GET /status" or "GET /metrics" in a client\'s allow list is valid config', async (t) => {
  const dir = t.testdir()
  writeFileSync(join(dir, 'broker.yaml'), [
    'clients:',
    `  - { name: prometheus, keySha256: ${sha256('k1')}, allow: ["GET /metrics"] }`,
    `  - { name: dashboard, keySha256: ${sha256('k2')}, allow: ["GET /status", "GET /metrics", "GET /api/**"] }`
  ].join('\n'))
  const config = loadConfig({
    argvConfigPath: join(dir, 'broker.yaml'),
    env: { AZURE_TENANT_ID: '00000000-0000-4000-8000-000000000001', AZURE_CLIENT_ID: '11111111-1111-4000-8000-000000000002', AZURE_CLIENT_SECRET: 'x' }
  })
  t.same(config.clients.map((client) => client.allow), [['GET /metrics'], ['GET /status', 'GET /metrics', 'GET /api/**']])
})

t.test('with no clients configured, /status and /metrics stay open and show every profile', async (t) => {
  const open = await startBrokerStack(t)
  const status = await getGlobalDispatcher().request({ origin: open.url, path: '/status', method: 'GET' })
  t.equal(status.statusCode, 200)
  t.same((await status.body.json() as { profiles: Array<{ name: string }> }).profiles.map((p) => p.name), ['default'])
  const metrics = await getGlobalDispatcher().request({ origin: open.url, path: '/metrics', method: 'GET' })
  t.equal(metrics.statusCode, 200)
  t.match(await metrics.body.text(), /^broker_token_expiry_seconds\{profile="default"\} /m)
})
