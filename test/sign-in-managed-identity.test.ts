import t from 'tap'
import { ALL_ROLES, startBrokerStack } from './helpers/broker.js'
import { claimsOf, clientConfig, DEFENDER_SCOPE, get, lastAuthorization, postForm, realTokenOf, stateDir, withClients } from './helpers/sign-in.js'

const KEY = 'mi-key-canary-5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a'
const RESOURCE = 'https://api.securitycenter.microsoft.com'

t.test('App Service protocol: the client key as X-IDENTITY-HEADER gets a broker token', async (t) => {
  const stack = await startBrokerStack(t, {
    simulator: { roles: ALL_ROLES },
    env: { BROKER_STATE_DIR: stateDir() },
    config: withClients(clientConfig('soar', KEY))
  })
  const url = `${stack.url}/msi/token?api-version=2019-08-01&resource=${encodeURIComponent(RESOURCE)}`
  const answer = await get(url, { 'x-identity-header': KEY })
  t.equal(answer.status, 200, answer.text)
  const token = answer.json.access_token as string
  const claims = claimsOf(token)
  t.same(answer.json, { access_token: token, expires_on: String(claims.exp), resource: RESOURCE, token_type: 'Bearer', client_id: stack.simulator.clientId })
  t.match(claims, { sub: 'soar', aud: RESOURCE, broker_profile: 'default', roles: claimsOf(realTokenOf(stack)).roles })
  const alerts = await get(`${stack.url}/api/alerts?$top=1`, { authorization: `Bearer ${token}` })
  t.equal(alerts.status, 200)
  t.equal(lastAuthorization(stack), `Bearer ${realTokenOf(stack)}`, 'the API saw the real token')
  t.notOk(answer.text.includes(realTokenOf(stack)) || alerts.text.includes(realTokenOf(stack)))

  const named = await get(`${url}&client_id=default`, { 'x-identity-header': KEY })
  t.equal(named.status, 200, 'client_id may name the profile')

  const wrong = await get(url, { 'x-identity-header': 'wrong-header-canary' })
  t.equal(wrong.status, 401)
  t.same(Object.keys(wrong.json).sort(), ['correlationId', 'message', 'statusCode'])
  t.equal(wrong.json.statusCode, 401)
  t.notOk(wrong.text.includes('wrong-header-canary'))
  t.equal((await get(url)).status, 401, 'no header, no token')
  const noResource = await get(`${stack.url}/msi/token?api-version=2019-08-01`, { 'x-identity-header': KEY })
  t.equal(noResource.status, 400)
  t.match(noResource.json.message, /resource/)
  const foreign = await get(`${stack.url}/msi/token?api-version=2019-08-01&resource=https://vault.azure.net`, { 'x-identity-header': KEY })
  t.equal(foreign.status, 400)
  t.match(foreign.json.message, /serves only the Microsoft Defender for Endpoint API/)
  t.equal((await get(`${url}&client_id=nobody`, { 'x-identity-header': KEY })).status, 400)

  const imds = await get(`${stack.url}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(RESOURCE)}`, { metadata: 'true' })
  t.equal(imds.status, 401, 'IMDS carries no secret: refused where client keys are configured')
  t.same(Object.keys(imds.json).sort(), ['error', 'error_description'])
  t.match(imds.json.error_description, /IDENTITY_HEADER/)

  const logs = stack.logs.text()
  t.notOk(logs.includes(KEY) || logs.includes('wrong-header-canary') || logs.includes(token), 'no key or token in the logs')
})

t.test('IMDS protocol: Metadata: true required, served by a broker without client keys', async (t) => {
  const stack = await startBrokerStack(t, { simulator: { roles: ALL_ROLES }, env: { BROKER_STATE_DIR: stateDir() } })
  const url = `${stack.url}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(RESOURCE)}`
  const refused = await get(url)
  t.equal(refused.status, 400)
  t.same(refused.json, { error: 'invalid_request', error_description: 'Required metadata header not specified' })
  const answer = await get(url, { metadata: 'true' })
  t.equal(answer.status, 200, answer.text)
  const token = answer.json.access_token as string
  const claims = claimsOf(token)
  t.same(answer.json, {
    access_token: token,
    client_id: stack.simulator.clientId,
    expires_in: '3600',
    expires_on: String(claims.exp),
    ext_expires_in: '3600',
    not_before: String(claims.nbf),
    resource: RESOURCE,
    token_type: 'Bearer'
  })
  t.equal(claims.sub, 'local')
  t.equal((await get(`${stack.url}/api/alerts?$top=1`, { authorization: `Bearer ${token}` })).status, 200)
  t.equal(lastAuthorization(stack), `Bearer ${realTokenOf(stack)}`)
  const noVersion = await get(`${stack.url}/metadata/identity/oauth2/token?resource=${encodeURIComponent(RESOURCE)}`, { metadata: 'true' })
  t.equal(noVersion.status, 400)
  t.equal(noVersion.json.error, 'invalid_request')
})

t.test('no real token held: the token endpoint answers temporarily_unavailable with Retry-After', async (t) => {
  const stack = await startBrokerStack(t, {
    ready: false,
    env: { BROKER_STATE_DIR: stateDir() },
    beforeStart: (simulator) => simulator.entra.setMode('error500')
  })
  const answer = await postForm(`${stack.url}/common/oauth2/v2.0/token`, { client_secret: 'x', grant_type: 'client_credentials', scope: DEFENDER_SCOPE })
  t.equal(answer.status, 503)
  t.equal(answer.json.error, 'temporarily_unavailable')
  t.same(answer.json.error_codes, [50000])
  t.match(answer.json.error_description, /no valid token for profile default/)
  t.match(answer.headers['retry-after'], /^\d+$/)
  const msi = await get(`${stack.url}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=${encodeURIComponent(RESOURCE)}`, { metadata: 'true' })
  t.equal(msi.status, 503)
  t.equal(msi.json.error, 'temporarily_unavailable')
})
