import { performance } from 'node:perf_hooks'
import t, { type Test } from 'tap'
import { startBrokerStack, ALL_ROLES } from './helpers/broker.js'
import { openConnection, type RawConnection, rawExchange, parseRawResponse, parseRawResponses } from './helpers/raw-socket.js'
import { startUpstream } from './helpers/upstream.js'

// Slow clients (slowloris, slow bodies, idle connections) hold a connection slot each: the
// server's timeouts cut them off. The limits are the production ones scaled down, so that
// each case takes well under a second and waits on the socket's 'close', not on a timer.

const LIMITS = {
  headersTimeoutMs: 300,
  requestTimeoutMs: 1_500,
  keepAliveTimeoutMs: 300,
  connectionsCheckingIntervalMs: 25
}
/** A timer can fire a little early against performance.now(): allowed for, nothing more. */
const EARLY_MS = 5

const upstream = await startUpstream(t)
const stack = await startBrokerStack(t, {
  simulator: { roles: ALL_ROLES },
  env: { BROKER_UPSTREAM: upstream.url },
  deps: { limits: LIMITS }
})
const host = new URL(stack.url).host

const TIMED_OUT = { code: 'BrokerRequestTimeout', message: 'The request cannot be forwarded: it did not arrive in time.' }

/** The client was answered 408 in the API's error shape, and the connection was closed. */
function assertTimedOut (t: Test, connection: RawConnection): void {
  const response = parseRawResponse(connection.text())
  t.equal(response.status, 408, 'status 408')
  t.same(response.headers.connection, ['close'])
  t.strictSame(JSON.parse(response.body), { error: { ...TIMED_OUT, target: response.headers['x-request-id']?.[0] } }, 'the whole error body')
  t.ok(connection.socket.destroyed, 'the connection is closed')
}

function assertBetween (t: Test, elapsed: number, low: number, high: number, what: string): void {
  t.ok(elapsed >= low - EARLY_MS && elapsed < high, `${what} after ${Math.round(elapsed)} ms (between ${low} and ${high} ms)`)
}

