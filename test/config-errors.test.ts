import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { isNoCredentialsError, loadConfig, type LoadConfigOptions } from '../src/config/load.js'

const TENANT = '00000000-0000-0000-0000-000000000000'
const CLIENT = '11111111-1111-1111-1111-111111111111'
const secretEnv = { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT, AZURE_CLIENT_SECRET: 'inline-secret' }

function failure (options: LoadConfigOptions): Error & { code?: string } {
  try {
    loadConfig(options)
  } catch (err) {
    return err as Error
  }
  throw new Error('loadConfig did not throw')
}

/** Loads `yaml` as the config file and returns the message it fails with. */
function fileFailure (t: { testdir: (fixture?: Record<string, string>) => string }, yaml: string, env: Record<string, string> = {}): string {
  const dir = t.testdir({ 'broker.yaml': yaml })
  const err = failure({ argvConfigPath: join(dir, 'broker.yaml'), env, cwd: dir })
  if (err.code !== 'BrokerConfigInvalid') throw err
  return err.message.replaceAll(dir, '<dir>')
}

/** A config file with one managed-identity profile; `overrides` adds or replaces its settings. */
function profileYaml (overrides: Record<string, unknown> = {}): string {
  return stringify({
    profiles: [{ name: 'a', basePath: '/', tenantId: TENANT, clientId: CLIENT, credential: { type: 'managedIdentity' }, ...overrides }]
  })
}

t.test('unknown settings are errors naming their path', async t => {
  t.equal(fileFailure(t, 'lsiten: { port: 1 }\n'), 'lsiten: is not a known setting: check its spelling and place against config/schema.json')
  t.equal(fileFailure(t, 'listen: { hots: x }\n'), 'listen.hots: is not a known setting: check its spelling and place against config/schema.json')
  t.equal(fileFailure(t, profileYaml({ credential: { type: 'secret', secretFlie: '/x' } })),
    'profiles[0].credential.secretFlie: is not a known setting: check its spelling and place against config/schema.json')
  t.equal(fileFailure(t, profileYaml({ rateLimit: { perSecond: 1 } })),
    'profiles[0].rateLimit.perSecond: is not a known setting: check its spelling and place against config/schema.json')
})

t.test('wrong types and bounds', async t => {
  t.equal(fileFailure(t, 'listen: { port: "8080" }\n'), 'listen.port: must be an integer')
  t.equal(fileFailure(t, 'listen: { port: 70000 }\n'), 'listen.port: must be at most 65535')
  t.equal(fileFailure(t, 'listen: { port: -1 }\n'), 'listen.port: must be at least 0')
  t.equal(fileFailure(t, 'listen: { allowedHosts: broker }\n'), 'listen.allowedHosts: must be a list')
  t.equal(fileFailure(t, 'refresh: { beforeSeconds: 0 }\n'), 'refresh.beforeSeconds: must be greater than 0')
  t.equal(fileFailure(t, 'retry: { maxAttempts: 1.5 }\n'), 'retry.maxAttempts: must be an integer')
  t.equal(fileFailure(t, 'allowUnauthenticated: yes\n'), 'allowUnauthenticated: must be true or false')
  t.equal(fileFailure(t, 'logLevel: verbose\n'), 'logLevel: must be one of fatal, error, warn, info, debug, trace, silent')
  t.equal(fileFailure(t, profileYaml({ credential: { type: 'secret', secretFile: 5 } })), 'profiles[0].credential.secretFile: must be a string')
  t.equal(fileFailure(t, profileYaml({ cloud: 'azure-china' })), 'profiles[0].cloud: must be one of public, gcc, gcc-high, dod')
  t.equal(fileFailure(t, profileYaml({ scope: 'https://api.securitycenter.microsoft.com' })),
    'profiles[0].scope: must be an app-only scope ending in /.default, e.g. https://api.securitycenter.microsoft.com/.default')
  t.equal(fileFailure(t, profileYaml({ name: 'Contoso' })),
    'profiles[0].name: must be lower-case letters, digits and "-", starting with a letter or digit')
  t.equal(fileFailure(t, 'profiles:\n  - { name: a, basePath: /, tenantId: common, clientId: x, credential: { type: managedIdentity } }\n'),
    'profiles[0].tenantId: must be a tenant GUID or a verified domain such as contoso.onmicrosoft.com; ' +
    'also profiles[0].clientId: must be a GUID such as 11111111-1111-1111-1111-111111111111')
  t.equal(fileFailure(t, 'profiles:\n  - { name: a }\n'), 'profiles[0].credential: is required')
  t.equal(fileFailure(t, '- a\n- b\n'), '<dir>/broker.yaml: must be a mapping of settings')
})

