import t, { type Test } from 'tap'
import { once } from 'node:events'
import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createTestPki, signJwt, type FederatedCredential, type Simulator, type TokenRequestEvent } from '../src/simulator/index.js'
import type { TokenFailure } from '../src/tokens/token-error.js'
import { createTestClock, startBrokerStack, type BrokerStackOptions, holderOf, nextFailure, refreshNow, getAlerts, statusOf } from './helpers/broker.js'

const pki = await createTestPki()
const SCENARIO = { timeout: 20_000 }

// An AKS cluster's OIDC issuer and the service account the broker runs as.
const ISSUER = 'https://oidc.prod-aks.azure.com/00000000-0000-4000-8000-00000000000a/'
const SUBJECT = 'system:serviceaccount:soc:defender-token-broker'
const issuerKeys = generateKeyPairSync('rsa', { modulusLength: 2048 })
const ISSUER_PUBLIC_KEY = issuerKeys.publicKey.export({ type: 'spki', format: 'pem' }).toString()

function federatedCredential (subject = SUBJECT): FederatedCredential {
  return { issuer: ISSUER, subject, publicKeyPem: ISSUER_PUBLIC_KEY }
}

/** A projected service account token, as the kubelet writes it: signed by the cluster's issuer. */
function assertion (options: { subject?: string, expiresInSeconds?: number } = {}): string {
  const now = Math.floor(Date.now() / 1000)
  return signJwt({
    aud: ['api://AzureADTokenExchange'],
    iss: ISSUER,
    sub: options.subject ?? SUBJECT,
    iat: now - 60,
    nbf: now - 60,
    exp: now + (options.expiresInSeconds ?? 3600),
    jti: randomUUID(),
    'kubernetes.io': { namespace: 'soc', serviceaccount: { name: 'defender-token-broker' } }
  }, issuerKeys.privateKey, { kid: 'cluster-key-1' })
}

/** A stack whose one profile authenticates with the assertion in `file` (AZURE_FEDERATED_TOKEN_FILE). */
async function federatedStack (t: Test, file: string, first: string, options: BrokerStackOptions & { credentials?: FederatedCredential[] } = {}) {
  const requests: TokenRequestEvent[] = []
  const stack = await startBrokerStack(t, {
    simulator: { pki },
    ...options,
    env: { AZURE_CLIENT_SECRET: undefined, AZURE_FEDERATED_TOKEN_FILE: file, ...options.env },
    beforeStart: (simulator: Simulator) => {
      simulator.entra.setFederatedCredentials(simulator.clientId, options.credentials ?? [federatedCredential()])
      simulator.entra.on('token-request', (event) => requests.push(event))
      writeFileSync(file, `${first}\n`)
    }
  })
  return { stack, requests }
}

t.test('the federated credential end to end (AZURE_FEDERATED_TOKEN_FILE)', SCENARIO, async (t) => {
  const file = join(t.testdir(), 'azure-identity-token')
  const first = assertion()
  const { stack, requests } = await federatedStack(t, file, first)
  const { entra, defender } = stack.simulator

  t.strictSame(stack.config.profiles[0]?.credential, { type: 'federated', tokenFile: file })
  t.match(requests, [{ clientId: stack.simulator.clientId, grantType: 'client_credentials', credential: 'assertion' }])
  t.equal(requests.length, 1)
  t.equal(await getAlerts(stack), 200)
  t.equal(defender.requests[0]?.headers.authorization, `Bearer ${entra.issuedTokens[0]}`)
  t.match(await statusOf(stack), { credential: 'federated', token: { state: 'valid' } })
  t.notMatch(stack.logs.text(), first, 'the assertion is never logged')
  t.notMatch(JSON.stringify(await statusOf(stack)), first)
})

t.test('a federated profile in a config file', SCENARIO, async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'token')
  const config = join(dir, 'broker.json')
  const stack = await startBrokerStack(t, {
    simulator: { pki },
    env: { BROKER_UPSTREAM: undefined, BROKER_CONFIG: config },
    beforeStart: (simulator) => {
      simulator.entra.setFederatedCredentials(simulator.clientId, [federatedCredential()])
      writeFileSync(file, assertion())
      writeFileSync(config, JSON.stringify({
        profiles: [{
          name: 'workload',
          basePath: '/',
          tenantId: simulator.tenantId,
          clientId: simulator.clientId,
          credential: { type: 'federated', tokenFile: 'token' },
          upstream: simulator.defender.url
        }]
      }))
    }
  })
  t.strictSame(stack.config.profiles[0]?.credential, { type: 'federated', tokenFile: file }, 'the path is relative to the config file')
  t.equal(await getAlerts(stack), 200)
})

