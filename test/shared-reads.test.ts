import { createHash } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import t from 'tap'
import { request } from 'undici'
import type { Config } from '../src/config/types.js'
import { ALL_ROLES, createTestClock, startBrokerStack, statusOf, type BrokerStack, type TestClock } from './helpers/broker.js'
import { readBody, startUpstream, type Upstream } from './helpers/upstream.js'

const sha256 = (value: string) => createHash('sha256').update(value).digest('hex')

/**
 * An API whose answers wait until the test lets them go, so that reads are in flight together.
 * Each answer is a page whose nextLink names the API's own origin, as the real API's do.
 */
interface Teardown {
  teardown: (fn: () => unknown) => void
}

async function startHeldApi (t: Teardown) {
  const held: Array<{ res: ServerResponse, url: string }> = []
  let arrived: (() => void) | undefined
  const upstream: Upstream = await startUpstream(t, (req, res) => {
    readBody(req).then(() => {
      held.push({ res, url: req.url as string })
      arrived?.()
    }, () => res.destroy())
  })
  const answer = (url: string, status = 200, body?: string) => JSON.stringify({
    '@odata.context': `${upstream.url}/api/$metadata#Alerts`,
    value: [{ id: url, status }],
    '@odata.nextLink': `${upstream.url}/api/alerts?$skip=1`
  }) + (body ?? '')
  return {
    upstream,
    /** Resolves once `count` requests have reached the API in all. */
    async arrivals (count: number): Promise<void> {
      while (upstream.requests.length < count || held.length < count - (upstream.requests.length - held.length)) {
        await new Promise<void>((resolve) => { arrived = resolve })
      }
    },
    /** Answers every request held so far. */
    release (status = 200, headers: Record<string, string> = {}, padding?: string): void {
      for (const { res, url } of held.splice(0)) {
        res.writeHead(status, { 'content-type': 'application/json; odata.metadata=minimal', 'request-id': `api-${url}`, ...headers })
        res.end(answer(url, status, padding))
      }
    }
  }
}

async function settled (_stack: BrokerStack, until: () => boolean): Promise<void> {
  // The broker answers within the same turns as the API; a few turns of the loop are enough.
  for (let i = 0; i < 1000 && !until(); i++) await new Promise((resolve) => setImmediate(resolve))
}

async function stackWith (t: Teardown, upstream: Upstream, change: (config: Config) => Config = (c) => c, clock?: TestClock) {
  return startBrokerStack(t, {
    simulator: { roles: ALL_ROLES },
    env: { BROKER_UPSTREAM: upstream.url },
    config: change,
    ...(clock === undefined ? {} : { clock })
  })
}

async function savedCalls (stack: BrokerStack): Promise<Record<string, number>> {
  const text = (await (await request(`${stack.url}/metrics`)).body.text())
  const out: Record<string, number> = {}
  for (const match of text.matchAll(/^broker_upstream_calls_saved_total\{profile="(\w+)",reason="(\w+)"\} (\d+)$/gm)) {
    out[`${match[1]}/${match[2]}`] = Number(match[3])
  }
  return out
}

t.test('identical reads in flight at once share one call, and each client gets what it would have got alone', async (t) => {
  const api = await startHeldApi(t)
  const stack = await stackWith(t, api.upstream)
  const hosts = ['127.0.0.1', 'localhost']
  const port = new URL(stack.url).port
  const left = async () => ((await statusOf(stack)).budget as { perMinuteLeft: number }).perMinuteLeft
  const before = await left()
  const reads = Array.from({ length: 10 }, (_, i) => request(`${stack.url}/api/alerts?$filter=severity%20eq%20'High'`, {
    headers: { host: `${hosts[i % 2]}:${port}`, 'x-request-id': `read-${i}`, 'user-agent': `tool-${i}` }
  }))
  await api.arrivals(1)
  await settled(stack, () => false)
  t.equal(api.upstream.requests.length, 1, 'ten identical reads, one call to the API')
  api.release()
  const answers = await Promise.all(reads.map(async (pending) => {
    const res = await pending
    return { status: res.statusCode, headers: res.headers, body: await res.body.json() as Record<string, unknown> }
  }))
  t.same(answers.map((a) => a.status), Array(10).fill(200), 'each got the API\'s status')
  t.same(answers.map((a) => a.headers['x-request-id']), answers.map((_, i) => `read-${i}`), 'each its own request id')
  const sent = api.upstream.requests[0]?.url
  t.same(answers.map((a) => a.headers['request-id']), Array(10).fill(`api-${sent}`), 'and the API\'s headers')
  t.same(answers.map((a) => a.body['@odata.nextLink']), answers.map((_, i) => `http://${hosts[i % 2]}:${port}/api/alerts?$skip=1`),
    'each its nextLink on the origin it called')
  t.same(answers.map((a) => a.body.value), Array(10).fill([{ id: sent, status: 200 }]), 'and the same page')
  t.same(await savedCalls(stack), { 'default/collapsed': 9 }, 'nine calls saved, counted')
  t.equal(before - await left(), 1, 'one unit of budget spent for the ten')
  const lines = stack.logs.lines.filter((line) => line.msg === 'request' && String(line.path).startsWith('/api/alerts'))
  t.equal(lines.filter((line) => line.saved === 'collapsed').length, 9, 'the request log says which answers were shared')
})

