import { generateKeyPairSync, X509Certificate } from 'node:crypto'
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { loadConfig } from '../../src/config/load.js'
import { EGRESS_CA_FILE, LEAF_RENEW_BEFORE_MS, LEAF_VALIDITY_MS, LeafCertificates, loadEgressCa } from '../../src/egress/certificates.js'
import { interceptedHosts } from '../../src/egress/hosts.js'
import { createTestClock } from '../helpers/clock.js'

const PROFILE_ENV = {
  AZURE_TENANT_ID: '00000000-0000-4000-8000-000000000001',
  AZURE_CLIENT_ID: '11111111-1111-4000-8000-000000000002',
  AZURE_CLIENT_SECRET: 'not-used'
}

function tempDir (t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'broker-egress-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

t.test('a leaf is made once per host, kept until an hour before it ends, then made again', async (t) => {
  const clock = createTestClock()
  const ca = await loadEgressCa({ stateDir: tempDir(t), egressProxy: { enabled: true, tunnelAllow: [] } }, clock)
  const leaves = new LeafCertificates(ca, clock)
  const [first, concurrent] = await Promise.all([leaves.leafFor('api.security.microsoft.com'), leaves.leafFor('api.security.microsoft.com')])
  t.equal(concurrent, first, 'tools connecting at once share one mint')
  const cert = new X509Certificate(first.certPem)
  t.equal(cert.subjectAltName, 'DNS:api.security.microsoft.com', 'the host, and nothing else')
  t.equal(cert.subject, 'CN=api.security.microsoft.com')
  t.ok(cert.checkIssued(new X509Certificate(ca.certPem)) && cert.verify(new X509Certificate(ca.certPem).publicKey), 'signed by the CA')
  t.equal(Date.parse(cert.validTo), Math.floor((clock.now() + LEAF_VALIDITY_MS) / 1000) * 1000, 'valid for a day')
  t.not((await leaves.leafFor('login.microsoftonline.com')).certPem, first.certPem, 'another host, another certificate')

  clock.tick(LEAF_VALIDITY_MS - LEAF_RENEW_BEFORE_MS - 1)
  t.equal(await leaves.leafFor('api.security.microsoft.com'), first, 'kept while more than an hour is left')
  clock.tick(1)
  const renewed = await leaves.leafFor('api.security.microsoft.com')
  t.not(renewed, first, 'made again an hour before the end')
  t.ok(Date.parse(new X509Certificate(renewed.certPem).validTo) > Date.parse(cert.validTo), 'and it lasts longer')
  const ip = new X509Certificate((await leaves.leafFor('127.0.0.1')).certPem)
  t.equal(ip.subjectAltName, 'IP Address:127.0.0.1', 'an address is named as an address')
})

t.test('a CA given as files is used as it is, RSA or EC; its key file must be private', async (t) => {
  const dir = tempDir(t)
  const made = await loadEgressCa({ stateDir: dir, egressProxy: { enabled: true, tunnelAllow: [] } })
  const both = readFileSync(join(dir, EGRESS_CA_FILE), 'utf8')
  const certFile = join(dir, 'ca.crt')
  const keyFile = join(dir, 'ca.key')
  writeFileSync(certFile, made.certPem)
  writeFileSync(keyFile, both.slice(both.indexOf('-----BEGIN PRIVATE KEY-----')), { mode: 0o600 })
  const configFile = join(dir, 'broker.json')
  writeFileSync(configFile, JSON.stringify({ stateDir: join(dir, 'unused'), egressProxy: { enabled: true, caCertFile: 'ca.crt', caKeyFile: 'ca.key', tunnelAllow: ['Graph.Microsoft.com', 'proxy.example.com:8443'] } }))
  const config = loadConfig({ argvConfigPath: configFile, env: PROFILE_ENV })
  t.strictSame(config.egressProxy, {
    enabled: true,
    tunnelAllow: [{ host: 'graph.microsoft.com', port: 443 }, { host: 'proxy.example.com', port: 8443 }],
    ca: { certFile, keyFile }
  }, 'the settings as the broker runs on them')
  const given = await loadEgressCa(config)
  t.equal(given.certPem, made.certPem, 'the given CA')
  const leaf = await new LeafCertificates(given).leafFor('api.securitycenter.microsoft.com')
  t.ok(new X509Certificate(leaf.certPem).checkIssued(new X509Certificate(made.certPem)), 'signs the leaves')

  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
  writeFileSync(keyFile, rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }))
  t.ok(await loadEgressCa(config), 'an RSA key is read too')

  chmodSync(keyFile, 0o644)
  t.throws(() => loadConfig({ argvConfigPath: configFile, env: PROFILE_ENV }), {
    code: 'BrokerConfigInvalid',
    message: `egressProxy.caKeyFile: the file ${keyFile} is readable by group or others: run chmod 600 ${keyFile} (for a Kubernetes or compose secret, set its mode to 0400)`
  })
  writeFileSync(configFile, JSON.stringify({ egressProxy: { caCertFile: 'ca.crt' } }))
  t.throws(() => loadConfig({ argvConfigPath: configFile, env: PROFILE_ENV }), { message: /^egressProxy\.caCertFile: is set without its pair/ })
  writeFileSync(configFile, JSON.stringify({ egressProxy: { tunnelAllow: ['https://example.com'] } }))
  t.throws(() => loadConfig({ argvConfigPath: configFile, env: PROFILE_ENV }), { message: /egressProxy\.tunnelAllow\[0\]: must be a host name with an optional :port/ })
})

t.test('BROKER_EGRESS_PROXY turns the mode on or off over the file', async (t) => {
  t.equal(loadConfig({ env: PROFILE_ENV }).egressProxy.enabled, false, 'off by default')
  t.equal(loadConfig({ env: { ...PROFILE_ENV, BROKER_EGRESS_PROXY: '1' } }).egressProxy.enabled, true)
  t.throws(() => loadConfig({ env: { ...PROFILE_ENV, BROKER_EGRESS_PROXY: 'yes' } }), { message: 'BROKER_EGRESS_PROXY: must be true, false, 1 or 0' })
})

t.test('the intercepted hosts: the clouds\' sign-in hosts, the documented API hosts, each upstream', async (t) => {
  const config = loadConfig({ env: { ...PROFILE_ENV, BROKER_UPSTREAM: 'http://127.0.0.1:9443' } })
  const hosts = interceptedHosts(config)
  t.equal(hosts.get('login.microsoftonline.com:443'), 'sign-in')
  t.equal(hosts.get('login.windows.net:443'), 'sign-in')
  t.equal(hosts.get('api.securitycenter.windows.com:443'), 'api')
  t.equal(hosts.get('api-gov.securitycenter.microsoft.us:443'), 'api')
  t.equal(hosts.get('127.0.0.1:9443'), 'api', 'the profile\'s own upstream')
  t.equal(hosts.get('login.microsoftonline.us:443'), undefined, 'no sign-in host of a cloud no profile uses')
  t.equal(hosts.get('graph.microsoft.com:443'), undefined)
  t.equal(hosts.get('api.securitycenter.windows.com:8443'), undefined, 'another port is another host')
})
