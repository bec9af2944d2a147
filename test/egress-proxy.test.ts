import { execFile } from 'node:child_process'
import { createHash, randomBytes, X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createTcpServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { fetch, ProxyAgent } from 'undici'
import type { Config } from '../src/config/types.js'
import { EGRESS_CA_FILE, egressCaCertificate } from '../src/egress/certificates.js'
import { createTestPki } from '../src/simulator/index.js'
import { ALL_ROLES, holderOf, startBrokerStack, type BrokerStack } from './helpers/broker.js'
import { missingProgram } from './helpers/programs.js'
import { openConnection } from './helpers/raw-socket.js'
import { runNodeTool, runTool, type ToolRun } from './helpers/tools.js'
import { startUpstream } from './helpers/upstream.js'

// The egress proxy, end to end with the clients tools use, configured only through their own
// settings: a proxy URL and a CA to trust. The tool gets the API's data; the API sees the real
// token; the tool never does.

const run = promisify(execFile)
const sha256 = (value: string) => createHash('sha256').update(value).digest('hex')

function tempDir (t: Test, name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `broker-${name}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A TLS server of its own, standing for a host the tools also reach through the proxy. */
const pki = await createTestPki()
const elsewhere = createHttpsServer({ cert: pki.serverCertPem, key: pki.serverKeyPem }, (req, res) => {
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ reached: req.url, authorization: req.headers.authorization ?? null }))
})
elsewhere.listen(0, '127.0.0.1')
await once(elsewhere, 'listening')
t.teardown(() => elsewhere.close())
const elsewherePort = (elsewhere.address() as AddressInfo).port

/** A host no CONNECT may reach: it counts every connection it gets. */
let foreignConnections = 0
const foreign = createTcpServer((socket) => {
  foreignConnections++
  socket.destroy()
})
foreign.listen(0, '127.0.0.1')
await once(foreign, 'listening')
t.teardown(() => foreign.close())
const foreignPort = (foreign.address() as AddressInfo).port

const stateDir = tempDir(t, 'state')
const stack = await startBrokerStack(t, {
  simulator: { roles: ALL_ROLES, pageSize: 2 },
  env: { BROKER_EGRESS_PROXY: '1', BROKER_STATE_DIR: stateDir },
  config: (c) => ({ ...c, egressProxy: { ...c.egressProxy, tunnelAllow: [{ host: 'localhost', port: elsewherePort }] } })
})
const caPem = await egressCaCertificate(stack.config)
const caFile = join(tempDir(t, 'ca'), 'broker-ca.pem')
writeFileSync(caFile, caPem)

/** The token the API must have seen, and the tool must never see. */
function realToken (stack: BrokerStack): string {
  const token = holderOf(stack).usable()?.value
  if (token === undefined) throw new TypeError('the broker holds no token')
  return token
}

function assertRealTokenUpstreamOnly (t: Test, stack: BrokerStack, path: string, received: string) {
  const token = realToken(stack)
  const seen = stack.simulator.defender.requests.filter((request) => request.url.startsWith(path))
  t.ok(seen.length > 0, `the API got ${path}`)
  t.equal(seen.at(-1)?.headers.authorization, `Bearer ${token}`, 'the API saw the real token')
  t.notOk(received.includes(token), 'the tool never saw the real token')
  t.notOk(received.includes(token.split('.')[2] as string), 'nor its signature')
}

t.test('curl through the proxy with --cacert gets the alerts from the API\'s own host name', async (t) => {
  const { stdout, stderr } = await run('curl', ['-sS', '--fail-with-body', '--proxy', stack.url, '--cacert', caFile,
    '-D', '-', 'https://api.securitycenter.windows.com/api/alerts'], { env: { PATH: process.env.PATH } })
  t.equal(stderr, '')
  const [head = '', body = ''] = stdout.split(/\r\n\r\n(?=\{)/)
  t.match(head, /^HTTP\/1\.1 200 Connection Established/, 'the tunnel was opened')
  t.match(head, /HTTP\/1\.1 200 OK/, 'the API answered inside it')
  const page = JSON.parse(body) as { value: Array<{ id: string }>, '@odata.nextLink'?: string }
  t.same(page.value.map((alert) => alert.id), stack.simulator.defender.data.alerts.slice(0, 2).map((alert) => alert.id), 'the alerts arrived')
  t.match(page['@odata.nextLink'], /^https:\/\/api\.securitycenter\.windows\.com\/api\/alerts\?/, 'the next page stays on the host the tool asked, so on the proxy')
  assertRealTokenUpstreamOnly(t, stack, '/api/alerts', stdout)
})

t.test('a tool that does not trust the CA yet fails TLS, and the broker says why in its log', async (t) => {
  const failed = await run('curl', ['-sS', '--proxy', stack.url, 'https://api.securitycenter.windows.com/api/alerts'], { env: { PATH: process.env.PATH } })
    .then(() => undefined, (err: { code: number }) => err)
  t.equal(failed?.code, 60, 'curl: the peer certificate cannot be authenticated')
  const warning = await new Promise<Record<string, unknown>>((resolve) => {
    const check = () => {
      const line = stack.logs.lines.find((entry) => entry.level === 40 && entry.host === 'api.securitycenter.windows.com')
      if (line === undefined) setImmediate(check)
      else resolve(line)
    }
    check()
  })
  t.match(warning, { code: /^ERR_SSL_/, msg: /a tool must trust the broker's CA \(defender-token-broker ca\)/ })
})

t.test('undici fetch with a ProxyAgent trusting the CA gets the machines', async (t) => {
  const agent = new ProxyAgent({ uri: stack.url, requestTls: { ca: caPem } })
  t.teardown(() => agent.close())
  const res = await fetch('https://api.security.microsoft.com/api/machines', { dispatcher: agent })
  const text = await res.text()
  t.equal(res.status, 200, text)
  const machines = (JSON.parse(text) as { value: Array<{ id: string }> }).value
  t.same(machines.map((machine) => machine.id), stack.simulator.defender.data.machines.slice(0, machines.length).map((machine) => machine.id))
  t.ok(machines.length > 0, 'machines arrived')
  assertRealTokenUpstreamOnly(t, stack, '/api/machines', `${JSON.stringify([...res.headers])}\n${text}`)
})

const withoutRequests = missingProgram(t, { command: '/usr/bin/python3', versionArgs: ['-c', 'import requests'], neededFor: 'python3-requests through the egress proxy' })

t.test('python3 requests with HTTPS_PROXY and REQUESTS_CA_BUNDLE gets the alerts', { skip: withoutRequests ?? false }, async (t) => {
  const script = [
    'import json, requests',
    'r = requests.get("https://api.securitycenter.windows.com/api/alerts", params={"$top": "2"})',
    'print(json.dumps({"status": r.status_code, "headers": dict(r.headers), "body": r.json()}))'
  ].join('\n')
  const { stdout } = await run('/usr/bin/python3', ['-c', script], {
    env: { PATH: process.env.PATH, HTTPS_PROXY: stack.url, REQUESTS_CA_BUNDLE: caFile }
  })
  const answer = JSON.parse(stdout) as { status: number, body: { value: Array<{ id: string }> } }
  t.equal(answer.status, 200)
  t.same(answer.body.value.map((alert) => alert.id), stack.simulator.defender.data.alerts.slice(0, 2).map((alert) => alert.id), 'the alerts arrived')
  assertRealTokenUpstreamOnly(t, stack, '/api/alerts?%24top=2', stdout)
})

/** What a tool printed last: the token it used, the API's status and body. */
function assertToolGotAlerts (t: Test, run: ToolRun): void {
  t.equal(run.code, 0, run.stderr)
  const out = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as { token: string, status: number, body: string }
  t.equal(out.status, 200, 'the API answered 200 through the broker')
  t.same((JSON.parse(out.body) as { value: Array<{ id: string }> }).value.map((alert) => alert.id),
    stack.simulator.defender.data.alerts.slice(0, 2).map((alert) => alert.id), 'the alerts arrived')
  t.not(out.token, realToken(stack), 'it signed in and got a broker token')
  assertRealTokenUpstreamOnly(t, stack, '/api/alerts', run.stdout + run.stderr)
}

t.test('@azure/identity ClientSecretCredential, its authority and instance discovery as they come, through HTTPS_PROXY', async (t) => {
  const source = `
import { ClientSecretCredential } from '@azure/identity'
import { EnvHttpProxyAgent, fetch } from 'undici'
const credential = new ClientSecretCredential(process.env.TENANT_ID, process.env.CLIENT_ID, 'anything')
const { token } = await credential.getToken('https://api.securitycenter.microsoft.com/.default')
const res = await fetch('https://api.securitycenter.microsoft.com/api/alerts?$top=2', { headers: { authorization: 'Bearer ' + token }, dispatcher: new EnvHttpProxyAgent() })
console.log(JSON.stringify({ token, status: res.status, body: await res.text() }))`
  assertToolGotAlerts(t, await runNodeTool(source, {
    HTTPS_PROXY: stack.url, NODE_EXTRA_CA_CERTS: caFile, TENANT_ID: stack.simulator.tenantId, CLIENT_ID: stack.simulator.clientId
  }))
})

const withoutAzureIdentity = missingProgram(t, { command: '/usr/bin/python3', versionArgs: ['-c', 'import azure.identity, requests'], neededFor: 'python3-azure through the egress proxy' })

t.test('python3 azure-identity and requests, as a script has them, with HTTPS_PROXY and REQUESTS_CA_BUNDLE', { skip: withoutAzureIdentity ?? false }, async (t) => {
  const script = [
    'import json, os, requests',
    'from azure.identity import ClientSecretCredential',
    'credential = ClientSecretCredential(os.environ["TENANT_ID"], os.environ["CLIENT_ID"], "anything")',
    'token = credential.get_token("https://api.securitycenter.microsoft.com/.default").token',
    'r = requests.get("https://api.securitycenter.microsoft.com/api/alerts", params={"$top": "2"}, headers={"Authorization": "Bearer " + token})',
    'print(json.dumps({"token": token, "status": r.status_code, "body": r.text}))'
  ].join('\n')
  assertToolGotAlerts(t, await runTool('/usr/bin/python3', ['-c', script], {
    HTTPS_PROXY: stack.url, REQUESTS_CA_BUNDLE: caFile, TENANT_ID: stack.simulator.tenantId, CLIENT_ID: stack.simulator.clientId
  }))
})

for (const [form, tokenUrl, resource] of [
  ['v2', 'https://login.microsoftonline.com/TENANT/oauth2/v2.0/token', 'scope=https://securitycenter.onmicrosoft.com/windowsatpservice/.default'],
  ['v1', 'https://login.windows.net/TENANT/oauth2/token', 'resource=https://api.securitycenter.windows.com']
] as const) {
  t.test(`the seed's flow (${form}): a token from the sign-in host, then the alerts with it, with only --proxy and --cacert added`, async (t) => {
    const token = await run('curl', ['-sS', '--fail-with-body', '--proxy', stack.url, '--cacert', caFile,
      '-d', `client_id=${stack.simulator.clientId}`, '-d', 'client_secret=anything', '-d', 'grant_type=client_credentials', '-d', resource,
      tokenUrl.replace('TENANT', stack.simulator.tenantId)], { env: { PATH: process.env.PATH } })
    const accessToken = (JSON.parse(token.stdout) as { access_token: string }).access_token
    t.not(accessToken, realToken(stack), 'a broker token, not the real one')
    const alerts = await run('curl', ['-sS', '--fail-with-body', '--proxy', stack.url, '--cacert', caFile,
      '-H', `Authorization: Bearer ${accessToken}`, 'https://api.securitycenter.windows.com/api/alerts'], { env: { PATH: process.env.PATH } })
    t.same((JSON.parse(alerts.stdout) as { value: Array<{ id: string }> }).value.map((alert) => alert.id),
      stack.simulator.defender.data.alerts.slice(0, 2).map((alert) => alert.id), 'the alerts arrived')
    assertRealTokenUpstreamOnly(t, stack, '/api/alerts', token.stdout + alerts.stdout)
  })
}