t.test('credential types', async t => {
  t.equal(fileFailure(t, profileYaml({ credential: { secret: 'x' } })),
    'profiles[0].credential.type: is required: use one of secret, certificate, federated, managedIdentity')
  t.equal(fileFailure(t, profileYaml({ credential: { type: 'password' } })),
    'profiles[0].credential.type: is not a known type: use one of secret, certificate, federated, managedIdentity')
  t.equal(fileFailure(t, profileYaml({ credential: 'secret' })), 'profiles[0].credential: must be a mapping with a "type"')
  t.equal(fileFailure(t, profileYaml({ credential: { type: 'certificate' } })), 'profiles[0].credential.certificateFile: is required')
  t.equal(fileFailure(t, profileYaml({ credential: { type: 'secret' } })), 'profiles[0].credential: needs the client secret: set secretFile (or secret)')
  t.equal(fileFailure(t, profileYaml({ credential: { type: 'secret', secret: 'a', secretFile: 'b' } })),
    'profiles[0].credential.secret: and profiles[0].credential.secretFile are both set: set only one of them (the file is the safer)')
  t.equal(fileFailure(t, profileYaml({ credential: { type: 'managedIdentity', clientId: CLIENT, objectId: CLIENT } })),
    'profiles[0].credential: names more than one user-assigned identity: set only one of clientId, resourceId and objectId')
})

t.test('upstream and authority host must be origins; http only on loopback', async t => {
  const upstream = (value: string) => failure({ env: { ...secretEnv, BROKER_UPSTREAM: value } }).message
  t.equal(upstream('http://api.securitycenter.microsoft.com'),
    'BROKER_UPSTREAM: may use http only on a loopback address (127.0.0.0/8, ::1 or localhost): use https')
  t.equal(upstream('http://10.0.0.5:8080'),
    'BROKER_UPSTREAM: may use http only on a loopback address (127.0.0.0/8, ::1 or localhost): use https')
  t.equal(upstream('https://api.securitycenter.microsoft.com/api'),
    'BROKER_UPSTREAM: must be an origin without a path, query or fragment, such as https://api.securitycenter.microsoft.com')
  t.equal(upstream('https://api.securitycenter.microsoft.com/?x=1'),
    'BROKER_UPSTREAM: must be an origin without a path, query or fragment, such as https://api.securitycenter.microsoft.com')
  t.equal(upstream('https://api.securitycenter.microsoft.com?'),
    'BROKER_UPSTREAM: must be an origin without a path, query or fragment, such as https://api.securitycenter.microsoft.com')
  t.equal(upstream('https://user:pw@api.securitycenter.microsoft.com'),
    'BROKER_UPSTREAM: must not hold a user name or password: remove them from the URL')
  t.equal(upstream('ftp://api.securitycenter.microsoft.com'),
    'BROKER_UPSTREAM: must be an https origin such as https://api.securitycenter.microsoft.com')
  t.equal(upstream('api.securitycenter.microsoft.com'),
    'BROKER_UPSTREAM: must be an origin (scheme, host and optional port) such as https://api.securitycenter.microsoft.com')
  t.equal(fileFailure(t, profileYaml({ upstream: 'http://defender.internal' })),
    'profiles[0].upstream: may use http only on a loopback address (127.0.0.0/8, ::1 or localhost): use https')

  t.equal(failure({ env: { ...secretEnv, AZURE_AUTHORITY_HOST: 'http://127.0.0.1:4000' } }).message,
    'AZURE_AUTHORITY_HOST: must use https (Entra ID and msal-node accept no other scheme)')
  t.equal(fileFailure(t, profileYaml({ authorityHost: 'https://login.microsoftonline.com/tenant' })),
    'profiles[0].authorityHost: must be an origin without a path, query or fragment, such as https://api.securitycenter.microsoft.com')
})

