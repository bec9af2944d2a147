import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { buffer } from 'node:stream/consumers'
import { brotliCompressSync, constants, deflateSync, gunzipSync, gzipSync } from 'node:zlib'
import t, { type Test } from 'tap'
import { getGlobalDispatcher, request } from 'undici'
import type { Config, ProfileConfig } from '../src/config/types.js'
import { createNextLinkRewriter } from '../src/proxy/next-link.js'
import { SMALL_PAGE_BYTES } from '../src/proxy/response.js'
import { SAMPLE_ALERT_COUNT, createTestPki } from '../src/simulator/index.js'
import { startBrokerStack } from './helpers/broker.js'
import { readBody, startUpstream } from './helpers/upstream.js'

const PAGE_SIZE = 40
const CHUNK = 64 * 1024
const pki = await createTestPki()

/**
 * A "Defender API" whose pages are built to the test's measure: a large page written in 64 KiB
 * writes with the nextLink at a given offset from a write boundary, compressed pages, redirects.
 */
const custom = await startUpstream(t, (req, res, recorded) => {
  const url = new URL(req.url as string, custom.url)
  readBody(req, recorded).then(async () => {
    switch (url.pathname) {
      case '/api/big': {
        const page = bigPage(custom.url, Number(url.searchParams.get('offset')), url.searchParams.get('at') ?? 'head')
        const headers: Record<string, string> = { 'content-type': 'application/json; charset=utf-8' }
        if (url.searchParams.has('length')) headers['content-length'] = String(page.length)
        res.writeHead(200, headers)
        return writeInChunks(res, page)
      }
      case '/api/compressed': {
        const encoding = url.searchParams.get('encoding') as keyof typeof COMPRESS
        const compressed = COMPRESS[encoding](compressedPage(custom.url, url.searchParams.get('page')))
        const headers: Record<string, string> = { 'content-type': 'application/json', 'content-encoding': encoding }
        if (!url.searchParams.has('chunked')) headers['content-length'] = String(compressed.length)
        res.writeHead(200, headers)
        return writeInChunks(res, compressed)
      }
      case '/api/redirect':
        res.writeHead(req.method === 'POST' ? 201 : 302, { location: `${custom.url}/api/machineactions/a1b2?x=1` })
        return res.end()
      case '/api/redirect-elsewhere':
        res.writeHead(302, { location: `${custom.url}0/api/alerts` })
        return res.end()
      case '/api/last-page': {
        res.writeHead(200, { 'content-type': 'application/json; odata.metadata=minimal', 'content-length': String(LAST_PAGE.length) })
        return res.end(LAST_PAGE)
      }
      case '/api/last-page-large': {
        const page = largeLastPage(custom.url)
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(page.length) })
        return writeInChunks(res, page)
      }
      case '/api/not-json': {
        const text = `@odata.nextLink: ${custom.url}/api/alerts`
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(text)) })
        return res.end(text)
      }
      default:
        res.writeHead(404, { 'content-type': 'application/json' })
        return res.end('{"error":{"code":"ResourceNotFound","message":"no such page","target":"x"}}')
    }
  }).catch(() => res.destroy())
})

const stack = await startBrokerStack(t, {
  simulator: { pki, pageSize: PAGE_SIZE, perMinute: 10_000 },
  config: (c: Config) => {
    const first = { ...c.profiles[0] as ProfileConfig, rateLimit: { perMinute: 10_000, perHour: 100_000, maxQueueSeconds: 30 } }
    return {
      ...c,
      profiles: [
        first,
        { ...first, name: 'fabrikam', basePath: '/fabrikam' },
        { ...first, name: 'custom', basePath: '/custom', upstream: custom.url }
      ]
    }
  }
})
const port = new URL(stack.url).port
const simulatorUrl = stack.simulator.defender.url

const COMPRESS = {
  gzip: (page: Buffer) => gzipSync(page),
  deflate: (page: Buffer) => deflateSync(page),
  br: (page: Buffer) => brotliCompressSync(page, { params: { [constants.BROTLI_PARAM_QUALITY]: 4 } })
} as const

