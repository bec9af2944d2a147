import { createHash } from 'node:crypto'
import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { loadConfig } from '../src/config/load.js'
import type { Config } from '../src/config/types.js'
import { writePrivate } from './helpers/files.js'

const TENANT = '00000000-0000-0000-0000-000000000000'
const CLIENT = '11111111-1111-1111-1111-111111111111'
const PEM = [
  '-----BEGIN CERTIFICATE-----', 'MIIBfake', '-----END CERTIFICATE-----',
  '-----BEGIN PRIVATE KEY-----', 'MIIEfake', '-----END PRIVATE KEY-----', ''
].join('\n')

const secretEnv = { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT, AZURE_CLIENT_SECRET: 'inline-secret' }

function credentialOf (config: Config, index = 0) {
  const profile = config.profiles[index]
  if (profile === undefined) throw new Error(`no profile ${index}`)
  return profile.credential
}

t.test('the environment alone defines the profile default at / with every default', async t => {
  const config = loadConfig({ env: secretEnv })
  t.same(config.listen, { host: '127.0.0.1', port: 8080, allowedHosts: [] })
  t.same(config.refresh, { beforeSeconds: 600, timeoutSeconds: 10, after401Seconds: 30 })
  t.same(config.retry, { maxWaitSeconds: 30, maxAttempts: 3, maxPauseSeconds: 300 })
  t.same(config.upstreamTimeouts, { connectSeconds: 10, responseSeconds: 60 })
  t.equal(config.logLevel, 'info')
  t.equal(config.allowUnauthenticated, false)
  t.same(config.clients, [])
  t.notOk('extraCaPem' in config)
  t.equal(config.source, 'environment')
  t.equal(config.profiles.length, 1)
  const [profile] = config.profiles
  t.match(profile, {
    name: 'default',
    basePath: '/',
    tenantId: TENANT,
    clientId: CLIENT,
    cloud: 'public',
    authorityHost: 'https://login.microsoftonline.com',
    customAuthority: false,
    upstream: 'https://api.securitycenter.microsoft.com',
    scope: 'https://api.securitycenter.microsoft.com/.default',
    allow: [],
    rateLimit: { perMinute: 100, perHour: 1500, maxQueueSeconds: 30 }
  })
  const credential = credentialOf(config)
  t.equal(credential.type, 'secret')
  if (credential.type === 'secret') {
    t.equal(credential.secret.read(), 'inline-secret')
    t.equal(credential.secret.origin, 'AZURE_CLIENT_SECRET')
  }
})

t.test('empty variables count as unset', async t => {
  const config = loadConfig({ env: { ...secretEnv, BROKER_PORT: '', BROKER_UPSTREAM: '', AZURE_CLIENT_SECRET_FILE: '' } })
  t.equal(config.listen.port, 8080)
  t.equal(config.profiles[0]?.upstream, 'https://api.securitycenter.microsoft.com')
})

t.test('BROKER_UPSTREAM, BROKER_SCOPE and BROKER_CLOUD shape the environment\'s profile', async t => {
  const config = loadConfig({
    env: { ...secretEnv, BROKER_CLOUD: 'gcc-high', BROKER_UPSTREAM: 'http://127.0.0.1:9999', BROKER_SCOPE: 'api://sim/.default' }
  })
  t.match(config.profiles[0], {
    cloud: 'gcc-high',
    authorityHost: 'https://login.microsoftonline.us',
    upstream: 'http://127.0.0.1:9999',
    scope: 'api://sim/.default'
  })
})

