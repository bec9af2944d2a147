import t from 'tap'
import type { Test } from 'tap'
import { once } from 'node:events'
import { X509Certificate, createPrivateKey, createPublicKey, generateKeyPairSync, verify } from 'node:crypto'
import { ConfidentialClientApplication } from '@azure/msal-node'
import type { Configuration, INetworkModule, NetworkRequestOptions, NetworkResponse } from '@azure/msal-node'
import { Agent, request } from 'undici'
import {
  DEMO_ROLES,
  SAMPLE_ALERT_COUNT,
  SAMPLE_MACHINE_COUNT,
  createTestPki,
  signJwt,
  startDefenderSimulator,
  startEntraSimulator,
  startSimulator
} from '../src/simulator/index.js'
import type { EntraApp, EntraSimulator, EntraSimulatorOptions, TokenRequestEvent } from '../src/simulator/index.js'

const TENANT = '00000000-0000-4000-8000-0000000000aa'
const CLIENT = '11111111-1111-4000-8000-0000000000bb'
const SECRET = 'abc8Q~not-a-real-secret-0123456789abcdef'
const SCOPE = 'https://api.securitycenter.microsoft.com/.default'

const pki = await createTestPki()
const agent = new Agent({ connect: { ca: pki.caCertPem } })
t.teardown(() => agent.close())

/** msal-node's network module over undici, trusting the simulator's CA. */
function createNetworkClient (agent: Agent): INetworkModule {
  async function send<T> (method: 'GET' | 'POST', url: string, init?: NetworkRequestOptions): Promise<NetworkResponse<T>> {
    const response = await request(url, { method, headers: init?.headers, body: init?.body, dispatcher: agent })
    const text = await response.body.text()
    const headers: Record<string, string> = {}
    for (const [name, value] of Object.entries(response.headers)) {
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value
    }
    return { status: response.statusCode, headers, body: JSON.parse(text) as T }
  }
  return {
    sendGetRequestAsync: (url, init) => send('GET', url, init),
    sendPostRequestAsync: (url, init) => send('POST', url, init)
  }
}

function agentFor (caCertPem: string): Agent {
  if (caCertPem === pki.caCertPem) return agent
  const other = new Agent({ connect: { ca: caCertPem } })
  t.teardown(() => other.close())
  return other
}

function createApp (entra: EntraSimulator, auth: Omit<Configuration['auth'], 'authority' | 'knownAuthorities'>, tenantId = TENANT) {
  return new ConfidentialClientApplication({
    auth: { ...auth, authority: `${entra.url}/${tenantId}`, knownAuthorities: [new URL(entra.url).host] },
    system: { networkClient: createNetworkClient(agentFor(entra.caCertPem)), disableInternalRetries: true }
  })
}

async function acquire (entra: EntraSimulator, auth: Omit<Configuration['auth'], 'authority' | 'knownAuthorities'>, options: { tenantId?: string, scope?: string } = {}) {
  const app = createApp(entra, auth, options.tenantId)
  const result = await app.acquireTokenByClientCredential({ scopes: [options.scope ?? SCOPE], skipCache: true })
  if (result === null) throw new TypeError('msal-node returned no result')
  return result
}

function createClock (start = Date.now()) {
  let now = start
  return { now: () => now, advance: (ms: number) => { now += ms } }
}

async function startEntra (t: Pick<Test, 'teardown'>, options: Partial<EntraSimulatorOptions> & { app?: Partial<EntraApp> } = {}) {
  const entra = await startEntraSimulator({
    pki,
    apps: [{ tenantId: TENANT, clientId: CLIENT, secret: SECRET, roles: ['Alert.Read.All', 'Machine.Read.All'], ...options.app }],
    ...options
  })
  t.teardown(() => entra.close())
  return entra
}

