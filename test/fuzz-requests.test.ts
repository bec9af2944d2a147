import { createHash, randomInt } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:http'
import { connect, type AddressInfo } from 'node:net'
import t from 'tap'
import { getGlobalDispatcher } from 'undici'
import type { ProfileConfig } from '../src/config/types.js'
import { compileRules } from '../src/inbound/rules.js'
import { checkRequestTarget } from '../src/inbound/request-target.js'
import { startBrokerStack, ALL_ROLES } from './helpers/broker.js'
import { clientFor } from './helpers/profiles.js'
import { startUpstream, type Upstream } from './helpers/upstream.js'

// A seeded generator of hostile requests: random bytes, valid requests mutated byte by byte,
// and the attack batteries' pieces recombined. For every case the broker must answer with
// well-formed HTTP or close the connection; it must keep serving; the token must reach only
// its profile's upstream; and an upstream must only ever see paths that pass the checks.
// A failure prints the seed: FUZZ_SEED=<seed> replays the run, FUZZ_CASES=<n> sizes it.

const SEED = process.env.FUZZ_SEED === undefined ? randomInt(2 ** 31) : Number(process.env.FUZZ_SEED)
const CASES = Number(process.env.FUZZ_CASES ?? 3000)
const CONCURRENCY = 24
const BATCH = 250
/** A case that neither closes nor completes in this time has hung the broker: a failure. */
const CASE_DEADLINE_MS = 15_000

/** mulberry32: tiny, seedable, good enough to pick pieces. */
function mulberry32 (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}
const random = mulberry32(SEED)
const chance = (p: number) => random() < p
const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T
const between = (low: number, high: number) => low + Math.floor(random() * (high - low + 1))

// The world: two profiles with their own upstreams, an attacker's server nobody should ever
// reach, and client keys.
const key = createHash('sha256').update(`fuzz-${SEED}`).digest('base64url')
const narrowKey = createHash('sha256').update(`narrow-${SEED}`).digest('base64url')
const attacker = createServer((_req, res) => res.end())
let attackerConnections = 0
attacker.on('connection', () => { attackerConnections++ })
attacker.listen(0, '127.0.0.1')
await once(attacker, 'listening')
t.teardown(() => new Promise((resolve) => { attacker.closeAllConnections(); attacker.close(resolve) }))
const ATTACKER = `127.0.0.1:${(attacker.address() as AddressInfo).port}`

const upstream = await startUpstream(t)
const fabrikamUpstream = await startUpstream(t)
const RULES = { default: ['* /api/**'], fabrikam: ['GET /api/**'] }
const budget = { perMinute: 1_000_000, perHour: 10_000_000, maxQueueSeconds: 0 }
const stack = await startBrokerStack(t, {
  simulator: { roles: ALL_ROLES },
  env: { BROKER_UPSTREAM: upstream.url },
  deps: { limits: { headersTimeoutMs: 250, requestTimeoutMs: 500, keepAliveTimeoutMs: 200, connectionsCheckingIntervalMs: 25 } },
  config: (c) => {
    const first = c.profiles[0] as ProfileConfig
    return {
      ...c,
      listen: { ...c.listen, allowedHosts: ['broker.internal'] },
      profiles: [
        { ...first, allow: RULES.default, rateLimit: budget },
        { ...first, name: 'fabrikam', basePath: '/fabrikam', upstream: fabrikamUpstream.url, allow: RULES.fabrikam, rateLimit: budget }
      ],
      clients: [
        clientFor('fuzz', key),
        clientFor('narrow', narrowKey, { profiles: ['default'], allow: ['GET /api/alerts/**'] })
      ]
    }
  }
})
const BROKER = new URL(stack.url).host
const tokens = {
  default: (await stack.app.profiles[0]?.tokens.get())?.value as string,
  fabrikam: (await stack.app.profiles[1]?.tokens.get())?.value as string
}
t.comment(`fuzz seed ${SEED} (replay with FUZZ_SEED=${SEED}), ${CASES} cases`)