t.test('credentials in the environment: secret, then certificate, then federated token', async t => {
  const dir = t.testdir()
  const secretFile = writePrivate(join(dir, 'secret'), 'from-file\n')
  const certificate = writePrivate(join(dir, 'cert.pem'), PEM)
  const token = join(dir, 'token')
  writeFileSync(token, 'eyJhbGciOi.fake.jwt')
  chmodSync(token, 0o644)
  const ids = { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT }

  const all = loadConfig({
    env: { ...ids, AZURE_CLIENT_SECRET_FILE: secretFile, AZURE_CLIENT_CERTIFICATE_PATH: certificate, AZURE_FEDERATED_TOKEN_FILE: token }
  })
  const secret = credentialOf(all)
  t.equal(secret.type, 'secret')
  if (secret.type === 'secret') {
    t.equal(secret.secret.read(), 'from-file', 'the trailing line break is dropped')
    t.equal(secret.secret.origin, secretFile)
  }

  const withoutSecret = loadConfig({
    env: { ...ids, AZURE_CLIENT_CERTIFICATE_PATH: certificate, AZURE_CLIENT_CERTIFICATE_PASSWORD: 'pw', AZURE_FEDERATED_TOKEN_FILE: token }
  })
  const cert = credentialOf(withoutSecret)
  t.equal(cert.type, 'certificate')
  if (cert.type === 'certificate') {
    t.equal(cert.certificateFile, certificate)
    t.equal(cert.password?.read(), 'pw')
  }

  const federated = credentialOf(loadConfig({ env: { ...ids, AZURE_FEDERATED_TOKEN_FILE: token } }))
  t.same(federated, { type: 'federated', tokenFile: token }, 'a 0644 token file is accepted')
})

t.test('with no secret, certificate or token, a managed identity endpoint in the environment is used', async t => {
  const appService = { IDENTITY_ENDPOINT: 'http://127.0.0.1:41000/msi/token', IDENTITY_HEADER: 'h' }
  const system = loadConfig({ env: appService })
  t.same(system.profiles[0], {
    ...system.profiles[0],
    name: 'default',
    basePath: '/',
    credential: { type: 'managedIdentity' },
    credentialSource: 'IDENTITY_ENDPOINT (App Service)'
  })
  t.notOk('tenantId' in (system.profiles[0] ?? {}), 'no tenantId: the token names it')
  t.notOk('clientId' in (system.profiles[0] ?? {}), 'no clientId')

  const user = loadConfig({ env: { ...appService, AZURE_CLIENT_ID: CLIENT, AZURE_TENANT_ID: TENANT } })
  t.same(credentialOf(user), { type: 'managedIdentity', clientId: CLIENT }, 'AZURE_CLIENT_ID names a user-assigned identity, as DefaultAzureCredential does')
  t.equal(user.profiles[0]?.tenantId, TENANT)
  t.notOk('clientId' in (user.profiles[0] ?? {}), 'the identity, not an app registration')

  t.equal(loadConfig({ env: { MSI_ENDPOINT: 'http://127.0.0.1:41000/msi' } }).profiles[0]?.credentialSource, 'MSI_ENDPOINT (Cloud Shell)')
  t.equal(loadConfig({ env: { BROKER_MANAGED_IDENTITY: 'true' } }).profiles[0]?.credentialSource, 'BROKER_MANAGED_IDENTITY: IMDS (169.254.169.254)',
    'IMDS, which no variable announces, only when asked for')
  t.equal(loadConfig({ env: { BROKER_MANAGED_IDENTITY: '1', AZURE_POD_IDENTITY_AUTHORITY_HOST: 'http://127.0.0.1:41000' } }).profiles[0]?.credentialSource,
    'BROKER_MANAGED_IDENTITY: AZURE_POD_IDENTITY_AUTHORITY_HOST (IMDS)')
  t.equal(credentialOf(loadConfig({ env: { ...appService, ...secretEnv } })).type, 'secret', 'a secret comes first, as in DefaultAzureCredential')
})