async function postToken (entra: EntraSimulator, form: Record<string, string>, tenantId = TENANT) {
  const response = await request(`${entra.url}/${tenantId}/oauth2/v2.0/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', 'client-request-id': 'c0ffee00-0000-4000-8000-000000000000' },
    body: new URLSearchParams(form).toString(),
    dispatcher: agent
  })
  return { status: response.statusCode, headers: response.headers, text: await response.body.text() }
}

function decodePayload (jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>
}

t.test('the PKI issues a loopback server certificate and client certificates', async (t) => {
  const ca = new X509Certificate(pki.caCertPem)
  const server = new X509Certificate(pki.serverCertPem)
  t.ok(server.verify(ca.publicKey), 'server certificate signed by the CA')
  t.equal(server.subjectAltName, 'IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:localhost')
  t.ok(server.checkPrivateKey(createPrivateKey(pki.serverKeyPem)))

  const client = await pki.issueClientCertificate('defender-broker', { notAfter: new Date(Date.now() + 3600_000) })
  const cert = new X509Certificate(client.certPem)
  t.equal(client.thumbprintSha256Hex, cert.fingerprint256.replaceAll(':', '').toLowerCase())
  t.equal(client.pem, client.certPem + client.keyPem)
  t.match(client.keyPem, /^-----BEGIN PRIVATE KEY-----\n/)
  t.ok(cert.checkPrivateKey(createPrivateKey(client.keyPem)))
  t.ok(Date.parse(cert.validTo) <= Date.now() + 3600_000)

  const locked = await pki.issueClientCertificate('locked', { password: 'hunter2' })
  t.match(locked.keyPem, /^-----BEGIN ENCRYPTED PRIVATE KEY-----\n/)
  t.ok(createPrivateKey({ key: locked.keyPem, passphrase: 'hunter2' }))
})

t.test('msal-node gets a token with a client secret', async (t) => {
  const entra = await startEntra(t, { refreshInSeconds: 1800 })
  const events: TokenRequestEvent[] = []
  entra.on('token-request', (event) => events.push(event))

  const result = await acquire(entra, { clientId: CLIENT, clientSecret: SECRET })
  t.equal(result.tokenType, 'Bearer')
  const claims = entra.verifyAccessToken(result.accessToken)
  t.match(claims, {
    aud: 'https://api.securitycenter.microsoft.com',
    iss: `https://sts.windows.net/${TENANT}/`,
    tid: TENANT,
    appid: CLIENT,
    azp: CLIENT,
    appidacr: '1',
    roles: ['Alert.Read.All', 'Machine.Read.All']
  })
  t.equal(claims?.exp, (claims?.iat ?? 0) + 3599)
  t.equal(entra.tokenRequests, 1)
  t.same(entra.issuedTokens, [result.accessToken])
  t.same(events, [{ tenantId: TENANT, clientId: CLIENT, grantType: 'client_credentials', scope: SCOPE, credential: 'secret' }])
  t.notOk(JSON.stringify(events).includes(SECRET), 'events never carry the secret')

  const raw = await postToken(entra, { grant_type: 'client_credentials', client_id: CLIENT, client_secret: SECRET, scope: SCOPE })
  t.equal(raw.status, 200)
  t.match(JSON.parse(raw.text), { token_type: 'Bearer', expires_in: 3599, ext_expires_in: 3599, refresh_in: 1800, access_token: String })
})

