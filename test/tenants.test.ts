import { join } from 'node:path'
import t from 'tap'
import { getGlobalDispatcher } from 'undici'
import { stringify } from 'yaml'
import { loadConfig } from '../src/config/load.js'
import { inlineSecret } from '../src/config/secret-files.js'
import type { ProfileConfig } from '../src/config/types.js'
import { createTestPki, type TokenRequestEvent } from '../src/simulator/index.js'
import { ALL_ROLES, claimsOf, createTestClock, startBrokerStack } from './helpers/broker.js'
import { readBody, startUpstream, type Upstream } from './helpers/upstream.js'

const pki = await createTestPki()
const clock = createTestClock()
const EU_PER_MINUTE = 3

/** The MSSP's other customers: their own tenant, app registration and secret. */
const OTHERS = {
  fabrikam: { basePath: '/fabrikam', tenantId: '22222222-2222-4222-8222-222222222222', clientId: '33333333-3333-4333-8333-333333333333', secret: 'fab8Q~fabrikam-secret-canary-0000000000000' },
  'fabrikam-eu': { basePath: '/fabrikam/eu', tenantId: '44444444-4444-4444-8444-444444444444', clientId: '55555555-5555-4555-8555-555555555555', secret: 'eu08Q~fabrikam-eu-secret-canary-000000000' }
} as const
type Name = 'default' | keyof typeof OTHERS

/** A 401 for the next request to fabrikam's upstream, as after a revoked token. */
let refuseNext = false
function upstreamFor (name: Name) {
  return startUpstream(t, (req, res, recorded) => {
    readBody(req, recorded).then(() => {
      if (name === 'fabrikam' && refuseNext) {
        refuseNext = false
        res.writeHead(401, { 'content-type': 'application/json' })
        return res.end('{"error":{"code":"Unauthorized","message":"revoked","target":"x"}}')
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ upstream: name, url: req.url }))
    }, () => res.destroy())
  })
}
const upstreams: Record<Name, Upstream> = {
  default: await upstreamFor('default'),
  fabrikam: await upstreamFor('fabrikam'),
  'fabrikam-eu': await upstreamFor('fabrikam-eu')
}

const tokenRequests: TokenRequestEvent[] = []
const stack = await startBrokerStack(t, {
  clock,
  simulator: { pki, roles: ALL_ROLES },
  env: { BROKER_UPSTREAM: upstreams.default.url },
  beforeStart: (simulator) => {
    simulator.entra.on('token-request', (event) => tokenRequests.push(event))
    for (const { tenantId, clientId, secret } of Object.values(OTHERS)) simulator.entra.addApp({ tenantId, clientId, secret, roles: ALL_ROLES })
  },
  config: (c) => {
    const first = c.profiles[0] as ProfileConfig
    const others = Object.entries(OTHERS).map(([name, { basePath, tenantId, clientId, secret }]): ProfileConfig => ({
      ...first,
      name,
      basePath,
      tenantId,
      clientId,
      credential: { type: 'secret', secret: inlineSecret(secret, `profiles.${name}.credential.secret`) },
      upstream: upstreams[name as Name].url,
      rateLimit: name === 'fabrikam-eu' ? { perMinute: EU_PER_MINUTE, perHour: 1500, maxQueueSeconds: 0 } : first.rateLimit
    }))
    return { ...c, profiles: [first, ...others] }
  }
})
const { simulator } = stack
const identity: Record<Name, { tenantId: string, clientId: string }> = {
  default: { tenantId: simulator.tenantId, clientId: simulator.clientId },
  ...OTHERS
}

/** The claims a token of `name`'s app carries. */
function expectedClaims (name: Name): { tid: string, appid: string } {
  return { tid: identity[name].tenantId, appid: identity[name].clientId }
}

async function get (path: string): Promise<{ status: number, body: { upstream?: string, url?: string } }> {
  const res = await getGlobalDispatcher().request({ origin: stack.url, path, method: 'GET' })
  return { status: res.statusCode, body: await res.body.json() as { upstream?: string, url?: string } }
}