t.test('reads that differ in a header that changes the answer do not share', async (t) => {
  const api = await startHeldApi(t)
  const stack = await stackWith(t, api.upstream)
  const reads = [
    request(`${stack.url}/api/alerts`, { headers: { accept: 'application/json' } }),
    request(`${stack.url}/api/alerts`, { headers: { accept: 'application/json', 'accept-language': 'de-DE' } }),
    request(`${stack.url}/api/alerts`, { headers: { accept: 'application/json', prefer: 'odata.maxpagesize=10' } }),
    request(`${stack.url}/api/alerts?$top=5`, { headers: { accept: 'application/json' } }),
    request(`${stack.url}/api/alerts`, { method: 'HEAD', headers: { accept: 'application/json' } })
  ]
  await api.arrivals(5)
  t.equal(api.upstream.requests.length, 5, 'five calls for five different reads')
  api.release()
  for (const res of await Promise.all(reads)) await res.body.dump()
  t.same(await savedCalls(stack), {}, 'none saved')
})

t.test('a client that goes away does not cancel the call for the others', async (t) => {
  const api = await startHeldApi(t)
  const stack = await stackWith(t, api.upstream)
  const first = new AbortController()
  const leaving = request(`${stack.url}/api/alerts`, { signal: first.signal }).catch((err: Error) => err)
  await api.arrivals(1)
  const staying = [request(`${stack.url}/api/alerts`), request(`${stack.url}/api/alerts`)]
  await settled(stack, () => false)
  first.abort()
  t.type(await leaving, Error, 'the first client went away')
  await settled(stack, () => false)
  t.notOk(api.upstream.server.listening === false, 'the API is still up')
  api.release()
  const answers = await Promise.all(staying.map(async (res) => (await res).statusCode))
  t.same(answers, [200, 200], 'the others got the answer of the one call')
  t.equal(api.upstream.requests.length, 1, 'no second call')
})

t.test('each client is authorized on its own before it shares', async (t) => {
  const api = await startHeldApi(t)
  const reader = 'reader-key-0123456789abcdef0123456789'
  const writer = 'writer-key-0123456789abcdef0123456789'
  const stack = await stackWith(t, api.upstream, (c) => ({
    ...c,
    clients: [
      { name: 'reader', keySha256: sha256(reader), profiles: [], allow: ['GET /api/alerts'] },
      { name: 'machines-only', keySha256: sha256(writer), profiles: [], allow: ['GET /api/machines/**'] }
    ]
  }))
  const allowed = request(`${stack.url}/api/alerts`, { headers: { authorization: `Bearer ${reader}` } })
  await api.arrivals(1)
  const refused = await request(`${stack.url}/api/alerts`, { headers: { authorization: `Bearer ${writer}` } })
  const nobody = await request(`${stack.url}/api/alerts`)
  t.same([refused.statusCode, nobody.statusCode], [403, 401], 'a client the rules refuse, and one with no key, are refused while the read is in flight')
  await refused.body.dump()
  await nobody.body.dump()
  api.release()
  t.equal((await allowed).statusCode, 200)
  t.equal(api.upstream.requests.length, 1)
})

t.test('reads.collapse: false makes every read its own call', async (t) => {
  const api = await startHeldApi(t)
  const stack = await stackWith(t, api.upstream, (c) => ({ ...c, reads: { ...c.reads, collapse: false } }))
  const reads = Array.from({ length: 3 }, () => request(`${stack.url}/api/alerts`))
  await api.arrivals(3)
  t.equal(api.upstream.requests.length, 3)
  api.release()
  for (const res of await Promise.all(reads)) await res.body.dump()
})

t.test('an answer too long to hold goes to one client as it comes; the others make their own call', async (t) => {
  const api = await startHeldApi(t)
  const stack = await stackWith(t, api.upstream)
  const padding = ' '.repeat(9 * 1024 * 1024)
  const reads = Array.from({ length: 3 }, () => request(`${stack.url}/api/alerts`))
  await api.arrivals(1)
  await settled(stack, () => false)
  api.release(200, {}, padding)
  await api.arrivals(3)
  api.release(200, {}, padding)
  const bodies = await Promise.all(reads.map(async (res) => JSON.parse(await (await res).body.text()) as { value: unknown[] }))
  t.same(bodies.map((body) => body.value.length), [1, 1, 1], 'every client got the whole answer')
  t.equal(api.upstream.requests.length, 3, 'one shared call, then one each for the two it could not be shared with')
})

