import t, { type Test } from 'tap'
import { startBrokerStack, ALL_ROLES } from './helpers/broker.js'
import { rawExchange, parseRawResponses, type RawResponse } from './helpers/raw-socket.js'
import { startUpstream } from './helpers/upstream.js'

// Request smuggling: bytes whose framing two HTTP parsers could read differently, so that a
// request hides inside another. Written as raw bytes, since no HTTP client sends them. The
// broker must refuse each one itself, and the upstream must see no request from it, least of
// all the hidden one.

const upstream = await startUpstream(t)
const stack = await startBrokerStack(t, { simulator: { roles: ALL_ROLES }, env: { BROKER_UPSTREAM: upstream.url } })
const host = new URL(stack.url).host

/** The request an attacker hides: it must never reach the upstream as a request of its own. */
const HIDDEN = `GET /smuggled HTTP/1.1\r\nHost: ${host}\r\n\r\n`

function badRequest (reason: string) {
  return { code: 'BrokerBadRequest', message: `The request cannot be forwarded: ${reason}.` }
}
/** What the broker answers for bytes Node's strict parser refuses. */
const NOT_HTTP = badRequest('it is not valid HTTP/1.1')
const NOT_CHUNKED = badRequest('its Transfer-Encoding does not end in chunked')

function post (headers: string[], body: string): string {
  return ['POST /api/alerts HTTP/1.1', `Host: ${host}`, ...headers, '', body].join('\r\n')
}

function assertRefused (t: Test, response: RawResponse, expected: { code: string, message: string }): void {
  t.equal(response.status, 400, 'status 400')
  const id = response.headers['x-request-id']
  t.equal(id?.length, 1, 'one x-request-id')
  t.same(response.headers.connection, ['close'], 'the connection is closed after the answer')
  t.strictSame(JSON.parse(response.body), { error: { ...expected, target: id?.[0] } }, 'the whole error body')
  t.equal(parseRawResponses(response.text).length, 1, 'one answer, nothing after it')
}

