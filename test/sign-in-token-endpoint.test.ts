import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { buildApp } from '../src/app.js'
import { BrokerTokens } from '../src/broker-tokens/broker-token.js'
import { SIGNING_KEY_STATE_FILE } from '../src/broker-tokens/signing-key.js'
import type { Config, ProfileConfig } from '../src/config/types.js'
import { inlineSecret } from '../src/config/secret-files.js'
import { createLogger } from '../src/observability/logger.js'
import { WINDOWS_DEFENDER_ATP_APP_ID } from '../src/sign-in/resources.js'
import { ALL_ROLES, createLogSink, createTestClock, startBrokerStack, type BrokerStack } from './helpers/broker.js'
import {
  claimsOf, clientConfig, DEFENDER_SCOPE, get, lastAuthorization, postForm, realTokenOf, stateDir, withClients, type Answer
} from './helpers/sign-in.js'

const KEY = 'soar-key-canary-7f3e1b2c9d0a4e5f8a6b7c8d9e0f1a2b'
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

async function tokenStack (t: Test, options: { clients?: boolean, config?: (c: Config) => Config, dir?: string } = {}): Promise<BrokerStack & { dir: string }> {
  const dir = options.dir ?? stateDir()
  const stack = await startBrokerStack(t, {
    simulator: { roles: ALL_ROLES },
    env: { BROKER_STATE_DIR: dir },
    config: (c) => {
      const withKeys = options.clients === false ? c : withClients(clientConfig('soar', KEY))(c)
      return options.config ? options.config(withKeys) : withKeys
    }
  })
  return { ...stack, dir }
}

/** Entra ID's error body: the AADSTS code in the description and the list, and its ids. */
function assertEntraError (t: Test, answer: Answer, status: number, error: string, code: number, correlationId?: string): void {
  t.equal(answer.status, status, `${error} is ${status}`)
  t.same(Object.keys(answer.json).sort(), ['correlation_id', 'error', 'error_codes', 'error_description', 'timestamp', 'trace_id'])
  t.equal(answer.json.error, error)
  t.same(answer.json.error_codes, [code])
  t.match(answer.json.error_description, new RegExp(`^AADSTS${code}: .+ Trace ID: ${answer.json.trace_id as string} Correlation ID: ${answer.json.correlation_id as string} Timestamp: `))
  t.match(answer.json.timestamp, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/)
  t.match(answer.json.trace_id, GUID)
  if (correlationId !== undefined) t.equal(answer.json.correlation_id, correlationId, 'the caller\'s client-request-id comes back')
  t.equal(answer.headers['cache-control'], 'no-store')
}

t.test('v2: the client key as client_secret gets a broker token; the API sees the real token, the tool never does', async (t) => {
  const stack = await tokenStack(t)
  const answer = await postForm(`${stack.url}/${stack.simulator.tenantId}/oauth2/v2.0/token`, {
    client_id: 'soar',
    client_secret: KEY,
    grant_type: 'client_credentials',
    scope: DEFENDER_SCOPE,
    client_info: '1',
    claims: '{"access_token":{"xms_cc":{"values":["CP1"]}}}'
  })
  t.equal(answer.status, 200, answer.text)
  t.same(Object.keys(answer.json).sort(), ['access_token', 'expires_in', 'ext_expires_in', 'token_type'])
  t.match(answer.json, { token_type: 'Bearer', expires_in: 3600, ext_expires_in: 3600 })
  const token = answer.json.access_token as string
  const real = realTokenOf(stack)
  t.not(token, real)
  t.notOk(answer.text.includes(real), 'no real token in the answer')
  const realRoles = claimsOf(real).roles
  t.match(claimsOf(token), {
    iss: `${stack.url}/${stack.simulator.tenantId}/v2.0`,
    aud: 'https://api.securitycenter.microsoft.com',
    sub: 'soar',
    azp: 'soar',
    tid: stack.simulator.tenantId,
    roles: realRoles,
    broker_profile: 'default'
  })
  t.equal(answer.headers['cache-control'], 'no-store')

  const alerts = await request(`${stack.url}/api/alerts?$top=2`, { headers: { authorization: `Bearer ${token}` } })
  const body = await alerts.body.text()
  t.equal(alerts.statusCode, 200, body)
  t.equal((JSON.parse(body) as { value: unknown[] }).value.length, 2, 'the tool got its data')
  t.equal(lastAuthorization(stack), `Bearer ${real}`, 'the API saw the real token')
  t.notOk(body.includes(real))
  t.match(stack.logs.lines.find((line) => line.path === '/api/alerts'), { client: 'soar', profile: 'default', status: 200 })
  const logs = stack.logs.text()
  for (const secret of [KEY, real, token, stack.simulator.clientSecret]) t.notOk(logs.includes(secret), 'no key, secret or token in the logs')
})