t.test('each profile got its token from its own tenant, with its own app', async (t) => {
  t.equal(tokenRequests.length, 3, 'one token request per profile')
  t.strictSame(
    tokenRequests.map((e) => `${e.tenantId} ${e.clientId}`).sort(),
    Object.values(identity).map((i) => `${i.tenantId} ${i.clientId}`).sort()
  )
  for (const profile of stack.app.profiles) {
    const token = await profile.tokens.get()
    t.match(claimsOf(`Bearer ${token.value}`), expectedClaims(profile.config.name as Name), `${profile.config.name}: the token's tid and appid`)
  }
})

t.test('the longest basePath wins, on whole segments', async (t) => {
  const cases: Array<[string, Name, string]> = [
    ['/api/alerts', 'default', '/api/alerts'],
    ['/fabrikam/api/alerts', 'fabrikam', '/api/alerts'],
    ['/fabrikam/eu/api/alerts?$top=1', 'fabrikam-eu', '/api/alerts?$top=1'],
    ['/fabrikam/europe/api/alerts', 'fabrikam', '/europe/api/alerts'],
    ['/fabrikam/api/eu/alerts', 'fabrikam', '/api/eu/alerts'],
    ['/fabrikamx/api/alerts', 'default', '/fabrikamx/api/alerts']
  ]
  for (const [path, name, upstreamPath] of cases) {
    const { status, body } = await get(path)
    t.equal(status, 200, path)
    t.strictSame(body, { upstream: name, url: upstreamPath }, `${path}: ${name}'s upstream, as ${upstreamPath}`)
  }
})

t.test('under concurrent load, each upstream gets only its own profile\'s token', async (t) => {
  const paths = Array.from({ length: 60 }, (_, i) => i % 3 === 0 ? `/api/alerts?i=${i}` : i % 3 === 1 ? `/fabrikam/api/machines?i=${i}` : `/fabrikam/api/alerts/da${i}`)
  const answers = await Promise.all(paths.map((path) => get(path)))
  t.strictSame(new Set(answers.map((a) => a.status)), new Set([200]))
  t.equal(answers.filter((a) => a.body.upstream === 'default').length, 20)
  t.equal(answers.filter((a) => a.body.upstream === 'fabrikam').length, 40)
})

t.test('a 401 on one profile renews that profile\'s token only', async (t) => {
  const before = Object.fromEntries(await Promise.all(stack.app.profiles.map(async (p) => [p.config.name, (await p.tokens.get()).value])))
  const requestsBefore = tokenRequests.length
  refuseNext = true
  const { status } = await get('/fabrikam/api/alerts')
  t.equal(status, 200, 'replayed with a fresh token')
  t.equal(tokenRequests.length, requestsBefore + 1)
  t.match(tokenRequests.at(-1), { tenantId: OTHERS.fabrikam.tenantId, clientId: OTHERS.fabrikam.clientId }, 'from fabrikam\'s tenant')
  for (const profile of stack.app.profiles) {
    const now = (await profile.tokens.get()).value
    if (profile.config.name === 'fabrikam') t.not(now, before.fabrikam, 'fabrikam holds a new token')
    else t.equal(now, before[profile.config.name], `${profile.config.name} keeps its token`)
  }
  const last = upstreams.fabrikam.requests.at(-1)
  t.match(claimsOf(last?.headers.authorization), expectedClaims('fabrikam'))
})

t.test('budgets are per profile', async (t) => {
  await clock.tickAsync(120_000)
  const sent = upstreams['fabrikam-eu'].requests.length
  for (let i = 0; i < EU_PER_MINUTE; i++) t.equal((await get('/fabrikam/eu/api/alerts')).status, 200)
  const res = await getGlobalDispatcher().request({ origin: stack.url, path: '/fabrikam/eu/api/alerts', method: 'GET' })
  t.equal(res.statusCode, 429)
  t.strictSame(await res.body.json(), {
    error: {
      code: 'BrokerRateLimited',
      message: `The local budget of profile fabrikam-eu is spent: retry in ${res.headers['retry-after']} s.`,
      target: res.headers['x-request-id']
    }
  }, 'fabrikam-eu\'s budget is spent')
  t.equal(upstreams['fabrikam-eu'].requests.length - sent, EU_PER_MINUTE)
  t.equal((await get('/fabrikam/api/alerts')).status, 200, 'fabrikam, same customer, other profile: still served')
  t.equal((await get('/api/alerts')).status, 200, 'the default profile: still served')
  const status = await (await getGlobalDispatcher().request({ origin: stack.url, path: '/status', method: 'GET' })).body.json() as {
    profiles: Array<{ name: string, budget: { perMinuteLeft: number } }>
  }
  t.match(Object.fromEntries(status.profiles.map((p) => [p.name, p.budget.perMinuteLeft])), { 'fabrikam-eu': 0 })
  t.ok((status.profiles.find((p) => p.name === 'fabrikam')?.budget.perMinuteLeft ?? 0) > 0, 'fabrikam has budget left')
})

