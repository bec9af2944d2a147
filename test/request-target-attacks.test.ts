import t, { type Test } from 'tap'
import { startBrokerStack, ALL_ROLES } from './helpers/broker.js'
import { rawExchange, parseRawResponses, type RawResponse } from './helpers/raw-socket.js'
import { startUpstream } from './helpers/upstream.js'

// Raw bytes over a socket: HTTP client libraries normalise the request target, and an attacker
// does not use one. Every case must be answered by the broker itself and reach no upstream.

const upstream = await startUpstream(t)
const stack = await startBrokerStack(t, { simulator: { roles: ALL_ROLES }, env: { BROKER_UPSTREAM: upstream.url } })
const brokerHost = new URL(stack.url).host

const refused = (reason: string) => ({
  code: 'BrokerBadRequestTarget',
  message: `The request target is not allowed: ${reason}. Send an origin-form path such as /api/alerts.`
})
const NOT_ORIGIN_FORM = refused('not origin-form (it must start with /)')
const NETWORK_PATH = refused('a network-path reference (// or /\\)')
const ENCODED_SLASH = refused('an encoded / or \\ in the path')
const DOT_SEGMENT = refused('a dot-segment in the path')
const ENCODED_CONTROL = refused('an encoded control character in the path')
const NO_VERSION = refused('a request line with no HTTP/1.x version (a line break in the target)')
/** What the broker answers for bytes Node's own HTTP parser refuses in a request target. */
const PARSER_REFUSED = refused('a control, space or non-ASCII character')

function send (requestLine: string, extraHeaders = ''): Promise<RawResponse> {
  return rawExchange(stack.url, Buffer.from(`${requestLine}\r\nHost: ${brokerHost}\r\n${extraHeaders}Connection: close\r\n\r\n`, 'latin1'))
}

/** The whole answer: 400, the API's error shape with the response's own request id, and the connection closed. */
function assertRefused (t: Test, response: RawResponse, expected: { code: string, message: string }): void {
  t.equal(response.status, 400, 'status 400')
  const id = response.headers['x-request-id']
  t.equal(id?.length, 1, 'one x-request-id')
  t.same(response.headers['content-type'], ['application/json; charset=utf-8'])
  t.same(response.headers.connection, ['close'], 'the connection is closed after the answer')
  t.strictSame(JSON.parse(response.body), { error: { ...expected, target: id?.[0] } }, 'the whole error body')
}

/** After each attack the broker still forwards a normal request, and that is all the upstream ever sees. */
async function assertStillServes (t: Test, before: number, marker: string): Promise<void> {
  t.equal(upstream.requests.length, before, 'the upstream received nothing')
  const response = await send(`GET /api/alerts?after=${marker} HTTP/1.1`)
  t.equal(response.status, 200, 'a normal request afterwards is served')
  t.equal(upstream.requests.length, before + 1, 'and reaches the upstream')
  t.equal(upstream.requests.at(-1)?.url, `/api/alerts?after=${marker}`)
}

