import t, { type Test } from 'tap'
import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import { request } from 'undici'
import { createTestPki, type TestPki } from '../src/simulator/index.js'
import type { TokenFailure } from '../src/tokens/token-error.js'
import type { TokenHolder } from '../src/tokens/token-holder.js'
import { startBrokerStack, type BrokerStack, type BrokerStackOptions, holderOf, statusOf } from './helpers/broker.js'
import { skipWithoutTinyproxy, startTinyproxy, type Tinyproxy } from './helpers/tinyproxy.js'

// BROKER_CA_FILE is the only CA the broker trusts beyond Node's: the helper's shortcut (trusting
// the simulator's CA whatever the config says) is off in every case here.
const SCENARIO = { timeout: 20_000 }
const UNTRUSTED = 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'

const pki = await createTestPki()
const otherPki = await createTestPki()
const skipProxied = skipWithoutTinyproxy(t)

async function nextFailure (holder: TokenHolder): Promise<TokenFailure> {
  return holder.status().lastError ?? (await once(holder, 'failed') as [TokenFailure])[0]
}

function caFile (t: Test, ...pems: string[]): string {
  const file = join(t.testdir(), 'ca.pem')
  writeFileSync(file, pems.join('\n'))
  return file
}

function proxyEnv (proxy: Tinyproxy | undefined): Record<string, string> {
  return proxy === undefined ? {} : { HTTPS_PROXY: proxy.url, HTTP_PROXY: proxy.url }
}

function caStack (t: Test, file: string | undefined, proxy: Tinyproxy | undefined, options: BrokerStackOptions = {}): Promise<BrokerStack> {
  return startBrokerStack(t, {
    simulator: { pki },
    trustSimulatorCa: false,
    ...options,
    env: { ...(file === undefined ? {} : { BROKER_CA_FILE: file }), ...options.env },
    deps: { env: proxyEnv(proxy) }
  })
}

/** The Defender API's stand-in over HTTPS, with a certificate from `issuer`. */
async function startHttpsUpstream (t: Test, issuer: TestPki): Promise<{ url: string, authorizations: string[] }> {
  const authorizations: string[] = []
  const server: Server = createServer({ key: issuer.serverKeyPem, cert: issuer.serverCertPem }, (req, res) => {
    authorizations.push(req.headers.authorization ?? '')
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end('{"value":[]}')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve) }))
  return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, authorizations }
}

const ROUTES: Array<[string, boolean]> = [['directly', false], ['through the proxy\'s CONNECT tunnel', true]]

for (const [route, proxied] of ROUTES) {
  t.test(`BROKER_CA_FILE, ${route}`, { ...SCENARIO, skip: proxied ? skipProxied : false }, async (t) => {
    const proxy = proxied ? await startTinyproxy(t) : undefined

    await t.test('the token endpoint\'s CA in BROKER_CA_FILE: trusted', async (t) => {
      const file = caFile(t, pki.caCertPem)
      const stack = await caStack(t, file, proxy)
      t.equal(stack.config.extraCaPem, pki.caCertPem, 'the file was loaded')
      t.equal(holderOf(stack).status().state, 'valid')
      if (proxy !== undefined) t.ok(proxy.connects().includes(`127.0.0.1:${new URL(stack.simulator.entra.url).port}`), 'through the tunnel')
    })

    await t.test('another CA in BROKER_CA_FILE: refused with the TLS code in /status and a hint in the log', async (t) => {
      const stack = await caStack(t, caFile(t, otherPki.caCertPem), proxy, { ready: false })
      const failure = await nextFailure(holderOf(stack))
      const message = `${stack.simulator.entra.url} could not be reached: its TLS certificate is not trusted (${UNTRUSTED})`
      t.strictSame({ code: failure.code, message: failure.message }, { code: UNTRUSTED, message })
      t.match(await statusOf(stack), { token: { state: 'none' }, lastError: { code: UNTRUSTED, message } })
      t.match(stack.logs.lines.find((line) => line.msg === 'token request failed'), {
        code: UNTRUSTED,
        hint: /is not trusted: give the CA that issued it in BROKER_CA_FILE/
      })
      t.equal(stack.simulator.entra.tokenRequests, 0, 'nothing was sent to an endpoint that could not prove who it is')
    })

    await t.test('no BROKER_CA_FILE: Node\'s roots alone do not trust the simulator', async (t) => {
      const stack = await caStack(t, undefined, proxy, { ready: false })
      t.equal(stack.config.extraCaPem, undefined)
      t.equal((await nextFailure(holderOf(stack))).code, UNTRUSTED)
    })

    await t.test('the API\'s CA too: one file for both, and an API whose CA is missing gets 502 with the TLS code', async (t) => {
      const upstream = await startHttpsUpstream(t, otherPki)
      const both = await caStack(t, caFile(t, pki.caCertPem, otherPki.caCertPem), proxy, { env: { BROKER_UPSTREAM: upstream.url } })
      const ok = await request(`${both.url}/api/alerts`)
      await ok.body.dump()
      t.equal(ok.statusCode, 200, 'the API over https, trusted through BROKER_CA_FILE')
      t.equal(upstream.authorizations.at(-1), `Bearer ${both.simulator.entra.issuedTokens[0]}`)
      if (proxy !== undefined) t.ok(proxy.connects().includes(`127.0.0.1:${new URL(upstream.url).port}`))

      const entraOnly = await caStack(t, caFile(t, pki.caCertPem), proxy, { env: { BROKER_UPSTREAM: upstream.url } })
      const refused = await request(`${entraOnly.url}/api/alerts`)
      const body = await refused.body.json() as { error: { code: string, message: string } }
      t.equal(refused.statusCode, 502)
      t.match(body.error, { code: 'BrokerUpstreamUnreachable', message: new RegExp(`${UNTRUSTED}`) })
      t.equal(upstream.authorizations.length, 1, 'the token was not sent to an API that could not prove who it is')
    })
  })
}