// The pieces: each has a benign list and a hostile one, and each case its own hostility (the
// chance that a piece is hostile), so that some cases are nearly valid and reach the upstream.
const HIDDEN = `GET //${ATTACKER}/x HTTP/1.1\r\nHost: ${ATTACKER}\r\n\r\n`
const METHODS = {
  benign: ['GET', 'GET', 'GET', 'POST', 'HEAD', 'PUT', 'PATCH', 'DELETE'],
  hostile: ['OPTIONS', 'TRACE', 'CONNECT', 'PROPFIND', 'PURGE', 'QUERY', 'M-SEARCH', 'get', 'G ET', 'GET\u0000', '', 'XYZZY']
}
const PREFIXES = {
  benign: ['/api/', '/api/', '/api/', '/fabrikam/api/', '/fabrikam/api/', '/', '/API/', '/%61pi/'],
  hostile: ['//', '\\', '/\\', `http://${ATTACKER}/`, `https://${ATTACKER}/`, `http://${BROKER}/`, `${upstream.url}/`, '*', '',
    `${ATTACKER}/`, `//${ATTACKER}/`, `/%2F%2F${ATTACKER}/`, '/./', '/../', '/%2e%2e/', '/fabrikam/../', '/fabrikam%2f',
    '/%66abrikam/', '/fabrikam', '/api;/../', '/healthz/../']
}
const SEGMENTS = {
  benign: ['api', 'api', 'alerts', 'machines', 'x', 'isolate', 'isol%61te', 'ISOLATE', 'unisolate', 'advancedqueries', 'run',
    '~', '%7e', '%41', 'a'.repeat(300), 'da637%20x', '1e5bc9d7e413ddd7902c2932e418702b84d0cc07'],
  hostile: ['..', '.', '%2e%2e', '%2E', '.%2e', '%2f', '%2F', '%5c', '%5C', '\\', '', ';', '..;', ';x=1', '%00', '%0d%0a',
    '%0a', '\r\n', '\n', '\u0000', '\t', ' ', '\u00e9', '%e9', '%', '%zz', '%2', '*', `@${ATTACKER}`, ATTACKER, 'fabrikam',
    'healthz', 'status', 'metrics', '?', '#', '&', '%3f', '%23', '//', 'http:', '%25', '%252f', '$top=1']
}
const VERSIONS = {
  benign: ['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0'],
  hostile: ['HTTP/2.0', 'HTTP/1.2', 'HTTP/0.9', 'HTTP/11', 'http/1.1', '', 'HTTP/1.1 x']
}
const HOSTS = {
  benign: [BROKER, BROKER, 'localhost', 'broker.internal'],
  hostile: [ATTACKER, 'evil.example', '', `localhost:1@${ATTACKER}`, upstream.host, `${BROKER}, ${ATTACKER}`, '[::1', 'broker.internal:1']
}
const KEYS = {
  benign: [`X-Broker-Key: ${key}`, `Authorization: Bearer ${key}`, `Authorization: Bearer ${narrowKey}`],
  hostile: ['X-Broker-Key: wrong', `Authorization: Basic ${key}`, '', `X-Broker-Key: ${key}, ${key}`, `Authorization: Bearer ${key}\u0000`]
}
const EXTRA_HEADERS = {
  benign: ['Content-Type: text/plain', 'Content-Type: application/json', 'Connection: close', 'Connection: keep-alive',
    'Accept: */*', 'Sec-Fetch-Site: same-origin', 'TE: trailers', 'Expect: 100-continue', `X-Forwarded-Host: ${ATTACKER}`,
    `Forwarded: host=${ATTACKER}`, `X-Original-URL: //${ATTACKER}/x`, `X-Rewrite-URL: http://${ATTACKER}/`,
    'X-HTTP-Method-Override: DELETE', `Proxy-Authorization: Basic ${key}`, 'Cookie: a=b', `Referer: http://${ATTACKER}/`,
    'X-Request-Id: ../../x', 'Connection: close, x-broker-key', 'Connection: authorization', 'Upgrade: h2c', 'TE: chunked, identity'],
  hostile: ['Origin: https://evil.example', 'Origin: null', 'Sec-Fetch-Site: cross-site', 'Connection: upgrade', 'Upgrade: websocket',
    'Expect: nothing', 'Transfer-Encoding: chunked', 'Transfer-Encoding: chunked, identity', 'Transfer-Encoding: identity',
    'Transfer-Encoding: gzip, chunked', 'Transfer-Encoding : chunked', 'Transfer-Encoding:\tchunked', 'Content-Length: 0',
    'Content-Length: 5', 'Content-Length: -1', 'Content-Length: 99999999999999999999', 'X-Bad : y', ': empty-name',
    'no-colon-at-all', 'X-Nul: a\u0000b', 'X-Cr: a\rb', ' folded: continuation', `Host: ${ATTACKER}`, `X-Big: ${'b'.repeat(2000)}`,
    'X-\u00e9: x']
}

