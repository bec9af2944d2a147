import t from 'tap'
import { Agent } from 'undici'
import { createTestPki } from '../src/simulator/index.js'
import { claimsOf, getAlerts, holderOf, nextFailure, statusText } from './helpers/broker.js'
import {
  assertUserIdentityNamed,
  setSourceEnvironment,
  startManagedIdentityStack,
  startSharedEndpoint,
  SYSTEM_IDENTITY,
  userIdentityNames
} from './helpers/managed-identity.js'

// The App Service source: msal-node finds IDENTITY_ENDPOINT and IDENTITY_HEADER in process.env.
// credential-managed-identity-imds.test.ts runs the IMDS source, in a process of its own.
const SCENARIO = { timeout: 20_000 }
const RESOURCE = 'https://api.securitycenter.microsoft.com'
const IDENTITY_HEADER = 'canary-identity-header-7f3c9b1e5d'

const pki = await createTestPki()
const shared = await startSharedEndpoint(t, IDENTITY_HEADER)
setSourceEnvironment(t, { IDENTITY_ENDPOINT: shared.endpoint.appServiceEndpoint, IDENTITY_HEADER })

t.test('the system-assigned identity from the App Service endpoint, end to end', SCENARIO, async (t) => {
  const seen = shared.endpoint.requests.length
  const stack = await startManagedIdentityStack(t, { pki, shared, credential: { type: 'managedIdentity' } })
  const { entra, defender } = stack.simulator
  const requests = shared.endpoint.requests.slice(seen)

  t.equal(stack.config.profiles[0]?.credential.type, 'managedIdentity')
  t.equal(requests.length, 1, 'one token request')
  t.match(requests[0], {
    source: 'appService',
    method: 'GET',
    query: { 'api-version': '2019-08-01', resource: RESOURCE },
    headers: { 'x-identity-header': IDENTITY_HEADER }
  }, 'the resource is the scope without /.default, and the secret header is sent')
  for (const name of ['client_id', 'mi_res_id', 'object_id']) {
    t.notOk(name in (requests[0]?.query ?? {}), `no ${name}: the system-assigned identity`)
  }
  t.equal(entra.tokenRequests, 0, 'Entra ID itself was not asked')

  t.equal(await getAlerts(stack), 200, 'the Defender API accepts the managed identity\'s token')
  const token = shared.endpoint.issuedTokens.at(-1)
  t.equal(defender.requests[0]?.headers.authorization, `Bearer ${token}`)
  t.match(claimsOf(token), { appid: SYSTEM_IDENTITY.clientId, tid: SYSTEM_IDENTITY.tenantId })
  t.match(JSON.parse(await statusText(stack)).profiles[0], {
    credential: 'managedIdentity',
    token: { state: 'valid', roles: SYSTEM_IDENTITY.roles }
  })
})

t.test('a user-assigned identity is named as msal-node names it to App Service', SCENARIO, async (t) => {
  // One stack after another in one process: msal-node keeps the source it found first, with the
  // network client of the first application; each later stack must still use its own dispatcher.
  for (const [ids, parameter, value] of userIdentityNames('mi_res_id')) {
    await t.test(parameter, (t) => assertUserIdentityNamed(t, { pki, shared, ids, parameter, value }))
  }
})

t.test('msal-node\'s refreshOn for a day-long token brings the refresh forward to half its life', SCENARIO, async (t) => {
  const stack = await startManagedIdentityStack(t, {
    pki,
    shared,
    credential: { type: 'managedIdentity' },
    deps: { random: () => 0 }
  })
  const { expiresAt, refreshAt } = holderOf(stack).status()
  if (expiresAt === undefined || refreshAt === undefined) throw new TypeError('no token held')
  const acquiredAt = expiresAt - 86_399_000
  // refresh.beforeSeconds (600) alone would put it 10 minutes before expiry.
  t.ok(Math.abs(refreshAt - (acquiredAt + 86_399_000 / 2)) < 5_000, 'refreshed at half the life, as msal-node\'s refresh_in says')
})

t.test('an identity the machine does not hold fails with the endpoint\'s message, and never shows its secret header', SCENARIO, async (t) => {
  const stack = await startManagedIdentityStack(t, {
    pki,
    shared,
    credential: { type: 'managedIdentity', clientId: '44444444-4444-4000-8000-000000000001' },
    clientId: '44444444-4444-4000-8000-000000000001',
    ready: false
  })
  const [failure] = await nextFailure(holderOf(stack))
  t.match(failure, { code: 'BrokerManagedIdentityFailed', message: `the managed identity endpoint ${shared.endpoint.url} answered 400: Unable to load the proper Managed Identity.` })
  t.equal(await getAlerts(stack), 503)
  t.equal(stack.simulator.defender.requests.length, 0)
  const status = await statusText(stack)
  t.match(JSON.parse(status).profiles[0], { lastError: { code: 'BrokerManagedIdentityFailed' } })
  t.notMatch(status, IDENTITY_HEADER, 'the header secret is not in /status')
  t.notMatch(stack.logs.text(), IDENTITY_HEADER, 'nor in the logs')
})

t.test('an endpoint that does not answer is named with the transport\'s code', SCENARIO, async (t) => {
  // The dispatcher refuses every connection, as a closed port would.
  const dispatcher = new Agent({
    connect: (_options, callback) => callback(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), null)
  })
  t.teardown(() => dispatcher.close())
  const stack = await startManagedIdentityStack(t, {
    pki,
    shared,
    credential: { type: 'managedIdentity' },
    ready: false,
    deps: { dispatcher }
  })
  const [failure] = await nextFailure(holderOf(stack))
  t.match(failure, { code: 'ECONNREFUSED', message: `${shared.endpoint.url} could not be reached: connection refused (ECONNREFUSED)` })
})