t.test('msal-node gets a token with a certificate; another certificate is refused', async (t) => {
  const [registered, other] = await Promise.all([pki.issueClientCertificate('registered'), pki.issueClientCertificate('other')])
  const entra = await startEntra(t, { app: { secret: undefined, certificatePem: registered.certPem } })
  const asCertificate = (cert: typeof registered) => ({
    clientId: CLIENT,
    clientCertificate: { thumbprintSha256: cert.thumbprintSha256Hex, privateKey: cert.keyPem, x5c: cert.certPem }
  })

  const result = await acquire(entra, asCertificate(registered))
  t.equal(entra.verifyAccessToken(result.accessToken)?.appidacr, '2')
  await t.rejects(acquire(entra, asCertificate(other)), { errorCode: 'invalid_client', message: /AADSTS700027/ })
  // The right thumbprint with the wrong key fails on the signature instead.
  await t.rejects(acquire(entra, {
    clientId: CLIENT,
    clientCertificate: { thumbprintSha256: registered.thumbprintSha256Hex, privateKey: other.keyPem }
  }), { message: /AADSTS700027: Client assertion failed signature validation/ })

  entra.setCertificate(CLIENT, other.certPem)
  t.ok(await acquire(entra, asCertificate(other)), 'a rotated certificate is accepted')
  await t.rejects(acquire(entra, asCertificate(registered)), { message: /AADSTS700027/ })
})

t.test('a certificate outside its validity period is refused', async (t) => {
  const clock = createClock()
  const cert = await pki.issueClientCertificate('short-lived', { notAfter: new Date(clock.now() + 60_000) })
  const entra = await startEntra(t, { clock, app: { certificatePem: cert.certPem } })
  const auth = { clientId: CLIENT, clientCertificate: { thumbprintSha256: cert.thumbprintSha256Hex, privateKey: cert.keyPem } }
  t.ok(await acquire(entra, auth))
  clock.advance(120_000)
  await t.rejects(acquire(entra, auth), { message: /AADSTS700027.*The key used is expired/ })
})

t.test('client assertions: stale ones and federated ones', async (t) => {
  const federatedKeys = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const entra = await startEntra(t, {
    app: {
      federatedCredentials: [{
        issuer: 'https://kubernetes.default.svc',
        subject: 'system:serviceaccount:soc:broker',
        publicKeyPem: federatedKeys.publicKey.export({ type: 'spki', format: 'pem' }).toString()
      }]
    }
  })
  const now = Math.floor(Date.now() / 1000)
  const federated = (claims: Record<string, unknown>) => signJwt({
    iss: 'https://kubernetes.default.svc',
    sub: 'system:serviceaccount:soc:broker',
    aud: ['api://AzureADTokenExchange'],
    iat: now,
    nbf: now,
    exp: now + 3600,
    ...claims
  }, federatedKeys.privateKey, { kid: 'k8s' })

  const result = await acquire(entra, { clientId: CLIENT, clientAssertion: federated({}) })
  t.equal(entra.verifyAccessToken(result.accessToken)?.appid, CLIENT)
  await t.rejects(acquire(entra, { clientId: CLIENT, clientAssertion: federated({ sub: 'system:serviceaccount:soc:intruder' }) }), { message: /AADSTS70021/ })
  await t.rejects(acquire(entra, { clientId: CLIENT, clientAssertion: federated({ iat: now - 7200, nbf: now - 7200, exp: now - 3600 }) }), { message: /AADSTS700024/ })
  await t.rejects(acquire(entra, { clientId: CLIENT, clientAssertion: 'not-a-jwt' }), { message: /AADSTS700027/ })
})