let hostility = 0.5
const choose = <T>(pieces: { benign: readonly T[], hostile: readonly T[] }): T => pick(chance(hostility) ? pieces.hostile : pieces.benign)

function requestLine (): string {
  let target = choose(PREFIXES)
  for (let i = between(0, 5); i > 0; i--) target += choose(SEGMENTS) + (chance(0.85) ? '/' : '')
  if (chance(0.3)) target += `?${choose(SEGMENTS)}=${choose(SEGMENTS)}`
  const space = chance(1 - hostility / 4) ? ' ' : pick(['  ', '\t', ''])
  return `${choose(METHODS)}${space}${target}${space}${choose(VERSIONS)}`
}

function headerLines (): string[] {
  const lines: string[] = []
  if (chance(1 - hostility / 10)) lines.push(`Host: ${choose(HOSTS)}`)
  if (chance(hostility / 10)) lines.push(`Host: ${choose(HOSTS)}`)
  const presented = choose(KEYS)
  if (presented !== '') lines.push(presented)
  for (let i = between(0, 3); i > 0; i--) lines.push(choose(EXTRA_HEADERS))
  if (chance(0.01)) lines.push(`X-Huge: ${'h'.repeat(20 * 1024)}`)
  if (chance(0.02)) for (let i = 0; i < 150; i++) lines.push(`X-Many-${i}: ${i}`)
  return lines.sort(() => random() - 0.5)
}

function body (lines: string[]): string {
  const content = pick(['{"Comment":"fuzz"}', 'DeviceInfo | take 1', HIDDEN, `0\r\n\r\n${HIDDEN}`, 'x'.repeat(between(1, 2000))])
  const length = Buffer.byteLength(content, 'latin1')
  if (!chance(hostility)) {
    if (chance(0.5)) return ''
    if (chance(0.7)) {
      lines.push(`Content-Length: ${length}`)
      return content
    }
    lines.push('Transfer-Encoding: chunked')
    return `${length.toString(16)}\r\n${content}\r\n0\r\n\r\n`
  }
  switch (between(0, 2)) {
    case 0: lines.push(`Content-Length: ${Math.max(0, length + between(-5, 5))}`); return content
    case 1: lines.push('Transfer-Encoding: chunked'); return `${pick(['3', 'zz', '-1', 'ffffffffffffffffff', '3;x', '3 '])}\r\n${content}\r\n0\r\n\r\n`
    default: return content
  }
}

/** One request, as hostile as the case is. */
function validish (): string {
  const lines = headerLines()
  const payload = body(lines)
  const eol = chance(1 - hostility / 10) ? '\r\n' : pick(['\n', '\r', '\r\r\n'])
  return `${requestLine()}${eol}${lines.join(eol)}${eol}${eol}${payload}`
}

function mutate (bytes: Buffer): Buffer {
  const out = [...bytes]
  const interesting = [0x0d, 0x0a, 0x00, 0x20, 0x3a, 0x2f, 0x25, 0x09, 0x7f, 0xff, 0x5c, 0x2e, 0x40, 0x3f, 0x23, 0x2c]
  for (let i = between(1, 6); i > 0 && out.length > 0; i--) {
    const at = between(0, out.length - 1)
    switch (between(0, 4)) {
      case 0: out[at] = between(0, 255); break
      case 1: out.splice(at, 0, pick(interesting)); break
      case 2: out.splice(at, between(1, 8)); break
      case 3: out.splice(at, 0, ...out.slice(at, at + between(1, 40))); break
      default: out.length = Math.max(1, at)
    }
  }
  return Buffer.from(out)
}

interface Case {
  index: number
  bytes: Buffer
  /** Half-close the connection after writing: the broker sees the client go away mid-request. */
  halfClose: boolean
}