t.test('profiles: unique names and basePaths, no reserved or odd basePath', async t => {
  const two = (first: string, second: string) => 'profiles:\n' +
    `  - { name: ${first.split(' ')[0]}, basePath: ${first.split(' ')[1]}, tenantId: ${TENANT}, clientId: ${CLIENT}, credential: { type: managedIdentity } }\n` +
    `  - { name: ${second.split(' ')[0]}, basePath: ${second.split(' ')[1]}, tenantId: ${TENANT}, clientId: ${CLIENT}, credential: { type: managedIdentity } }\n`
  t.equal(fileFailure(t, two('a /', 'a /b')), 'profiles[1].name: the name a is also used by profiles[0]: give each profile its own name')
  t.equal(fileFailure(t, two('a /x', 'b /x/')), 'profiles[1].basePath: /x is also the basePath of profiles[0]: give each profile its own basePath')
  for (const reserved of ['/healthz', '/readyz', '/metrics', '/status', '/status/', '/metrics/x']) {
    t.match(fileFailure(t, profileYaml({ basePath: reserved })),
      /^profiles\[0\]\.basePath: must not start with \/(healthz|readyz|metrics|status): \/healthz, \/readyz, \/metrics, \/status are the broker's own endpoints$/,
      reserved)
  }
  t.equal(fileFailure(t, profileYaml({ basePath: '/a//b' })),
    'profiles[0].basePath: must not hold an empty segment ("//"): write it as /name or /name/sub')
  t.equal(fileFailure(t, profileYaml({ basePath: '/a/../b' })), 'profiles[0].basePath: must not hold "." or ".." segments')
  t.equal(fileFailure(t, profileYaml({ basePath: '/a%2fb' })),
    'profiles[0].basePath: must be a path such as /fabrikam: "/" followed by letters, digits, ".", "_", "~", "-" and "/"')
  t.equal(fileFailure(t, profileYaml({ basePath: 'fabrikam' })),
    'profiles[0].basePath: must be a path such as /fabrikam: "/" followed by letters, digits, ".", "_", "~", "-" and "/"')
  const dir = t.testdir({ 'broker.yaml': two('a /statusboard', 'b /') })
  t.same(loadConfig({ argvConfigPath: join(dir, 'broker.yaml'), env: {} }).profiles.map(p => p.basePath), ['/statusboard', '/'],
    'a name that only starts like a reserved one is fine')
})

t.test('rules', async t => {
  t.equal(fileFailure(t, profileYaml({ allow: ['GET api/**'] })),
    'profiles[0].allow[0]: must be "METHOD /path" with METHOD one of GET, HEAD, POST, PUT, PATCH, DELETE or *, e.g. "GET /api/**"')
  t.equal(fileFailure(t, profileYaml({ allow: ['OPTIONS /api'] })),
    'profiles[0].allow[0]: must be "METHOD /path" with METHOD one of GET, HEAD, POST, PUT, PATCH, DELETE or *, e.g. "GET /api/**"')
  t.equal(fileFailure(t, profileYaml({ allow: ['GET /api/**', 'GET /api/mach*'] })),
    'profiles[0].allow[1]: a * or ** must be a whole path segment, e.g. "GET /api/machines/*/software"')
  t.equal(fileFailure(t, profileYaml({ allow: ['GET /api/alerts?$top=10'] })),
    'profiles[0].allow[0]: rules match the path only: remove the query or fragment')
  t.equal(fileFailure(t, profileYaml() + 'clients:\n  - { name: c, keySha256: ' + 'a'.repeat(64) + ', allow: ["GET /api/**", "* /x/y**"] }\n'),
    'clients[0].allow[1]: a * or ** must be a whole path segment, e.g. "GET /api/machines/*/software"')
  t.equal(fileFailure(t, profileYaml({ allow: ['GET /api/**/isolate'] })),
    'profiles[0].allow[0]: ** matches the rest of the path, so it must be the last segment')
})

