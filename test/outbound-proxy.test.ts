import t, { type Test } from 'tap'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createOutboundDispatcher } from '../src/outbound/dispatcher.js'
import { createTestPki } from '../src/simulator/index.js'
import type { TokenFailure } from '../src/tokens/token-error.js'
import { startBrokerStack, type BrokerStack, type BrokerStackOptions, getAlerts, statusText } from './helpers/broker.js'
import { skipWithoutTinyproxy, startTinyproxy } from './helpers/tinyproxy.js'

// Debian's tinyproxy, a real forward proxy, carries the traffic; without it these are skipped
// (and fail under CI, which must run them).
const SCENARIO = { timeout: 20_000, skip: skipWithoutTinyproxy(t) }
const pki = await createTestPki()

const portOf = (url: string): string => new URL(url).port

/** The broker with `env` as its outbound environment (the proxy variables), not process.env. */
function proxiedStack (t: Test, env: Record<string, string>, options: BrokerStackOptions = {}): Promise<BrokerStack> {
  return startBrokerStack(t, { simulator: { pki }, ...options, deps: { env, ...options.deps } })
}

t.test('Entra ID\'s and the API\'s traffic both go through the proxy, tunnelled with CONNECT', SCENARIO, async (t) => {
  const proxy = await startTinyproxy(t)
  const stack = await proxiedStack(t, { HTTPS_PROXY: proxy.url, HTTP_PROXY: proxy.url })
  const { entra, defender } = stack.simulator
  t.equal(await getAlerts(stack), 200)

  const connects = proxy.connects()
  t.ok(connects.includes(`127.0.0.1:${portOf(entra.url)}`), 'the token request (msal-node\'s) went through the proxy')
  t.ok(connects.includes(`127.0.0.1:${portOf(defender.url)}`), 'and so did the API request')
  t.same(proxy.forwarded(), [], 'both in a CONNECT tunnel: the proxy never sees a request, its headers or the token')
  t.match(proxy.log(), /Established connection to host "127\.0\.0\.1"/)
  for (const token of entra.issuedTokens) t.notMatch(proxy.log(), token)
  t.equal(defender.requests.length, 1)
})

t.test('CONNECT only to the ports the proxy allows: the token endpoint\'s and the API\'s', SCENARIO, async (t) => {
  // The ports are known once the simulator is up; the proxy is started before the config loads.
  let proxy: Awaited<ReturnType<typeof startTinyproxy>> | undefined
  const env: Record<string, string> = {}
  const stack = await proxiedStack(t, env, {
    beforeStart: async (simulator) => {
      proxy = await startTinyproxy(t, { connectPorts: [Number(portOf(simulator.entra.url)), Number(portOf(simulator.defender.url))] })
      Object.assign(env, { HTTPS_PROXY: proxy.url, HTTP_PROXY: proxy.url })
    }
  })
  t.equal(await getAlerts(stack), 200)
  t.same(new Set(proxy?.connects()), new Set([`127.0.0.1:${portOf(stack.simulator.entra.url)}`, `127.0.0.1:${portOf(stack.simulator.defender.url)}`]))
})

t.test('NO_PROXY: a listed host:port is reached directly, and the proxy hears nothing of it', SCENARIO, async (t) => {
  await t.test('the API bypasses the proxy', async (t) => {
    const proxy = await startTinyproxy(t)
    const env: Record<string, string> = { HTTPS_PROXY: proxy.url, HTTP_PROXY: proxy.url }
    const stack = await proxiedStack(t, env, {
      beforeStart: (simulator) => { env.NO_PROXY = `localhost, 127.0.0.1:${portOf(simulator.defender.url)}` }
    })
    t.equal(await getAlerts(stack), 200)
    const { entra, defender } = stack.simulator
    t.same(new Set(proxy.connects()), new Set([`127.0.0.1:${portOf(entra.url)}`]), 'only the token requests went through the proxy')
    t.notMatch(proxy.log(), `:${portOf(defender.url)}`, 'nothing in the proxy\'s log about the API')
    t.equal(defender.requests.length, 1)
  })

  await t.test('the token endpoint bypasses the proxy', async (t) => {
    const proxy = await startTinyproxy(t)
    const env: Record<string, string> = { HTTPS_PROXY: proxy.url, HTTP_PROXY: proxy.url }
    const stack = await proxiedStack(t, env, {
      beforeStart: (simulator) => { env.no_proxy = `127.0.0.1:${portOf(simulator.entra.url)}` }
    })
    t.equal(await getAlerts(stack), 200)
    t.same(new Set(proxy.connects()), new Set([`127.0.0.1:${portOf(stack.simulator.defender.url)}`]))
    t.notMatch(proxy.log(), `:${portOf(stack.simulator.entra.url)}`)
  })
})

