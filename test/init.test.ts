import { createHash } from 'node:crypto'
import { chmodSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { createTestPki, startManagedIdentityEndpoint, startSimulator } from '../src/simulator/index.js'
import { SYSTEM_IDENTITY } from './helpers/managed-identity.js'
import { cliEnv, runCli, spawnCli, stopsCleanly, type Exit } from './helpers/spawn.js'

// `defender-token-broker init`, run as users run it: the file it writes loads, `check` gets a
// token with it from the simulator, and `serve` takes the keys it printed (once) and no others.

const home = t.testdir({})
const pki = await createTestPki()
const simulator = await startSimulator({ pki })
t.teardown(() => simulator.close())
const caFile = join(home, 'simulator-ca.pem')
writeFileSync(caFile, simulator.caCertPem)
const IDENTITY_HEADER = 'canary-identity-header-0d4c6b'
const endpoint = await startManagedIdentityEndpoint({ entra: simulator.entra, identities: [SYSTEM_IDENTITY], identityHeader: IDENTITY_HEADER })
t.teardown(() => endpoint.close())

/** Only the sign-in host and its CA: what the file does not say when it is written for the simulator. */
const simulatorSignIn = { AZURE_AUTHORITY_HOST: simulator.entra.url, BROKER_CA_FILE: caFile }
const KEY_LINE = /^ {2}([A-Za-z0-9_-]{43})$/gm

function keysIn (stdout: string): string[] {
  return [...stdout.matchAll(KEY_LINE)].map((match) => match[1] as string)
}

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex')

function writePrivate (dir: string, name: string, text: string): string {
  const file = join(dir, name)
  writeFileSync(file, text)
  chmodSync(file, 0o600)
  return file
}

async function init (t: Test, dir: string, args: string[]): Promise<Exit> {
  return runCli(t, ['init', ...args], { env: cliEnv(home), cwd: dir })
}

async function checkWith (t: Test, file: string, env: Record<string, string>): Promise<Exit> {
  return runCli(t, ['check', '--config', file], { env: cliEnv(home, env) })
}

t.test('a secret, two clients: the file loads, check gets a token, serve takes each printed key', async (t) => {
  const dir = t.testdir({ secrets: {}, conf: {} })
  writePrivate(join(dir, 'secrets'), 'client-secret', `${simulator.clientSecret}\n`)
  const exit = await init(t, dir, [
    '--tenant', simulator.tenantId, '--client-id', simulator.clientId, '--secret-file', 'secrets/client-secret',
    '--client', 'soar', '--client', 'siem', '--upstream', simulator.defender.url, '--output', 'conf/broker.yaml'
  ])
  t.equal(exit.code, 0, 'exit code 0')
  t.equal(exit.stderr, '')
  const file = join(dir, 'conf', 'broker.yaml')
  t.equal(statSync(file).mode & 0o777, 0o600, 'the file is 0600')
  const text = readFileSync(file, 'utf8')
  t.match(text, /^# defender-token-broker configuration, written by `defender-token-broker init`\./, 'a commented file')
  t.match(text, /secretFile: "\.\.\/secrets\/client-secret"/, 'the secret file, relative to the config file as the broker reads it')

  const keys = keysIn(exit.stdout)
  t.equal(keys.length, 2, 'one key per client printed')
  for (const key of keys) {
    t.equal(exit.stdout.split(key).length - 1, 1, 'each key is printed once')
    t.notOk(text.includes(key), 'the file does not hold the key')
    t.ok(text.includes(`keySha256: ${sha256(key)}`), 'the file holds its SHA-256')
  }
  t.match(exit.stdout, /Key for client soar[^\n]*\n\n {2}\S+\n\nKey for client siem/, 'each key under its client\'s name')
  t.match(exit.stdout, /defender-token-broker check --config conf\/broker\.yaml/, 'says what to run next')

  const check = await checkWith(t, file, simulatorSignIn)
  t.equal(check.code, 0, 'check on the written file: exit 0')
  t.match(check.stdout, /^profile default: OK$/m)
  t.match(check.stdout, new RegExp(`^ +source +${join(dir, 'secrets', 'client-secret')}$`, 'm'))

  const cli = spawnCli(t, ['serve', '--config', file], { env: cliEnv(home, { ...simulatorSignIn, BROKER_PORT: '0' }) })
  const listening = JSON.parse(await cli.waitForLine('stdout', /"msg":"broker listening"/)) as { listen: string, inbound: string }
  t.equal(listening.inbound, '2 client key(s)')
  for (const key of keys) {
    const res = await request(`${listening.listen}/api/alerts?$top=1`, { headers: { authorization: `Bearer ${key}` } })
    await res.body.dump()
    t.equal(res.statusCode, 200, 'a printed key is taken')
  }
  const without = await request(`${listening.listen}/api/alerts?$top=1`)
  await without.body.dump()
  t.equal(without.statusCode, 401, 'no key: 401')
  await stopsCleanly(t, cli)
  for (const key of keys) t.notOk(cli.stdout().includes(key), 'no key in the broker\'s logs')
})

t.test('a certificate: check gets a token with it', async (t) => {
  const certificate = await pki.issueClientCertificate('defender-token-broker init')
  simulator.entra.setCertificate(simulator.clientId, certificate.certPem)
  t.teardown(() => simulator.entra.setCertificate(simulator.clientId, undefined))
  const dir = t.testdir({})
  const pem = writePrivate(dir, 'client.pem', certificate.pem)
  const exit = await init(t, dir, ['--tenant', simulator.tenantId, '--client-id', simulator.clientId, '--certificate-file', pem])
  t.equal(exit.code, 0)
  t.equal(keysIn(exit.stdout).length, 0, 'no clients, no keys')
  const file = join(dir, 'defender-token-broker.yaml')
  t.match(readFileSync(file, 'utf8'), new RegExp(`certificateFile: "${pem}"`), 'an absolute path stays as given')
  t.match(readFileSync(file, 'utf8'), /^# clients:$/m, 'clients left as a commented example')
  const check = await checkWith(t, file, simulatorSignIn)
  t.equal(check.code, 0, 'check: exit 0')
  t.match(check.stdout, new RegExp(`^ +client id +${simulator.clientId} \\(certificate\\)$`, 'm'))
})

t.test('a managed identity: no tenant or client id; check reads them from the token', async (t) => {
  const dir = t.testdir({})
  const exit = await init(t, dir, ['--managed-identity', '--client', 'soar', '--output', 'mi.yaml'])
  t.equal(exit.code, 0)
  const text = readFileSync(join(dir, 'mi.yaml'), 'utf8')
  t.notMatch(text, /^ +(tenantId|clientId):/m, 'no ids in the file')
  const check = await checkWith(t, join(dir, 'mi.yaml'), { IDENTITY_ENDPOINT: endpoint.appServiceEndpoint, IDENTITY_HEADER })
  t.equal(check.code, 0, 'check: exit 0')
  t.match(check.stdout, new RegExp(`^ +tenant +${SYSTEM_IDENTITY.tenantId}$`, 'm'))
  t.match(check.stdout, new RegExp(`^ +client id +${SYSTEM_IDENTITY.clientId} \\(managedIdentity\\)$`, 'm'))
})

t.test('an existing file is never overwritten', async (t) => {
  const dir = t.testdir({ 'defender-token-broker.yaml': 'listen: { port: 9000 }\n' })
  const file = join(dir, 'defender-token-broker.yaml')
  const exit = await init(t, dir, ['--managed-identity', '--client', 'soar'])
  t.equal(exit.code, 1, 'exit code 1')
  t.equal(exit.stderr, `defender-token-broker init: ${file} already exists, and init never overwrites a file: give another --output, or move that file away\n`)
  t.equal(exit.stdout, '', 'no key printed for a file not written')
  t.equal(readFileSync(file, 'utf8'), 'listen: { port: 9000 }\n', 'the file is untouched')
  const missingDir = await init(t, dir, ['--managed-identity', '--output', 'nowhere/broker.yaml'])
  t.equal(missingDir.code, 1)
  t.match(missingDir.stderr, /nowhere\/broker\.yaml cannot be created \(ENOENT\): check that its directory exists and is writable/)
})

t.test('missing or contradicting flags: exit 2, saying what to add', async (t) => {
  const dir = t.testdir({})
  const cases: Array<[string[], RegExp]> = [
    [[], /add the app's credential: one of --secret-file FILE, --certificate-file FILE, --managed-identity/],
    [['--managed-identity', '--secret-file', 's'], /--secret-file FILE and --managed-identity contradict each other: give only one of them/],
    [['--secret-file', 's'], /add --tenant ID \(the directory \(tenant\) id\) and --client-id ID \(the application \(client\) id\) of the app registration/],
    [['--certificate-file', 'c', '--tenant', simulator.tenantId], /add --client-id ID/],
    [['--managed-identity', '--client', 'Bad_Name'], /--client "Bad_Name": a client name must be lower-case letters, digits and dashes/],
    [['--managed-identity', '--client', 'soar', '--client', 'soar'], /--client soar is given twice/],
    [['--managed-identity', '--client-id', 'x'], /--client-id must be a GUID/],
    [['--managed-identity', '--cloud', 'china'], /--cloud must be one of public, gcc, gcc-high, dod/],
    [['--managed-identity', '--frobnicate'], /Unknown option '--frobnicate'/]
  ]
  for (const [args, message] of cases) {
    const exit = await init(t, dir, args)
    t.equal(exit.code, 2, `${args.join(' ') || 'no flags'}: exit 2`)
    t.match(exit.stderr, message, 'says what to do')
    t.match(exit.stderr, /Usage:\n {2}defender-token-broker init/, 'with init\'s usage')
    t.equal(exit.stdout, '', 'no key printed')
  }
  const [help, initHelp] = await Promise.all([runCli(t, ['--help'], { env: cliEnv(home) }), init(t, dir, ['--help'])])
  t.match(help.stdout, /^ {2}defender-token-broker init /m, '--help lists init')
  t.equal(initHelp.code, 0)
  t.match(initHelp.stdout, /--managed-identity/)
})
