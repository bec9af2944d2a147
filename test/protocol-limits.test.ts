import { once } from 'node:events'
import type { Socket } from 'node:net'
import t, { type Test } from 'tap'
import { request } from 'undici'
import {
  DEFAULT_CONNECTIONS_CHECKING_INTERVAL_MS, DEFAULT_HEADERS_TIMEOUT_MS, DEFAULT_KEEP_ALIVE_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS,
  DEFAULT_MAX_HEADER_SIZE, DEFAULT_MAX_REQUESTS_PER_SOCKET, DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_UNAUTHENTICATED_IDLE_TIMEOUT_MS
} from '../src/inbound/limits.js'
import { REPLAYABLE_BODY_LIMIT } from '../src/proxy/request-body.js'
import { startBrokerStack, ALL_ROLES } from './helpers/broker.js'
import { openConnection, rawExchange, parseRawResponses, type RawResponse } from './helpers/raw-socket.js'
import { cliEnv, spawnCli } from './helpers/spawn.js'
import { readBody, startUpstream } from './helpers/upstream.js'

// The HTTP server's own limits and the protocol features the broker refuses or handles itself.

const unauthorizedOnce = new Set<string>()
const upstream = await startUpstream(t, (req, res, recorded) => {
  readBody(req, recorded).then(() => {
    const url = req.url ?? ''
    if (url.startsWith('/api/paged')) {
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' })
      return res.end(JSON.stringify({ value: [], '@odata.nextLink': `${upstream.url}/api/paged?$skip=1` }))
    }
    if (url.startsWith('/api/unauthorized-once') && !unauthorizedOnce.has(url)) {
      unauthorizedOnce.add(url)
      res.writeHead(401, { 'content-type': 'application/json; charset=utf-8' })
      return res.end('{"error":{"code":"Unauthorized","message":"Forced."}}')
    }
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' })
    res.end('{"value":[]}')
  }, () => res.destroy())
})
const stack = await startBrokerStack(t, { simulator: { roles: ALL_ROLES }, env: { BROKER_UPSTREAM: upstream.url } })
const host = new URL(stack.url).host

function badRequest (reason: string) {
  return { code: 'BrokerBadRequest', message: `The request cannot be forwarded: ${reason}.` }
}

function assertError (t: Test, response: RawResponse, status: number, expected: { code: string, message: string }): void {
  t.equal(response.status, status, `status ${status}`)
  const id = response.headers['x-request-id']
  t.equal(id?.length, 1, 'one x-request-id')
  t.same(response.headers.connection, ['close'], 'the connection is closed after the answer')
  t.strictSame(JSON.parse(response.body), { error: { ...expected, target: id?.[0] } }, 'the whole error body')
}