t.test('a rotated assertion file is read at the next token request, without a restart', SCENARIO, async (t) => {
  const clock = createTestClock()
  const dir = t.testdir()
  const file = join(dir, 'token')
  const { stack, requests } = await federatedStack(t, file, assertion(), { clock })
  const holder = holderOf(stack)
  const { entra, defender, clientId } = stack.simulator

  // The kubelet projects a new token (here for another subject, so only the new file can pass)
  // by swapping the file under the mount: written aside, renamed into place.
  const other = 'system:serviceaccount:soc:defender-token-broker-v2'
  entra.setFederatedCredentials(clientId, [federatedCredential(other)])
  writeFileSync(join(dir, 'token.new'), assertion({ subject: other }))
  renameSync(join(dir, 'token.new'), file)

  const [token, refreshed] = await refreshNow(holder, clock)
  t.equal(refreshed, true, 'the scheduled refresh sent the new assertion')
  t.equal(requests.length, 2)
  t.equal(await getAlerts(stack), 200)
  t.equal(defender.requests.at(-1)?.headers.authorization, `Bearer ${token.value}`)

  // And once more through an upstream 401: the replay's fresh token reads the file again.
  const third = 'system:serviceaccount:soc:defender-token-broker-v3'
  entra.setFederatedCredentials(clientId, [federatedCredential(third)])
  writeFileSync(file, assertion({ subject: third }))
  defender.forceNext(401, { body: { error: { code: 'Unauthorized', message: 'token revoked' } } })
  t.equal(await getAlerts(stack), 200, 'the request was replayed with a token got with the newest assertion')
  t.equal(requests.length, 3)
  t.not(defender.requests.at(-1)?.headers.authorization, `Bearer ${token.value}`)
})

t.test('an expired assertion fails with AADSTS700024 and its hint', SCENARIO, async (t) => {
  const file = join(t.testdir(), 'token')
  const { stack } = await federatedStack(t, file, assertion({ expiresInSeconds: -3600 }), { ready: false })
  const [failure] = await nextFailure(holderOf(stack))
  t.equal(failure.code, 'AADSTS700024')
  t.match(failure.message, /AADSTS700024: Client assertion is not within its valid time range/)
  t.match(await statusOf(stack), { token: { state: 'none' }, lastError: { code: 'AADSTS700024' } })
  t.match(stack.logs.lines.find((line) => line.msg === 'token request failed'), {
    level: 40,
    code: 'AADSTS700024',
    hint: /federated token file is being renewed/
  })
  t.equal(await getAlerts(stack), 503)
})

t.test('an assertion from an issuer or subject Entra ID does not trust fails with AADSTS70021', SCENARIO, async (t) => {
  const file = join(t.testdir(), 'token')
  const { stack } = await federatedStack(t, file, assertion({ subject: 'system:serviceaccount:default:default' }), { ready: false })
  const [failure] = await nextFailure(holderOf(stack))
  t.equal(failure.code, 'AADSTS70021')
  t.match(failure.message, /No matching federated identity record found for presented assertion/)
  t.match(stack.logs.lines.find((line) => line.msg === 'token request failed'), {
    code: 'AADSTS70021',
    hint: /no federated credential of the app matches/
  })
})

t.test('an assertion signed with another key fails with AADSTS700027', SCENARIO, async (t) => {
  const file = join(t.testdir(), 'token')
  const otherKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const { stack } = await federatedStack(t, file, assertion(), {
    ready: false,
    credentials: [{ ...federatedCredential(), publicKeyPem: otherKey }]
  })
  const [failure] = await nextFailure(holderOf(stack))
  t.equal(failure.code, 'AADSTS700027')
})

t.test('an assertion file missing for a moment is retried, not held against the broker', SCENARIO, async (t) => {
  const clock = createTestClock()
  const dir = t.testdir()
  const file = join(dir, 'token')
  const { stack, requests } = await federatedStack(t, file, assertion(), { clock })
  const holder = holderOf(stack)
  const refused = stack.simulator.entra.issuedTokens[0] ?? ''

  renameSync(file, join(dir, 'token.old'))
  const failed = once(holder, 'failed')
  await t.rejects(holder.renew(refused))
  const [failure, retryAt] = await failed as [TokenFailure, number]
  t.equal(failure.code, 'BrokerConfigInvalid')
  t.match(failure.message, /the file .*token does not exist/)
  t.equal(requests.length, 1, 'nothing was sent')

  writeFileSync(file, assertion())
  const acquired = once(holder, 'acquired')
  clock.tick(retryAt - clock.now())
  const [token] = await acquired as [{ value: string }]
  t.not(token.value, refused, 'the scheduled retry read the fixed file and got a token')
  t.equal((await holder.get()).value, token.value, 'the new token is the one served')
  t.equal(requests.length, 2)
})
