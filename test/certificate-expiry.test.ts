import t, { type Test } from 'tap'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { CertificateStatus, CertificateWatch } from '../src/credentials/index.js'
import { createTestPki, startSimulator, type ClientCertificate } from '../src/simulator/index.js'
import type { TokenFailure } from '../src/tokens/token-error.js'
import { createTestClock, startBrokerStack, type BrokerStack, type BrokerStackOptions, statusOf } from './helpers/broker.js'
import { cliEnv, runCli } from './helpers/spawn.js'

const pki = await createTestPki()
const SCENARIO = { timeout: 20_000 }
const DAY_MS = 24 * 60 * 60 * 1000

function watchOf (stack: BrokerStack): CertificateWatch {
  const watch = stack.app.profiles[0]?.credential.certificate
  if (watch === undefined) throw new TypeError('the profile has no certificate')
  return watch
}

function certificateLines (stack: BrokerStack): Array<Record<string, unknown>> {
  return stack.logs.lines.filter((line) => typeof line.msg === 'string' && line.msg.startsWith('certificate '))
}

/** A certificate valid from yesterday until `days` from `now` (negative: already expired). */
function certificateFor (days: number, now = Date.now()): Promise<ClientCertificate> {
  const notAfter = new Date(now + days * DAY_MS)
  const notBefore = new Date(Math.min(now, notAfter.getTime()) - 400 * DAY_MS)
  return pki.issueClientCertificate('defender-token-broker expiry', { notBefore, notAfter })
}

function certificateStack (t: Test, certificate: ClientCertificate, options: BrokerStackOptions = {}): Promise<BrokerStack> {
  const file = join(t.testdir(), 'client.pem')
  writeFileSync(file, certificate.pem, { mode: 0o600 })
  return startBrokerStack(t, {
    simulator: { pki },
    ...options,
    env: { AZURE_CLIENT_SECRET: undefined, AZURE_CLIENT_CERTIFICATE_PATH: file },
    beforeStart: (simulator) => simulator.entra.setCertificate(simulator.clientId, certificate.certPem)
  })
}

t.test('a certificate far from expiry: one info line, and /status says when it expires', SCENARIO, async (t) => {
  const certificate = await certificateFor(200)
  const stack = await certificateStack(t, certificate)
  const status = await statusOf(stack)
  t.match(status.certificate, { thumbprintSha256: certificate.thumbprintSha256Hex, state: 'valid', daysLeft: 199 })
  t.equal((status.certificate as CertificateStatus).warning, undefined, 'no warning')
  t.match(certificateLines(stack), [{ level: 30, msg: 'certificate in use', profile: 'default', certificate: { state: 'valid' } }])
  t.equal(certificateLines(stack).length, 1)
})

t.test('from 30 days before notAfter: a warning in the log and in /status', SCENARIO, async (t) => {
  const certificate = await certificateFor(20)
  const stack = await certificateStack(t, certificate)
  const status = await statusOf(stack)
  t.match(status, {
    token: { state: 'valid' },
    certificate: {
      state: 'expiring',
      daysLeft: 19,
      notAfter: /^\d{4}-/,
      warning: /^the certificate expires on .+, in 19 day\(s\): create a new one, upload it to the app registration and replace the certificate file/
    }
  }, 'the token is fine, the certificate is not for long')
  t.match(certificateLines(stack), [{
    level: 40,
    msg: 'certificate expires soon',
    certificate: { state: 'expiring', daysLeft: 19, thumbprintSha256: certificate.thumbprintSha256Hex }
  }])
})