t.test('clients', async t => {
  const key = 'a'.repeat(64)
  t.equal(fileFailure(t, profileYaml() + `clients:\n  - { name: soar, keySha256: ${key}, profiles: [a, fabrikam] }\n`),
    'clients[0].profiles[1]: no profile is named fabrikam: use one of a')
  t.equal(fileFailure(t, profileYaml() + `clients:\n  - { name: soar, keySha256: ${key} }\n  - { name: soar, keySha256: ${'b'.repeat(64)} }\n`),
    'clients[1].name: the name soar is also used by clients[0]: give each client its own name')
  t.equal(fileFailure(t, profileYaml() + `clients:\n  - { name: soar, keySha256: ${key} }\n  - { name: siem, keySha256: ${key.toUpperCase()} }\n`),
    'clients[1]: has the same key as client soar: give each client its own key, so logs and rules tell them apart')
  t.equal(fileFailure(t, profileYaml() + 'clients:\n  - { name: soar }\n'),
    'clients[0].keySha256: is required: set keySha256 (the key\'s SHA-256 in hex) or keyFile')
  t.equal(fileFailure(t, profileYaml() + `clients:\n  - { name: soar, keySha256: ${key}, keyFile: k }\n`),
    'clients[0].keySha256: and clients[0].keyFile are both set: set only one of them')
  t.equal(fileFailure(t, profileYaml() + 'clients:\n  - { name: soar, keySha256: abc }\n'),
    'clients[0].keySha256: must be 64 hex digits, the SHA-256 of the key (e.g. printf %s "$KEY" | sha256sum)')
  t.equal(fileFailure(t, profileYaml() + 'clients:\n  - { name: soar, keyFile: missing-key }\n'),
    'clients[0].keyFile: the file <dir>/missing-key does not exist: check the path and the volume or secret mount')
})

t.test('no credentials at all is its own error, with no fallback', async t => {
  const err = failure({ env: {} })
  t.ok(isNoCredentialsError(err))
  t.equal(err.code, 'BrokerConfigInvalid')
  t.equal(err.message,
    'No credentials configured: set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH), ' +
    'or a config file with profiles (--config / BROKER_CONFIG; `defender-token-broker init` writes one), ' +
    'or BROKER_MANAGED_IDENTITY=true on an Azure VM. To try the broker without Azure, run `npm run demo`.')
  t.ok(isNoCredentialsError(failure({ env: { BROKER_MANAGED_IDENTITY: 'false', MSI_ENDPOINT: 'http://127.0.0.1:1/msi' } })),
    'BROKER_MANAGED_IDENTITY=false: a managed identity endpoint is not used')
  const dir = t.testdir({ 'broker.yaml': 'listen: { port: 9000 }\n', 'empty.yaml': '' })
  t.ok(isNoCredentialsError(failure({ argvConfigPath: join(dir, 'broker.yaml'), env: { BROKER_UPSTREAM: 'https://x.test' } })))
  t.ok(isNoCredentialsError(failure({ argvConfigPath: join(dir, 'empty.yaml'), env: {} })))
  t.notOk(isNoCredentialsError(failure({ env: { AZURE_TENANT_ID: TENANT } })))
  t.notOk(isNoCredentialsError(new Error('other')))
})

t.test('what only a managed identity may leave out', async t => {
  const secretProfile = { name: 'a', credential: { type: 'secret', secret: 'x' } }
  t.equal(fileFailure(t, stringify({ profiles: [secretProfile] })),
    'profiles[0].tenantId: is required with a secret credential: set it to the directory (tenant) id of the app registration ' +
    '(only a managedIdentity credential may leave it out)')
  t.equal(fileFailure(t, stringify({ profiles: [{ ...secretProfile, tenantId: TENANT }] })),
    'profiles[0].clientId: is required with a secret credential: set it to the application (client) id of the app registration ' +
    '(only a managedIdentity credential may leave it out)')
  t.equal(fileFailure(t, stringify({
    profiles: [
      { name: 'a', basePath: '/', credential: { type: 'managedIdentity' } },
      { name: 'b', credential: { type: 'managedIdentity', clientId: CLIENT } }
    ]
  })), 'profiles[1].basePath: is required when the file defines several profiles: give each its own path prefix, e.g. / for one and /fabrikam for another')
  t.equal(failure({ env: { BROKER_MANAGED_IDENTITY: 'yes' } }).message, 'BROKER_MANAGED_IDENTITY: must be true, false, 1 or 0')
  t.equal(failure({ env: { BROKER_MANAGED_IDENTITY: 'true', AZURE_CLIENT_SECRET_FILE: '/x' } }).message,
    'BROKER_MANAGED_IDENTITY: and AZURE_CLIENT_SECRET_FILE are both set: unset AZURE_CLIENT_SECRET_FILE to use the managed identity, ' +
    'or BROKER_MANAGED_IDENTITY to use the app\'s credential')
  t.equal(failure({ env: { IDENTITY_ENDPOINT: 'http://127.0.0.1:1/msi/token', AZURE_CLIENT_ID: 'not-a-guid' } }).message,
    'AZURE_CLIENT_ID: must be a GUID such as 11111111-1111-1111-1111-111111111111')
})