async function assertStillServes (t: Test, before: number, marker: string): Promise<void> {
  t.equal(upstream.requests.length, before, 'the upstream received nothing')
  const response = await rawExchange(stack.url, `GET /api/alerts?after=${marker} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
  t.equal(response.status, 200, 'the broker still serves')
  t.equal(upstream.requests.at(-1)?.url, `/api/alerts?after=${marker}`)
}

t.test('the server runs with the documented limits', async (t) => {
  const server = stack.app.server as typeof stack.app.server & { insecureHTTPParser?: boolean, maxHeaderSize?: number }
  t.equal(server.headersTimeout, DEFAULT_HEADERS_TIMEOUT_MS, 'headersTimeout')
  t.equal(server.requestTimeout, DEFAULT_REQUEST_TIMEOUT_MS, 'requestTimeout')
  t.equal(server.keepAliveTimeout, DEFAULT_KEEP_ALIVE_TIMEOUT_MS, 'keepAliveTimeout')
  t.equal(server.maxHeaderSize, DEFAULT_MAX_HEADER_SIZE, 'maxHeaderSize')
  t.equal(server.maxRequestsPerSocket, DEFAULT_MAX_REQUESTS_PER_SOCKET, 'maxRequestsPerSocket')
  t.notOk(server.maxConnections, 'Node drops no connection itself: the broker keeps maxConnections (connections.ts)')
  t.equal(server.insecureHTTPParser, false, 'the strict parser, whatever NODE_OPTIONS says')
  t.strictSame({
    headersTimeoutMs: DEFAULT_HEADERS_TIMEOUT_MS,
    requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS,
    keepAliveTimeoutMs: DEFAULT_KEEP_ALIVE_TIMEOUT_MS,
    checkingIntervalMs: DEFAULT_CONNECTIONS_CHECKING_INTERVAL_MS,
    maxHeaderSize: DEFAULT_MAX_HEADER_SIZE,
    maxRequestsPerSocket: DEFAULT_MAX_REQUESTS_PER_SOCKET,
    maxConnections: DEFAULT_MAX_CONNECTIONS,
    unauthenticatedIdleTimeoutMs: DEFAULT_UNAUTHENTICATED_IDLE_TIMEOUT_MS,
    bufferedBody: REPLAYABLE_BODY_LIMIT
  }, {
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 300_000,
    keepAliveTimeoutMs: 72_000,
    checkingIntervalMs: 1_000,
    maxHeaderSize: 16 * 1024,
    maxRequestsPerSocket: 1_000,
    maxConnections: 256,
    unauthenticatedIdleTimeoutMs: 5_000,
    bufferedBody: 1024 * 1024
  }, 'the values docs/security.md documents')
})

t.test('20 KiB of headers: 431 in the API\'s error shape, nothing forwarded', async (t) => {
  const before = upstream.requests.length
  const padding = Array.from({ length: 20 }, (_, i) => `X-Padding-${i}: ${'a'.repeat(1010)}\r\n`).join('')
  const response = await rawExchange(stack.url, `GET /api/alerts HTTP/1.1\r\nHost: ${host}\r\n${padding}Connection: close\r\n\r\n`)
  assertError(t, response, 431, { code: 'BrokerHeadersTooLarge', message: 'The request cannot be forwarded: its headers are too large.' })
  await assertStillServes(t, before, '431')
})

t.test('one header of 20 KiB: 431', async (t) => {
  const before = upstream.requests.length
  const response = await rawExchange(stack.url, `GET /api/alerts HTTP/1.1\r\nHost: ${host}\r\nX-Big: ${'b'.repeat(20 * 1024)}\r\nConnection: close\r\n\r\n`)
  assertError(t, response, 431, { code: 'BrokerHeadersTooLarge', message: 'The request cannot be forwarded: its headers are too large.' })
  await assertStillServes(t, before, '431-one')
})

t.test('12 KiB of headers, under the limit, are forwarded', async (t) => {
  const before = upstream.requests.length
  const padding = Array.from({ length: 12 }, (_, i) => `X-Padding-${i}: ${'a'.repeat(1000)}\r\n`).join('')
  const response = await rawExchange(stack.url, `GET /api/alerts?big HTTP/1.1\r\nHost: ${host}\r\n${padding}Connection: close\r\n\r\n`)
  t.equal(response.status, 200)
  t.equal(upstream.requests.length, before + 1)
  t.equal(upstream.requests.at(-1)?.headers['x-padding-11'], 'a'.repeat(1000))
})

const UPGRADE = badRequest('it asks to switch protocols (Upgrade), which the broker does not do')

t.test('a WebSocket upgrade: 400, never forwarded', async (t) => {
  const before = upstream.requests.length
  const response = await rawExchange(stack.url, [
    'GET /api/alerts HTTP/1.1', `Host: ${host}`, 'Connection: Upgrade', 'Upgrade: websocket',
    'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13', '', ''
  ].join('\r\n'))
  assertError(t, response, 400, UPGRADE)
  await assertStillServes(t, before, 'websocket')
})

t.test('an h2c upgrade with a body: 400, never forwarded', async (t) => {
  const before = upstream.requests.length
  const response = await rawExchange(stack.url, [
    'POST /api/machines/x/isolate HTTP/1.1', `Host: ${host}`, 'Connection: Upgrade, HTTP2-Settings', 'Upgrade: h2c',
    'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA', 'Content-Length: 2', '', '{}'
  ].join('\r\n'))
  assertError(t, response, 400, UPGRADE)
  await assertStillServes(t, before, 'h2c')
})

t.test('Upgrade after an absolute-form target is refused as well', async (t) => {
  const before = upstream.requests.length
  const response = await rawExchange(stack.url,
    `GET http://evil.example/ HTTP/1.1\r\nHost: ${host}\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n`)
  assertError(t, response, 400, UPGRADE)
  await assertStillServes(t, before, 'upgrade-absolute')
})

t.test('Expect: 100-continue is answered by the broker and never forwarded', async (t) => {
  const before = upstream.requests.length
  const connection = await openConnection(t, stack.url)
  const body = '{"Comment":"expect"}'
  connection.socket.write(`POST /api/machines/x/isolate HTTP/1.1\r\nHost: ${host}\r\nExpect: 100-continue\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`)
  await connection.waitFor(/^HTTP\/1\.1 100 Continue\r\n\r\n/)
  t.equal(upstream.requests.length, before, 'nothing upstream before the body is sent')
  connection.socket.write(body)
  await connection.closed
  t.match(connection.text(), /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n/, '100, then the answer')
  t.equal(upstream.requests.length, before + 1)
  const seen = upstream.requests.at(-1)
  t.equal(seen?.headers.expect, undefined, 'no Expect upstream')
  t.equal(seen?.body.toString(), body, 'the body, whole')
})