t.test('over the whole file, no upstream ever received another profile\'s token', async (t) => {
  for (const [name, upstream] of Object.entries(upstreams) as Array<[Name, Upstream]>) {
    t.ok(upstream.requests.length > 0, `${name}'s upstream was used`)
    const strangers = upstream.requests.filter((r) => {
      const claims = claimsOf(r.headers.authorization)
      return claims.tid !== identity[name].tenantId || claims.appid !== identity[name].clientId
    })
    t.equal(strangers.length, 0, `${name}: every token from ${identity[name].tenantId}, app ${identity[name].clientId}`)
  }
})

t.test('one config file, one profile per cloud and host: each resolves to its authority, upstream and scope', async (t) => {
  const TENANT = '00000000-0000-0000-0000-000000000000'
  const CLIENT = '11111111-1111-1111-1111-111111111111'
  const PUBLIC_SCOPE = 'https://api.securitycenter.microsoft.com/.default'
  const profiles: Array<[Record<string, string>, [string, string, string]]> = [
    [{ cloud: 'public' }, ['https://login.microsoftonline.com', 'https://api.securitycenter.microsoft.com', PUBLIC_SCOPE]],
    [{ upstream: 'https://api.securitycenter.windows.com' }, ['https://login.microsoftonline.com', 'https://api.securitycenter.windows.com', PUBLIC_SCOPE]],
    [{ upstream: 'https://api-us.securitycenter.microsoft.com' }, ['https://login.microsoftonline.com', 'https://api-us.securitycenter.microsoft.com', PUBLIC_SCOPE]],
    [{ upstream: 'https://uk.api.security.microsoft.com' }, ['https://login.microsoftonline.com', 'https://uk.api.security.microsoft.com', PUBLIC_SCOPE]],
    [{ cloud: 'gcc' }, ['https://login.microsoftonline.com', 'https://api-gcc.securitycenter.microsoft.us', 'https://api-gcc.securitycenter.microsoft.us/.default']],
    [{ cloud: 'gcc-high' }, ['https://login.microsoftonline.us', 'https://api-gov.securitycenter.microsoft.us', 'https://api-gov.securitycenter.microsoft.us/.default']],
    [{ cloud: 'dod' }, ['https://login.microsoftonline.us', 'https://api-gov.securitycenter.microsoft.us', 'https://api-gov.securitycenter.microsoft.us/.default']]
  ]
  const dir = t.testdir({
    'broker.yaml': stringify({
      profiles: profiles.map(([settings], i) => ({
        name: `p${i}`,
        basePath: i === 0 ? '/' : `/p${i}`,
        tenantId: TENANT,
        clientId: CLIENT,
        credential: { type: 'managedIdentity' },
        ...settings
      }))
    })
  })
  const config = loadConfig({ argvConfigPath: join(dir, 'broker.yaml'), env: {} })
  profiles.forEach(([settings, [authorityHost, upstream, scope]], i) => {
    t.match(config.profiles[i], { authorityHost, upstream, scope, customAuthority: false }, JSON.stringify(settings))
  })

  const legacy = loadConfig({
    env: { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT, AZURE_CLIENT_SECRET: 's', BROKER_UPSTREAM: 'https://api.securitycenter.windows.com' }
  }).profiles[0]
  t.match(legacy, { cloud: 'public', authorityHost: 'https://login.microsoftonline.com', upstream: 'https://api.securitycenter.windows.com', scope: PUBLIC_SCOPE },
    'the legacy host of Microsoft\'s older guides through BROKER_UPSTREAM')
})