t.test('Entra errors carry AADSTS codes in Entra\'s shape', async (t) => {
  const clock = createClock()
  const entra = await startEntra(t, { clock })

  await t.rejects(acquire(entra, { clientId: CLIENT, clientSecret: 'wrong' }), { errorCode: 'invalid_client', message: /AADSTS7000215: Invalid client secret provided/ })
  await t.rejects(acquire(entra, { clientId: '99999999-1111-4000-8000-0000000000bb', clientSecret: SECRET }), { errorCode: 'unauthorized_client', message: /AADSTS700016/ })
  await t.rejects(acquire(entra, { clientId: CLIENT, clientSecret: SECRET }, { tenantId: '00000000-0000-4000-8000-00000000dead' }), { message: /AADSTS90002/ })
  await t.rejects(acquire(entra, { clientId: CLIENT, clientSecret: SECRET }, { scope: 'https://graph.microsoft.com/.default' }), { errorCode: 'invalid_resource', message: /AADSTS500011/ })
  await t.rejects(acquire(entra, { clientId: CLIENT, clientSecret: SECRET }, { scope: 'https://api.securitycenter.microsoft.com/Alert.Read.All' }), { errorCode: 'invalid_scope', message: /AADSTS1002012/ })

  entra.setSecret(CLIENT, 'new-secret', clock.now() + 60_000)
  await t.rejects(acquire(entra, { clientId: CLIENT, clientSecret: SECRET }), { message: /AADSTS7000215/ })
  t.ok(await acquire(entra, { clientId: CLIENT, clientSecret: 'new-secret' }), 'a rotated secret is accepted')
  clock.advance(60_000)
  await t.rejects(acquire(entra, { clientId: CLIENT, clientSecret: 'new-secret' }), { errorCode: 'invalid_client', message: /AADSTS7000222/ })

  const raw = await postToken(entra, { grant_type: 'client_credentials', client_id: CLIENT, client_secret: 'wrong', scope: SCOPE })
  t.equal(raw.status, 401)
  const body = JSON.parse(raw.text) as Record<string, unknown>
  t.same(Object.keys(body).sort(), ['correlation_id', 'error', 'error_codes', 'error_description', 'error_uri', 'timestamp', 'trace_id'])
  t.match(body, {
    error: 'invalid_client',
    error_description: /^AADSTS7000215: Invalid client secret provided\. .* Trace ID: [0-9a-f-]{36} Correlation ID: c0ffee00-0000-4000-8000-000000000000 Timestamp: \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/,
    error_codes: [7000215],
    timestamp: /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/,
    correlation_id: 'c0ffee00-0000-4000-8000-000000000000'
  })
  t.equal((await postToken(entra, { grant_type: 'client_credentials', client_id: 'x', scope: SCOPE }, 'not a tenant')).status, 400)
  t.match(JSON.parse((await postToken(entra, { grant_type: 'password', client_id: CLIENT })).text), { error: 'unsupported_grant_type', error_codes: [70003] })
})

t.test('failure modes', async (t) => {
  const entra = await startEntra(t)
  const auth = { clientId: CLIENT, clientSecret: SECRET }

  entra.setMode('error500')
  await t.rejects(acquire(entra, auth), { errorCode: 'temporarily_unavailable', message: /AADSTS50000/ })

  entra.setMode('garbage')
  const garbage = await postToken(entra, { grant_type: 'client_credentials', client_id: CLIENT, client_secret: SECRET, scope: SCOPE })
  t.equal(garbage.status, 200)
  t.throws(() => JSON.parse(garbage.text))
  await t.rejects(acquire(entra, auth))

  // msal-node passes these on as successes: telling them apart is the caller's job.
  entra.setMode('empty')
  const empty = await acquire(entra, auth)
  t.equal(empty.accessToken, '')
  t.equal(empty.expiresOn, null)

  entra.setMode('notJwt')
  t.equal((await acquire(entra, auth)).accessToken, 'abc')

  entra.setMode('expired')
  const expired = await acquire(entra, auth)
  t.ok((expired.expiresOn?.getTime() ?? 0) > Date.now(), 'expires_in still claims a full lifetime')
  t.ok(Number(decodePayload(expired.accessToken)['exp']) * 1000 < Date.now(), 'the JWT has expired')
  t.equal(entra.verifyAccessToken(expired.accessToken), null)

  entra.setMode('ok')
  t.ok(entra.verifyAccessToken((await acquire(entra, auth)).accessToken))
  t.equal(entra.tokenRequests, 7)
})

