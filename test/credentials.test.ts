import t, { type Test } from 'tap'
import { once } from 'node:events'
import { chmodSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createTestPki, type ClientCertificate, type Simulator, type TokenRequestEvent } from '../src/simulator/index.js'
import type { TokenFailure } from '../src/tokens/token-error.js'
import { claimsOf, createTestClock, startBrokerStack, type BrokerStackOptions, holderOf, nextFailure, getAlerts, statusOf } from './helpers/broker.js'
import { writePrivate } from './helpers/files.js'

const pki = await createTestPki()
/** A scenario that waits on an event that never comes fails here, not at the file's timeout. */
const SCENARIO = { timeout: 20_000 }

/** A stack whose one profile authenticates with the certificate in `file`, registered or not with Entra ID. */
function certificateStack (t: Test, file: string, registered: ClientCertificate, options: BrokerStackOptions = {}) {
  const requests: TokenRequestEvent[] = []
  const stack = startBrokerStack(t, {
    simulator: { pki },
    ...options,
    env: { AZURE_CLIENT_SECRET: undefined, AZURE_CLIENT_CERTIFICATE_PATH: file, ...options.env },
    beforeStart: (simulator: Simulator) => {
      simulator.entra.setCertificate(simulator.clientId, registered.certPem)
      simulator.entra.on('token-request', (event) => requests.push(event))
    }
  })
  return { stack, requests }
}

t.test('the certificate credential end to end', SCENARIO, async (t) => {
  const certificate = await pki.issueClientCertificate('defender-token-broker test')
  const file = writePrivate(join(t.testdir(), 'client.pem'), certificate.pem)
  const started = certificateStack(t, file, certificate)
  const stack = await started.stack
  const { entra, defender } = stack.simulator

  t.equal(stack.config.profiles[0]?.credential.type, 'certificate', 'AZURE_CLIENT_CERTIFICATE_PATH chose the certificate credential')
  t.match(started.requests, [{ clientId: stack.simulator.clientId, grantType: 'client_credentials', credential: 'assertion' }],
    'one token request, with a client assertion and no secret')
  t.equal(started.requests.length, 1)
  t.equal(claimsOf(entra.issuedTokens[0]).appidacr, '2', 'Entra ID saw a certificate')
  t.equal(await getAlerts(stack), 200, 'requests are served')
  t.equal(defender.requests[0]?.headers.authorization, `Bearer ${entra.issuedTokens[0]}`)
  t.match(await statusOf(stack), { credential: 'certificate', token: { state: 'valid' } })
})

t.test('a certificate with an encrypted key and AZURE_CLIENT_CERTIFICATE_PASSWORD', SCENARIO, async (t) => {
  const password = 'correct horse battery staple'
  const certificate = await pki.issueClientCertificate('defender-token-broker encrypted', { password })
  t.match(certificate.pem, /-----BEGIN ENCRYPTED PRIVATE KEY-----/, 'the key in the file is encrypted')
  const file = writePrivate(join(t.testdir(), 'client.pem'), certificate.pem)
  const started = certificateStack(t, file, certificate, { env: { AZURE_CLIENT_CERTIFICATE_PASSWORD: password } })
  const stack = await started.stack
  t.equal(claimsOf(stack.simulator.entra.issuedTokens[0]).appidacr, '2')
  t.equal(await getAlerts(stack), 200)
})

t.test('a certificate Entra ID does not know fails with AADSTS700027', SCENARIO, async (t) => {
  const [held, registered] = await Promise.all([
    pki.issueClientCertificate('defender-token-broker held'),
    pki.issueClientCertificate('defender-token-broker registered')
  ])
  const file = writePrivate(join(t.testdir(), 'client.pem'), held.pem)
  const stack = await certificateStack(t, file, registered, { ready: false }).stack
  const [failure] = await nextFailure(holderOf(stack))
  t.equal(failure.code, 'AADSTS700027')
  t.match(failure.message, /AADSTS700027: Client assertion failed signature validation/)
  t.match(await statusOf(stack), { token: { state: 'none' }, lastError: { code: 'AADSTS700027' } })
  t.match(stack.logs.lines.find((line) => line.msg === 'token request failed'), {
    level: 40,
    code: 'AADSTS700027',
    hint: 'the certificate was not accepted: upload this certificate to the app registration'
  })
  t.equal(await getAlerts(stack), 503)
  t.equal(stack.simulator.defender.requests.length, 0)
})

/** A stack on the injected clock whose secret is read from a file, written before the first token request. */
async function secretFileStack (t: Test, content: (secret: string) => string) {
  const clock = createTestClock()
  const file = join(t.testdir(), 'client-secret')
  const stack = await startBrokerStack(t, {
    clock,
    simulator: { pki },
    env: { AZURE_CLIENT_SECRET: undefined, AZURE_CLIENT_SECRET_FILE: file },
    beforeStart: (simulator) => writePrivate(file, content(simulator.clientSecret))
  })
  return { clock, file, stack }
}

t.test('a rotated secret file takes effect at the next token request, without a restart', SCENARIO, async (t) => {
  const { clock, file, stack } = await secretFileStack(t, (secret) => `${secret}\n`)
  const holder = holderOf(stack)
  const { entra, defender, clientId } = stack.simulator
  t.equal(stack.config.profiles[0]?.credential.type, 'secret')

  const rotated = 'xyz8Q~the-rotated-secret-0123456789abcdef'
  entra.setSecret(clientId, rotated)
  writeFileSync(file, `${rotated}\n`)
  const { refreshAt } = holder.status()
  if (refreshAt === undefined) throw new TypeError('no token held')
  const acquired = once(holder, 'acquired')
  clock.tick(refreshAt - clock.now())
  const [token, refreshed] = await acquired
  t.equal(refreshed, true, 'the refresh, with only the rotated secret valid, succeeded')
  t.equal(entra.tokenRequests, 2)
  t.equal(await getAlerts(stack), 200)
  t.equal(defender.requests.at(-1)?.headers.authorization, `Bearer ${token.value}`)

  const again = 'qrs8Q~rotated-once-more-0123456789abcdefgh'
  entra.setSecret(clientId, again)
  writeFileSync(file, `${again}\n`)
  const renewed = await holder.renew(token.value)
  t.not(renewed.value, token.value, 'renewing a refused token reads the file again too')
  t.equal(entra.tokenRequests, 3)
})