const ITEMS = `[${Array.from({ length: 40_000 }, (_, i) => JSON.stringify({ id: `da${i}`, title: 'Suspicious PowerShell command line', severity: 'High' })).join(',')}]`

/**
 * A page of about 3 MB on `origin` whose nextLink (on `linkOrigin`) starts `offset` bytes from
 * the first 64 KiB boundary (`head`) or ends the page (`tail`).
 */
function bigPage (origin: string, offset: number, at: string, linkOrigin = origin): Buffer {
  const link = `"@odata.nextLink":"${linkOrigin}/api/big?$skip=1000&$top=1000"`
  if (at === 'tail') return Buffer.from(`{"@odata.context":"${origin}/api/$metadata#Alerts","value":${ITEMS},${link}}`)
  const head = `{"@odata.context":"${origin}/api/$metadata#Alerts","pad":"`
  const pad = 'p'.repeat(CHUNK + offset - head.length - 2)
  return Buffer.from(`${head}${pad}",${link},"value":${ITEMS}}`)
}

function smallPage (origin: string): Buffer {
  return Buffer.from(JSON.stringify({ value: [{ id: 'da1' }], '@odata.nextLink': `${origin}/api/alerts?$skip=1` }))
}

/** The pages /api/compressed sends: small or large, with a nextLink or without (the last page of a list). */
function compressedPage (origin: string, kind: string | null, linkOrigin = origin): Buffer {
  switch (kind) {
    case 'small': return smallPage(linkOrigin)
    case 'last': return LAST_PAGE
    case 'large-last': return largeLastPage(origin)
    case 'huge-last': return HUGE_LAST_PAGE
    case 'huge': return Buffer.concat([HUGE_LAST_PAGE.subarray(0, -1), Buffer.from(`,"@odata.nextLink":"${linkOrigin}/api/alerts?$skip=6000"}`)])
    default: return bigPage(origin, -40, 'head', linkOrigin)
  }
}

/** A last page that stays over the small-page limit compressed: random ids do not compress. */
const HUGE_LAST_PAGE = Buffer.from(JSON.stringify({ value: Array.from({ length: 6_000 }, () => ({ id: randomBytes(40).toString('hex') })) }))

/** Odd spacing, escapes and a link to another origin: bytes a re-serialisation would change. */
const LAST_PAGE = Buffer.from('{ "@odata.context" : "https://api.securitycenter.microsoft.com/api/$metadata#Alerts",\n' +
  '  "value": [ {"id":"da1","title":"caf\\u00e9 \u00e9 \\/x","n":1.50e3} ],\n' +
  '  "other": "http://127.0.0.1:1/api/alerts?$skip=1" }\n')

function largeLastPage (origin: string): Buffer {
  const items = Array.from({ length: 4_000 }, (_, i) => `{"id":"da${i}","link":"${origin}/api/alerts/da${i}"}`)
  return Buffer.from(`{"value":[${items.join(', ')}]}`)
}

async function writeInChunks (res: ServerResponse, bytes: Buffer): Promise<void> {
  for (let at = 0; at < bytes.length; at += CHUNK) {
    const ok = res.write(bytes.subarray(at, at + CHUNK))
    if (!ok) await once(res, 'drain')
  }
  res.end()
}

interface Walk {
  ids: string[]
  links: string[]
  encodings: Array<string | undefined>
}

/**
 * A tool following `@odata.nextLink` from `first`, as it would: each link is requested as it
 * reads (its host in the Host header, its port on loopback, so a link left on the upstream
 * reaches the simulator, which refuses a request without a token).
 */