t.test('hang never answers, and close() ends the hanging request', async (t) => {
  const entra = await startEntraSimulator({ pki, apps: [{ tenantId: TENANT, clientId: CLIENT, secret: SECRET, roles: [] }] })
  t.teardown(() => entra.close())
  entra.setMode('hang')
  const received = once(entra, 'token-request')
  const pending = acquire(entra, { clientId: CLIENT, clientSecret: SECRET })
  let settled = false
  pending.then(() => { settled = true }, () => { settled = true })
  await received
  t.equal(settled, false)
  await entra.close()
  await t.rejects(pending)

  const defender = await startDefenderSimulator({ verifyAccessToken: () => null })
  t.teardown(() => defender.close())
  defender.forceNext(200, { hang: true })
  const arrived = once(defender, 'request')
  const upstream = request(`${defender.url}/api/alerts`)
  upstream.catch(() => {})
  await arrived
  await defender.close()
  await t.rejects(upstream)
})

t.test('discovery: the OpenID configuration and the signing keys', async (t) => {
  const entra = await startEntra(t)
  const get = async (path: string) => {
    const response = await request(`${entra.url}${path}`, { dispatcher: agent })
    return { status: response.statusCode, body: await response.body.json() as Record<string, any> }
  }
  const config = await get(`/${TENANT}/v2.0/.well-known/openid-configuration`)
  t.match(config, {
    status: 200,
    body: {
      issuer: `${entra.url}/${TENANT}/v2.0`,
      token_endpoint: `${entra.url}/${TENANT}/oauth2/v2.0/token`,
      authorization_endpoint: `${entra.url}/${TENANT}/oauth2/v2.0/authorize`,
      end_session_endpoint: `${entra.url}/${TENANT}/oauth2/v2.0/logout`,
      jwks_uri: `${entra.url}/${TENANT}/discovery/v2.0/keys`
    }
  })
  const { accessToken } = await acquire(entra, { clientId: CLIENT, clientSecret: SECRET })
  const [header, payload, signature] = accessToken.split('.') as [string, string, string]
  const kid = JSON.parse(Buffer.from(header, 'base64url').toString()).kid
  const jwks = await get(`/${TENANT}/discovery/v2.0/keys`)
  const jwk = jwks.body['keys'].find((key: { kid: string }) => key.kid === kid)
  t.ok(verify('sha256', Buffer.from(`${header}.${payload}`), createPublicKey({ key: jwk, format: 'jwk' }), Buffer.from(signature, 'base64url')), 'the published key verifies issued tokens')

  t.match(await get('/not..a..tenant/v2.0/.well-known/openid-configuration'), { status: 400, body: { error: 'invalid_tenant', error_codes: [900023] } })
  t.match(await get(`/${TENANT}/oauth2/v2.0/token`), { status: 400, body: { error: 'invalid_request', error_codes: [900561] } })
  t.match(await get('/favicon.ico'), { status: 404 })
})