t.test('a partial environment names the missing variable', async t => {
  t.equal(failure({ env: { AZURE_TENANT_ID: TENANT } }).message,
    'AZURE_CLIENT_ID: is not set: set it to the application (client) id of the app registration')
  t.equal(failure({ env: { AZURE_CLIENT_ID: CLIENT, AZURE_CLIENT_SECRET: 'x' } }).message,
    'AZURE_TENANT_ID: is not set: set it to the directory (tenant) id of the app registration')
  t.equal(failure({ env: { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT } }).message,
    'AZURE_CLIENT_SECRET: is not set, nor AZURE_CLIENT_SECRET_FILE, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE: ' +
    'set one of them to give the app\'s credential')
  t.equal(failure({ env: { ...secretEnv, AZURE_CLIENT_SECRET_FILE: '/x' } }).message,
    'AZURE_CLIENT_SECRET: and AZURE_CLIENT_SECRET_FILE are both set: set only one of them')
  t.equal(failure({ env: { ...secretEnv, AZURE_TENANT_ID: 'not a tenant' } }).message,
    'AZURE_TENANT_ID: must be a tenant GUID or a verified domain such as contoso.onmicrosoft.com')
  t.equal(failure({ env: { ...secretEnv, BROKER_CLOUD: 'china' } }).message, 'BROKER_CLOUD: must be one of public, gcc, gcc-high, dod')
  t.equal(failure({ env: { ...secretEnv, BROKER_SCOPE: 'https://api.securitycenter.microsoft.com' } }).message,
    'BROKER_SCOPE: must be an app-only scope ending in /.default, e.g. https://api.securitycenter.microsoft.com/.default')
})

t.test('single-profile variables with profiles in the file', async t => {
  for (const [name, setting] of [['BROKER_UPSTREAM', 'upstream'], ['BROKER_SCOPE', 'scope'], ['BROKER_CLOUD', 'cloud']]) {
    t.equal(fileFailure(t, profileYaml(), { [name as string]: 'x' }),
      `${name}: applies only to the single profile the environment defines, but the config file defines profiles: ` +
      `unset ${name} and set ${setting} in each profile of the file instead`)
  }
})

t.test('broker variables', async t => {
  t.equal(failure({ env: { ...secretEnv, BROKER_ALLOW_UNAUTHENTICATED: 'yes' } }).message,
    'BROKER_ALLOW_UNAUTHENTICATED: must be true, false, 1 or 0')
  t.equal(failure({ env: { ...secretEnv, BROKER_PORT: 'http' } }).message, 'BROKER_PORT: must be an integer from 0 to 65535')
  t.equal(failure({ env: { ...secretEnv, BROKER_PORT: '65536' } }).message, 'BROKER_PORT: must be at most 65535')
  t.equal(failure({ env: { ...secretEnv, BROKER_LOG_LEVEL: 'loud' } }).message,
    'BROKER_LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent')
  t.equal(failure({ env: { ...secretEnv, BROKER_HOST: 'http://0.0.0.0' } }).message, 'BROKER_HOST: must be a host name or an IP address')
  const dir = t.testdir({ 'not-ca.pem': 'hello\n' })
  t.equal(failure({ env: { ...secretEnv, BROKER_CA_FILE: join(dir, 'missing.pem') } }).message.replaceAll(dir, '<dir>'),
    'BROKER_CA_FILE: the file <dir>/missing.pem does not exist: check the path and the volume or secret mount')
  t.equal(failure({ env: { ...secretEnv, BROKER_CA_FILE: join(dir, 'not-ca.pem') } }).message.replaceAll(dir, '<dir>'),
    'BROKER_CA_FILE: the file <dir>/not-ca.pem holds no CERTIFICATE block: it must be a PEM file of CA certificates')
  t.equal(failure({ env: { ...secretEnv, BROKER_CA_FILE: dir } }).message.replaceAll(dir, '<dir>'),
    'BROKER_CA_FILE: <dir> is not a regular file: point the setting at the file itself')
})