t.test('v1: resource, HTTP Basic, the answer has expires_on and resource', async (t) => {
  const stack = await tokenStack(t)
  const answer = await postForm(`${stack.url}/${stack.simulator.tenantId}/oauth2/token`, {
    grant_type: 'client_credentials', resource: 'https://api.securitycenter.windows.com'
  }, { authorization: `Basic ${Buffer.from(`soar:${encodeURIComponent(KEY)}`).toString('base64')}` })
  t.equal(answer.status, 200, answer.text)
  const token = answer.json.access_token as string
  const claims = claimsOf(token)
  t.same(answer.json, {
    token_type: 'Bearer',
    expires_in: '3600',
    ext_expires_in: '3600',
    expires_on: String(claims.exp),
    not_before: String(claims.nbf),
    resource: 'https://api.securitycenter.windows.com',
    access_token: token
  })
  t.match(claims, { iss: `${stack.url}/${stack.simulator.tenantId}/`, aud: 'https://api.securitycenter.windows.com' })
  const alerts = await request(`${stack.url}/api/alerts?$top=1`, { headers: { authorization: `Bearer ${token}` } })
  t.equal(alerts.statusCode, 200)
  await alerts.body.dump()
})

t.test('every name of the Defender API is accepted, as a v2 scope and a v1 resource', async (t) => {
  const stack = await tokenStack(t)
  const names = [
    'https://api.securitycenter.microsoft.com', 'https://api.securitycenter.windows.com',
    'https://securitycenter.onmicrosoft.com/windowsatpservice', WINDOWS_DEFENDER_ATP_APP_ID, stack.simulator.defender.url
  ]
  for (const name of names) {
    const v2 = await postForm(`${stack.url}/organizations/oauth2/v2.0/token`, { client_id: 'x', client_secret: KEY, grant_type: 'client_credentials', scope: `${name}/.default` })
    t.equal(v2.status, 200, `scope ${name}/.default`)
    t.equal(claimsOf(v2.json.access_token as string).aud, name)
    const v1 = await postForm(`${stack.url}/common/oauth2/token`, { client_id: 'x', client_secret: KEY, grant_type: 'client_credentials', resource: name })
    t.equal(v1.status, 200, `resource ${name}`)
  }
})