async function assertStillServes (t: Test, marker: string): Promise<void> {
  const response = await rawExchange(stack.url, `GET /api/alerts?after=${marker} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
  t.equal(response.status, 200, 'the broker still serves')
  t.equal(upstream.requests.at(-1)?.url, `/api/alerts?after=${marker}`)
}

t.test('the limits given reach the server', async (t) => {
  t.equal(stack.app.server.headersTimeout, LIMITS.headersTimeoutMs)
  t.equal(stack.app.server.requestTimeout, LIMITS.requestTimeoutMs)
  t.equal(stack.app.server.keepAliveTimeout, LIMITS.keepAliveTimeoutMs)
})

t.test('a connection that sends nothing is closed at the headers timeout', async (t) => {
  const before = upstream.requests.length
  const connection = await openConnection(t, stack.url)
  const opened = performance.now()
  const closedAt = await connection.closed
  assertBetween(t, closedAt - opened, LIMITS.headersTimeoutMs, LIMITS.requestTimeoutMs, 'closed')
  t.equal(upstream.requests.length, before)
  await assertStillServes(t, 'idle-new')
})

t.test('headers that never end (slowloris) are cut off at the headers timeout', async (t) => {
  const before = upstream.requests.length
  const connection = await openConnection(t, stack.url)
  const started = performance.now()
  connection.socket.write(`GET /api/alerts HTTP/1.1\r\nHost: ${host}\r\n`)
  const closedAt = await connection.closed
  assertBetween(t, closedAt - started, LIMITS.headersTimeoutMs, LIMITS.requestTimeoutMs, 'cut off')
  assertTimedOut(t, connection)
  t.equal(upstream.requests.length, before, 'nothing forwarded')
  await assertStillServes(t, 'slowloris')
})

t.test('headers trickling in, one line at a time, are cut off at the headers timeout all the same', async (t) => {
  const before = upstream.requests.length
  const connection = await openConnection(t, stack.url)
  const started = performance.now()
  connection.socket.write(`GET /api/alerts HTTP/1.1\r\nHost: ${host}\r\n`)
  // The client's pace: a new header every 20 ms, for as long as the connection lasts.
  let sent = 0
  const trickle = setInterval(() => {
    if (!connection.socket.destroyed) connection.socket.write(`X-Trickle-${sent++}: x\r\n`)
  }, 20)
  t.teardown(() => clearInterval(trickle))
  const closedAt = await connection.closed
  clearInterval(trickle)
  assertBetween(t, closedAt - started, LIMITS.headersTimeoutMs, LIMITS.requestTimeoutMs, 'cut off')
  t.ok(sent > 3, `the client kept sending (${sent} header lines)`)
  assertTimedOut(t, connection)
  t.equal(upstream.requests.length, before, 'nothing forwarded')
  await assertStillServes(t, 'trickle')
})

t.test('a request line alone is cut off at the headers timeout', async (t) => {
  const connection = await openConnection(t, stack.url)
  const started = performance.now()
  connection.socket.write('GET /api/al')
  const closedAt = await connection.closed
  assertBetween(t, closedAt - started, LIMITS.headersTimeoutMs, LIMITS.requestTimeoutMs, 'cut off')
  assertTimedOut(t, connection)
  await assertStillServes(t, 'request-line')
})

t.test('a small body that stops short is cut off at the request timeout, and never forwarded', async (t) => {
  const before = upstream.requests.length
  const connection = await openConnection(t, stack.url)
  const started = performance.now()
  connection.socket.write(`POST /api/machines/x/isolate HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"Comment":`)
  const closedAt = await connection.closed
  assertBetween(t, closedAt - started, LIMITS.requestTimeoutMs, LIMITS.requestTimeoutMs * 4, 'cut off')
  assertTimedOut(t, connection)
  t.equal(upstream.requests.length, before, 'a body the broker holds is forwarded only once it is whole')
  await assertStillServes(t, 'slow-body')
})

t.test('a large streamed body that stops short is cut off at the request timeout, and the upstream request aborted', async (t) => {
  const before = upstream.requests.length
  const connection = await openConnection(t, stack.url)
  const arrived = upstream.nextRequest()
  const started = performance.now()
  connection.socket.write(`POST /api/machines/x/runliveresponse HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/octet-stream\r\n` +
    `Content-Length: ${2 * 1024 * 1024}\r\n\r\n`)
  connection.socket.write(Buffer.alloc(64 * 1024, 'x'))
  const { req } = await arrived
  req.on('error', () => {})
  const upstreamClosed = req.closed ? Promise.resolve() : new Promise((resolve) => req.once('close', resolve))
  const closedAt = await connection.closed
  assertBetween(t, closedAt - started, LIMITS.requestTimeoutMs, LIMITS.requestTimeoutMs * 4, 'cut off')
  assertTimedOut(t, connection)
  await upstreamClosed
  t.notOk(req.complete, 'the upstream never got a whole request')
  t.equal(upstream.requests.length, before + 1)
  await assertStillServes(t, 'slow-stream')
})

t.test('an idle keep-alive connection is closed at the keep-alive timeout', async (t) => {
  const connection = await openConnection(t, stack.url)
  connection.socket.write(`GET /api/alerts?keep HTTP/1.1\r\nHost: ${host}\r\n\r\n`)
  await connection.waitFor(/\r\n0\r\n\r\n$/)
  const answered = performance.now()
  const closedAt = await connection.closed
  // Node waits a second more than the Keep-Alive header says, so that the client closes first.
  assertBetween(t, closedAt - answered, LIMITS.keepAliveTimeoutMs, LIMITS.keepAliveTimeoutMs + 1_000 + 1_500, 'closed')
  t.match(connection.text(), /^HTTP\/1\.1 200 [^]*\r\nKeep-Alive: timeout=\d+/, 'the answer said the connection would be kept alive')
  t.equal(parseRawResponses(connection.text()).length, 1, 'nothing sent after the answer')
  await assertStillServes(t, 'keep-alive')
})