/** One CONNECT on a raw connection: the head of the answer, and the connection for what follows. */
async function rawConnect (t: Test, url: string, target: string, headers: Record<string, string> = {}) {
  const connection = await openConnection(t, url)
  const lines = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('')
  connection.socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${lines}\r\n`)
  const text = await connection.waitFor(/\r\n\r\n/)
  return { connection, head: text.slice(0, text.indexOf('\r\n\r\n')), text }
}

/** The body of a refusal written on the raw socket, once it is all there. */
async function refusalBody (connection: Awaited<ReturnType<typeof openConnection>>): Promise<{ error: { code: string, message: string, target: string } }> {
  await connection.closed
  const text = connection.text()
  return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4))
}

t.test('a CONNECT to any other host is refused with 403 in the API\'s error shape, and nothing is dialled', async (t) => {
  const target = `127.0.0.1:${foreignPort}`
  const { connection, head } = await rawConnect(t, stack.url, target)
  t.match(head, /^HTTP\/1\.1 403 Forbidden\r\n/)
  const body = await refusalBody(connection)
  t.strictSame(body, {
    error: {
      code: 'BrokerTunnelRefused',
      message: `The egress proxy does not open a tunnel to ${target}: it serves only the Entra ID sign-in and Defender API hosts. Add the host to egressProxy.tunnelAllow for a blind tunnel.`,
      target: body.error.target
    }
  })
  const example = await rawConnect(t, stack.url, 'example.com:443')
  t.match(example.head, /^HTTP\/1\.1 403 /, 'a public host too')
  t.match((await refusalBody(example.connection)).error.code, 'BrokerTunnelRefused')
  const wrongPort = await rawConnect(t, stack.url, 'api.securitycenter.windows.com:8443')
  t.match(wrongPort.head, /^HTTP\/1\.1 403 /, 'an API host on another port is not the API')
  t.equal(foreignConnections, 0, 'nothing was dialled')
  const line = stack.logs.lines.find((entry) => entry.reqId === body.error.target)
  t.match(line, { method: 'CONNECT', path: target, status: 403, code: 'BrokerTunnelRefused' }, 'logged in the request log\'s one shape')
  const metrics = await (await fetch(`${stack.url}/metrics`)).text()
  t.match(metrics, /broker_inbound_rejections_total\{reason="BrokerTunnelRefused"\} 3/, 'counted')
})

t.test('a host of tunnelAllow gets a blind tunnel: its own certificate, no token added', async (t) => {
  const pkiCa = join(tempDir(t, 'pki'), 'ca.pem')
  writeFileSync(pkiCa, pki.caCertPem)
  const { stdout } = await run('curl', ['-sS', '--fail-with-body', '--proxy', stack.url, '--cacert', pkiCa,
    `https://localhost:${elsewherePort}/through`], { env: { PATH: process.env.PATH } })
  t.strictSame(JSON.parse(stdout), { reached: '/through', authorization: null }, 'the host itself answered, with no token')
})