t.test('each profile says where its credential is found, never what it is', async t => {
  const dir = t.testdir()
  const secretFile = writePrivate(join(dir, 'secret'), 'from-file\n')
  t.equal(loadConfig({ env: secretEnv }).profiles[0]?.credentialSource, 'AZURE_CLIENT_SECRET')
  t.equal(loadConfig({ env: { ...secretEnv, AZURE_CLIENT_SECRET: undefined, AZURE_CLIENT_SECRET_FILE: secretFile } }).profiles[0]?.credentialSource, secretFile)
  const file = join(dir, 'broker.yaml')
  writeFileSync(file, [
    'profiles:',
    `  - { name: a, basePath: /, tenantId: ${TENANT}, clientId: ${CLIENT}, credential: { type: secret, secret: inline-secret } }`,
    '  - { name: b, basePath: /b, credential: { type: managedIdentity } }',
    ''
  ].join('\n'))
  const config = loadConfig({ argvConfigPath: file, env: { IDENTITY_ENDPOINT: 'http://127.0.0.1:1/msi/token', IMDS_ENDPOINT: 'http://127.0.0.1:1' } })
  t.same(config.profiles.map((profile) => profile.credentialSource), ['profiles[0].credential.secret', 'IDENTITY_ENDPOINT (Azure Arc)'])
})

t.test('a lone profile in a file needs no basePath; a managed identity no tenantId or clientId', async t => {
  const dir = t.testdir({ 'broker.yaml': 'profiles:\n  - name: soc\n    credential: { type: managedIdentity }\n' })
  const config = loadConfig({ argvConfigPath: join(dir, 'broker.yaml'), env: {} })
  t.match(config.profiles[0], { name: 'soc', basePath: '/', credential: { type: 'managedIdentity' }, credentialSource: 'IMDS (169.254.169.254)' })
  t.notOk('tenantId' in (config.profiles[0] ?? {}))
})

t.test('relative paths in the environment are resolved against cwd', async t => {
  const dir = t.testdir()
  writePrivate(join(dir, 'secret'), 'x')
  const config = loadConfig({ env: { ...secretEnv, AZURE_CLIENT_SECRET: undefined, AZURE_CLIENT_SECRET_FILE: 'secret' }, cwd: dir })
  const credential = credentialOf(config)
  t.equal(credential.type === 'secret' && credential.secret.origin, join(dir, 'secret'))
})

t.test('a secret file is read again after rotation', async t => {
  const dir = t.testdir()
  const file = writePrivate(join(dir, 'secret'), 'first')
  const credential = credentialOf(loadConfig({ env: { ...secretEnv, AZURE_CLIENT_SECRET: undefined, AZURE_CLIENT_SECRET_FILE: file } }))
  if (credential.type !== 'secret') throw new Error('expected a secret credential')
  t.equal(credential.secret.read(), 'first')
  writeFileSync(file, 'second\r\n')
  t.equal(credential.secret.read(), 'second')
  chmodSync(file, 0o644)
  t.throws(() => credential.secret.read(), { code: 'BrokerConfigInvalid' }, 'the permission check holds on every read')
})

const yamlConfig = `
listen: { host: 0.0.0.0, port: 9000, allowedHosts: [Defender-Broker, defender-broker] }
profiles:
  - name: contoso
    basePath: /
    tenantId: ${TENANT}
    clientId: ${CLIENT}
    credential: { type: secret, secretFile: contoso-secret }
  - name: fabrikam
    basePath: /fabrikam/
    tenantId: fabrikam.onmicrosoft.com
    clientId: ${CLIENT}
    credential: { type: managedIdentity, clientId: ${CLIENT} }
    cloud: gcc
    allow: ["GET /api/**"]
    rateLimit: { perMinute: 45 }
refresh: { beforeSeconds: 300 }
retry: { maxAttempts: 5 }
upstreamTimeouts: { responseSeconds: 120 }
logLevel: debug
allowUnauthenticated: true
clients:
  - name: soar
    keySha256: 9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08
    profiles: [contoso]
    allow: ["GET /api/**", "POST /api/machines/*/isolate"]
  - name: siem
    keyFile: siem-key
`

function fileFixture (t: Test, name: string, text: string): string {
  const dir = t.testdir({ [name]: text })
  writePrivate(join(dir, 'contoso-secret'), 'contoso\n')
  writePrivate(join(dir, 'siem-key'), 'siem-key-value\n')
  return join(dir, name)
}