t.test('Entra-shaped refusals: wrong or missing key, foreign scope, grant type, method, body', async (t) => {
  const stack = await tokenStack(t)
  const url = `${stack.url}/${stack.simulator.tenantId}/oauth2/v2.0/token`
  const correlationId = randomUUID()
  const form = { client_id: 'soar', client_secret: KEY, grant_type: 'client_credentials', scope: DEFENDER_SCOPE }

  const wrong = await postForm(url, { ...form, client_secret: 'wrong-secret-canary' }, { 'client-request-id': correlationId })
  assertEntraError(t, wrong, 401, 'invalid_client', 7000215, correlationId)
  t.notOk(wrong.text.includes('wrong-secret-canary'), 'the secret sent is not echoed')
  const wrongBasic = await postForm(`${stack.url}/common/oauth2/token`, { grant_type: 'client_credentials', resource: 'https://api.securitycenter.windows.com' },
    { authorization: `Basic ${Buffer.from('soar:nope').toString('base64')}` })
  assertEntraError(t, wrongBasic, 401, 'invalid_client', 7000215)
  const missing = await postForm(url, { client_id: 'soar', grant_type: 'client_credentials', scope: DEFENDER_SCOPE })
  assertEntraError(t, missing, 401, 'invalid_client', 7000218)

  const graph = await postForm(url, { ...form, scope: 'https://graph.microsoft.com/.default' })
  assertEntraError(t, graph, 400, 'invalid_scope', 500011)
  t.match(graph.json.error_description, /serves only the Microsoft Defender for Endpoint API/)
  const graphV1 = await postForm(`${stack.url}/common/oauth2/token`, { client_secret: KEY, grant_type: 'client_credentials', resource: 'https://management.azure.com' })
  assertEntraError(t, graphV1, 400, 'invalid_resource', 500011)
  t.match(graphV1.json.error_description, /serves only the Microsoft Defender for Endpoint API/)
  assertEntraError(t, await postForm(url, { ...form, scope: 'https://api.securitycenter.microsoft.com/Alert.Read.All' }), 400, 'invalid_scope', 1002012)
  assertEntraError(t, await postForm(url, { ...form, scope: `${DEFENDER_SCOPE} https://api.securitycenter.windows.com/.default` }), 400, 'invalid_scope', 70011)
  assertEntraError(t, await postForm(url, { ...form, scope: 'openid profile' }), 400, 'invalid_scope', 70011)
  assertEntraError(t, await postForm(url, { ...form, scope: '' }), 400, 'invalid_request', 900144)

  assertEntraError(t, await postForm(url, { ...form, grant_type: 'password' }), 400, 'unsupported_grant_type', 70003)
  assertEntraError(t, await postForm(url, { ...form, grant_type: '' }), 400, 'invalid_request', 900144)
  assertEntraError(t, await get(url), 400, 'invalid_request', 900561)
  const json = await request(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(form) })
  assertEntraError(t, { status: json.statusCode, headers: json.headers, text: '', json: await json.body.json() as Record<string, unknown> }, 400, 'invalid_request', 900144)

  const unknownTenant = await postForm(`${stack.url}/99999999-9999-4999-8999-999999999999/oauth2/v2.0/token`, form)
  t.equal(unknownTenant.status, 200, 'with a single profile, any tenant picks it')

  const refusals = stack.logs.lines.filter((line) => line.status !== undefined && (line.status as number) >= 400)
  t.ok(refusals.some((line) => line.code === 'AADSTS7000215' && line.path === `/${stack.simulator.tenantId}/oauth2/v2.0/token`), 'refusals are logged through the request log with their code')
  const metrics = await (await request(`${stack.url}/metrics`, { headers: { authorization: `Bearer ${KEY}` } })).body.text()
  t.match(metrics, /broker_inbound_rejections_total\{reason="AADSTS7000215"\} 2/)
  const logs = stack.logs.text()
  t.notOk(logs.includes(KEY) || logs.includes('wrong-secret-canary'), 'no secret in the logs')
})

t.test('with no clients configured, any secret is accepted; the token names the local client', async (t) => {
  const stack = await tokenStack(t, { clients: false })
  const answer = await postForm(`${stack.url}/common/oauth2/v2.0/token`, { client_id: 'tool', client_secret: 'anything', grant_type: 'client_credentials', scope: DEFENDER_SCOPE })
  t.equal(answer.status, 200)
  t.match(claimsOf(answer.json.access_token as string), { sub: 'local', broker_profile: 'default' })
  const alerts = await request(`${stack.url}/api/alerts?$top=1`, { headers: { authorization: `Bearer ${answer.json.access_token as string}` } })
  t.equal(alerts.statusCode, 200)
  await alerts.body.dump()
  const forged = `${(answer.json.access_token as string).slice(0, -4)}AAAA`
  const refused = await get(`${stack.url}/api/alerts`, { authorization: `Bearer ${forged}` })
  t.equal(refused.status, 401, 'a broker token that does not verify is refused even where no key is required')
  t.match(refused.json, { error: { code: 'BrokerUnauthenticated' } })
})

