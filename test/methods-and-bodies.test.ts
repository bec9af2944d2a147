import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import t, { type Test } from 'tap'
import { REPLAYABLE_BODY_LIMIT } from '../src/proxy/request-body.js'
import { startBrokerStack } from './helpers/broker.js'
import { clientFor, newClientKey, withProfiles } from './helpers/profiles.js'
import { openConnection, rawExchange, parseRawResponse, parseRawResponses, type RawResponse } from './helpers/raw-socket.js'
import { readBody, startUpstream } from './helpers/upstream.js'

// Which methods the broker refuses before anything else runs, and when it reads a body: only
// once the rules, the permission preflight and the budget have let the request through, and
// one request of a connection at a time.

const key = newClientKey()

/** What the upstream saw happen, in order: `start <path>` when a request arrives, `end <path>` when its answer is sent. */
const timeline: string[] = []
/** Answers for `/api/hold/...` requests, sent when the test says so. */
const held = new Map<string, ServerResponse>()
const heldArrived = new Map<string, () => void>()

const upstream = await startUpstream(t, (req, res, recorded) => {
  const path = req.url as string
  timeline.push(`start ${path}`)
  res.once('finish', () => timeline.push(`end ${path}`))
  readBody(req, recorded).then(() => {
    if (path.startsWith('/api/hold/')) {
      held.set(path, res)
      heldArrived.get(path)?.()
      return
    }
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' })
    res.end(JSON.stringify({ value: [], method: req.method, bytes: recorded.body.length }))
  }, () => res.destroy())
})

const stack = await startBrokerStack(t, {
  // No Machine.Isolate: an isolation is refused by the preflight.
  simulator: { roles: ['Alert.Read.All', 'Alert.ReadWrite.All', 'Machine.Read.All'] },
  env: { BROKER_UPSTREAM: upstream.url },
  config: (c) => withProfiles(c, [
    // One request a minute, and no wait in the queue: the second gets 429 at once.
    { name: 'tight', basePath: '/tight', rateLimit: { perMinute: 1, perHour: 1500, maxQueueSeconds: 1 } },
    { name: 'readonly', basePath: '/readonly', allow: ['GET /api/**'] }
  ], [clientFor('tool', key)]),
  // A request whose body never ends is cut off soon, so that a broker waiting for it fails the test quickly.
  deps: { limits: { requestTimeoutMs: 3_000, headersTimeoutMs: 2_000, connectionsCheckingIntervalMs: 100 } }
})
const host = new URL(stack.url).host

const METHOD_NOT_ALLOWED = (method: string) => ({
  code: 'BrokerMethodNotAllowed',
  message: `The method ${method} is not forwarded: it would echo the request, token included, or open a tunnel. Use one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS.`
})

function assertMethodNotAllowed (t: Test, response: RawResponse, method: string, what = method): void {
  t.equal(response.status, 405, `${what}: 405`)
  t.strictSame(response.headers.allow, ['GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'], `${what}: Allow names the methods forwarded`)
  t.same(response.headers.connection, ['close'], `${what}: the connection is closed`)
  const id = response.headers['x-request-id']
  t.equal(id?.length, 1, `${what}: one x-request-id`)
  t.strictSame(JSON.parse(response.body), { error: { ...METHOD_NOT_ALLOWED(method), target: id?.[0] } }, `${what}: the whole error body`)
  t.equal(parseRawResponses(response.text).length, 1, `${what}: one answer, nothing after it`)
}