function generate (index: number): Case {
  hostility = random() ** 3
  const kind = random()
  let bytes: Buffer
  if (kind < 0.07) {
    bytes = Buffer.from(Array.from({ length: between(1, 300) }, () => between(0, 255)))
  } else if (kind < 0.1) {
    bytes = Buffer.from(Array.from({ length: between(1, 200) }, () => between(0x20, 0x7e)).map((c) => String.fromCharCode(c)).join('') + '\r\n\r\n', 'latin1')
  } else if (kind < 0.35) {
    bytes = mutate(Buffer.from(validish(), 'latin1'))
  } else {
    bytes = Buffer.from(validish() + (chance(0.1) ? validish() : ''), 'latin1')
  }
  return { index, bytes, halfClose: chance(0.15) }
}

// One case over its own connection, and what a well-formed answer is.
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** Checks the bytes are whole HTTP/1.1 responses; returns why not, or undefined. Done: a final response is complete and the connection stays open. */
function readResponses (text: string, mayHead: boolean, closed: boolean): { problem?: string, done: boolean, statuses: number[] } {
  const statuses: number[] = []
  let at = 0
  while (at < text.length) {
    const end = text.indexOf('\r\n\r\n', at)
    if (end === -1) return { problem: closed ? 'a response cut off in its headers' : undefined, done: false, statuses }
    const [statusLine = '', ...fields] = text.slice(at, end).split('\r\n')
    const status = /^HTTP\/1\.1 (\d{3}) [^\r\n]*$/.exec(statusLine)?.[1]
    if (status === undefined) return { problem: `a bad status line ${JSON.stringify(statusLine)}`, done: false, statuses }
    const headers: Record<string, string> = {}
    for (const field of fields) {
      const colon = field.indexOf(':')
      if (colon < 1 || !TOKEN.test(field.slice(0, colon))) return { problem: `a bad header line ${JSON.stringify(field)}`, done: false, statuses }
      headers[field.slice(0, colon).toLowerCase()] = field.slice(colon + 1).trim()
    }
    const code = Number(status)
    statuses.push(code)
    at = end + 4
    if (code >= 100 && code < 200) continue
    if (headers['x-request-id'] === undefined) return { problem: `a ${code} without x-request-id`, done: false, statuses }
    // A response to HEAD has its length but no body: where a case may hold a HEAD request, a
    // response followed by another, or by the end of the connection, is taken to be one.
    if (code === 204 || code === 304 || (mayHead && (text.startsWith('HTTP/1.', at) || (closed && at === text.length)))) {
      // No body.
    } else if (headers['transfer-encoding'] === 'chunked') {
      for (;;) {
        const lineEnd = text.indexOf('\r\n', at)
        if (lineEnd === -1) return { problem: closed ? 'a chunked body cut off' : undefined, done: false, statuses }
        const size = parseInt(text.slice(at, lineEnd), 16)
        if (!/^[0-9a-f]+$/i.test(text.slice(at, lineEnd))) return { problem: 'a bad chunk size', done: false, statuses }
        at = lineEnd + 2 + size + 2
        if (at > text.length) return { problem: closed ? 'a chunk cut off' : undefined, done: false, statuses }
        if (size === 0) break
      }
    } else if (headers['content-length'] !== undefined) {
      at += Number(headers['content-length'])
      if (at > text.length) return { problem: closed ? 'a body cut off' : undefined, done: false, statuses }
    } else {
      return { done: false, statuses }
    }
    if (at >= text.length) return { done: !/close/i.test(headers.connection ?? ''), statuses }
  }
  return { done: false, statuses }
}

interface Outcome {
  text: string
  problem?: string
  statuses: number[]
}

function run (c: Case): Promise<Outcome> {
  const mayHead = c.bytes.includes('HEAD ')
  return new Promise((resolve) => {
    const socket = connect(Number(new URL(stack.url).port), '127.0.0.1')
    const chunks: Buffer[] = []
    const deadline = setTimeout(() => finish('the broker neither answered nor closed (hung)'), CASE_DEADLINE_MS)
    let settled = false
    const finish = (problem?: string) => {
      if (settled) return
      settled = true
      clearTimeout(deadline)
      socket.destroy()
      const text = Buffer.concat(chunks).toString('latin1')
      const read = readResponses(text, mayHead, true)
      const truncatedByUs = c.halfClose && read.problem !== undefined && / cut off/.test(read.problem)
      resolve({ text, statuses: read.statuses, problem: problem ?? (truncatedByUs ? undefined : read.problem) })
    }
    socket.on('error', () => {})
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk)
      const read = readResponses(Buffer.concat(chunks).toString('latin1'), mayHead, false)
      if (read.problem !== undefined || read.done) finish()
    })
    socket.on('close', () => finish())
    socket.on('connect', () => {
      socket.write(c.bytes)
      if (c.halfClose) socket.end()
    })
  })
}