t.test('secret files: missing, empty, readable by group or others', async t => {
  const dir = t.testdir()
  const secret = (content: string, mode: number): string => {
    const file = join(dir, `secret-${mode.toString(8)}-${content.length}`)
    writeFileSync(file, content)
    chmodSync(file, mode)
    return file
  }
  const load = (file: string) => failure({ env: { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT, AZURE_CLIENT_SECRET_FILE: file } })
    .message.replaceAll(dir, '<dir>')

  t.equal(load(join(dir, 'nope')), 'AZURE_CLIENT_SECRET_FILE: the file <dir>/nope does not exist: check the path and the volume or secret mount')
  t.equal(load(secret('', 0o600)), 'AZURE_CLIENT_SECRET_FILE: the file <dir>/secret-600-0 is empty: write the secret into it')
  t.equal(load(secret('\n', 0o400)), 'AZURE_CLIENT_SECRET_FILE: the file <dir>/secret-400-1 is empty: write the secret into it')
  t.equal(load(secret('s3cret', 0o640)),
    'AZURE_CLIENT_SECRET_FILE: the file <dir>/secret-640-6 is readable by group or others: ' +
    'run chmod 600 <dir>/secret-640-6 (for a Kubernetes or compose secret, set its mode to 0400)')
  t.match(load(secret('s3cret', 0o604)), /secret-604-6 is readable by group or others: run chmod 600 /)
  t.match(load(secret('s3cret', 0o644)), /secret-644-6 is readable by group or others/)

  const inFile = fileFailure(t, profileYaml({ credential: { type: 'secret', secretFile: './secret' } }))
  t.equal(inFile, 'profiles[0].credential.secretFile: the file <dir>/secret does not exist: check the path and the volume or secret mount')
})

t.test('certificate files', async t => {
  const cert = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'
  const key = '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n'
  const dir = t.testdir()
  const pem = (name: string, content: string, mode = 0o600): string => {
    const file = join(dir, name)
    writeFileSync(file, content)
    chmodSync(file, mode)
    return file
  }
  const load = (file: string, extra: Record<string, string> = {}) => failure({
    env: { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT, AZURE_CLIENT_CERTIFICATE_PATH: file, ...extra }
  }).message.replaceAll(dir, '<dir>')

  t.equal(load(pem('cert-only.pem', cert)),
    'AZURE_CLIENT_CERTIFICATE_PATH: the file <dir>/cert-only.pem holds no PRIVATE KEY block: ' +
    'append the private key to the certificate (e.g. cat cert.pem key.pem)')
  t.equal(load(pem('key-only.pem', key)),
    'AZURE_CLIENT_CERTIFICATE_PATH: the file <dir>/key-only.pem holds no CERTIFICATE block: ' +
    'it must be a PEM file with the certificate and its private key')
  t.match(load(pem('open.pem', cert + key, 0o644)), /^AZURE_CLIENT_CERTIFICATE_PATH: the file <dir>\/open\.pem is readable by group or others: run chmod 600 /)
  t.equal(load(pem('encrypted.pem', cert + key.replaceAll('PRIVATE KEY', 'ENCRYPTED PRIVATE KEY'))),
    'AZURE_CLIENT_CERTIFICATE_PATH: the private key in <dir>/encrypted.pem is encrypted: ' +
    'give its password (password or passwordFile, AZURE_CLIENT_CERTIFICATE_PASSWORD)')
  t.equal(load(pem('ok.pem', cert + key), { AZURE_CLIENT_CERTIFICATE_PASSWORD: 'a', AZURE_CLIENT_CERTIFICATE_PASSWORD_FILE: 'b' }),
    'AZURE_CLIENT_CERTIFICATE_PASSWORD: and AZURE_CLIENT_CERTIFICATE_PASSWORD_FILE are both set: set only one of them')
})

t.test('federated token files must exist and hold something', async t => {
  const dir = t.testdir({ empty: '' })
  const load = (file: string) => failure({
    env: { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT, AZURE_FEDERATED_TOKEN_FILE: file }
  }).message.replaceAll(dir, '<dir>')
  t.equal(load(join(dir, 'missing')),
    'AZURE_FEDERATED_TOKEN_FILE: the file <dir>/missing does not exist: check the path and the volume or secret mount')
  t.equal(load(join(dir, 'empty')), 'AZURE_FEDERATED_TOKEN_FILE: the file <dir>/empty is empty: it must hold the client assertion (a JWT)')
})