t.test('a failed shared call fails for each client that waited on it', async (t) => {
  const api = await startHeldApi(t)
  const stack = await stackWith(t, api.upstream)
  const reads = Array.from({ length: 3 }, () => request(`${stack.url}/api/alerts`))
  await api.arrivals(1)
  await settled(stack, () => false)
  api.upstream.server.closeAllConnections()
  const answers = await Promise.all(reads.map(async (res) => {
    const answered = await res
    return [answered.statusCode, ((await answered.body.json()) as { error: { code: string } }).error.code]
  }))
  t.same(answers, Array(3).fill([502, 'BrokerUpstreamUnreachable']))
})

t.test('a cache rule keeps 200 answers for its ttlSeconds, with Age, and they cost nothing', async (t) => {
  const clock = createTestClock()
  const api = await startHeldApi(t)
  const stack = await stackWith(t, api.upstream, (c) => ({
    ...c,
    profiles: c.profiles.map((p) => ({ ...p, cache: [{ allow: 'GET /api/machines/**', ttlSeconds: 30 }] }))
  }), clock)
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const pending = request(`${stack.url}${path}`, { headers })
    await settled(stack, () => false)
    api.release()
    const res = await pending
    return { status: res.statusCode, age: res.headers.age, body: await res.body.text() }
  }
  const first = await get('/api/machines/m1')
  t.equal(api.upstream.requests.length, 1)
  t.equal(first.age, undefined, 'a fresh answer has no Age')
  await clock.tickAsync(12_000)
  const second = await get('/api/machines/m1')
  t.same([api.upstream.requests.length, second.status, second.age, second.body], [1, 200, '12', first.body], 'from the cache, 12 s old')
  const fresh = await get('/api/machines/m1', { 'cache-control': 'no-cache' })
  t.same([api.upstream.requests.length, fresh.age], [2, undefined], 'Cache-Control: no-cache goes to the API')
  await get('/api/alerts')
  await get('/api/alerts')
  t.equal(api.upstream.requests.length, 4, 'a read no rule covers is never kept')
  await clock.tickAsync(31_000)
  await get('/api/machines/m1')
  t.equal(api.upstream.requests.length, 5, 'past ttlSeconds the API is asked again')
  t.same(await savedCalls(stack), { 'default/cached': 1 })
})

t.test('only 200 answers are kept, and the cache is bounded, least recently used out', async (t) => {
  const clock = createTestClock()
  const api = await startHeldApi(t)
  const stack = await stackWith(t, api.upstream, (c) => ({
    ...c,
    reads: { collapse: true, cacheMaxBytes: 1024 * 1024 },
    profiles: c.profiles.map((p) => ({ ...p, cache: [{ allow: 'GET /api/**', ttlSeconds: 300 }] }))
  }), clock)
  const get = async (path: string, status = 200, padding?: string) => {
    const pending = request(`${stack.url}${path}`)
    await settled(stack, () => false)
    api.release(status, {}, padding)
    await (await pending).body.dump()
  }
  await get('/api/machines/gone', 404)
  await get('/api/machines/gone', 404)
  t.equal(api.upstream.requests.length, 2, 'a 404 is not kept')
  const big = ' '.repeat(400 * 1024)
  await get('/api/machines/a', 200, big)
  await get('/api/machines/b', 200, big)
  await get('/api/machines/a', 200, big)
  t.equal(api.upstream.requests.length, 4, 'a and b kept')
  await get('/api/machines/c', 200, big)
  await get('/api/machines/a', 200, big)
  t.equal(api.upstream.requests.length, 5, 'c pushed out b, the least recently used; a is still kept')
  await get('/api/machines/b', 200, big)
  t.equal(api.upstream.requests.length, 6, 'b was gone')
})

t.test('a shared call whose body is cut off is cut off for each client that waited, as it would have been alone', async (t) => {
  const held: ServerResponse[] = []
  const upstream = await startUpstream(t, (req, res) => {
    readBody(req).then(() => held.push(res), () => res.destroy())
  })
  const stack = await stackWith(t, upstream)
  const reads = Array.from({ length: 3 }, () => request(`${stack.url}/api/alerts`))
  while (held.length < 1) await new Promise((resolve) => setImmediate(resolve))
  await settled(stack, () => false)
  for (const res of held) {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': '100000' })
    res.write(Buffer.alloc(1000), () => res.socket?.destroy())
  }
  for (const pending of reads) {
    const res = await pending
    t.equal(res.statusCode, 200, 'the head came through')
    await t.rejects(res.body.text(), 'reading the body fails rather than ending early and cleanly')
  }
  t.equal(upstream.requests.length, 1, 'one call')
})