t.test('TRACE and TRACK get 405 before the key check, routing and the token, on every path; nothing reaches the upstream', async (t) => {
  const before = upstream.requests.length
  for (const method of ['TRACE', 'TRACK']) {
    for (const path of ['/api/alerts', '/tight/api/alerts', '/healthz', '/status', '/nowhere', '*']) {
      for (const credentials of ['', `X-Broker-Key: ${key}\r\n`, `Authorization: Bearer ${key}\r\n`]) {
        const response = await rawExchange(stack.url,
          `${method} ${path} HTTP/1.1\r\nHost: ${host}\r\n${credentials}Max-Forwards: 0\r\nConnection: close\r\n\r\n`)
        const what = `${method} ${path}${credentials === '' ? ' without a key' : ` with ${credentials.split(':')[0]}`}`
        assertMethodNotAllowed(t, response, method, what)
        t.notOk(response.text.includes(key), `${what}: the key is not echoed`)
        t.notOk(/Bearer ey/.test(response.text), `${what}: no token is echoed`)
      }
    }
  }
  t.equal(upstream.requests.length, before, 'the upstream received nothing')
  t.notOk(upstream.requests.some((r) => r.method === 'TRACE' || r.method === 'TRACK'), 'no TRACE or TRACK ever reached the upstream')
})

t.test('a TRACE pipelined behind a request is refused, and what follows it is not read', async (t) => {
  const before = upstream.requests.length
  const response = await rawExchange(stack.url,
    `TRACE /api/alerts HTTP/1.1\r\nHost: ${host}\r\nX-Broker-Key: ${key}\r\n\r\n` +
    `GET /api/alerts?after=trace HTTP/1.1\r\nHost: ${host}\r\nX-Broker-Key: ${key}\r\nConnection: close\r\n\r\n`)
  assertMethodNotAllowed(t, response, 'TRACE')
  t.equal(upstream.requests.length, before, 'the upstream received nothing')
})