/** Nothing new at the upstream, no hidden request ever, and a normal request is still served. */
async function assertNothingForwarded (t: Test, before: number, marker: string): Promise<void> {
  t.equal(upstream.requests.length, before, 'the upstream received nothing')
  t.notOk(upstream.requests.some((r) => r.url.includes('smuggled')), 'no hidden request ever reached the upstream')
  const response = await rawExchange(stack.url, `GET /api/alerts?after=${marker} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
  t.equal(response.status, 200, 'the broker still serves')
  t.equal(upstream.requests.at(-1)?.url, `/api/alerts?after=${marker}`, 'and forwards a normal request')
}

const refusedCases: Array<[string, string, { code: string, message: string }]> = [
  ['Content-Length, then Transfer-Encoding (CL.TE)',
    post(['Content-Length: 6', 'Transfer-Encoding: chunked'], `0\r\n\r\n${HIDDEN}`), NOT_HTTP],
  ['Transfer-Encoding, then Content-Length (TE.CL)',
    post(['Transfer-Encoding: chunked', 'Content-Length: 6'], `0\r\n\r\n${HIDDEN}`), NOT_HTTP],
  ['two different Content-Lengths',
    post(['Content-Length: 0', `Content-Length: ${HIDDEN.length}`], HIDDEN), NOT_HTTP],
  ['two equal Content-Lengths',
    post(['Content-Length: 3', 'Content-Length: 3'], 'abc'), NOT_HTTP],
  ['a list in Content-Length',
    post(['Content-Length: 3, 3'], 'abc'), NOT_HTTP],
  ['Content-Length with a sign', post(['Content-Length: +3'], 'abc'), NOT_HTTP],
  ['a negative Content-Length', post(['Content-Length: -3'], 'abc'), NOT_HTTP],
  ['a hexadecimal Content-Length', post(['Content-Length: 0x3'], 'abc'), NOT_HTTP],
  ['Transfer-Encoding: chunked, identity',
    post(['Transfer-Encoding: chunked, identity'], `0\r\n\r\n${HIDDEN}`), NOT_HTTP],
  ['Transfer-Encoding: identity (the body would run to the end of the connection)',
    post(['Transfer-Encoding: identity', 'Connection: close'], HIDDEN), NOT_CHUNKED],
  ['an unknown coding, xchunked',
    post(['Transfer-Encoding: xchunked'], `0\r\n\r\n${HIDDEN}`), NOT_CHUNKED],
  ['Transfer-Encoding twice',
    post(['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], `0\r\n\r\n${HIDDEN}`), NOT_HTTP],
  ['Transfer-Encoding, then a second one another parser might prefer',
    post(['Transfer-Encoding: chunked', 'Transfer-encoding: cow'], `0\r\n\r\n${HIDDEN}`), NOT_HTTP],
  ['a space before the colon of Transfer-Encoding',
    post(['Transfer-Encoding : chunked', 'Content-Length: 5'], `0\r\n\r\n${HIDDEN}`), NOT_HTTP],
  ['a vertical tab before chunked',
    post(['Transfer-Encoding: \u000bchunked'], `0\r\n\r\n${HIDDEN}`), NOT_HTTP],
  ['obs-fold: Transfer-Encoding folded into another header',
    post(['X-Padding: a', ' Transfer-Encoding: chunked', 'Content-Length: 5'], `0\r\n\r\n${HIDDEN}`), NOT_HTTP],
  ['obs-fold: a Content-Length continued on the next line',
    post(['Content-Length: 0', ` ${HIDDEN.length}`], HIDDEN), NOT_HTTP],
  ['obs-fold: a Transfer-Encoding whose value is on the next line',
    post(['Transfer-Encoding:', ' chunked', 'Content-Length: 5'], `0\r\n\r\n${HIDDEN}`), NOT_HTTP],
  ['bare LF line endings throughout',
    `GET /api/alerts HTTP/1.1\nHost: ${host}\nConnection: close\n\n${HIDDEN}`, NOT_HTTP],
  ['a bare LF between two headers',
    `GET /api/alerts HTTP/1.1\r\nHost: ${host}\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${HIDDEN}`, NOT_HTTP],
  ['a bare LF ending the headers',
    `GET /api/alerts HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\n${HIDDEN}`, NOT_HTTP],
  ['a bare CR inside the headers',
    `GET /api/alerts HTTP/1.1\r\nHost: ${host}\rTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${HIDDEN}`, NOT_HTTP],
  ['a bare LF after a chunk size',
    post(['Transfer-Encoding: chunked', 'Connection: close'], `3\nabc\r\n0\r\n\r\n${HIDDEN}`), NOT_HTTP],
  ['a chunk extension that ends in a bare LF',
    post(['Transfer-Encoding: chunked', 'Connection: close'], `3;x\nabc\r\n0\r\n\r\n${HIDDEN}`), NOT_HTTP],
  ['a chunk size that overflows 64 bits',
    post(['Transfer-Encoding: chunked', 'Connection: close'], `1000000000000000003\r\nabc\r\n0\r\n\r\n${HIDDEN}`), NOT_HTTP],
  ['HTTP/1.0 with Transfer-Encoding (HTTP/1.0 has no chunked coding)',
    `POST /api/alerts HTTP/1.0\r\nHost: ${host}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${HIDDEN}`,
    badRequest('it is HTTP/1.0 with a Transfer-Encoding')]
]

for (const [name, bytes, expected] of refusedCases) {
  t.test(name, async (t) => {
    const before = upstream.requests.length
    assertRefused(t, await rawExchange(stack.url, bytes), expected)
    await assertNothingForwarded(t, before, String(before))
  })
}

t.test('TE: chunked, identity (the TE request header, not Transfer-Encoding): one request, its body forwarded as bytes', async (t) => {
  const before = upstream.requests.length
  const body = `0\r\n\r\n${HIDDEN}`
  const response = await rawExchange(stack.url, post(['TE: chunked, identity', `Content-Length: ${body.length}`, 'Connection: close'], body))
  t.equal(response.status, 200)
  t.equal(upstream.requests.length, before + 1, 'exactly one request reached the upstream')
  const seen = upstream.requests[before]
  t.equal(seen?.url, '/api/alerts')
  t.equal(seen?.body.toString('latin1'), body, 'the hidden request arrived as body bytes, framed by Content-Length')
  t.equal(seen?.headers['content-length'], String(body.length))
  t.equal(seen?.headers.te, undefined, 'TE is hop-by-hop: not forwarded')
  t.equal(seen?.headers['transfer-encoding'], undefined)
  await assertNothingForwarded(t, before + 1, 'te-header')
})

t.test('a request pipelined behind Content-Length: 0 is a request of its own, and is checked as one', async (t) => {
  const before = upstream.requests.length
  const response = await rawExchange(stack.url,
    post(['Content-Length: 0'], '') + `GET http://evil.example/smuggled HTTP/1.1\r\nHost: ${host}\r\n\r\n`)
  const [first, second, ...more] = parseRawResponses(response.text)
  t.equal(first?.status, 200)
  t.equal(second?.status, 400)
  t.equal(JSON.parse(second?.body ?? '{}').error?.code, 'BrokerBadRequestTarget')
  t.same(more, [], 'two answers, then the connection was closed')
  t.same(upstream.requests.slice(before).map((r) => `${r.method} ${r.url}`), ['POST /api/alerts'], 'only the first was forwarded')
  await assertNothingForwarded(t, before + 1, 'pipelined')
})

t.test('a smuggling attempt behind a good request on a keep-alive connection', async (t) => {
  const before = upstream.requests.length
  const response = await rawExchange(stack.url,
    `GET /api/alerts?first HTTP/1.1\r\nHost: ${host}\r\n\r\n` +
    post(['Content-Length: 6', 'Transfer-Encoding: chunked'], `0\r\n\r\n${HIDDEN}`))
  // The good request may already be at the API: an error now would read as its answer, so the
  // broker closes the connection instead, and the client knows it has no answer.
  t.notMatch(response.text, /^HTTP\/1\.1 4/m, 'no refusal that the client could take for the good request\'s answer')
  t.ok(response.text === '' || /^HTTP\/1\.1 200 /.test(response.text), 'the good request\'s own answer, or none')
  t.ok(upstream.requests.slice(before).every((r) => r.url === '/api/alerts?first'), 'nothing but the good request was forwarded')
  await assertNothingForwarded(t, upstream.requests.length, 'keep-alive')
})
