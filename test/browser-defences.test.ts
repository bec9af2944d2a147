import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { getGlobalDispatcher } from 'undici'
import { startBrokerStack, ALL_ROLES } from './helpers/broker.js'
import { clientFor } from './helpers/profiles.js'
import { rawExchange, type RawResponse } from './helpers/raw-socket.js'
import { startUpstream } from './helpers/upstream.js'

// A browser on the same machine is the way in for a web page: DNS rebinding makes a page's
// requests reach 127.0.0.1 under the attacker's host name, and a plain form or fetch POST
// reaches localhost across origins. Both are refused before the key check, msal and the API.

const key = randomBytes(32).toString('base64url')
const upstream = await startUpstream(t)
const keyed = await startBrokerStack(t, {
  simulator: { roles: ALL_ROLES },
  env: { BROKER_UPSTREAM: upstream.url },
  config: (c) => ({
    ...c,
    listen: { host: '10.20.30.40', port: 8080, allowedHosts: ['defender-broker', 'broker.internal:9443'] },
    clients: [clientFor('soar', key)]
  })
})
/** The laptop set-up: no client keys, loopback only; any local process, and so any browser page, can reach it. */
const open = await startBrokerStack(t, { simulator: { roles: ALL_ROLES }, env: { BROKER_UPSTREAM: upstream.url } })
const port = new URL(keyed.url).port

function request (url: string, lines: string[], body = ''): Promise<RawResponse> {
  return rawExchange(url, [...lines, 'Connection: close', '', body].join('\r\n'))
}

function get (url: string, host: string | undefined, extra: string[] = []): Promise<RawResponse> {
  return request(url, ['GET /api/alerts HTTP/1.1', ...(host === undefined ? [] : [`Host: ${host}`]), ...extra])
}

function assertError (t: Test, response: RawResponse, status: number, code: string, message: string, what: string): void {
  t.equal(response.status, status, `${what}: ${status}`)
  t.strictSame(JSON.parse(response.body), { error: { code, message, target: response.headers['x-request-id']?.[0] } }, `${what}: the whole body`)
}

const misdirected = (host: string) => `The Host header ${JSON.stringify(host)} is not one this broker answers to: add it to listen.allowedHosts.`
const FROM_PAGE = 'The request is not allowed: requests from web pages (an Origin header) are refused.'
const CROSS_SITE = 'The request is not allowed: cross-site requests from a browser are refused.'
const badRequest = (reason: string) => `The request cannot be forwarded: ${reason}.`

async function assertStillServes (t: Test, url: string, before: number): Promise<void> {
  t.equal(upstream.requests.length, before, 'nothing reached the upstream')
  const response = await get(url, new URL(url).host, [`X-Broker-Key: ${key}`])
  t.equal(response.status, 200, 'the broker still serves')
}

t.test('Host names the broker answers to: loopback names, the listen address, allowedHosts', async (t) => {
  const hosts = [
    'localhost', `localhost:${port}`, `LOCALHOST:${port}`, `localhost.:${port}`, '127.0.0.1', `127.0.0.1:${port}`,
    `127.8.9.10:${port}`, '[::1]', `[::1]:${port}`, '10.20.30.40', '10.20.30.40:8080',
    'defender-broker', 'defender-broker:8080', 'Defender-Broker', 'broker.internal:9443'
  ]
  for (const host of hosts) {
    const before = upstream.requests.length
    const response = await get(keyed.url, host, [`X-Broker-Key: ${key}`])
    t.equal(response.status, 200, `${host}: served`)
    t.equal(upstream.requests.length, before + 1)
  }
})

t.test('any other Host: 421 BrokerMisdirected, nothing forwarded (DNS rebinding)', async (t) => {
  const hosts = [
    'evil.example', `evil.example:${port}`, 'broker.internal', 'broker.internal:80', `localhost.evil.example:${port}`,
    `127.0.0.1.nip.io:${port}`, '10.20.30.41:8080', 'defender-broker.evil.example', `0.0.0.0:${port}`, `[::2]:${port}`,
    '[::ffff:127.0.0.1]', '2130706433', '127.1', '0x7f000001', 'EVIL.example'
  ]
  for (const host of hosts) {
    const before = upstream.requests.length
    assertError(t, await get(keyed.url, host, [`X-Broker-Key: ${key}`]), 421, 'BrokerMisdirected', misdirected(host.toLowerCase()), host)
    t.equal(upstream.requests.length, before, `${host}: nothing forwarded`)
  }
  await assertStillServes(t, keyed.url, upstream.requests.length)
})