t.test('CONNECT gets 405 on the raw socket, which is then closed', async (t) => {
  const before = upstream.requests.length
  for (const target of ['api.securitycenter.microsoft.com:443', `${host}`, `${upstream.host}`]) {
    const connection = await openConnection(t, stack.url)
    connection.socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\nX-Broker-Key: ${key}\r\n\r\n` +
      `GET /api/alerts HTTP/1.1\r\nHost: ${host}\r\n\r\n`)
    await connection.closed
    assertMethodNotAllowed(t, parseRawResponse(connection.text()), 'CONNECT', `CONNECT ${target}`)
  }
  t.equal(upstream.requests.length, before, 'the upstream received nothing, neither a tunnel nor the request in it')
  const res = await rawExchange(stack.url, `GET /api/alerts?after=connect HTTP/1.1\r\nHost: ${host}\r\nX-Broker-Key: ${key}\r\nConnection: close\r\n\r\n`)
  t.equal(res.status, 200, 'the broker still serves')
})

/**
 * Sends the head of a request with a body of `REPLAYABLE_BODY_LIMIT` bytes (one the broker
 * would hold for a replay) and only part of that body, never the rest: the broker's answer
 * must come without it.
 */
async function refusedWithoutBody (t: Test, method: string, path: string): Promise<RawResponse> {
  const connection = await openConnection(t, stack.url)
  connection.socket.write(`${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nX-Broker-Key: ${key}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${REPLAYABLE_BODY_LIMIT}\r\n\r\n{"Comment":"${'x'.repeat(1000)}`)
  const text = await connection.waitFor(/\r\n\r\n[^]*\}\}$/)
  t.notOk(connection.socket.destroyed, 'answered while the body was still on its way')
  return parseRawResponse(text)
}

t.test('a request over budget is refused before its body is read', async (t) => {
  const first = await rawExchange(stack.url, `GET /tight/api/alerts HTTP/1.1\r\nHost: ${host}\r\nX-Broker-Key: ${key}\r\nConnection: close\r\n\r\n`)
  t.equal(first.status, 200, 'the budget\'s one request')
  const before = upstream.requests.length
  const response = await refusedWithoutBody(t, 'POST', '/tight/api/alerts/da1/comments')
  t.equal(response.status, 429)
  t.equal(JSON.parse(response.body).error.code, 'BrokerRateLimited')
  t.equal(upstream.requests.length, before, 'the upstream received nothing')
})

t.test('a request the rules or the preflight refuse is refused before its body is read', async (t) => {
  const before = upstream.requests.length
  const forbidden = await refusedWithoutBody(t, 'POST', '/readonly/api/alerts/da1/comments')
  t.equal(forbidden.status, 403)
  t.equal(JSON.parse(forbidden.body).error.code, 'BrokerForbidden')
  const missing = await refusedWithoutBody(t, 'POST', '/api/machines/abc/isolate')
  t.equal(missing.status, 403)
  t.equal(JSON.parse(missing.body).error.code, 'BrokerMissingPermission')
  t.equal(upstream.requests.length, before, 'the upstream received nothing')
})

t.test('requests pipelined on one connection reach the upstream one after the other, in order', async (t) => {
  const startedAt = timeline.length
  const first = '/api/hold/first'
  const arrived = new Promise<void>((resolve) => heldArrived.set(first, resolve))
  const connection = await openConnection(t, stack.url)
  // A body on the first: it is read and forwarded before the second request's head is parsed.
  connection.socket.write(
    `POST ${first} HTTP/1.1\r\nHost: ${host}\r\nX-Broker-Key: ${key}\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"first":1}` +
    `GET /api/alerts?second HTTP/1.1\r\nHost: ${host}\r\nX-Broker-Key: ${key}\r\n\r\n` +
    `POST /api/alerts/da1/comments?third HTTP/1.1\r\nHost: ${host}\r\nX-Broker-Key: ${key}\r\nContent-Length: 11\r\nConnection: close\r\n\r\n{"third":3}`)
  await arrived
  // The broker has the other two requests at hand once the first is at the upstream. Had it
  // sent one on, it would reach the upstream within milliseconds: the first is held for a
  // while to show that nothing else arrives meanwhile (an absence no event can show).
  const overlap = once(upstream.server, 'request').then(() => true)
  const quiet = new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 300))
  t.notOk(await Promise.race([overlap, quiet]), 'nothing else reached the upstream while the first was unanswered')
  const res = held.get(first) as ServerResponse
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end('{"value":["first"]}')
  await connection.closed
  const answers = parseRawResponses(connection.text())
  t.strictSame(answers.map((answer) => answer.status), [200, 200, 200], 'three answers')
  t.equal(answers[0]?.body, '{"value":["first"]}', 'the first answer is the first request\'s')
  t.equal(JSON.parse(answers[1]?.body ?? '{}').method, 'GET', 'then the second\'s')
  t.equal(JSON.parse(answers[2]?.body ?? '{}').bytes, 11, 'then the third\'s, with its body')
  t.strictSame(timeline.slice(startedAt), [
    `start ${first}`, `end ${first}`,
    'start /api/alerts?second', 'end /api/alerts?second',
    'start /api/alerts/da1/comments?third', 'end /api/alerts/da1/comments?third'
  ], 'the upstream saw each request after the one before was answered')
})

t.test('a request pipelined behind one whose client goes away is never sent', async (t) => {
  const first = '/api/hold/gone'
  const arrived = new Promise<void>((resolve) => heldArrived.set(first, resolve))
  const before = upstream.requests.length
  const connection = await openConnection(t, stack.url)
  connection.socket.write(`GET ${first} HTTP/1.1\r\nHost: ${host}\r\nX-Broker-Key: ${key}\r\n\r\n` +
    `DELETE /api/alerts/never HTTP/1.1\r\nHost: ${host}\r\nX-Broker-Key: ${key}\r\n\r\n`)
  await arrived
  const upstreamSide = held.get(first) as ServerResponse
  const aborted = once(upstreamSide, 'close')
  connection.socket.destroy()
  await aborted
  const res = await rawExchange(stack.url, `GET /api/alerts?after=gone HTTP/1.1\r\nHost: ${host}\r\nX-Broker-Key: ${key}\r\nConnection: close\r\n\r\n`)
  t.equal(res.status, 200)
  t.strictSame(upstream.requests.slice(before).map((r) => r.url), [first, '/api/alerts?after=gone'], 'the pipelined DELETE never reached the upstream')
})
