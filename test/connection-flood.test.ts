import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { request as httpRequest } from 'node:http'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { startBrokerStack, ALL_ROLES } from './helpers/broker.js'
import { clientFor, newClientKey } from './helpers/profiles.js'
import { openConnection, type RawConnection, parseRawResponses } from './helpers/raw-socket.js'
import { startUpstream } from './helpers/upstream.js'

// One client with no key holds 1,000 connections open: idle keep-alive after a keyless
// /healthz, heads sent a byte every 2 s, silent ones; each one the broker closes is opened
// again a second later. Clients with a key and the health probe are still answered, within 1 s.
//
// The flood runs in a child process (test/helpers/hold-connections.mjs) started through bash,
// which raises its open-file limit to what it may (1,000 sockets and more are over the common
// soft limit of 1024); the broker, which keeps to its 256 connections, runs in this process.

const FLOOD = 1_000
const RECONNECT_MS = 1_000
/** Longer than the broker's 5 s idle timeout for connections with no key, so it is crossed. */
const HOLD_MS = 7_000
const ANSWER_WITHIN_MS = 1_000

const key = newClientKey()

const upstream = await startUpstream(t)
const stack = await startBrokerStack(t, {
  simulator: { roles: ALL_ROLES },
  env: { BROKER_UPSTREAM: upstream.url },
  config: (c) => ({ ...c, clients: [clientFor('soar', key)] })
})
const { host, port } = new URL(stack.url)

/** One request on a connection of its own, as a tool that just started would send it. */
function fresh (path: string, headers: Record<string, string> = {}): Promise<{ status: number, ms: number }> {
  const started = performance.now()
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers, agent: false, timeout: 5_000 }, (res) => {
      res.resume()
      res.once('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - started }))
    })
    req.once('timeout', () => req.destroy(new Error('no answer in 5 s')))
    // A reset or a refused connection: status 0.
    req.once('error', () => resolve({ status: 0, ms: performance.now() - started }))
    req.end()
  })
}

function startFlood () {
  const script = fileURLToPath(new URL('./helpers/hold-connections.mjs', import.meta.url))
  const child = spawn('bash', ['-c', 'ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$0" "$@"',
    process.execPath, script, port, String(FLOOD), String(RECONNECT_MS), String(HOLD_MS + 20_000)],
  { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '' } })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk })
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk })
  const exited = once(child, 'close')
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGKILL')
    await exited
  })
  const line = (pattern: RegExp) => new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the flood printed no ${pattern} in 30 s\nstdout: ${stdout}\nstderr: ${stderr}`)), 30_000)
    const check = () => {
      const found = stdout.split('\n').find((l) => pattern.test(l))
      if (found !== undefined) {
        clearTimeout(timer)
        resolve(found)
      } else if (child.exitCode !== null) {
        clearTimeout(timer)
        reject(new Error(`the flood exited before ${pattern}\nstdout: ${stdout}\nstderr: ${stderr}`))
      }
    }
    child.stdout.on('data', check)
    child.once('close', check)
    check()
  })
  return {
    ready: () => line(/^ready /),
    /** Ends the flood (stdin closes) and resolves with its counts. */
    stop: async () => {
      child.stdin.end()
      const stats = await line(/^stats /)
      return JSON.parse(stats.slice('stats '.length)) as { opened: number, closedByBroker: number, healthzAnswered: number }
    }
  }
}

t.test('1,000 connections held by a client with no key lock out neither keyed clients nor the health probe', async (t) => {
  // Every connection the broker is offered, whether it keeps it or drops it at once.
  const offered = { count: 0 }
  let allOffered: () => void = () => {}
  const offeredAll = new Promise<void>((resolve) => { allOffered = resolve })
  const count = () => { if (++offered.count === FLOOD) allOffered() }
  stack.app.server.on('connection', count).on('drop', count)

  // A tool with a key and a keep-alive connection it made before the flood.
  const keyed = await openConnection(t, stack.url)
  const keyedGet = (marker: string) => keyed.socket.write(`GET /api/alerts?${marker} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${key}\r\n\r\n`)
  keyedGet('before')
  await keyed.waitFor(/^HTTP\/1\.1 200 [^]*\r\n\r\n/)

  const flood = startFlood()
  await flood.ready()
  // The flood's sockets connect before the broker has accepted them all.
  await Promise.race([offeredAll, sleep(30_000, undefined, { ref: false })])
  t.ok(offered.count >= FLOOD, `the broker was offered all ${FLOOD} connections (${offered.count})`)

  const until = performance.now() + HOLD_MS
  let round = 0
  while (performance.now() < until) {
    round++
    const forwarded = await fresh(`/api/alerts?round=${round}`, { authorization: `Bearer ${key}` })
    t.ok(forwarded.status === 200 && forwarded.ms < ANSWER_WITHIN_MS,
      `round ${round}: a keyed request on a new connection is answered 200 within 1 s (${forwarded.status} in ${Math.round(forwarded.ms)} ms)`)
    const health = await fresh('/healthz')
    t.ok(health.status === 200 && health.ms < ANSWER_WITHIN_MS,
      `round ${round}: /healthz answers 200 within 1 s (${health.status} in ${Math.round(health.ms)} ms)`)
    const answers = parseRawResponses(keyed.text()).length
    keyedGet(`round-${round}`)
    await keyed.waitFor(new RegExp(`^(?:HTTP/1\\.1 200 [^]*?\\r\\n\\r\\n[^]*?){${answers + 1}}`))
    // The flood gets the time to reconnect what was closed.
    await sleep(250)
  }
  t.ok(round >= 5, `${round} rounds`)
  t.notOk(keyed.socket.destroyed, 'the keyed keep-alive connection was never closed to make room')

  const stats = await flood.stop()
  t.ok(stats.closedByBroker >= FLOOD - 256, `the broker closed the flood's connections to make room (${stats.closedByBroker})`)
  t.ok(stats.healthzAnswered > 0, 'the flood\'s own /healthz requests were answered too')
})