async function follow (t: Test, first: string, headers: Record<string, string> = {}): Promise<Walk> {
  const walk: Walk = { ids: [], links: [], encodings: [] }
  let url = new URL(first)
  for (let page = 0; page < 50; page++) {
    const res = await getGlobalDispatcher().request({
      origin: `http://127.0.0.1:${url.port}`,
      path: url.pathname + url.search,
      method: 'GET',
      headers: { host: url.host, ...headers }
    })
    const bytes = Buffer.from(await res.body.arrayBuffer())
    // As an HTTP client that asked for gzip does: decompress what comes compressed.
    const text = (res.headers['content-encoding'] === 'gzip' ? gunzipSync(bytes) : bytes).toString()
    if (res.statusCode !== 200) {
      t.fail(`${url.href}: ${res.statusCode} ${text}`)
      return walk
    }
    walk.encodings.push(res.headers['content-encoding'] as string | undefined)
    const body = JSON.parse(text) as { value: Array<{ id: string }>, '@odata.nextLink'?: string }
    walk.ids.push(...body.value.map((item) => item.id))
    const next = body['@odata.nextLink']
    if (next === undefined) return walk
    walk.links.push(next)
    url = new URL(next)
  }
  t.fail('more than 50 pages')
  return walk
}

t.test('a client following @odata.nextLink collects every alert and machine, and stays on the broker', async (t) => {
  const { alerts, machines } = stack.simulator.defender.data
  t.equal(alerts.length, SAMPLE_ALERT_COUNT)
  for (const [host, prefix] of [[`127.0.0.1:${port}`, ''], [`localhost:${port}`, ''], [`127.0.0.1:${port}`, '/fabrikam'], [`localhost:${port}`, '/fabrikam']]) {
    const base = `http://${host}${prefix}`
    const before = stack.simulator.defender.requests.length
    const alertWalk = await follow(t, `${base}/api/alerts`)
    t.strictSame(alertWalk.ids, alerts.map((alert) => alert.id), `${base}: every alert, once, in order`)
    t.equal(alertWalk.links.length, Math.ceil(SAMPLE_ALERT_COUNT / PAGE_SIZE) - 1, `${base}: one link per page but the last`)
    alertWalk.links.forEach((link, i) => {
      t.equal(link, `${base}/api/alerts?$skip=${(i + 1) * PAGE_SIZE}`, `${base}: link ${i + 1} points at the broker as reached`)
    })
    const active = machines.filter((machine) => machine.healthStatus === 'Active').map((machine) => machine.id)
    const machineWalk = await follow(t, `${base}/api/machines?$filter=healthStatus%20eq%20'Active'`)
    t.strictSame(machineWalk.ids, active, `${base}: every active machine, once, in order`)
    t.strictSame(machineWalk.links, Array.from({ length: Math.ceil(active.length / PAGE_SIZE) - 1 }, (_, i) =>
      `${base}/api/machines?$filter=healthStatus%20eq%20'Active'&$skip=${(i + 1) * PAGE_SIZE}`), `${base}: the query kept, the origin and prefix the broker's`)
    t.equal(stack.simulator.defender.requests.length - before, alertWalk.links.length + 1 + machineWalk.links.length + 1,
      `${base}: every page came from the upstream through the broker`)
  }
})

t.test('paging with a $filter through the broker keeps the filter and returns each item once, however the client encoded it', async (t) => {
  const { alerts } = stack.simulator.defender.data
  const expected = alerts.filter((alert) => alert.severity !== 'Informational' && alert.status !== 'Resolved').map((alert) => alert.id)
  t.ok(expected.length > 2 * PAGE_SIZE && expected.length < alerts.length, 'the filter spans pages and leaves some out')
  for (const query of [
    '%24filter=severity+ne+%27Informational%27+and+status+ne+%27Resolved%27',
    "$filter=severity%20ne%20'Informational'%20and%20status%20ne%20'Resolved'",
    `$filter=${encodeURIComponent("(severity ne 'Informational') and not (status eq 'Resolved')")}`
  ]) {
    const walk = await follow(t, `${stack.url}/api/alerts?${query}`)
    t.strictSame(walk.ids, expected, `${query}: each matching alert once, in order`)
    t.equal(new Set(walk.ids).size, walk.ids.length, `${query}: no duplicates`)
    t.equal(walk.links.length, Math.ceil(expected.length / PAGE_SIZE) - 1, `${query}: one link per page but the last`)
    t.ok(walk.links.every((link) => link.startsWith(`${stack.url}/api/alerts?`) && new URL(link).searchParams.get('$filter') !== null), `${query}: every link on the broker, with the filter`)
  }
})