t.test('the CA is kept in the state directory with mode 0600 and printed the same each time', async (t) => {
  t.equal(statSync(stateDir).mode & 0o777, 0o700, 'the directory is 0700')
  const file = join(stateDir, EGRESS_CA_FILE)
  t.equal(statSync(file).mode & 0o777, 0o600, 'the CA file is 0600')
  const kept = readFileSync(file, 'utf8')
  t.match(kept, /-----BEGIN CERTIFICATE-----[\s\S]+-----BEGIN PRIVATE KEY-----/, 'certificate and key together')
  t.notOk(caPem.includes('PRIVATE KEY'), 'what tools are given holds no key')
  t.equal(await egressCaCertificate(stack.config), caPem, 'made once, then read')
  const ca = new X509Certificate(caPem)
  t.ok(ca.ca, 'a CA certificate')
})

/** The certificate the proxy shows for `host`, read by a TLS client inside the tunnel. */
async function leafFor (t: Test, host: string, url = stack.url): Promise<TLSSocket> {
  const { connection, head } = await rawConnect(t, url, `${host}:443`)
  t.match(head, /^HTTP\/1\.1 200 Connection Established$/)
  const tls = tlsConnect({ socket: connection.socket, servername: host, ca: caPem })
  t.teardown(() => tls.destroy())
  await once(tls, 'secureConnect')
  return tls
}