// The run.
const responses: string[] = []
const failures: string[] = []
const histogram = new Map<string, number>()
const describe = (c: Case) => `case ${c.index} (seed ${SEED}${c.halfClose ? ', half-closed' : ''}): ${JSON.stringify(c.bytes.toString('latin1').slice(0, 600))}`

async function assertServing (after: number): Promise<void> {
  const res = await getGlobalDispatcher().request({ origin: stack.url, path: '/healthz', method: 'GET' })
  await res.body.dump()
  if (res.statusCode !== 200) failures.push(`/healthz answered ${res.statusCode} after ${after} cases (seed ${SEED})`)
}

const started = performance.now()
for (let first = 0; first < CASES; first += BATCH) {
  const batch = Array.from({ length: Math.min(BATCH, CASES - first) }, (_, i) => generate(first + i))
  let next = 0
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < batch.length) {
      const c = batch[next++] as Case
      const outcome = await run(c)
      responses.push(outcome.text)
      if (outcome.problem !== undefined) failures.push(`${outcome.problem}: ${describe(c)}\n  got ${JSON.stringify(outcome.text.slice(0, 400))}`)
      if (outcome.statuses.includes(500)) failures.push(`a 500: ${describe(c)}\n  got ${JSON.stringify(outcome.text.slice(0, 400))}`)
      const shape = outcome.statuses.length === 0 ? 'closed without an answer' : outcome.statuses.join(',')
      histogram.set(shape, (histogram.get(shape) ?? 0) + 1)
    }
  }))
  await assertServing(first + batch.length)
}
const seconds = (performance.now() - started) / 1000

t.test(`${CASES} cases: well-formed answers or a closed connection, and the broker kept serving`, async (t) => {
  t.comment(`${CASES} cases in ${seconds.toFixed(1)} s; outcomes: ${[...histogram].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([k, v]) => `${k}: ${v}`).join('; ')}`)
  t.strictSame(failures.slice(0, 20), [], `no malformed answer, no hang, no 500, /healthz after every batch (seed ${SEED}; ${failures.length} failures)`)
  t.ok(upstream.requests.length + fabrikamUpstream.requests.length > CASES / 20, `the cases reached the upstreams too (${upstream.requests.length} + ${fabrikamUpstream.requests.length} requests)`)
})

t.test('the token went to its profile\'s upstream and nowhere else', async (t) => {
  t.equal(attackerConnections, 0, `the attacker's server was never even connected to (seed ${SEED})`)
  t.equal(stack.simulator.defender.requests.length, 0, 'nor was the simulator\'s Defender API, another origin')
  const secrets = [...stack.simulator.entra.issuedTokens, key, narrowKey]
  const signatures = stack.simulator.entra.issuedTokens.map((token) => token.split('.')[2] ?? token)
  const answered = responses.join('\n')
  const logs = stack.logs.text()
  for (const secret of [...secrets, ...signatures]) {
    if (answered.includes(secret)) t.fail(`a token or key in a response (seed ${SEED})`)
    if (logs.includes(secret)) t.fail(`a token or key in the log (seed ${SEED})`)
  }
  const check = (seen: Upstream, profile: 'default' | 'fabrikam') => {
    const allows = compileRules(RULES[profile])
    const wrong = seen.requests.filter((r) =>
      r.headers.authorization !== `Bearer ${tokens[profile]}` ||
      r.headers.host !== seen.host ||
      r.headers['x-broker-key'] !== undefined ||
      r.rawHeaders.some((value) => value.includes(key) || value.includes(narrowKey)))
    t.same(wrong.map((r) => `${r.method} ${r.url}`), [], `${profile}: its own token, its own Host, never a client key (seed ${SEED})`)
    const refused = seen.requests.filter((r) =>
      checkRequestTarget(r.url) !== undefined || !allows(r.method, r.url) || r.method === 'TRACE' || r.method === 'CONNECT')
    t.same(refused.map((r) => `${r.method} ${r.url}`), [], `${profile}: every path passed the request-target check and the rules, and no TRACE or CONNECT (seed ${SEED})`)
  }
  check(upstream, 'default')
  check(fabrikamUpstream, 'fabrikam')
})
