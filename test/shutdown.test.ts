import { once } from 'node:events'
import { writeFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { DEFAULT_SHUTDOWN_GRACE_MS } from '../src/server.js'
import { startSimulator } from '../src/simulator/index.js'
import { startBrokerStack, simulatorEnv, ALL_ROLES } from './helpers/broker.js'
import { openConnection, parseRawResponses } from './helpers/raw-socket.js'
import { acceptsConnections, cliEnv, DEFAULT_WAIT_MS, logLines, spawnCli, type CliProcess } from './helpers/spawn.js'
import { startUpstream, type Upstream } from './helpers/upstream.js'

const home = t.testdir({})
const simulator = await startSimulator()
t.teardown(() => simulator.close())
const caFile = join(home, 'simulator-ca.pem')
writeFileSync(caFile, simulator.caCertPem)

/** Tokens from the simulator; requests go to `upstream`, a Defender API that answers when the test says. */
const serveEnv = (upstream: Upstream) => cliEnv(home, {
  ...simulatorEnv(simulator),
  BROKER_UPSTREAM: upstream.url,
  BROKER_CA_FILE: caFile,
  BROKER_PORT: '0'
})

/** `serve`, listening and holding its first token. */
async function startServe (t: Test, upstream: Upstream): Promise<{ cli: CliProcess, port: number }> {
  const cli = spawnCli(t, ['serve'], { env: serveEnv(upstream) })
  const line = await cli.waitForLine('stdout', /"msg":"broker listening"/)
  await cli.waitForLine('stdout', /"msg":"token acquired"/)
  return { cli, port: Number(new URL((JSON.parse(line) as { listen: string }).listen).port) }
}

/** Whether `port` stops accepting connections (the broker stops listening) within the usual wait. */
async function stopsListening (port: number): Promise<boolean> {
  const deadline = Date.now() + DEFAULT_WAIT_MS
  while (await acceptsConnections(port)) {
    if (Date.now() > deadline) return false
    await new Promise((resolve) => setImmediate(resolve))
  }
  return true
}

t.test('SIGTERM during a slow request: it completes, /readyz says 503 meanwhile, the process exits 0', async (t) => {
  const upstream = await startUpstream(t, () => {})
  const { cli, port } = await startServe(t, upstream)

  // One keep-alive connection, opened before the signal: the slow request, then (pipelined,
  // after the signal) the readiness probe. New connections are refused once shutdown starts.
  const socket: Socket = connect(port, '127.0.0.1')
  let received = ''
  socket.setEncoding('latin1')
  socket.on('data', (chunk: string) => { received += chunk })
  const closed = once(socket, 'close')
  await once(socket, 'connect')
  socket.write(`GET /api/alerts?$top=1 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`)
  const slow = await upstream.nextRequest()

  cli.child.kill('SIGTERM')
  await cli.waitForLine('stdout', /"msg":"shutting down: draining in-flight requests"/)
  t.ok(await stopsListening(port), 'no new connections once shutdown started')
  socket.write(`GET /readyz HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`)
  t.equal(cli.child.exitCode, null, 'still running: a request is in flight')

  slow.res.writeHead(200, { 'content-type': 'application/json', 'content-length': '12', 'request-id': 'slow-upstream-1' })
  slow.res.end('{"value":[]}')
  await closed
  const [alerts, ready, ...more] = parseRawResponses(received)
  t.equal(alerts?.status, 200, 'the in-flight request completed with 200')
  t.equal(alerts?.body, '{"value":[]}', 'with its whole body')
  t.equal(ready?.status, 503, '/readyz, asked after the signal, is 503')
  t.same(JSON.parse(ready?.body ?? 'null'), { status: 'not ready', reasons: { broker: 'shutting down' } }, 'and says why')
  t.same(ready?.headers.connection, ['close'], 'and closes the connection')
  t.ok(ready?.headers['x-request-id'], 'with a request id, as every response')
  t.same(more, [], 'nothing else')

  const exit = await cli.waitForExit()
  t.equal(exit.code, 0, 'exit code 0')
  t.equal(exit.signal, null, 'handled, not killed')
  const logs = logLines(exit.stdout)
  const at = (predicate: (line: Record<string, unknown>) => boolean) => logs.findIndex(predicate)
  const shutdown = at((line) => line.signal === 'SIGTERM')
  const slowLine = at((line) => line.msg === 'request' && line.path === '/api/alerts')
  const readyLine = at((line) => line.msg === 'request' && line.path === '/readyz')
  t.ok(shutdown >= 0 && slowLine > shutdown && readyLine > shutdown, 'both requests were logged after the shutdown began')
  t.match(logs[slowLine], { status: 200, upstreamRequestId: 'slow-upstream-1' })
  t.match(logs[readyLine], { status: 503 })
  t.equal(exit.stderr, '', 'nothing on stderr')
})

t.test('a second signal exits at once with code 1, cutting in-flight requests off', async (t) => {
  const upstream = await startUpstream(t, () => {})
  const { cli, port } = await startServe(t, upstream)
  const inFlight = request(`http://127.0.0.1:${port}/api/alerts`).then((res) => res.statusCode, (err: Error & { code?: string }) => err.code ?? err.message)
  await upstream.nextRequest()

  const started = Date.now()
  cli.child.kill('SIGTERM')
  await cli.waitForLine('stdout', /"msg":"shutting down: draining in-flight requests"/)
  cli.child.kill('SIGTERM')
  const exit = await cli.waitForExit()
  t.equal(exit.code, 1, 'exit code 1: the drain was cut short')
  t.equal(exit.signal, null, 'handled, not killed')
  t.ok(Date.now() - started < DEFAULT_SHUTDOWN_GRACE_MS, 'well before the grace period ends')
  t.match(logLines(exit.stdout).find((line) => line.level === 50), { signal: 'SIGTERM', msg: /^second signal: exiting at once/ }, 'the log says why')
  t.not(await inFlight, 200, 'the in-flight request did not complete')
})

t.test('closing does not wait on connections with nothing in progress, even those that never sent a request', { timeout: 10_000 }, async (t) => {
  const upstream = await startUpstream(t)
  const stack = await startBrokerStack(t, { simulator: { roles: ALL_ROLES }, env: { BROKER_UPSTREAM: upstream.url } })
  const silent = await openConnection(t, stack.url)
  const halfHead = await openConnection(t, stack.url)
  halfHead.socket.write('GET /api/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\n')
  const keptAlive = await openConnection(t, stack.url)
  keptAlive.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
  await keptAlive.waitFor(/\r\n\r\n\{"status":"ok"/)

  // With the keep-alive timeout at its default (72 s), any of them would hold this up past the test's timeout.
  const started = performance.now()
  await stack.app.close()
  const closedAt = await Promise.all([silent.closed, halfHead.closed, keptAlive.closed])
  const latest = Math.max(...closedAt) - started
  t.ok(latest < 5_000, `closed, and so were the three connections, ${Math.round(latest)} ms after close() began`)
  t.equal(silent.text(), '', 'nothing was written to the silent one')
})
