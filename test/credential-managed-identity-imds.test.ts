import t from 'tap'
import { createTestPki } from '../src/simulator/index.js'
import { claimsOf, getAlerts, holderOf, nextFailure } from './helpers/broker.js'
import {
  assertUserIdentityNamed,
  setSourceEnvironment,
  startManagedIdentityStack,
  startSharedEndpoint,
  SYSTEM_IDENTITY,
  userIdentityNames
} from './helpers/managed-identity.js'

// The IMDS source, in a process of its own: msal-node keeps the source it finds first. With no
// other source's variables set, it asks IMDS, at AZURE_POD_IDENTITY_AUTHORITY_HOST when set.
const SCENARIO = { timeout: 20_000 }
const RESOURCE = 'https://api.securitycenter.microsoft.com'

const pki = await createTestPki()
const shared = await startSharedEndpoint(t, 'unused-by-imds')
setSourceEnvironment(t, { AZURE_POD_IDENTITY_AUTHORITY_HOST: shared.endpoint.url })

t.test('the system-assigned identity from IMDS, end to end', SCENARIO, async (t) => {
  const seen = shared.endpoint.requests.length
  const stack = await startManagedIdentityStack(t, { pki, shared, credential: { type: 'managedIdentity' } })
  const requests = shared.endpoint.requests.slice(seen)
  t.equal(requests.length, 1, 'one token request, with no retries of msal-node\'s own')
  t.match(requests[0], {
    source: 'imds',
    method: 'GET',
    path: '/metadata/identity/oauth2/token/',
    query: { 'api-version': '2018-02-01', resource: RESOURCE },
    headers: { metadata: 'true' }
  })
  t.same(Object.keys(requests[0]?.query ?? {}).sort(), ['api-version', 'resource'], 'no user-assigned id')
  t.equal(stack.simulator.entra.tokenRequests, 0)
  t.equal(await getAlerts(stack), 200)
  t.match(claimsOf(shared.endpoint.issuedTokens.at(-1)), { appid: SYSTEM_IDENTITY.clientId })
})

t.test('a user-assigned identity is named as msal-node names it to IMDS', SCENARIO, async (t) => {
  for (const [ids, parameter, value] of userIdentityNames('msi_res_id')) {
    await t.test(parameter, (t) => assertUserIdentityNamed(t, { pki, shared, ids, parameter, value }))
  }
})

t.test('an identity IMDS does not know fails once, with IMDS\'s reason, and is retried by the broker', SCENARIO, async (t) => {
  const seen = shared.endpoint.requests.length
  const stack = await startManagedIdentityStack(t, {
    pki,
    shared,
    credential: { type: 'managedIdentity', clientId: '44444444-4444-4000-8000-000000000001' },
    ready: false
  })
  const [failure] = await nextFailure(holderOf(stack))
  t.strictSame({ code: failure.code, message: failure.message }, {
    code: 'BrokerManagedIdentityFailed',
    message: `the managed identity endpoint ${shared.endpoint.url} answered 400: Identity not found`
  })
  t.equal(shared.endpoint.requests.length - seen, 1, 'msal-node\'s internal retries are off: the token holder\'s backoff decides')
  t.match(stack.logs.lines.find((line) => line.msg === 'token request failed'), {
    code: 'BrokerManagedIdentityFailed',
    hint: /check that the identity is assigned to this Azure resource/
  })
})