function checkFileConfig (t: Test, config: Config, file: string): void {
  t.equal(config.source, file)
  t.same(config.listen, { host: '0.0.0.0', port: 9000, allowedHosts: ['defender-broker'] })
  t.same(config.refresh, { beforeSeconds: 300, timeoutSeconds: 10, after401Seconds: 30 })
  t.same(config.retry, { maxWaitSeconds: 30, maxAttempts: 5, maxPauseSeconds: 300 })
  t.same(config.upstreamTimeouts, { connectSeconds: 10, responseSeconds: 120 })
  t.equal(config.logLevel, 'debug')
  t.equal(config.allowUnauthenticated, true)
  t.same(config.profiles.map(profile => profile.basePath), ['/', '/fabrikam'])
  t.match(config.profiles[1], {
    name: 'fabrikam',
    tenantId: 'fabrikam.onmicrosoft.com',
    cloud: 'gcc',
    upstream: 'https://api-gcc.securitycenter.microsoft.us',
    allow: ['GET /api/**'],
    rateLimit: { perMinute: 45, perHour: 1500, maxQueueSeconds: 30 }
  })
  t.same(config.profiles[1]?.credential, { type: 'managedIdentity', clientId: CLIENT })
  const secret = credentialOf(config)
  t.equal(secret.type === 'secret' && secret.secret.read(), 'contoso', 'relative to the config file')
  t.same(config.clients, [
    {
      name: 'soar',
      keySha256: '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08',
      profiles: ['contoso'],
      allow: ['GET /api/**', 'POST /api/machines/*/isolate'],
      dryRun: false
    },
    {
      name: 'siem',
      keySha256: createHash('sha256').update('siem-key-value').digest('hex'),
      profiles: [],
      allow: [],
      dryRun: false
    }
  ])
}

t.test('a YAML config file', async t => {
  for (const name of ['broker.yaml', 'broker.yml', 'broker.conf']) {
    const file = fileFixture(t, name, yamlConfig)
    checkFileConfig(t, loadConfig({ argvConfigPath: file, env: {} }), file)
  }
})

t.test('a JSON config file', async t => {
  const { parse } = await import('yaml')
  const json = JSON.stringify({ $schema: './schema.json', ...parse(yamlConfig) }, null, 2)
  for (const name of ['broker.json', 'broker.conf']) {
    const file = fileFixture(t, name, json)
    checkFileConfig(t, loadConfig({ env: { BROKER_CONFIG: file } }), file)
  }
})

t.test('--config wins over BROKER_CONFIG and is resolved against cwd', async t => {
  const dir = t.testdir({
    'a.yaml': 'logLevel: warn\n',
    'b.yaml': 'logLevel: error\n'
  })
  const config = loadConfig({ argvConfigPath: 'a.yaml', cwd: dir, env: { ...secretEnv, BROKER_CONFIG: join(dir, 'b.yaml') } })
  t.equal(config.logLevel, 'warn')
  t.equal(config.source, join(dir, 'a.yaml'))
})

t.test('precedence: defaults < file < environment', async t => {
  const dir = t.testdir({
    'broker.yaml': 'listen: { host: 10.0.0.1, port: 9000 }\nlogLevel: debug\nallowUnauthenticated: true\n'
  })
  const file = join(dir, 'broker.yaml')
  const fromFile = loadConfig({ argvConfigPath: file, env: secretEnv })
  t.same([fromFile.listen.host, fromFile.listen.port, fromFile.logLevel, fromFile.allowUnauthenticated], ['10.0.0.1', 9000, 'debug', true])
  t.equal(fromFile.refresh.beforeSeconds, 600, 'a default where neither sets it')

  const fromEnv = loadConfig({
    argvConfigPath: file,
    env: { ...secretEnv, BROKER_HOST: '::', BROKER_PORT: '0', BROKER_LOG_LEVEL: 'trace', BROKER_ALLOW_UNAUTHENTICATED: '0' }
  })
  t.same([fromEnv.listen.host, fromEnv.listen.port, fromEnv.logLevel, fromEnv.allowUnauthenticated], ['::', 0, 'trace', false])
})

t.test('BROKER_ALLOW_UNAUTHENTICATED takes true, false, 1 and 0', async t => {
  for (const [value, expected] of [['true', true], ['TRUE', true], ['1', true], ['false', false], ['0', false]] as const) {
    t.equal(loadConfig({ env: { ...secretEnv, BROKER_ALLOW_UNAUTHENTICATED: value } }).allowUnauthenticated, expected, value)
  }
})