t.test('the leaf certificate names only its host, is short-lived, and is signed by the CA', async (t) => {
  const tls = await leafFor(t, 'api.securitycenter.microsoft.com')
  const cert = tls.getPeerX509Certificate() as X509Certificate
  t.equal(cert.subjectAltName, 'DNS:api.securitycenter.microsoft.com', 'the one name')
  t.ok(cert.checkIssued(new X509Certificate(caPem)), 'issued by the broker\'s CA')
  const lifetime = Date.parse(cert.validTo) - Date.parse(cert.validFrom)
  t.ok(lifetime <= 26 * 3600_000, `lives a day or so (${lifetime / 3600_000} h)`)
  t.notOk(cert.ca, 'not a CA')
  const signIn = await leafFor(t, 'login.microsoftonline.com')
  t.equal((signIn.getPeerX509Certificate() as X509Certificate).subjectAltName, 'DNS:login.microsoftonline.com')
})

t.test('inside a tunnel, the Host must be the CONNECT\'s host', async (t) => {
  const tls = await leafFor(t, 'api.securitycenter.windows.com')
  tls.write('GET /api/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n')
  const chunks: Buffer[] = []
  tls.on('data', (chunk: Buffer) => chunks.push(chunk))
  await once(tls, 'end')
  const text = Buffer.concat(chunks).toString()
  t.match(text, /^HTTP\/1\.1 421 /, 'another host is misdirected there')
  t.match(text, /"code":"BrokerMisdirected"/)
})