t.test('the Defender simulator serves the API to a bearer of a valid token', async (t) => {
  const clock = createClock()
  const entra = await startEntra(t, { clock, app: { roles: ['Alert.Read.All', 'Machine.Read.All', 'Machine.Isolate', 'AdvancedQuery.Read.All'] } })
  const defender = await startDefenderSimulator({ verifyAccessToken: (token) => entra.verifyAccessToken(token), clock, pageSize: 150 })
  t.teardown(() => defender.close())
  const token = (await acquire(entra, { clientId: CLIENT, clientSecret: SECRET })).accessToken
  const call = async (path: string, init: { method?: 'GET' | 'POST', body?: unknown, token?: string | null } = {}) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (init.token !== null) headers['authorization'] = `Bearer ${init.token ?? token}`
    const response = await request(`${defender.url}${path}`, {
      method: init.method ?? 'GET',
      headers,
      body: init.body === undefined ? undefined : typeof init.body === 'string' ? init.body : JSON.stringify(init.body)
    })
    return { status: response.statusCode, headers: response.headers, body: await response.body.json() as Record<string, any> }
  }

  const first = await call('/api/alerts')
  t.equal(first.status, 200)
  t.match(first.headers['request-id'], /^[0-9a-f-]{36}$/)
  t.match(first.headers['content-type'], /^application\/json;/)
  t.equal(first.body['@odata.context'], `${defender.url}/api/$metadata#Alerts`)
  t.equal(first.body['value'].length, 150)
  t.equal(first.body['@odata.nextLink'], `${defender.url}/api/alerts?$skip=150`)
  t.match(first.body['value'][0], {
    id: /^da\d{18}_-?\d+$/,
    incidentId: Number,
    title: String,
    severity: /^(Informational|Low|Medium|High)$/,
    status: String,
    category: String,
    detectionSource: String,
    machineId: /^[0-9a-f]{40}$/,
    computerDnsName: String,
    alertCreationTime: String
  })

  const ids: string[] = []
  let next: string | undefined = `${defender.url}/api/alerts`
  while (next !== undefined) {
    t.ok(next.startsWith(`${defender.url}/`), 'nextLink is absolute, on the upstream origin')
    const page = await call(next.slice(defender.url.length))
    ids.push(...page.body['value'].map((alert: { id: string }) => alert.id))
    next = page.body['@odata.nextLink']
  }
  t.equal(ids.length, SAMPLE_ALERT_COUNT)
  t.equal(new Set(ids).size, SAMPLE_ALERT_COUNT, 'every alert once')

  const small = await call(`/api/machines?$top=3&$skip=${SAMPLE_MACHINE_COUNT - 2}`)
  t.same(small.body['value'].length, 2)
  t.notOk('@odata.nextLink' in small.body)
  t.equal((await call('/api/alerts?$top=-1')).status, 400)

  const alert = await call(`/api/alerts/${ids[3] ?? ''}`)
  t.match(alert.body, { '@odata.context': `${defender.url}/api/$metadata#Alerts/$entity`, id: ids[3] })
  const missing = await call('/api/machines/0000000000000000000000000000000000000000')
  t.equal(missing.status, 404)
  t.same(missing.body, { error: { code: 'ResourceNotFound', message: String(missing.body['error']?.message), target: missing.headers['request-id'] } })

  const machineId = defender.data.machines[0]?.id ?? ''
  const isolated = await call(`/api/machines/${machineId}/isolate`, { method: 'POST', body: { Comment: 'Contain ransomware', IsolationType: 'Full' } })
  t.equal(isolated.status, 201)
  t.match(isolated.body, { type: 'Isolate', status: 'Pending', machineId, requestor: CLIENT, requestorComment: 'Contain ransomware', scope: 'Full', creationDateTimeUtc: new Date(clock.now()).toISOString() })
  t.equal(defender.machineActions.length, 1)
  t.match(await call(`/api/machines/${machineId}/isolate`, { method: 'POST', body: { IsolationType: 'Full' } }), { status: 400, body: { error: { code: 'InvalidRequestBody' } } })
  t.match(await call(`/api/machines/${machineId}/isolate`, { method: 'POST', body: '{not json' }), { status: 400 })

  const hunt = await call('/api/advancedqueries/run', { method: 'POST', body: { Query: 'DeviceInfo | take 3' } })
  t.equal(hunt.status, 200)
  t.match(hunt.body, { Schema: [{ Name: 'Timestamp', Type: 'DateTime' }], Results: Array })
  t.equal(hunt.body['Results'].length, 3)

  const recorded = defender.requests.find((r) => r.method === 'POST' && r.url.endsWith('/isolate'))
  t.equal(recorded?.headers.authorization, `Bearer ${token}`)
  t.same(JSON.parse(recorded?.body ?? ''), { Comment: 'Contain ransomware', IsolationType: 'Full' })
})