t.test('at the limit, a new connection closes the oldest idle one with no key; keyed ones stay', async (t) => {
  const small = await startBrokerStack(t, {
    simulator: { roles: ALL_ROLES },
    env: { BROKER_UPSTREAM: upstream.url },
    config: (c) => ({ ...c, clients: [clientFor('soar', key)] }),
    deps: { limits: { maxConnections: 4 } }
  })
  const smallHost = new URL(small.url).host
  const accepted: unknown[] = []
  small.app.server.on('connection', (socket) => accepted.push(socket))
  const acceptedCount = async (n: number) => {
    while (accepted.length < n) await once(small.app.server, 'connection')
  }

  const keyed = await openConnection(t, small.url)
  keyed.socket.write(`GET /api/alerts?keyed HTTP/1.1\r\nHost: ${smallHost}\r\nX-Broker-Key: ${key}\r\n\r\n`)
  await keyed.waitFor(/^HTTP\/1\.1 200 [^]*\r\n\r\n/)
  const idle = await openConnection(t, small.url)
  idle.socket.write(`GET /healthz HTTP/1.1\r\nHost: ${smallHost}\r\n\r\n`)
  await idle.waitFor(/^HTTP\/1\.1 200 [^]*\r\n\r\n/)
  const silent = await openConnection(t, small.url)
  const slow = await openConnection(t, small.url)
  slow.socket.write(`GET /healthz HTTP/1.1\r\nHost: ${smallHost}\r\nX-Slow: a`)
  await acceptedCount(4)

  const names = new Map<RawConnection, string>([[keyed, 'keyed'], [idle, 'idle'], [silent, 'silent'], [slow, 'slow']])
  /** The name of the first of `connections` to close that had not closed before. */
  const nextClosed = async (connections: RawConnection[]) => {
    const open = connections.filter((connection) => names.has(connection))
    const first = await Promise.race(open.map((connection) => connection.closed.then(() => connection)))
    const name = names.get(first)
    names.delete(first)
    return name
  }
  const newcomers: RawConnection[] = []
  for (const [n, expected] of [[5, 'idle'], [6, 'silent'], [7, 'slow']] as const) {
    const newcomer = await openConnection(t, small.url)
    newcomers.push(newcomer)
    await acceptedCount(n)
    t.equal(await nextClosed([keyed, idle, silent, slow]), expected,
      `connection ${n} closes the oldest connection with no key and nothing in progress`)
  }
  t.equal(parseRawResponses(idle.text()).length, 1, 'the idle one got its answer and nothing more')
  t.notOk(keyed.socket.destroyed, 'the keyed connection is still open')
  keyed.socket.write(`GET /api/alerts?again HTTP/1.1\r\nHost: ${smallHost}\r\nAuthorization: Bearer ${key}\r\n\r\n`)
  await keyed.waitFor(/^(?:HTTP\/1\.1 200 [^]*?\r\n\r\n[^]*?){2}/)
  t.strictSame(parseRawResponses(keyed.text()).map((answer) => answer.status), [200, 200], 'and serves its next request')

  // Nothing left without a key that is idle: the next one closes the keyed connection, which is idle.
  for (const newcomer of newcomers) newcomer.socket.write(`GET /healthz HTTP/1.1\r\nHost: ${smallHost}\r\nX-Broker-Key: ${key}\r\n\r\n`)
  await Promise.all(newcomers.map((newcomer) => newcomer.waitFor(/^HTTP\/1\.1 200 /)))
  for (const newcomer of newcomers) names.set(newcomer, 'a newcomer')
  const last = await openConnection(t, small.url)
  t.equal(await nextClosed([keyed, ...newcomers]), 'keyed', 'with every connection keyed, the oldest idle one makes room')
  last.socket.write(`GET /healthz HTTP/1.1\r\nHost: ${smallHost}\r\nConnection: close\r\n\r\n`)
  await last.closed
  t.match(last.text(), /^HTTP\/1\.1 200 /, 'the newcomer is served')
  t.notOk(newcomers.some((newcomer) => newcomer.socket.destroyed), 'the keyed probes\' connections stay')
})

