import t from 'tap'
import { request } from 'undici'
import { startBrokerStack, ALL_ROLES } from './helpers/broker.js'
import { rawExchange } from './helpers/raw-socket.js'
import { readBody, startUpstream } from './helpers/upstream.js'

// Requests are written as raw bytes: HTTP clients refuse to send most hop-by-hop headers,
// and a tool that goes through another proxy may well send them.

const RESPONSE_HEADERS: Array<[string, string | string[]]> = [
  ['Connection', 'keep-alive, X-Resp-Hop'],
  ['Keep-Alive', 'timeout=99, max=7'],
  ['X-Resp-Hop', 'named in Connection'],
  ['Proxy-Authenticate', 'Basic realm="upstream"'],
  ['Proxy-Connection', 'keep-alive'],
  ['Trailer', 'X-Checksum'],
  ['Upgrade', 'h2c'],
  ['Set-Cookie', ['session=upstream-cookie; HttpOnly', 'tracking=1']],
  ['Content-Type', 'application/json; charset=utf-8'],
  ['OData-Version', '4.0'],
  ['Request-Id', 'upstream-request-7'],
  ['Retry-After', '12'],
  ['Link', ['<https://example/a>; rel="a"', '<https://example/b>; rel="b"']],
  ['X-Kept', 'yes']
]

const upstream = await startUpstream(t, (req, res, recorded) => {
  readBody(req, recorded).then(() => {
    for (const [name, value] of RESPONSE_HEADERS) res.setHeader(name, value)
    res.end('{"value":[]}')
  }, () => res.destroy())
})
const stack = await startBrokerStack(t, { simulator: { roles: ALL_ROLES }, env: { BROKER_UPSTREAM: upstream.url } })
const brokerPort = new URL(stack.url).port

const DROPPED_REQUEST_HEADERS = [
  'Keep-Alive: timeout=5',
  'TE: trailers',
  'Trailer: X-Trail',
  'Upgrade: h2c',
  'Proxy-Authorization: Basic cHJveHk6c2VjcmV0',
  'Proxy-Connection: keep-alive',
  'Proxy-Custom: anything',
  'X-Named-Hop: named in Connection',
  'X-Other-Named: also named',
  'Authorization: Bearer the-client-own-token',
  'X-Broker-Key: the-client-key',
  'Forwarded: for=192.0.2.1;host=evil.example;proto=https',
  'X-Forwarded-For: 192.0.2.1',
  'X-Forwarded-Host: evil.example',
  'X-Forwarded-Proto: https',
  'X-Forwarded-Port: 443',
  'Cookie: session=client-cookie',
  // Each would have a server behind act on another method or path than the rules allowed.
  'X-HTTP-Method-Override: DELETE',
  'X-HTTP-Method: DELETE',
  'X-Method-Override: DELETE',
  'X-Original-URL: /api/machines/abc/isolate',
  'X-Rewrite-URL: /api/machines/abc/isolate'
]
const KEPT_REQUEST_HEADERS = [
  'Accept: application/json',
  'User-Agent: soar-playbook/1.0',
  'Prefer: odata.maxpagesize=1',
  'X-Custom: kept'
]