t.test('the outbound environment is the one given: process.env\'s NO_PROXY does not sneak in', SCENARIO, async (t) => {
  const proxy = await startTinyproxy(t)
  const saved = process.env.NO_PROXY
  process.env.NO_PROXY = '127.0.0.1'
  t.teardown(() => {
    if (saved === undefined) delete process.env.NO_PROXY
    else process.env.NO_PROXY = saved
  })
  const stack = await proxiedStack(t, { HTTPS_PROXY: proxy.url, HTTP_PROXY: proxy.url })
  t.equal(await getAlerts(stack), 200)
  t.equal(new Set(proxy.connects()).size, 2, 'both went through the proxy, as the given environment says')
})

t.test('proxy credentials in the URL are used, and never shown', SCENARIO, async (t) => {
  const user = 'broker'
  const password = 'Canary-Proxy-Pass-5e1f0a'
  const basic = Buffer.from(`${user}:${password}`).toString('base64')
  const proxy = await startTinyproxy(t, { basicAuth: { user, password } })
  const withPassword = `http://${user}:${password}@127.0.0.1:${proxy.port}`

  await t.test('the right password', async (t) => {
    const stack = await proxiedStack(t, { HTTPS_PROXY: withPassword, HTTP_PROXY: withPassword })
    t.equal(await getAlerts(stack), 200)
    t.equal(new Set(proxy.connects()).size, 2, 'tunnels to both were opened for the authenticated client')
    const shown = stack.logs.text() + await statusText(stack)
    t.notMatch(shown, password, 'no password in the logs or /status')
    t.notMatch(shown, basic, 'nor its Basic encoding')
  })

  await t.test('a wrong password: a clear failure, still no password', async (t) => {
    const wrong = 'Canary-Wrong-Pass-93bd77'
    const url = `http://${user}:${wrong}@127.0.0.1:${proxy.port}`
    const stack = await proxiedStack(t, { HTTPS_PROXY: url, HTTP_PROXY: url }, { ready: false })
    const holder = stack.app.profiles[0]?.tokens
    if (holder === undefined) throw new TypeError('no profile')
    const failure = holder.status().lastError ?? (await once(holder, 'failed') as [TokenFailure])[0]
    // tinyproxy answers a CONNECT with wrong credentials with 401 rather than 407.
    t.strictSame({ code: failure.code, message: failure.message }, {
      code: 'proxy_authentication_required',
      message: `${stack.simulator.entra.url} could not be reached: the proxy refused the credentials (401): check the user and password in the proxy URL`
    })
    const status = JSON.parse(await statusText(stack)) as { profiles: Array<Record<string, unknown>> }
    t.match(status.profiles[0], { token: { state: 'none' }, lastError: { code: 'proxy_authentication_required' } })
    t.match(stack.logs.lines.find((line) => line.msg === 'token request failed'), {
      code: 'proxy_authentication_required',
      hint: /the proxy refused the credentials/
    })
    const shown = stack.logs.text() + JSON.stringify(status)
    t.notMatch(shown, wrong)
    t.notMatch(shown, Buffer.from(`${user}:${wrong}`).toString('base64'))
  })
})

t.test('managed identity endpoints are never sent through the proxy', SCENARIO, async (t) => {
  const proxy = await startTinyproxy(t)
  const listen = async () => {
    const server = createServer((_req, res) => res.end('{}'))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    t.teardown(() => new Promise((resolve) => server.close(resolve)))
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  }
  const [identityEndpoint, other] = await Promise.all([listen(), listen()])
  const dispatcher = createOutboundDispatcher({
    connectTimeoutMs: 5_000,
    env: { HTTP_PROXY: proxy.url, IDENTITY_ENDPOINT: `${identityEndpoint}/msi/token` }
  })
  t.teardown(() => dispatcher.close())
  for (const origin of [identityEndpoint, other]) {
    const res = await dispatcher.request({ origin, path: '/', method: 'GET' })
    await res.body.dump()
    t.equal(res.statusCode, 200)
  }
  t.same(proxy.connects(), [`127.0.0.1:${portOf(other)}`], 'only the other origin went through the proxy')
})