t.test('requests inside a sign-in host\'s tunnel never go to the API', async (t) => {
  const before = stack.simulator.defender.requests.length
  const tls = await leafFor(t, 'login.microsoftonline.com')
  tls.write('GET /api/alerts HTTP/1.1\r\nHost: login.microsoftonline.com\r\nConnection: close\r\n\r\n')
  const chunks: Buffer[] = []
  tls.on('data', (chunk: Buffer) => chunks.push(chunk))
  await once(tls, 'end')
  t.match(Buffer.concat(chunks).toString(), /^HTTP\/1\.1 404 /)
  t.equal(stack.simulator.defender.requests.length, before, 'nothing reached the API')
})

t.test('a shutdown lets a request in progress inside a tunnel finish, then closes the tunnel', async (t) => {
  const draining = await startBrokerStack(t, { simulator: { roles: ALL_ROLES }, env: { BROKER_EGRESS_PROXY: '1', BROKER_STATE_DIR: stateDir } })
  const tls = await leafFor(t, 'api.securitycenter.windows.com', draining.url)
  const body = JSON.stringify({ Query: 'DeviceInfo | take 1' })
  const chunks: Buffer[] = []
  tls.on('data', (chunk: Buffer) => chunks.push(chunk))
  tls.on('error', (err) => t.error(err, 'no error on the tunnel'))
  const ended = once(tls, 'close')
  const started = once(draining.app.server, 'request')
  tls.write(`POST /api/advancedqueries/run HTTP/1.1\r\nHost: api.securitycenter.windows.com\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 5)}`)
  const answered = once(draining.simulator.defender, 'request')
  await started
  const closed = draining.app.close()
  tls.write(body.slice(5))
  await answered
  await closed
  await ended
  t.pass('then the tunnel was closed, and the broker with it')
  const text = Buffer.concat(chunks).toString()
  t.match(text, /^HTTP\/1\.1 200 OK\r\n/, 'the request in progress was answered')
  t.match(text, /"Results"/, 'and its body')
})

t.test('a keyed tunnel\'s request that waits on the API outlives the idle limit of connections without a key', async (t) => {
  const key = `KEY-${randomBytes(24).toString('base64url')}`
  const IDLE_MS = 100
  let release: () => void = () => {}
  const held = new Promise<void>((resolve) => { release = resolve })
  const slow = await startUpstream(t, (_req, res) => {
    held.then(() => {
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' })
      res.end('{"value":[{"id":"slow"}]}')
    }, () => res.destroy())
  })
  const keyed = await startBrokerStack(t, {
    simulator: { roles: ALL_ROLES },
    env: { BROKER_EGRESS_PROXY: '1', BROKER_STATE_DIR: stateDir, BROKER_UPSTREAM: slow.url },
    config: (c): Config => ({ ...c, clients: [{ name: 'soar', keySha256: sha256(key), profiles: [], allow: [] }] }),
    deps: { limits: { unauthenticatedIdleTimeoutMs: IDLE_MS } }
  })
  const agent = new ProxyAgent({ uri: keyed.url, token: `Bearer ${key}`, requestTls: { ca: caPem } })
  t.teardown(() => agent.close())
  const answer = fetch('https://api.securitycenter.microsoft.com/api/alerts', { dispatcher: agent })
  await once(slow.server, 'request')
  // Longer than the idle limit: the wait on the API is not idleness.
  await new Promise((resolve) => setTimeout(resolve, IDLE_MS * 3))
  release()
  const res = await answer
  t.equal(res.status, 200)
  t.strictSame(await res.json(), { value: [{ id: 'slow' }] })
})