t.test('a secret file unreadable for a moment during rotation is retried, not held against the broker', SCENARIO, async (t) => {
  const { clock, file, stack } = await secretFileStack(t, (secret) => secret)
  const holder = holderOf(stack)
  const { entra, clientId } = stack.simulator
  const refused = entra.issuedTokens[0] ?? ''

  const rotated = 'xyz8Q~the-rotated-secret-0123456789abcdef'
  entra.setSecret(clientId, rotated)
  writeFileSync(file, rotated)
  chmodSync(file, 0o644)
  const failed = once(holder, 'failed')
  await t.rejects(holder.renew(refused), 'the token call fails while group and others may read the file')
  const [failure, retryAt] = await failed as [TokenFailure, number]
  t.equal(failure.code, 'BrokerConfigInvalid')
  t.match(failure.message, /is readable by group or others: run chmod 600/)
  t.equal(entra.tokenRequests, 1, 'the secret was not sent')

  chmodSync(file, 0o600)
  const acquired = once(holder, 'acquired')
  clock.tick(retryAt - clock.now())
  const [token] = await acquired as [{ value: string }]
  t.not(token.value, refused, 'the scheduled retry read the fixed file and got a token')
  t.equal((await holder.get()).value, token.value, 'the new token is the one served')
  t.equal(entra.tokenRequests, 2)
  t.equal(await getAlerts(stack), 200)
})

t.test('a rotated certificate file takes effect at the next token request, without a restart', SCENARIO, async (t) => {
  const clock = createTestClock()
  const [first, second] = await Promise.all([
    pki.issueClientCertificate('defender-token-broker first'),
    pki.issueClientCertificate('defender-token-broker second')
  ])
  const dir = t.testdir()
  const file = writePrivate(join(dir, 'client.pem'), first.pem)
  const started = certificateStack(t, file, first, { clock })
  const stack = await started.stack
  const holder = holderOf(stack)
  const { entra, defender, clientId } = stack.simulator
  const refused = entra.issuedTokens[0] ?? ''

  entra.setCertificate(clientId, second.certPem)
  const failed = once(holder, 'failed')
  await t.rejects(holder.renew(refused), 'the old certificate is refused once Entra ID holds only the new one')
  const [failure, retryAt] = await failed as [TokenFailure, number]
  t.equal(failure.code, 'AADSTS700027')

  // Written aside and renamed into place, as a secret mount updates.
  renameSync(writePrivate(join(dir, 'client.pem.new'), second.pem), file)
  const acquired = once(holder, 'acquired')
  clock.tick(retryAt - clock.now())
  const [token] = await acquired
  t.equal(token.value, entra.issuedTokens[1], 'the retry read the new certificate')
  t.equal(started.requests.length, 3)
  t.ok(started.requests.every((event) => event.credential === 'assertion'))
  t.equal(await getAlerts(stack), 200)
  t.equal(defender.requests.at(-1)?.headers.authorization, `Bearer ${token.value}`)
})

t.test('a certificate file missing for a moment during rotation is retried', SCENARIO, async (t) => {
  const clock = createTestClock()
  const certificate = await pki.issueClientCertificate('defender-token-broker')
  const dir = t.testdir()
  const file = writePrivate(join(dir, 'client.pem'), certificate.pem)
  const stack = await certificateStack(t, file, certificate, { clock }).stack
  const holder = holderOf(stack)
  const refused = stack.simulator.entra.issuedTokens[0] ?? ''

  renameSync(file, join(dir, 'client.pem.old'))
  const failed = once(holder, 'failed')
  await t.rejects(holder.renew(refused))
  const [failure, retryAt] = await failed as [TokenFailure, number]
  t.equal(failure.code, 'BrokerConfigInvalid')
  t.match(failure.message, /does not exist/)
  t.equal(stack.simulator.entra.tokenRequests, 1)

  renameSync(join(dir, 'client.pem.old'), file)
  const acquired = once(holder, 'acquired')
  clock.tick(retryAt - clock.now())
  const [token] = await acquired as [{ value: string }]
  t.not(token.value, refused)
  t.equal(stack.simulator.entra.tokenRequests, 2)
})

t.test('a rotated certificate file that group or others may read is refused, as at start-up', SCENARIO, async (t) => {
  const clock = createTestClock()
  const certificate = await pki.issueClientCertificate('defender-token-broker')
  const file = writePrivate(join(t.testdir(), 'client.pem'), certificate.pem)
  const stack = await certificateStack(t, file, certificate, { clock }).stack
  const holder = holderOf(stack)
  const refused = stack.simulator.entra.issuedTokens[0] ?? ''

  chmodSync(file, 0o644)
  const failed = once(holder, 'failed')
  await t.rejects(holder.renew(refused))
  const [failure] = await failed as [TokenFailure]
  t.equal(failure.code, 'BrokerConfigInvalid')
  t.match(failure.message, /is readable by group or others: run chmod 600/)
  t.equal(stack.simulator.entra.tokenRequests, 1, 'the key was not used')
})