t.test('discovery documents point at the broker, at the Host the tool used', async (t) => {
  const stack = await tokenStack(t)
  const port = new URL(stack.url).port
  const origin = `http://localhost:${port}`
  const v2 = await get(`${stack.url}/${stack.simulator.tenantId}/v2.0/.well-known/openid-configuration`, { host: `localhost:${port}` })
  t.equal(v2.status, 200)
  t.match(v2.json, {
    token_endpoint: `${origin}/${stack.simulator.tenantId}/oauth2/v2.0/token`,
    issuer: `${origin}/${stack.simulator.tenantId}/v2.0`,
    authorization_endpoint: `${origin}/${stack.simulator.tenantId}/oauth2/v2.0/authorize`,
    jwks_uri: `${origin}/${stack.simulator.tenantId}/discovery/v2.0/keys`
  })
  const v1 = await get(`${stack.url}/common/.well-known/openid-configuration`)
  t.match(v1.json, { token_endpoint: `${stack.url}/common/oauth2/token`, issuer: `${stack.url}/common/` })
  const instance = await get(`${stack.url}/common/discovery/instance?api-version=1.1&authorization_endpoint=${encodeURIComponent(`${stack.url}/${stack.simulator.tenantId}/oauth2/v2.0/authorize`)}`)
  const host = new URL(stack.url).host
  t.same(instance.json, {
    tenant_discovery_endpoint: `${stack.url}/${stack.simulator.tenantId}/v2.0/.well-known/openid-configuration`,
    'api-version': '1.1',
    metadata: [{ preferred_network: host, preferred_cache: host, aliases: [host] }]
  })
  t.same((await get(`${stack.url}/common/discovery/v2.0/keys`)).json, { keys: [] })
  const rebinding = await get(`${stack.url}/common/v2.0/.well-known/openid-configuration`, { host: 'evil.example' })
  t.equal(rebinding.status, 421, 'a Host the broker does not answer to is refused before any URL is built from it')
  t.equal(rebinding.json.error, 'invalid_request')
})

t.test('a broker token works after a restart with the same state directory; forged, expired or foreign-key ones get 401', async (t) => {
  const stack = await tokenStack(t)
  const answer = await postForm(`${stack.url}/${stack.simulator.tenantId}/oauth2/v2.0/token`, { client_secret: KEY, grant_type: 'client_credentials', scope: DEFENDER_SCOPE })
  const token = answer.json.access_token as string
  await stack.app.close()

  const logs = createLogSink()
  const restarted = await buildApp(stack.config, { logger: createLogger({ level: 'info', destination: logs.stream }), env: {} })
  t.teardown(() => restarted.close())
  await restarted.listen({ host: '127.0.0.1', port: 0 })
  const address = restarted.server.address()
  const url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
  const again = await get(`${url}/api/alerts?$top=1`, { authorization: `Bearer ${token}` })
  t.equal(again.status, 200, 'the restarted broker accepts the token it handed out before')
  t.equal(lastAuthorization(stack), `Bearer ${realTokenOf({ ...stack, app: restarted })}`)

  const key = readFileSync(join(stack.dir, SIGNING_KEY_STATE_FILE))
  const past = createTestClock(Date.now() - 2 * 3600 * 1000)
  const expired = new BrokerTokens({ key: () => key, clock: past, clients: stack.config.clients, profiles: ['default'] })
    .issue({ issuer: 'x', audience: 'https://api.securitycenter.microsoft.com', client: 'soar', tenantId: 't', roles: ALL_ROLES, profile: 'default' })
  const foreign = new BrokerTokens({ key: () => Buffer.alloc(32, 7), clock: createTestClock(), clients: stack.config.clients, profiles: ['default'] })
    .issue({ issuer: 'x', audience: 'https://api.securitycenter.microsoft.com', client: 'soar', tenantId: 't', roles: ALL_ROLES, profile: 'default' })
  const [header, , signature] = token.split('.') as [string, string, string]
  const claims = claimsOf(token)
  const forged = `${header}.${Buffer.from(JSON.stringify({ ...claims, sub: 'admin', exp: (claims.exp as number) + 86400 })).toString('base64url')}.${signature}`
  for (const [name, bad] of [['expired', expired.token], ['signed with another key', foreign.token], ['forged', forged]]) {
    const refused = await get(`${url}/api/alerts`, { authorization: `Bearer ${bad as string}` })
    t.equal(refused.status, 401, name as string)
    t.equal((refused.json.error as { code: string }).code, 'BrokerUnauthenticated')
  }
})

