import t from 'tap'
import { renameSync } from 'node:fs'
import { join } from 'node:path'
import { createTestPki, type Simulator } from '../src/simulator/index.js'
import { startBrokerStack, getAlerts } from './helpers/broker.js'
import { writePrivate } from './helpers/files.js'

// An upstream 401 after a rotation: the broker's one replay fetches a fresh token, and that token
// request reads the rotated file. (Rotation at the scheduled refresh: credentials.test.ts and
// credential-federated.test.ts.)
const pki = await createTestPki()
const SCENARIO = { timeout: 20_000 }

/** The 401 the API answers a token it no longer accepts with, once. */
function refuseNextToken (simulator: Simulator): void {
  simulator.defender.forceNext(401, { body: { error: { code: 'Unauthorized', message: 'Authorization has been denied for this request.' } } })
}

t.test('a rotated secret file: the replay after a 401 gets a token with the new secret', SCENARIO, async (t) => {
  const file = join(t.testdir(), 'client-secret')
  const stack = await startBrokerStack(t, {
    simulator: { pki },
    env: { AZURE_CLIENT_SECRET: undefined, AZURE_CLIENT_SECRET_FILE: file },
    beforeStart: (simulator) => writePrivate(file, simulator.clientSecret)
  })
  const { entra, defender, clientId } = stack.simulator
  const first = entra.issuedTokens[0]

  const rotated = 'rot8Q~rotated-before-the-401-0123456789abcd'
  entra.setSecret(clientId, rotated)
  writePrivate(file, rotated)
  refuseNextToken(stack.simulator)
  t.equal(await getAlerts(stack), 200, 'the tool sees a 200')
  t.equal(entra.tokenRequests, 2, 'one fresh token request, with the rotated secret (the only one Entra ID accepts)')
  t.equal(defender.requests.at(-2)?.headers.authorization, `Bearer ${first}`)
  t.equal(defender.requests.at(-1)?.headers.authorization, `Bearer ${entra.issuedTokens[1]}`)
})

t.test('a rotated certificate file: the replay after a 401 signs with the new certificate', SCENARIO, async (t) => {
  const [first, second] = await Promise.all([
    pki.issueClientCertificate('defender-token-broker before'),
    pki.issueClientCertificate('defender-token-broker after')
  ])
  const dir = t.testdir()
  const file = writePrivate(join(dir, 'client.pem'), first.pem)
  const stack = await startBrokerStack(t, {
    simulator: { pki },
    env: { AZURE_CLIENT_SECRET: undefined, AZURE_CLIENT_CERTIFICATE_PATH: file },
    beforeStart: (simulator) => simulator.entra.setCertificate(simulator.clientId, first.certPem)
  })
  const { entra, defender, clientId } = stack.simulator
  const watch = stack.app.profiles[0]?.credential.certificate
  t.equal(watch?.status()?.thumbprintSha256, first.thumbprintSha256Hex)

  entra.setCertificate(clientId, second.certPem)
  renameSync(writePrivate(join(dir, 'client.pem.new'), second.pem), file)
  refuseNextToken(stack.simulator)
  t.equal(await getAlerts(stack), 200)
  t.equal(entra.tokenRequests, 2)
  t.equal(defender.requests.at(-1)?.headers.authorization, `Bearer ${entra.issuedTokens[1]}`)
  t.equal(watch?.status()?.thumbprintSha256, second.thumbprintSha256Hex, '/status and the expiry watch follow the new certificate')
  t.match(stack.logs.lines.filter((line) => line.msg === 'certificate in use'), [
    { certificate: { thumbprintSha256: first.thumbprintSha256Hex } },
    { certificate: { thumbprintSha256: second.thumbprintSha256Hex } }
  ], 'the change of certificate is logged')
})