t.test('any other Expect: 417 in the API\'s error shape, nothing forwarded', async (t) => {
  const before = upstream.requests.length
  const response = await rawExchange(stack.url,
    `POST /api/alerts HTTP/1.1\r\nHost: ${host}\r\nExpect: 200-ok\r\nContent-Length: 3\r\n\r\nabc`)
  assertError(t, response, 417, { code: 'BrokerExpectationFailed', message: 'The request cannot be forwarded: it has an Expect header other than 100-continue.' })
  await assertStillServes(t, before, '417')
})

t.test('bodies are forwarded as bytes, whatever their type: never parsed, never refused for their content', async (t) => {
  const cases: Array<[string | undefined, Buffer]> = [
    ['text/plain', Buffer.from('DeviceInfo | take 1\r\n\u00e9\u0000\u00ff', 'latin1')],
    ['text/plain; charset=utf-8', Buffer.from('{"looks":"like json"}')],
    ['application/json', Buffer.from('{"not": valid json,,,')],
    ['application/json', Buffer.from('{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}')],
    ['application/x-www-form-urlencoded', Buffer.from('a=1&a=2&b=%zz')],
    ['multipart/form-data; boundary=x', Buffer.from('--x\r\nContent-Disposition: form-data; name="f"\r\n\r\nv\r\n--x--\r\n')],
    ['application/octet-stream', Buffer.from(Array.from({ length: 256 }, (_, i) => i))],
    ['image/svg+xml', Buffer.from('<svg onload="alert(1)"/>')],
    [undefined, Buffer.from('no content type at all')]
  ]
  for (const [type, body] of cases) {
    const before = upstream.requests.length
    const res = await request(`${stack.url}/api/machines/x/runliveresponse`, {
      method: 'POST',
      body,
      headers: type === undefined ? {} : { 'content-type': type }
    })
    await res.body.dump()
    t.equal(res.statusCode, 200, `${type}: forwarded`)
    const seen = upstream.requests[before]
    t.equal(seen?.body.toString('hex'), body.toString('hex'), `${type}: byte for byte`)
    t.equal(seen?.headers['content-type'], type, `${type}: type as sent`)
  }
})

t.test(`a body of ${REPLAYABLE_BODY_LIMIT} bytes is held, and replayed after an upstream 401`, async (t) => {
  const before = upstream.requests.length
  const body = Buffer.alloc(REPLAYABLE_BODY_LIMIT, 'a')
  const res = await request(`${stack.url}/api/unauthorized-once/held`, { method: 'POST', body, headers: { 'content-type': 'text/plain' } })
  await res.body.dump()
  t.equal(res.statusCode, 200, 'the replay succeeded')
  const seen = upstream.requests.slice(before)
  t.equal(seen.length, 2, 'sent twice')
  t.ok(seen.every((r) => r.body.equals(body)), 'the same whole body both times')
})

t.test(`a body of ${REPLAYABLE_BODY_LIMIT + 1} bytes is streamed: the upstream has it before the client has sent it all`, async (t) => {
  const before = upstream.requests.length
  const connection = await openConnection(t, stack.url)
  const arrived = upstream.nextRequest()
  connection.socket.write(`POST /api/unauthorized-once/streamed HTTP/1.1\r\nHost: ${host}\r\nContent-Type: text/plain\r\n` +
    `Content-Length: ${REPLAYABLE_BODY_LIMIT + 1}\r\nConnection: close\r\n\r\n`)
  connection.socket.write(Buffer.alloc(REPLAYABLE_BODY_LIMIT, 'b'))
  const { req: upstreamReq } = await arrived
  t.notOk(upstreamReq.complete, 'the upstream request began while the last byte was still unsent')
  connection.socket.write('!')
  await connection.closed
  t.match(connection.text(), /^HTTP\/1\.1 401 /, 'no replay: the upstream\'s 401 is passed back')
  const seen = upstream.requests.slice(before)
  t.equal(seen.length, 1, 'sent once')
  t.equal(seen[0]?.body.length, REPLAYABLE_BODY_LIMIT + 1, 'the whole body arrived')
})