t.test('the Defender simulator refuses missing, bad and under-privileged tokens', async (t) => {
  const entra = await startEntra(t, { app: { roles: ['Machine.Read.All'] } })
  const defender = await startDefenderSimulator({ verifyAccessToken: (token) => entra.verifyAccessToken(token) })
  t.teardown(() => defender.close())
  const token = (await acquire(entra, { clientId: CLIENT, clientSecret: SECRET })).accessToken
  const get = async (path: string, authorization?: string) => {
    const response = await request(`${defender.url}${path}`, { headers: authorization === undefined ? {} : { authorization } })
    return { status: response.statusCode, requestId: response.headers['request-id'], body: await response.body.json() }
  }

  for (const authorization of [undefined, 'Bearer abc', `Bearer ${token.slice(0, -4)}AAAA`, token]) {
    const response = await get('/api/machines', authorization)
    t.equal(response.status, 401)
    t.match(response.body, { error: { code: 'Unauthorized', message: String, target: response.requestId } })
  }
  t.equal((await get('/api/machines', `Bearer ${token}`)).status, 200)
  const forbidden = await get('/api/alerts', `Bearer ${token}`)
  t.equal(forbidden.status, 403)
  t.same(forbidden.body, {
    error: {
      code: 'Forbidden',
      message: 'The application does not have any of the required application permissions (Alert.Read.All, Alert.ReadWrite.All) to access the resource.',
      target: forbidden.requestId
    }
  })

  entra.setMode('expired')
  const expired = (await acquire(entra, { clientId: CLIENT, clientSecret: SECRET })).accessToken
  t.equal((await get('/api/machines', `Bearer ${expired}`)).status, 401)
})

t.test('the Defender simulator rate-limits per minute and can be told what to answer next', async (t) => {
  const clock = createClock()
  const sim = await startSimulator({ pki, clock, perMinute: 3 })
  t.teardown(() => sim.close())
  const { accessToken } = await acquire(sim.entra, { clientId: sim.clientId, clientSecret: sim.clientSecret }, { tenantId: sim.tenantId })
  const get = async () => {
    const response = await request(`${sim.defender.url}/api/machines`, { headers: { authorization: `Bearer ${accessToken}` } })
    return { status: response.statusCode, headers: response.headers, body: await response.body.json() }
  }

  for (let i = 0; i < 3; i++) t.equal((await get()).status, 200)
  clock.advance(15_000)
  const limited = await get()
  t.equal(limited.status, 429)
  t.equal(limited.headers['retry-after'], '45')
  t.match(limited.body, { error: { code: 'TooManyRequests', message: /Maximum allowed 3 per 1 Minute/ } })
  clock.advance(45_000)
  t.equal((await get()).status, 200)

  clock.advance(60_000)
  sim.defender.forceNext(401)
  sim.defender.forceNext(429, { headers: { 'retry-after': '7' } })
  sim.defender.forceNext(503, { body: 'upstream connect error' })
  const unauthorized = await get()
  t.match(unauthorized, { status: 401, body: { error: { code: 'Unauthorized', target: unauthorized.headers['request-id'] } } })
  t.match(await get(), { status: 429, headers: { 'retry-after': '7' }, body: { error: { code: 'TooManyRequests' } } })
  const raw = await request(`${sim.defender.url}/api/machines`)
  t.equal(raw.statusCode, 503)
  t.equal(await raw.body.text(), 'upstream connect error')
  t.equal((await get()).status, 200)
  t.equal(sim.defender.requests.length, 9)
})

t.test('startSimulator wires the demo app, its roles and a CA to trust', async (t) => {
  const sim = await startSimulator()
  t.teardown(() => sim.close())
  t.equal(sim.tenantId, '00000000-0000-4000-8000-000000000001')
  t.equal(sim.clientId, '11111111-1111-4000-8000-000000000002')
  t.match(sim.clientSecret, /^.{3}8Q~.{34}$/)
  t.equal(sim.caCertPem, sim.pki.caCertPem)
  t.match(sim.entra.url, /^https:\/\/127\.0\.0\.1:\d+$/)
  t.match(sim.defender.url, /^http:\/\/127\.0\.0\.1:\d+$/)
  const { accessToken } = await acquire(sim.entra, { clientId: sim.clientId, clientSecret: sim.clientSecret }, { tenantId: sim.tenantId })
  t.same(sim.entra.verifyAccessToken(accessToken)?.roles, DEMO_ROLES)
  const response = await request(`${sim.defender.url}/api/machines/${sim.sampleMachineId}`, { headers: { authorization: `Bearer ${accessToken}` } })
  t.equal(response.statusCode, 200)
  await response.body.dump()
})

