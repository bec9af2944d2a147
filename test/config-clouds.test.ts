import { join } from 'node:path'
import t from 'tap'
import { stringify } from 'yaml'
import { CLOUD_PRESETS, KNOWN_UPSTREAM_HOSTS, isKnownUpstream } from '../src/config/clouds.js'
import { loadConfig } from '../src/config/load.js'
import { isLoopbackHost } from '../src/config/origin.js'

const TENANT = '00000000-0000-0000-0000-000000000000'
const CLIENT = '11111111-1111-1111-1111-111111111111'
const secretEnv = { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT, AZURE_CLIENT_SECRET: 'inline-secret' }

// Microsoft Learn, "Microsoft Defender for Endpoint for US Government customers", section API
const expected = {
  public: ['https://login.microsoftonline.com', 'https://api.securitycenter.microsoft.com', 'https://api.securitycenter.microsoft.com/.default'],
  gcc: ['https://login.microsoftonline.com', 'https://api-gcc.securitycenter.microsoft.us', 'https://api-gcc.securitycenter.microsoft.us/.default'],
  'gcc-high': ['https://login.microsoftonline.us', 'https://api-gov.securitycenter.microsoft.us', 'https://api-gov.securitycenter.microsoft.us/.default'],
  dod: ['https://login.microsoftonline.us', 'https://api-gov.securitycenter.microsoft.us', 'https://api-gov.securitycenter.microsoft.us/.default']
} as const

t.test('each cloud resolves to its authority, upstream and scope', async t => {
  for (const [cloud, [authorityHost, upstream, scope]] of Object.entries(expected)) {
    t.same(CLOUD_PRESETS[cloud as keyof typeof expected], { authorityHost, upstream, scope }, `${cloud} preset`)
    const [profile] = loadConfig({ env: { ...secretEnv, BROKER_CLOUD: cloud } }).profiles
    t.match(profile, { cloud, authorityHost, upstream, scope, customAuthority: false }, `${cloud} via BROKER_CLOUD`)
  }
})

t.test('a profile\'s own upstream keeps the cloud\'s authority and scope', async t => {
  const dir = t.testdir({
    'broker.yaml': stringify({
      profiles: [{
        name: 'eu',
        basePath: '/',
        tenantId: TENANT,
        clientId: CLIENT,
        credential: { type: 'managedIdentity' },
        upstream: 'https://eu.api.security.microsoft.com'
      }]
    })
  })
  t.match(loadConfig({ argvConfigPath: join(dir, 'broker.yaml'), env: {} }).profiles[0], {
    cloud: 'public',
    authorityHost: 'https://login.microsoftonline.com',
    upstream: 'https://eu.api.security.microsoft.com',
    scope: 'https://api.securitycenter.microsoft.com/.default'
  })
})

t.test('known upstream hosts', async t => {
  for (const host of [
    'api.securitycenter.microsoft.com',
    'api.securitycenter.windows.com',
    'api.security.microsoft.com',
    'us.api.security.microsoft.com',
    'eu.api.security.microsoft.com',
    'uk.api.security.microsoft.com',
    'au.api.security.microsoft.com',
    'api-us.securitycenter.microsoft.com',
    'api-eu.securitycenter.microsoft.com',
    'api-uk.securitycenter.microsoft.com',
    'api-gcc.securitycenter.microsoft.us',
    'api-gov.securitycenter.microsoft.us'
  ]) {
    t.ok(KNOWN_UPSTREAM_HOSTS.includes(host), host)
    t.ok(isKnownUpstream(`https://${host}`), `https://${host}`)
  }
  for (const preset of Object.values(CLOUD_PRESETS)) t.ok(isKnownUpstream(preset.upstream), preset.upstream)
  t.notOk(isKnownUpstream('http://api.securitycenter.microsoft.com'), 'http')
  t.notOk(isKnownUpstream('https://api.securitycenter.microsoft.com:8443'), 'another port')
  t.notOk(isKnownUpstream('https://api.securitycenter.microsoft.com.evil.test'), 'another host')
  t.notOk(isKnownUpstream('not a url'), 'not a URL')
  t.ok(Object.isFrozen(KNOWN_UPSTREAM_HOSTS) && Object.isFrozen(CLOUD_PRESETS) && Object.isFrozen(CLOUD_PRESETS.dod))
})

t.test('loopback hosts', async t => {
  for (const host of ['127.0.0.1', '127.255.0.9', 'localhost', 'LOCALHOST', 'localhost.', '::1', '[::1]']) t.ok(isLoopbackHost(host), host)
  for (const host of ['0.0.0.0', '10.0.0.1', '128.0.0.1', '127.0.0.1.nip.io', 'localhost.evil.test', '::', '[::]', 'example.com']) {
    t.notOk(isLoopbackHost(host), host)
  }
})