t.test('with the mode off, a CONNECT still gets 405', async (t) => {
  const off = await startBrokerStack(t, { env: { BROKER_STATE_DIR: tempDir(t, 'off') } })
  const { connection, head } = await rawConnect(t, off.url, 'api.securitycenter.windows.com:443')
  t.match(head, /^HTTP\/1\.1 405 /)
  t.equal((await refusalBody(connection)).error.code, 'BrokerMethodNotAllowed')
})

t.test('with client keys, the key comes in Proxy-Authorization', async (t) => {
  const key = `KEY-${randomBytes(24).toString('base64url')}`
  const keyed = await startBrokerStack(t, {
    simulator: { roles: ALL_ROLES },
    env: { BROKER_EGRESS_PROXY: 'true', BROKER_STATE_DIR: stateDir },
    config: (c): Config => ({ ...c, clients: [{ name: 'nagios', keySha256: sha256(key), profiles: [], allow: ['GET /api/**'] }] })
  })
  t.equal(await egressCaCertificate(keyed.config), caPem, 'a second broker on the same state directory uses the same CA')

  for (const [what, headers] of [
    ['no Proxy-Authorization', {}],
    ['a wrong key as the Basic password', { 'Proxy-Authorization': `Basic ${Buffer.from(`nagios:${key}x`).toString('base64')}` }],
    ['a wrong key as Bearer', { 'Proxy-Authorization': `Bearer ${key}x` }],
    ['the key as the Basic user name', { 'Proxy-Authorization': `Basic ${Buffer.from(`${key}:`).toString('base64')}` }]
  ] as const) {
    const { connection, head } = await rawConnect(t, keyed.url, 'api.securitycenter.windows.com:443', headers)
    t.match(head, /^HTTP\/1\.1 407 Proxy Authentication Required\r\n/, `${what}: 407`)
    t.match(head, /\r\nproxy-authenticate: Basic realm="defender-token-broker"/i, `${what}: Proxy-Authenticate: Basic`)
    t.equal((await refusalBody(connection)).error.code, 'BrokerProxyAuthenticationRequired')
  }
  const foreign = await rawConnect(t, keyed.url, `127.0.0.1:${foreignPort}`)
  t.match(foreign.head, /^HTTP\/1\.1 407 /, 'without a key, not even which hosts are served is told')

  const proxyUrl = new URL(keyed.url)
  proxyUrl.username = 'nagios'
  proxyUrl.password = key
  const { stdout } = await run('curl', ['-sS', '--fail-with-body', '--proxy', proxyUrl.href, '--cacert', caFile,
    'https://api.securitycenter.windows.com/api/alerts?$top=1'], { env: { PATH: process.env.PATH } })
  t.equal((JSON.parse(stdout) as { value: unknown[] }).value.length, 1, 'the key in the proxy URL lets the tool in')
  assertRealTokenUpstreamOnly(t, keyed, '/api/alerts?$top=1', stdout)
  const line = keyed.logs.lines.find((entry) => entry.msg === 'request' && entry.method === 'GET' && entry.client === 'nagios')
  t.ok(line, 'the request is the client\'s')

  const bearer = new ProxyAgent({ uri: keyed.url, token: `Bearer ${key}`, requestTls: { ca: caPem } })
  t.teardown(() => bearer.close())
  const machines = await fetch('https://api.securitycenter.windows.com/api/machines', { dispatcher: bearer })
  t.equal(machines.status, 200, 'the key as Bearer in Proxy-Authorization')
  await machines.body?.cancel()

  const wrongInside = await fetch('https://api.securitycenter.windows.com/api/machines', { dispatcher: bearer, headers: { 'x-broker-key': `${key}x` } })
  t.equal(wrongInside.status, 401, 'a credential of the request\'s own wins over the tunnel\'s')
  await wrongInside.body?.cancel()
  const refusedByRules = await fetch('https://api.securitycenter.windows.com/api/machines/x/isolate', { dispatcher: bearer, method: 'POST', body: '{}' })
  t.equal(refusedByRules.status, 403, 'the client\'s rules apply inside the tunnel')
  await refusedByRules.body?.cancel()
})