t.test('a tenant where the app is not consented answers as Entra ID does, until consent is granted', async (t) => {
  const customer = '22222222-3333-4000-8000-0000000000cc'
  const entra = await startEntra(t, { unconsented: [{ tenantId: customer, clientId: CLIENT }] })
  const inCustomer = { tenantId: customer }

  await t.rejects(acquire(entra, { clientId: CLIENT, clientSecret: SECRET }, inCustomer), {
    errorCode: 'unauthorized_client',
    message: new RegExp(`Description: AADSTS700016: Application with identifier '${CLIENT}' was not found in the directory '${customer}'\\. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant\\.`)
  }, 'not consented: AADSTS700016, whatever the credential')
  await t.rejects(acquire(entra, { clientId: CLIENT, clientSecret: 'wrong' }, inCustomer), { message: /Description: AADSTS700016: / })

  entra.withholdConsent({ tenantId: customer, clientId: CLIENT, gap: 'noServicePrincipal' })
  await t.rejects(acquire(entra, { clientId: CLIENT, clientSecret: SECRET }, inCustomer), {
    errorCode: 'invalid_client',
    message: new RegExp(`Description: AADSTS7000229: The client application ${CLIENT} is missing service principal in the tenant ${customer}\\. See instructions here: https://go\\.microsoft\\.com/fwlink/\\?linkid=2225119 `)
  })

  entra.withholdConsent({ tenantId: customer, clientId: CLIENT, gap: 'notConsented' })
  await t.rejects(acquire(entra, { clientId: CLIENT, clientSecret: 'wrong' }, inCustomer), { message: /Description: AADSTS7000215: / }, 'the credential is checked first')
  await t.rejects(acquire(entra, { clientId: CLIENT, clientSecret: SECRET }, inCustomer), {
    errorCode: 'invalid_grant',
    message: new RegExp(`Description: AADSTS65001: The user or administrator has not consented to use the application with ID '${CLIENT}' named '${CLIENT}'\\. Send an interactive authorization request for this user and resource\\.`)
  })

  entra.withholdConsent({ tenantId: customer, clientId: CLIENT, gap: 'serviceNotProvisioned' })
  await t.rejects(acquire(entra, { clientId: CLIENT, clientSecret: SECRET }, inCustomer), {
    errorCode: 'invalid_client',
    message: new RegExp(`Description: AADSTS650052: The app is trying to access a service 'fc780465-2017-40d4-a0c5-307022471b92'\\(WindowsDefenderATP\\) that your organization '${customer}' lacks a service principal for\\.`)
  })

  entra.withholdConsent({ tenantId: customer, clientId: CLIENT, gap: 'resourceNotFound' })
  await t.rejects(acquire(entra, { clientId: CLIENT, clientSecret: SECRET }, inCustomer), {
    errorCode: 'invalid_resource',
    message: new RegExp(`Description: AADSTS500011: The resource principal named https://api\\.securitycenter\\.microsoft\\.com was not found in the tenant named ${customer}\\.`)
  })

  entra.grantConsent(customer, CLIENT)
  const granted = await acquire(entra, { clientId: CLIENT, clientSecret: SECRET }, inCustomer)
  t.match(entra.verifyAccessToken(granted.accessToken), { tid: customer, appid: CLIENT, roles: ['Alert.Read.All'] }, 'consented: a token for the customer tenant, with the app\'s roles')
  t.ok(await acquire(entra, { clientId: CLIENT, clientSecret: SECRET }), 'the home tenant is unchanged')
})