t.test('a Host that is not one plain host, or not exactly one Host: 400', async (t) => {
  const before = upstream.requests.length
  const malformed = badRequest('its Host header is not a host name or address with an optional port')
  for (const host of ['localhost:80@evil.example', `evil.example/${port}`, 'localhost:abc', 'localhost evil.example', 'localhost, evil.example', '', 'local%68ost', '[::1']) {
    assertError(t, await get(keyed.url, host, [`X-Broker-Key: ${key}`]), 400, 'BrokerBadRequest', malformed, JSON.stringify(host))
  }
  assertError(t, await get(keyed.url, 'localhost', ['Host: evil.example', `X-Broker-Key: ${key}`]), 400, 'BrokerBadRequest',
    badRequest('it has more than one Host header'), 'two Host headers, the first acceptable')
  assertError(t, await get(keyed.url, 'evil.example', ['Host: localhost', `X-Broker-Key: ${key}`]), 400, 'BrokerBadRequest',
    badRequest('it has more than one Host header'), 'two Host headers, the second acceptable')
  assertError(t, await get(keyed.url, 'localhost', ['host: localhost', `X-Broker-Key: ${key}`]), 400, 'BrokerBadRequest',
    badRequest('it has more than one Host header'), 'the same Host twice')
  assertError(t, await get(keyed.url, undefined, [`X-Broker-Key: ${key}`]), 400, 'BrokerBadRequest',
    badRequest('it has no Host header'), 'no Host header')
  assertError(t, await request(keyed.url, ['GET /api/alerts HTTP/1.0', `X-Broker-Key: ${key}`]), 400, 'BrokerBadRequest',
    badRequest('it has no Host header'), 'HTTP/1.0 with no Host header')
  await assertStillServes(t, keyed.url, before)
})

t.test('requests a web page makes: 403 for any Origin or a cross-site Sec-Fetch-Site', async (t) => {
  const before = upstream.requests.length
  const host = `127.0.0.1:${port}`
  const cases: Array<[string, string]> = [
    ['Origin: https://evil.example', FROM_PAGE],
    ['Origin: null', FROM_PAGE],
    [`Origin: http://${host}`, FROM_PAGE],
    ['Origin: ', FROM_PAGE],
    ['Sec-Fetch-Site: cross-site', CROSS_SITE],
    ['Sec-Fetch-Site: same-site', CROSS_SITE],
    ['Sec-Fetch-Site: Cross-Site', CROSS_SITE]
  ]
  for (const [header, message] of cases) {
    assertError(t, await get(keyed.url, host, [header, `X-Broker-Key: ${key}`]), 403, 'BrokerForbidden', message, header)
  }
  t.equal(upstream.requests.length, before, 'nothing forwarded')
  for (const header of ['Sec-Fetch-Site: same-origin', 'Sec-Fetch-Site: none']) {
    t.equal((await get(keyed.url, host, [header, `X-Broker-Key: ${key}`])).status, 200, `${header}: served (the user typed the URL)`)
  }
})

t.test('these checks come before the key check: no key, and still 421 or 403, never 401', async (t) => {
  const before = upstream.requests.length
  assertError(t, await get(keyed.url, 'evil.example'), 421, 'BrokerMisdirected', misdirected('evil.example'), 'bad Host, no key')
  assertError(t, await get(keyed.url, `127.0.0.1:${port}`, ['Origin: https://evil.example']), 403, 'BrokerForbidden', FROM_PAGE, 'Origin, no key')
  assertError(t, await get(keyed.url, 'evil.example', ['Origin: https://evil.example']), 421, 'BrokerMisdirected', misdirected('evil.example'), 'both: Host first')
  t.equal((await get(keyed.url, `127.0.0.1:${port}`)).status, 401, 'a good Host and no Origin reach the key check')
  t.equal(upstream.requests.length, before)
})