t.test('a file without profiles takes the profile from the environment', async t => {
  const dir = t.testdir({ 'broker.yaml': 'clients:\n  - { name: soar, keySha256: ' + 'a'.repeat(64) + ', profiles: [default] }\n' })
  const config = loadConfig({ argvConfigPath: join(dir, 'broker.yaml'), env: secretEnv })
  t.equal(config.profiles[0]?.name, 'default')
  t.same(config.clients[0]?.profiles, ['default'])
})

t.test('a file with profiles ignores the AZURE_* credential variables', async t => {
  const dir = t.testdir({
    'broker.yaml': `profiles:\n  - { name: mi, basePath: /, tenantId: ${TENANT}, clientId: ${CLIENT}, credential: { type: managedIdentity } }\n`
  })
  const config = loadConfig({ argvConfigPath: join(dir, 'broker.yaml'), env: { AZURE_TENANT_ID: 'not checked', AZURE_CLIENT_ID: CLIENT } })
  t.same(config.profiles.map(profile => profile.name), ['mi'])
  t.same(config.profiles[0]?.credential, { type: 'managedIdentity' })
})

t.test('AZURE_AUTHORITY_HOST overrides every profile\'s authority host', async t => {
  const dir = t.testdir({
    'broker.yaml': `profiles:
  - { name: a, basePath: /, tenantId: ${TENANT}, clientId: ${CLIENT}, credential: { type: managedIdentity } }
  - { name: b, basePath: /b, tenantId: ${TENANT}, clientId: ${CLIENT}, credential: { type: managedIdentity }, cloud: dod, authorityHost: https://login.microsoftonline.us }
`
  })
  const file = join(dir, 'broker.yaml')
  const custom = loadConfig({ argvConfigPath: file, env: { AZURE_AUTHORITY_HOST: 'https://LOGIN.example.test:8443/' } })
  t.same(custom.profiles.map(profile => [profile.authorityHost, profile.customAuthority]), [
    ['https://login.example.test:8443', true],
    ['https://login.example.test:8443', true]
  ])
  // AKS workload identity sets the commercial host with a trailing slash
  const preset = loadConfig({ argvConfigPath: file, env: { AZURE_AUTHORITY_HOST: 'https://login.microsoftonline.com/' } })
  t.same(preset.profiles.map(profile => [profile.authorityHost, profile.customAuthority]), [
    ['https://login.microsoftonline.com', false],
    ['https://login.microsoftonline.com', false]
  ])
  const envProfile = loadConfig({ env: { ...secretEnv, AZURE_AUTHORITY_HOST: 'https://127.0.0.1:4443' } })
  t.match(envProfile.profiles[0], { authorityHost: 'https://127.0.0.1:4443', customAuthority: true })
})

t.test('a custom authorityHost in the file is a known authority', async t => {
  const dir = t.testdir({
    'broker.yaml': `profiles:\n  - { name: a, basePath: /, tenantId: ${TENANT}, clientId: ${CLIENT}, credential: { type: managedIdentity }, authorityHost: 'https://adfs.contoso.test' }\n`
  })
  t.match(loadConfig({ argvConfigPath: join(dir, 'broker.yaml'), env: {} }).profiles[0], {
    authorityHost: 'https://adfs.contoso.test',
    customAuthority: true
  })
})

t.test('upstreams: any https origin, http only on loopback', async t => {
  const cases = [
    ['https://eu.api.security.microsoft.com/', 'https://eu.api.security.microsoft.com'],
    ['https://proxy.internal.test:8443', 'https://proxy.internal.test:8443'],
    ['http://127.0.0.1:8081', 'http://127.0.0.1:8081'],
    ['http://127.9.8.7', 'http://127.9.8.7'],
    ['http://localhost:3000', 'http://localhost:3000'],
    ['http://[::1]:3000', 'http://[::1]:3000']
  ] as const
  for (const [upstream, origin] of cases) {
    t.equal(loadConfig({ env: { ...secretEnv, BROKER_UPSTREAM: upstream } }).profiles[0]?.upstream, origin, upstream)
  }
})