t.test('trustProxy is off: X-Forwarded-* and Forwarded change neither the Host check nor the links the broker writes', async (t) => {
  const before = upstream.requests.length
  const spoofed = { 'x-forwarded-host': 'evil.example', 'x-forwarded-proto': 'https', 'x-forwarded-for': '203.0.113.9', forwarded: 'for=203.0.113.9;host=evil.example;proto=https' }
  const res = await request(`${stack.url}/api/paged`, { headers: spoofed })
  const page = await res.body.json() as { '@odata.nextLink': string }
  t.equal(res.statusCode, 200)
  t.equal(page['@odata.nextLink'], `http://${host}/api/paged?$skip=1`, 'the link is built from Host, nothing else')
  t.notOk(Object.keys(upstream.requests[before]?.headers ?? {}).some((name) => name.startsWith('x-forwarded') || name === 'forwarded'),
    'none of them forwarded')

  const misdirected = await request(`${stack.url}/api/alerts`, { headers: { host: 'evil.example', 'x-forwarded-host': 'localhost' } })
  t.equal(misdirected.statusCode, 421, 'X-Forwarded-Host: localhost does not make evil.example acceptable')
  await misdirected.body.dump()
  t.equal(upstream.requests.length, before + 1)
})

t.test('connection and per-connection request caps', async (t) => {
  const limited = await startBrokerStack(t, {
    simulator: { roles: ALL_ROLES },
    env: { BROKER_UPSTREAM: upstream.url },
    deps: { limits: { maxConnections: 2, maxRequestsPerSocket: 2 } }
  })
  const limitedHost = new URL(limited.url).host
  const server = limited.app.server
  const get = (marker: string, close = true) =>
    `GET /api/alerts?${marker} HTTP/1.1\r\nHost: ${limitedHost}\r\n${close ? 'Connection: close\r\n' : ''}\r\n`

  const accepted: Array<Promise<unknown>> = []
  server.on('connection', (socket: Socket) => accepted.push(once(socket, 'close')))
  const first = await openConnection(t, limited.url)
  const second = await openConnection(t, limited.url)
  while (accepted.length < 2) await once(server, 'connection')

  // Over the cap, the newcomer is kept and the oldest connection with nothing in progress closed.
  const third = await openConnection(t, limited.url)
  await first.closed
  t.equal(first.text(), '', 'the oldest idle connection is closed, without an answer')
  third.socket.write(get('third'))
  await third.closed
  t.match(third.text(), /^HTTP\/1\.1 200 /, 'the newcomer is served')
  await accepted[0]
  const fourth = await openConnection(t, limited.url)
  fourth.socket.write(get('fourth'))
  await fourth.closed
  t.match(fourth.text(), /^HTTP\/1\.1 200 /, 'and the next one')
  second.socket.destroy()

  const before = upstream.requests.length
  const pipelined = await openConnection(t, limited.url)
  pipelined.socket.write(get('a', false) + get('b', false) + get('c', false))
  const text = await pipelined.waitFor(/HTTP\/1\.1 503 [^]*\r\n\r\n0\r\n\r\n$/)
  const answers = parseRawResponses(text)
  t.equal(answers.length, 3)
  t.match(answers[0], { status: 200, headers: { 'keep-alive': [/^timeout=\d+, max=2$/] } }, 'the first answer says how many requests the connection may carry')
  t.match(answers[1], { status: 200, headers: { connection: ['close'] } }, 'the last one it may carry is answered with connection: close')
  t.equal(answers[2]?.status, 503, 'one pipelined behind it gets Node\'s 503')
  t.same(upstream.requests.slice(before).map((r) => r.url), ['/api/alerts?a', '/api/alerts?b'], 'no more than two forwarded from one connection')
})

t.test('NODE_OPTIONS=--insecure-http-parser does not loosen the broker\'s parser (the real entry point)', async (t) => {
  const home = t.testdir({})
  const cli = spawnCli(t, ['demo', '--port', '0'], { env: cliEnv(home, { NODE_OPTIONS: '--insecure-http-parser' }) })
  await cli.waitForLine('stderr', /^Press Ctrl\+C to stop\.$/)
  const base = /^The demo broker is ready at (http:\/\/127\.0\.0\.1:\d+)/m.exec(cli.stderr())?.[1] ?? ''
  const demoHost = new URL(base).host
  const lenientOnly = [
    `GET /api/alerts HTTP/1.1\nHost: ${demoHost}\nConnection: close\n\n`,
    `GET /api/alerts HTTP/1.1\r\nHost: ${demoHost}\r\nX-Folded: a\r\n b\r\nConnection: close\r\n\r\n`,
    `GET /api/alerts HTTP/1.1\r\nHost: ${demoHost}\r\nX-Control: a\u0001b\r\nConnection: close\r\n\r\n`
  ]
  for (const bytes of lenientOnly) {
    const response = await rawExchange(base, bytes)
    t.equal(response.status, 400, `refused: ${JSON.stringify(bytes.slice(0, 60))}`)
  }
  const ok = await rawExchange(base, `GET /healthz HTTP/1.1\r\nHost: ${demoHost}\r\nConnection: close\r\n\r\n`)
  t.equal(ok.status, 200, 'and it still serves')
  cli.child.kill('SIGTERM')
  t.equal((await cli.waitForExit()).code, 0)
})