t.test('a CSRF-shaped POST from a page (text/plain, no preflight) to a broker with no keys: 403, nothing forwarded', async (t) => {
  const before = upstream.requests.length
  const body = '{"Comment":"isolated by a web page","IsolationType":"Full"}'
  const response = await request(open.url, [
    'POST /api/machines/1e5bc9d7e413ddd7902c2932e418702b84d0cc07/isolate HTTP/1.1',
    `Host: ${new URL(open.url).host}`,
    'Origin: https://evil.example',
    'Referer: https://evil.example/cats.html',
    'Sec-Fetch-Site: cross-site',
    'Sec-Fetch-Mode: no-cors',
    'Sec-Fetch-Dest: empty',
    'Content-Type: text/plain;charset=UTF-8',
    `Content-Length: ${body.length}`
  ], body)
  assertError(t, response, 403, 'BrokerForbidden', FROM_PAGE, 'the POST')
  t.equal(upstream.requests.length, before, 'the upstream never saw it')
  t.equal(open.simulator.defender.requests.length, 0, 'nor did the simulator')
})

t.test('a DNS-rebinding read (same-origin to the page, the attacker\'s Host) from a broker with no keys: 421', async (t) => {
  const before = upstream.requests.length
  const response = await get(open.url, `rebind.evil.example:${new URL(open.url).port}`, ['Sec-Fetch-Site: same-origin', 'Sec-Fetch-Mode: cors'])
  assertError(t, response, 421, 'BrokerMisdirected', misdirected(`rebind.evil.example:${new URL(open.url).port}`), 'the read')
  t.equal(upstream.requests.length, before)
})

t.test('OPTIONS never answers with CORS headers', async (t) => {
  const before = upstream.requests.length
  const preflight = await request(open.url, [
    'OPTIONS /api/machines/x/isolate HTTP/1.1',
    `Host: ${new URL(open.url).host}`,
    'Origin: https://evil.example',
    'Access-Control-Request-Method: POST',
    'Access-Control-Request-Headers: content-type, x-broker-key',
    'Access-Control-Request-Private-Network: true'
  ])
  assertError(t, preflight, 403, 'BrokerForbidden', FROM_PAGE, 'a preflight')
  t.same(Object.keys(preflight.headers).filter((name) => name.startsWith('access-control-')), [], 'no Access-Control-* header')
  t.equal(upstream.requests.length, before, 'the preflight was not forwarded')

  const plain = await request(open.url, ['OPTIONS /api/alerts HTTP/1.1', `Host: ${new URL(open.url).host}`])
  t.same(Object.keys(plain.headers).filter((name) => name.startsWith('access-control-')), [], 'an OPTIONS with no Origin: no Access-Control-* header either')
})

t.test('refused before msal: answered at once while no token can be had', async (t) => {
  const stuck = await startBrokerStack(t, {
    ready: false,
    simulator: { roles: ALL_ROLES },
    env: { BROKER_UPSTREAM: upstream.url },
    beforeStart: (simulator) => simulator.entra.setMode('hang')
  })
  const before = upstream.requests.length
  const host = new URL(stuck.url).host
  assertError(t, await get(stuck.url, 'evil.example'), 421, 'BrokerMisdirected', misdirected('evil.example'), 'bad Host')
  assertError(t, await get(stuck.url, host, ['Origin: https://evil.example']), 403, 'BrokerForbidden', FROM_PAGE, 'Origin')
  t.equal(stuck.simulator.entra.issuedTokens.length, 0, 'no token was ever issued')
  t.equal(upstream.requests.length, before)
})

t.test('the broker serves after all of it', async (t) => {
  const health = await getGlobalDispatcher().request({ origin: open.url, path: '/healthz', method: 'GET' })
  await health.body.dump()
  t.equal(health.statusCode, 200)
  await assertStillServes(t, keyed.url, upstream.requests.length)
})