const cases: Array<[string, string, { code: string, message: string }]> = [
  ['absolute-form naming another host', 'GET http://evil.example/api/alerts HTTP/1.1', NOT_ORIGIN_FORM],
  ['absolute-form over https', 'GET https://evil.example/api/alerts HTTP/1.1', NOT_ORIGIN_FORM],
  ['absolute-form matching the Host header', `GET http://${brokerHost}/api/alerts HTTP/1.1`, NOT_ORIGIN_FORM],
  ['absolute-form naming the upstream itself', `GET ${upstream.url}/api/alerts HTTP/1.1`, NOT_ORIGIN_FORM],
  ['a network-path reference //host', 'GET //evil.example/api/alerts HTTP/1.1', NETWORK_PATH],
  ['a network-path reference /\\host', 'GET /\\evil.example/api/alerts HTTP/1.1', NETWORK_PATH],
  ['an encoded //', 'GET /%2F%2Fevil.example/api/alerts HTTP/1.1', ENCODED_SLASH],
  ['an encoded // in lower case', 'GET /%2f%2fevil.example/api/alerts HTTP/1.1', ENCODED_SLASH],
  ['an encoded backslash', 'GET /%5Cevil.example/api/alerts HTTP/1.1', ENCODED_SLASH],
  ['an encoded / inside a segment', 'GET /api/machines%2F..%2F..%2Fx HTTP/1.1', ENCODED_SLASH],
  ['encoded dot-segments', 'GET /api/%2e%2e/%2e%2e/x HTTP/1.1', DOT_SEGMENT],
  ['mixed encoded dot-segments', 'GET /api/.%2E/x HTTP/1.1', DOT_SEGMENT],
  ['a dot-segment ..', 'GET /api/../x HTTP/1.1', DOT_SEGMENT],
  ['a dot-segment .', 'GET /api/./alerts HTTP/1.1', DOT_SEGMENT],
  ['a dot-segment behind a matrix parameter', 'GET /api;/../x HTTP/1.1', DOT_SEGMENT],
  ['a dot-segment with a matrix parameter', 'GET /api/..;/x HTTP/1.1', DOT_SEGMENT],
  ['a dot-segment out of a profile prefix', 'GET /fabrikam/%2e%2e/api/alerts HTTP/1.1', DOT_SEGMENT],
  ['an encoded CR LF', 'GET /api/alerts%0d%0aX-Injected:%20yes HTTP/1.1', ENCODED_CONTROL],
  ['an encoded NUL', 'GET /api/alerts%00.json HTTP/1.1', ENCODED_CONTROL],
  ['the asterisk form', 'OPTIONS * HTTP/1.1', NOT_ORIGIN_FORM],
  ['a fragment', 'GET /api/alerts#x HTTP/1.1', refused('a fragment')],
  ['a raw backslash later in the target', 'GET /api\\..\\x HTTP/1.1', refused('a backslash')],
  ['a malformed percent-encoding', 'GET /api/%zz HTTP/1.1', refused('a malformed percent-encoding')],
  ['a raw LF that turns the rest of the line into a header', 'GET /api/alerts\nX-Injected: yes HTTP/1.1', NO_VERSION],
  ['a raw CR LF that turns the rest of the line into a header', 'GET /api/alerts\r\nX-Injected: yes HTTP/1.1', NO_VERSION],
  ['a raw CR (refused by Node\'s parser)', 'GET /api/alerts\rX-Injected: yes HTTP/1.1', PARSER_REFUSED],
  ['a raw NUL (refused by Node\'s parser)', 'GET /api/alerts\u0000.json HTTP/1.1', PARSER_REFUSED],
  ['a raw TAB (refused by Node\'s parser)', 'GET /api/alerts\t/x HTTP/1.1', PARSER_REFUSED],
  ['a raw non-ASCII byte (refused by Node\'s parser)', 'GET /api/\u00e9 HTTP/1.1', PARSER_REFUSED]
]

for (const [name, requestLine, expected] of cases) {
  t.test(`${name}: ${JSON.stringify(requestLine)}`, async (t) => {
    const before = upstream.requests.length
    assertRefused(t, await send(requestLine), expected)
    await assertStillServes(t, before, String(before))
  })
}

t.test('CONNECT: 405 in the API\'s error shape, the connection closed, and nothing is forwarded', async (t) => {
  const before = upstream.requests.length
  const response = await send('CONNECT evil.example:443 HTTP/1.1')
  t.equal(response.status, 405)
  t.same(response.headers.connection, ['close'])
  t.equal(JSON.parse(response.body).error.code, 'BrokerMethodNotAllowed')
  await assertStillServes(t, before, 'connect')
})

t.test('a bad header line: the API\'s error shape, from the broker, not a bare parser error', async (t) => {
  const before = upstream.requests.length
  const response = await send('GET /api/alerts HTTP/1.1', 'X-Bad: a\rb\r\n')
  t.equal(response.status, 400)
  t.strictSame(JSON.parse(response.body), {
    error: {
      code: 'BrokerBadRequest',
      message: 'The request cannot be forwarded: it is not valid HTTP/1.1.',
      target: response.headers['x-request-id']?.[0]
    }
  })
  t.match(response.headers['x-request-id']?.[0], /^[0-9a-f-]{36}$/)
  await assertStillServes(t, before, 'bad-header')
})

t.test('an attack after a good request on the same keep-alive connection', async (t) => {
  const before = upstream.requests.length
  const response = await rawExchange(stack.url,
    `GET /api/alerts?first HTTP/1.1\r\nHost: ${brokerHost}\r\n\r\n` +
    `GET http://evil.example/api/alerts HTTP/1.1\r\nHost: ${brokerHost}\r\n\r\n` +
    `GET /api/alerts?third HTTP/1.1\r\nHost: ${brokerHost}\r\n\r\n`)
  const [first, second, ...more] = parseRawResponses(response.text)
  t.equal(first?.status, 200)
  t.ok(second, 'a second answer')
  if (second !== undefined) assertRefused(t, second, NOT_ORIGIN_FORM)
  t.same(more, [], 'two answers, then the connection was closed')
  t.same(upstream.requests.slice(before).map((r) => r.url), ['/api/alerts?first'], 'only the good request was forwarded')
  await assertStillServes(t, before + 1, 'pipelined')
})