t.test('with client keys, a connection that presented none is closed after the short idle timeout', async (t) => {
  const SHORT_MS = 300
  const limits = { unauthenticatedIdleTimeoutMs: SHORT_MS }
  const keyedStack = await startBrokerStack(t, {
    simulator: { roles: ALL_ROLES },
    env: { BROKER_UPSTREAM: upstream.url },
    config: (c) => ({ ...c, clients: [clientFor('soar', key)] }),
    deps: { limits }
  })
  const keylessStack = await startBrokerStack(t, {
    simulator: { roles: ALL_ROLES },
    env: { BROKER_UPSTREAM: upstream.url },
    deps: { limits }
  })
  const exchange = async (url: string, head: string) => {
    const connection = await openConnection(t, url)
    connection.socket.write(`${head}Host: ${new URL(url).host}\r\n\r\n`)
    await connection.waitFor(/^HTTP\/1\.1 \d{3} [^]*\r\n\r\n/)
    return { connection, answered: performance.now() }
  }
  // No keys configured: every client is a local process, and keeps the normal keep-alive timeout.
  const local = await exchange(keylessStack.url, 'GET /healthz HTTP/1.1\r\n')
  const keyed = await exchange(keyedStack.url, `GET /api/alerts?keyed HTTP/1.1\r\nAuthorization: Bearer ${key}\r\n`)
  const probeWithKey = await exchange(keyedStack.url, `GET /healthz HTTP/1.1\r\nX-Broker-Key: ${key}\r\n`)
  const probe = await exchange(keyedStack.url, 'GET /healthz HTTP/1.1\r\n')
  const refused = await exchange(keyedStack.url, 'GET /api/alerts?nokey HTTP/1.1\r\n')
  t.match(refused.connection.text(), /^HTTP\/1\.1 401 /)
  const silent = await openConnection(t, keyedStack.url)
  const opened = performance.now()

  for (const [what, closedAt, from] of [
    ['an idle connection after a keyless /healthz', await probe.connection.closed, probe.answered],
    ['an idle connection after a 401', await refused.connection.closed, refused.answered],
    ['a silent connection', await silent.closed, opened]
  ] as const) {
    const idleFor = closedAt - from
    t.ok(idleFor >= SHORT_MS - 5 && idleFor < SHORT_MS + 1_500, `${what} is closed after ${Math.round(idleFor)} ms idle`)
  }
  t.notOk(keyed.connection.socket.destroyed, 'a connection that presented a key stays')
  t.notOk(probeWithKey.connection.socket.destroyed, 'so does a probe\'s that sent a valid key')
  t.notOk(local.connection.socket.destroyed, 'and, with no keys configured, a local client\'s')
})