t.test('time passing into the window and past notAfter: a warning once, then an error', SCENARIO, async (t) => {
  const clock = createTestClock()
  const certificate = await certificateFor(35, clock.now())
  // Tokens that live 12 days: each refresh, 10 minutes before expiry, is a step in the
  // certificate's life (23 days left, then 11, then expired).
  const stack = await certificateStack(t, certificate, {
    clock,
    simulator: { pki, tokenLifetimeSeconds: 12 * 24 * 60 * 60 },
    deps: { random: () => 0 }
  })
  const holder = stack.app.profiles[0]?.tokens
  if (holder === undefined) throw new TypeError('no profile')
  const watch = watchOf(stack)
  const toNextRefresh = (): void => {
    const { refreshAt } = holder.status()
    if (refreshAt === undefined) throw new TypeError('no refresh scheduled')
    clock.tick(refreshAt - clock.now())
  }
  t.match(certificateLines(stack), [{ msg: 'certificate in use' }])

  let changed = once(watch, 'change')
  let acquired = once(holder, 'acquired')
  toNextRefresh()
  const [expiring] = await changed as [CertificateStatus]
  await acquired
  t.match(expiring, { state: 'expiring', daysLeft: 23 }, 'the refresh read the certificate again and found it expiring')
  t.match(certificateLines(stack).at(-1), { level: 40, msg: 'certificate expires soon', certificate: { state: 'expiring' } })
  t.match((await statusOf(stack)).certificate, { state: 'expiring', daysLeft: 23, warning: /expires on/ })

  const lines = certificateLines(stack).length
  acquired = once(holder, 'acquired')
  toNextRefresh()
  await acquired
  t.equal(certificateLines(stack).length, lines, 'one warning per certificate and state, not one per token')
  t.match((await statusOf(stack)).certificate, { state: 'expiring', daysLeft: 11 }, '/status counts down')

  changed = once(watch, 'change')
  const failed = once(holder, 'failed')
  toNextRefresh()
  const [expired] = await changed as [CertificateStatus]
  const [failure] = await failed as [TokenFailure]
  t.equal(expired.state, 'expired')
  t.equal(failure.code, 'AADSTS700027', 'Entra ID refuses the expired certificate')
  t.match(certificateLines(stack).at(-1), { level: 50, msg: 'certificate expired', certificate: { state: 'expired' } })
  t.match(await statusOf(stack), {
    token: { state: 'valid' },
    certificate: { state: 'expired', warning: /^the certificate expired on .+: Entra ID refuses it/ },
    lastError: { code: 'AADSTS700027' }
  }, 'the token held is still good for a while; the certificate is not')
})

t.test('a certificate that has already expired: an error at start-up', SCENARIO, async (t) => {
  const certificate = await certificateFor(-3)
  const stack = await certificateStack(t, certificate, { ready: false })
  const watch = watchOf(stack)
  if (certificateLines(stack).length === 0) await once(watch, 'change')
  t.match(certificateLines(stack), [{ level: 50, msg: 'certificate expired', certificate: { state: 'expired', daysLeft: -3 } }])
  t.match((await statusOf(stack)).certificate, { state: 'expired' })
})

t.test('check says when the certificate expires', SCENARIO, async (t) => {
  const home = t.testdir({})
  const simulator = await startSimulator({ pki })
  t.teardown(() => simulator.close())
  const [soon, later] = await Promise.all([certificateFor(12), certificateFor(300)])
  const caFile = join(home, 'ca.pem')
  writeFileSync(caFile, simulator.caCertPem)
  const run = async (certificate: ClientCertificate, args: string[]) => {
    const file = join(home, `${certificate.thumbprintSha256Hex}.pem`)
    writeFileSync(file, certificate.pem, { mode: 0o600 })
    simulator.entra.setCertificate(simulator.clientId, certificate.certPem)
    return await runCli(t, ['check', ...args], {
      env: cliEnv(home, {
        AZURE_TENANT_ID: simulator.tenantId,
        AZURE_CLIENT_ID: simulator.clientId,
        AZURE_CLIENT_CERTIFICATE_PATH: file,
        AZURE_AUTHORITY_HOST: simulator.entra.url,
        BROKER_UPSTREAM: simulator.defender.url,
        BROKER_CA_FILE: caFile
      })
    })
  }

  const human = await run(later, [])
  t.equal(human.code, 0)
  t.match(human.stdout, new RegExp(`^ {2}certificate sha256 ${later.thumbprintSha256Hex}, expires \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z \\(in 299 day\\(s\\)\\)$`, 'm'))
  t.notMatch(human.stdout, /warning/)

  const warned = await run(soon, [])
  t.equal(warned.code, 0, 'an expiring certificate still works: exit code 0')
  t.match(warned.stdout, /^ {2}certificate sha256 [0-9a-f]{64}, expires .+ \(in 11 day\(s\)\)$/m)
  t.match(warned.stdout, /^ {2}warning {5}the certificate expires on .+, in 11 day\(s\): create a new one/m)

  const json = await run(soon, ['--json'])
  const report = JSON.parse(json.stdout) as { profiles: Array<Record<string, unknown>> }
  t.match(report.profiles[0], {
    ok: true,
    credential: 'certificate',
    certificate: { thumbprintSha256: soon.thumbprintSha256Hex, state: 'expiring', daysLeft: 11, notAfter: String }
  })
})