t.test('two tenants pick two profiles; the token pins its profile whatever the path', async (t) => {
  const fabrikam = { tenantId: '22222222-2222-4222-8222-222222222222', clientId: '33333333-3333-4333-8333-333333333333', secret: 'fab8Q~fabrikam-secret-canary-0000000000000' }
  const dir = stateDir()
  const stack = await startBrokerStack(t, {
    simulator: { roles: ALL_ROLES },
    env: { BROKER_STATE_DIR: dir },
    beforeStart: (simulator) => simulator.entra.addApp({ ...fabrikam, roles: ['Alert.Read.All'] }),
    config: (c) => {
      const first = c.profiles[0] as ProfileConfig
      const second: ProfileConfig = {
        ...first,
        name: 'fabrikam',
        basePath: '/fabrikam',
        tenantId: fabrikam.tenantId,
        clientId: fabrikam.clientId,
        credential: { type: 'secret', secret: inlineSecret(fabrikam.secret, 'profiles.fabrikam.credential.secret') }
      }
      return withClients(clientConfig('soar', KEY))({ ...c, profiles: [first, second] })
    }
  })
  const tokenFor = async (tenant: string): Promise<Answer> =>
    await postForm(`${stack.url}/${tenant}/oauth2/v2.0/token`, { client_secret: KEY, grant_type: 'client_credentials', scope: DEFENDER_SCOPE })
  const tidSeen = (): unknown => claimsOf((lastAuthorization(stack) ?? '').replace(/^Bearer /, '')).tid

  const contoso = await tokenFor(stack.simulator.tenantId)
  const fab = await tokenFor(fabrikam.tenantId)
  t.match(claimsOf(contoso.json.access_token as string), { broker_profile: 'default', tid: stack.simulator.tenantId })
  t.match(claimsOf(fab.json.access_token as string), { broker_profile: 'fabrikam', tid: fabrikam.tenantId, roles: ['Alert.Read.All'] })
  t.match(claimsOf((await tokenFor('fabrikam')).json.access_token as string), { broker_profile: 'fabrikam' }, 'a profile\'s name works as its tenant')

  for (const path of ['/api/alerts?$top=1', '/fabrikam/api/alerts?$top=1']) {
    const answer = await get(`${stack.url}${path}`, { authorization: `Bearer ${fab.json.access_token as string}` })
    t.equal(answer.status, 200, path)
    t.equal(tidSeen(), fabrikam.tenantId, `${path} went to fabrikam's tenant`)
    t.equal(stack.simulator.defender.requests.at(-1)?.url, '/api/alerts?$top=1', 'the basePath is taken off')
  }
  t.equal((await get(`${stack.url}/api/alerts?$top=1`, { authorization: `Bearer ${contoso.json.access_token as string}` })).status, 200)
  t.equal(tidSeen(), stack.simulator.tenantId)

  assertEntraError(t, await tokenFor('common'), 400, 'invalid_request', 900144)
  assertEntraError(t, await tokenFor('99999999-9999-4999-8999-999999999999'), 400, 'invalid_request', 90002)
})