t.test('gzip pages from the simulator are decompressed and rewritten; the last page passes compressed', async (t) => {
  const token = await stack.app.profiles[0]?.tokens.get()
  const direct = await request(`${simulatorUrl}/api/alerts`, { headers: { authorization: `Bearer ${token?.value}`, 'accept-encoding': 'gzip' } })
  await direct.body.dump()
  t.equal(direct.headers['content-encoding'], 'gzip', 'the simulator compresses when asked')

  for (const prefix of ['', '/fabrikam']) {
    const before = stack.simulator.defender.requests.length
    const walk = await follow(t, `${stack.url}${prefix}/api/alerts`, { 'accept-encoding': 'gzip' })
    t.strictSame(walk.ids, stack.simulator.defender.data.alerts.map((alert) => alert.id), `${prefix || '/'}: every alert`)
    t.ok(walk.links.length > 0 && walk.links.every((link) => link.startsWith(`${stack.url}${prefix}/api/alerts?`)), `${prefix || '/'}: every link on the broker`)
    t.strictSame(walk.encodings, [...walk.links.map(() => undefined), 'gzip'],
      'the pages with a link come uncompressed, the last one as the API compressed it')
    const seen = stack.simulator.defender.requests.slice(before)
    t.ok(seen.length > 0 && seen.every((r) => r.headers['accept-encoding'] === 'gzip'), 'the upstream was asked for gzip every time')
  }
})

t.test('a large page streams through with its nextLink rewritten, wherever the chunks fall', async (t) => {
  const brokerBase = `${stack.url}/custom`
  const cases: Array<[string, number]> = [['head', -150], ['head', -60], ['head', -5], ['head', 30], ['tail', 0]]
  for (const [at, offset] of cases) {
    for (const length of [false, true]) {
      const query = `at=${at}&offset=${offset}${length ? '&length' : ''}`
      const expected = bigPage(custom.url, offset, at, brokerBase)
      const original = bigPage(custom.url, offset, at)
      t.ok(original.length > 2_000_000 && original.length > SMALL_PAGE_BYTES, 'over the small-page limit')
      const res = await request(`${stack.url}/custom/api/big?${query}`)
      const body = await buffer(res.body)
      t.equal(res.statusCode, 200, query)
      t.equal(res.headers['content-length'], undefined, `${query}: content-length dropped`)
      t.equal(res.headers['transfer-encoding'], 'chunked', `${query}: streamed`)
      if (!body.equals(expected)) t.fail(`${query}: body differs from the page with the link rewritten (${body.length} vs ${expected.length} bytes)`)
      t.equal(JSON.parse(body.toString())['@odata.nextLink'], `${brokerBase}/api/big?$skip=1000&$top=1000`, `${query}: the nextLink`)
    }
  }
})

t.test('the streaming rewriter finds the link at every offset around a chunk boundary', async (t) => {
  const origin = 'https://api.securitycenter.microsoft.com'
  const broker = `http://localhost:${port}/fabrikam`
  const link = `"@odata.nextLink":"${origin}/api/alerts?$skip=10"`
  const tail = `,"value":[${'{"id":"x"},'.repeat(12_000)}{"id":"y"}]}`
  let failures = 0
  for (let offset = -400; offset <= 100; offset++) {
    const pad = 'p'.repeat(CHUNK + offset - 10)
    const page = Buffer.from(`{"pad":"${pad}",${link}${tail}`)
    const expected = `{"pad":"${pad}","@odata.nextLink":"${broker}/api/alerts?$skip=10"${tail}`
    const chunks: Buffer[] = []
    for (let at = 0; at < page.length; at += CHUNK) chunks.push(page.subarray(at, at + CHUNK))
    const out = (await buffer(Readable.from(chunks).pipe(createNextLinkRewriter(origin, broker)))).toString()
    if (out !== expected) failures++
  }
  t.equal(failures, 0, 'no offset loses the rewrite')
})