t.test('CA certificates from BROKER_CA_FILE win over caFile', async t => {
  const ca = '-----BEGIN CERTIFICATE-----\nMIIBca\n-----END CERTIFICATE-----\n'
  const dir = t.testdir({
    'file-ca.pem': ca.replace('MIIBca', 'MIIBfile'),
    'env-ca.pem': ca,
    'broker.yaml': 'caFile: file-ca.pem\n'
  })
  const file = join(dir, 'broker.yaml')
  t.equal(loadConfig({ argvConfigPath: file, env: secretEnv }).extraCaPem, readFileSync(join(dir, 'file-ca.pem'), 'utf8'))
  t.equal(loadConfig({ argvConfigPath: file, env: { ...secretEnv, BROKER_CA_FILE: join(dir, 'env-ca.pem') } }).extraCaPem, ca)
  t.equal(loadConfig({ argvConfigPath: file, env: secretEnv }).caFile, join(dir, 'file-ca.pem'), 'the file is named for the start-up log')
  t.equal(loadConfig({ argvConfigPath: file, env: { ...secretEnv, BROKER_CA_FILE: join(dir, 'env-ca.pem') } }).caFile, join(dir, 'env-ca.pem'))
})

t.test('certificate credentials in the file, with a password file', async t => {
  const dir = t.testdir()
  writePrivate(join(dir, 'cert.pem'), PEM.replace('BEGIN PRIVATE KEY', 'BEGIN ENCRYPTED PRIVATE KEY'))
  writePrivate(join(dir, 'password'), 'pw\n')
  writeFileSync(join(dir, 'broker.yaml'), `profiles:
  - name: a
    basePath: /
    tenantId: ${TENANT}
    clientId: ${CLIENT}
    credential: { type: certificate, certificateFile: cert.pem, passwordFile: password }
`)
  const credential = credentialOf(loadConfig({ argvConfigPath: join(dir, 'broker.yaml'), env: {} }))
  t.equal(credential.type, 'certificate')
  if (credential.type === 'certificate') {
    t.equal(credential.certificateFile, join(dir, 'cert.pem'))
    t.equal(credential.password?.read(), 'pw')
    t.equal(credential.password?.origin, join(dir, 'password'))
  }
})

t.test('the result is deep-frozen', async t => {
  const dir = t.testdir({ 'broker.yaml': yamlConfig })
  writePrivate(join(dir, 'contoso-secret'), 'contoso')
  writePrivate(join(dir, 'siem-key'), 'key')
  const config = loadConfig({ argvConfigPath: join(dir, 'broker.yaml'), env: {} }) as unknown as Record<string, any>
  t.throws(() => { config.logLevel = 'trace' }, TypeError)
  t.throws(() => { config.listen.port = 1 }, TypeError)
  t.throws(() => { config.listen.allowedHosts.push('evil') }, TypeError)
  t.throws(() => { config.profiles.pop() }, TypeError)
  t.throws(() => { config.profiles[0].upstream = 'https://evil.test' }, TypeError)
  t.throws(() => { config.profiles[1].allow.push('* /**') }, TypeError)
  t.throws(() => { config.profiles[0].rateLimit.perMinute = 1e9 }, TypeError)
  t.throws(() => { config.profiles[0].credential.secret.read = () => 'x' }, TypeError)
  t.throws(() => { config.clients[0].profiles.push('fabrikam') }, TypeError)
  t.throws(() => { config.refresh.beforeSeconds = 1 }, TypeError)
  t.ok(Object.isFrozen(config))
})

t.test('inline secrets stay out of JSON and inspection of the config', async t => {
  const { inspect } = await import('node:util')
  const canary = 'CANARY-inline-9b1c'
  const config = loadConfig({ env: { ...secretEnv, AZURE_CLIENT_SECRET: canary } })
  t.notMatch(JSON.stringify(config), canary)
  t.notMatch(inspect(config, { depth: null }), canary)
})