t.test('hop-by-hop, identity and credential headers are not forwarded; others are', async (t) => {
  const before = upstream.requests.length
  const response = await rawExchange(stack.url, [
    'POST /api/machines/abc/runliveresponse HTTP/1.1',
    `Host: localhost:${brokerPort}`,
    'Connection: X-Named-Hop, x-other-named, close',
    'Transfer-Encoding: gzip, chunked',
    'Content-Type: application/json',
    ...DROPPED_REQUEST_HEADERS,
    ...KEPT_REQUEST_HEADERS,
    '',
    '5\r\n{"a":\r\n2\r\n1}\r\n0\r\n\r\n'
  ].join('\r\n'))
  t.equal(response.status, 200)
  t.equal(upstream.requests.length, before + 1)
  const seen = upstream.requests[before]
  if (seen === undefined) return
  const names = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((name) => name.toLowerCase())
  const framing: string[] = names.filter((name) => name === 'content-length' || name === 'transfer-encoding')
  t.equal(framing.length, 1, 'one framing header, the broker\'s own')
  t.strictSame(names.filter((name) => !framing.includes(name)).sort(),
    ['accept', 'authorization', 'connection', 'content-type', 'host', 'prefer', 'user-agent', 'x-custom'],
    'exactly these header names reached the upstream')
  t.equal(seen.headers.host, upstream.host, 'the upstream\'s own Host, not the broker\'s')
  t.equal(seen.headers.connection, 'keep-alive', 'the broker\'s own Connection, naming nothing of the client\'s')
  t.not(seen.headers['transfer-encoding'], 'gzip, chunked', 'the client\'s Transfer-Encoding is not passed on')
  t.match(seen.headers.authorization, /^Bearer ey/, 'the broker\'s token')
  t.equal(seen.body.toString(), '{"a":1}', 'the body, de-chunked and re-framed')
  for (const line of KEPT_REQUEST_HEADERS) {
    const [name, value] = line.split(': ') as [string, string]
    t.equal(seen.headers[name.toLowerCase()], value, `${name} passes`)
  }
  const everything = seen.rawHeaders.join('\n')
  for (const canary of ['the-client-own-token', 'the-client-key', 'client-cookie', 'evil.example', '192.0.2.1', 'cHJveHk6c2VjcmV0', 'DELETE', 'isolate']) {
    t.notOk(everything.includes(canary), `${canary} is in no forwarded header`)
  }
})

t.test('the upstream sees its own Host whatever name the client used', async (t) => {
  for (const host of ['localhost', `localhost:${brokerPort}`, `127.0.0.1:${brokerPort}`, `[::1]:${brokerPort}`]) {
    const before = upstream.requests.length
    const response = await rawExchange(stack.url, `GET /api/alerts HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
    t.equal(response.status, 200, `${host}: served`)
    t.equal(upstream.requests[before]?.headers.host, upstream.host, `${host}: the upstream got Host ${upstream.host}`)
  }
})

t.test('hop-by-hop, Connection-named and Set-Cookie response headers are not passed back; others are', async (t) => {
  const response = await rawExchange(stack.url, `GET /api/alerts HTTP/1.1\r\nHost: 127.0.0.1:${brokerPort}\r\nConnection: close\r\n\r\n`)
  t.equal(response.status, 200)
  t.strictSame(Object.keys(response.headers).sort(), [
    'connection', 'content-type', 'date', 'link', 'odata-version', 'request-id', 'retry-after', 'transfer-encoding',
    'x-kept', 'x-request-id'
  ], 'exactly these header names came back')
  t.strictSame(response.headers.connection, ['close'], 'the broker\'s own Connection')
  t.strictSame(response.headers['transfer-encoding'], ['chunked'], 'the broker\'s own framing, once')
  t.strictSame(response.headers.link, ['<https://example/a>; rel="a"', '<https://example/b>; rel="b"'], 'a repeated header keeps every value')
  t.strictSame(response.headers['x-kept'], ['yes'])
  t.strictSame(response.headers['request-id'], ['upstream-request-7'])
  t.strictSame(response.headers['retry-after'], ['12'])
  t.strictSame(response.headers['odata-version'], ['4.0'])
  t.equal(response.body, '{"value":[]}')
})

t.test('on a keep-alive connection the client gets the broker\'s own Keep-Alive, not the upstream\'s', async (t) => {
  const res = await request(`${stack.url}/api/alerts`)
  t.equal(await res.body.text(), '{"value":[]}')
  t.equal(res.headers.connection, 'keep-alive')
  t.not(res.headers['keep-alive'], 'timeout=99, max=7')
  t.match(res.headers['keep-alive'], /^timeout=\d+(, max=\d+)?$/)
  t.equal(res.headers['x-resp-hop'], undefined)
  t.equal(res.headers['set-cookie'], undefined)
  t.equal(res.headers['proxy-authenticate'], undefined)
  t.equal(res.headers.upgrade, undefined)
  t.equal(res.headers.trailer, undefined)
})