t.test('config files that cannot be read or parsed', async t => {
  const dir = t.testdir({
    'bad.yaml': 'listen:\n  port: 1\n    host: x\n',
    'dup.yaml': 'logLevel: info\nlogLevel: debug\n',
    'bad.json': '{\n  "listen": {\n    "port": 1,\n  }\n}\n',
    'bad.conf': '{ "listen": [ }'
  })
  const load = (name: string, setting: 'argv' | 'env' = 'argv') => failure(setting === 'argv'
    ? { argvConfigPath: join(dir, name), env: secretEnv }
    : { env: { ...secretEnv, BROKER_CONFIG: join(dir, name) } }).message.replaceAll(dir, '<dir>')
  t.equal(load('missing.yaml'), '--config: the config file <dir>/missing.yaml does not exist')
  t.equal(load('missing.yaml', 'env'), 'BROKER_CONFIG: the config file <dir>/missing.yaml does not exist')
  t.match(load('bad.yaml'), /^<dir>\/bad\.yaml: is not valid YAML at line [23], column \d+ \([A-Z_]+\): fix the syntax$/)
  t.equal(load('dup.yaml'), '<dir>/dup.yaml: is not valid YAML at line 2, column 1 (DUPLICATE_KEY): fix the syntax')
  t.match(load('bad.json'), /^<dir>\/bad\.json: is not valid JSON( at line 4, column 3)?: fix the syntax$/)
  t.match(load('bad.conf'), /^<dir>\/bad\.conf: is not valid YAML at line \d+, column \d+ \([A-Z_]+\): fix the syntax$/)
  t.equal(failure({ argvConfigPath: '', env: secretEnv }).message, '--config: names no file: give the path of a YAML or JSON config file')
})

t.test('several problems are reported together, at most five', async t => {
  const message = fileFailure(t, 'a: 1\nb: 2\nc: 3\nd: 4\ne: 5\nf: 6\n')
  t.equal(message.split('; also ').length, 5)
  t.match(message, /^a: is not a known setting/)
  t.notMatch(message, /\bf: /)
})

t.test('a cache rule is a read with a valid path pattern and a lifetime', async t => {
  t.match(fileFailure(t, profileYaml({ cache: [{ allow: 'POST /api/machines/*/isolate', ttlSeconds: 30 }] })), /^profiles\[0\]\.cache\[0\]\.allow: /)
  t.equal(fileFailure(t, profileYaml({ cache: [{ allow: 'GET /api/**/x/**', ttlSeconds: 30 }] })).split(':')[0], 'profiles[0].cache[0].allow')
  t.match(fileFailure(t, profileYaml({ cache: [{ allow: 'GET /api/**', ttlSeconds: 0 }] })), /^profiles\[0\]\.cache\[0\]\.ttlSeconds: /)
  t.match(fileFailure(t, 'reads: { cacheMaxMiB: 0 }\n' + profileYaml()), /^reads\.cacheMaxMiB: /)
})

t.test('guard rails: a cap counts state changes and has a limit; allowlist ranges are ranges', async t => {
  t.match(fileFailure(t, profileYaml({ guards: { actions: [{ allow: 'GET /api/machines', perHour: 1 }] } })), /^profiles\[0\]\.guards\.actions\[0\]\.allow: /, 'a read cannot be capped')
  t.equal(fileFailure(t, profileYaml({ guards: { actions: [{ allow: 'POST /api/machines/*/isolate' }] } })),
    'profiles[0].guards.actions[0].perHour: is missing: a cap needs at least one of perHour, perDay, perClientPerHour and perClientPerDay')
  t.equal(fileFailure(t, 'guards: { actions: [{ allow: "POST /api/**/x/**", perDay: 3 }] }\n' + profileYaml()).split(':')[0], 'guards.actions[0].allow',
    'the broker-wide section is named as such')
  t.equal(fileFailure(t, profileYaml({ guards: { indicators: { allowlist: ['10.0.0.0/33'] } } })),
    'profiles[0].guards.indicators.allowlist[0]: 10.0.0.0/33 is not a CIDR range: write it as address/bits, bits at most 32')
  t.match(fileFailure(t, profileYaml({ guards: { protect: { tags: ['Tier0'], lookupCacheSeconds: -1 } } })), /^profiles\[0\]\.guards\.protect\.lookupCacheSeconds: /)
  t.match(fileFailure(t, profileYaml({ guards: { protect: { ids: ["abc' or 1 eq 1"] } } })), /^profiles\[0\]\.guards\.protect\.ids\[0\]: /)
  t.match(fileFailure(t, stringify({ clients: [{ name: 'x', keySha256: 'a'.repeat(64), dryRun: 'yes' }] }) + profileYaml()), /^clients\[0\]\.dryRun: /)
})