t.test('compressed pages with a nextLink are decompressed and rewritten; without one they pass byte for byte', async (t) => {
  for (const encoding of Object.keys(COMPRESS) as Array<keyof typeof COMPRESS>) {
    for (const page of ['small', 'large', 'huge', 'last', 'large-last', 'huge-last']) {
      for (const chunked of [false, true]) {
        const name = `${encoding} ${page}${chunked ? ' chunked' : ''}`
        const res = await request(`${stack.url}/custom/api/compressed?encoding=${encoding}&page=${page}${chunked ? '&chunked' : ''}`)
        const body = await buffer(res.body)
        t.equal(res.statusCode, 200, name)
        if (page === 'small' || page === 'large' || page === 'huge') {
          t.equal(res.headers['content-encoding'], undefined, `${name}: passed on uncompressed`)
          const expected = compressedPage(custom.url, page, `${stack.url}/custom`)
          t.ok(body.equals(expected), `${name}: the page with its link on the broker`)
          if (COMPRESS[encoding](compressedPage(custom.url, page)).length <= SMALL_PAGE_BYTES) {
            t.equal(res.headers['content-length'], String(expected.length), `${name}: held whole and rewritten, its length exact`)
          } else {
            t.equal(res.headers['content-length'], undefined, `${name}: streamed, the compressed length not passed on`)
          }
        } else if (page === 'huge-last') {
          t.equal(res.headers['content-encoding'], undefined, `${name}: over the limit compressed, streamed decompressed`)
          t.ok(body.equals(HUGE_LAST_PAGE), `${name}: the page`)
        } else {
          const sent = COMPRESS[encoding](compressedPage(custom.url, page))
          t.equal(res.headers['content-encoding'], encoding, `${name}: the API's encoding kept`)
          t.equal(res.headers['content-length'], String(sent.length), `${name}: the compressed length`)
          t.ok(body.equals(sent), `${name}: the compressed bytes as the API sent them`)
        }
      }
    }
  }
})

t.test('a Location on the upstream origin is moved to the broker; others are left alone', async (t) => {
  for (const [method, status] of [['GET', 302], ['POST', 201]] as const) {
    const res = await request(`${stack.url}/custom/api/redirect`, { method, headers: { host: `localhost:${port}` } })
    await res.body.dump()
    t.equal(res.statusCode, status)
    t.equal(res.headers.location, `http://localhost:${port}/custom/api/machineactions/a1b2?x=1`, `${method}: on the broker`)
  }
  const res = await request(`${stack.url}/custom/api/redirect-elsewhere`)
  await res.body.dump()
  t.equal(res.headers.location, `${custom.url}0/api/alerts`, 'another port on the same host is another origin')
})

t.test('a page without a nextLink keeps its exact bytes, and a small one its content-length', async (t) => {
  const last = await request(`${stack.url}/custom/api/last-page`)
  const body = await buffer(last.body)
  t.equal(last.statusCode, 200)
  t.equal(last.headers['content-length'], String(LAST_PAGE.length))
  t.ok(body.equals(LAST_PAGE), 'byte for byte')

  const page = largeLastPage(custom.url)
  const large = await request(`${stack.url}/custom/api/last-page-large`)
  t.ok(page.length > SMALL_PAGE_BYTES, 'over the small-page limit')
  t.ok((await buffer(large.body)).equals(page), 'a large page byte for byte (streamed, so without content-length)')

  const plain = await request(`${stack.url}/custom/api/not-json`)
  t.equal(await plain.body.text(), `@odata.nextLink: ${custom.url}/api/alerts`, 'a body that is not JSON is not touched')
})
