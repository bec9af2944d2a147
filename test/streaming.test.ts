import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t from 'tap'
import { request } from 'undici'
import { startBrokerStack, ALL_ROLES } from './helpers/broker.js'
import { startUpstream } from './helpers/upstream.js'

const MiB = 1024 * 1024
const CHUNKS = 64
const TOTAL = CHUNKS * MiB
/**
 * Half the 64 MiB that a broker buffering a body whole would hold on top. The sockets' buffers of
 * the client, the broker and the upstream, all in this process, come and go with the machine's
 * load: an upload streamed chunk by chunk was seen to grow RSS by 3 to 18 MiB on a busy 2-core
 * machine, so a tighter limit measured the load rather than the broker.
 */
const RSS_GROWTH_LIMIT = 32 * MiB

// One random MiB, varied per chunk, so that no two chunks are alike and nothing is ever
// 64 MiB in memory here.
const PATTERN = randomBytes(MiB)
function chunk (index: number): Buffer {
  const out = Buffer.allocUnsafe(MiB)
  PATTERN.copy(out)
  out.writeUInt32BE(index, (index * 4099) % (MiB - 4))
  return out
}

// Each MiB that passes leaves garbage behind (this test's chunks, the sockets' reads); when V8
// collects it is its own business, and RSS would measure that rather than what the broker
// holds. Collecting every few MiB leaves RSS to show what is live: a broker that buffered a
// body would hold all of it whatever the collector did.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
const GC_EVERY = 4 * MiB

/** The highest RSS seen over a transfer, sampled as its chunks pass. */
function createRssSampler () {
  gc()
  const start = process.memoryUsage.rss()
  let peak = start
  let sinceGc = 0
  return {
    sample: (bytes: number) => {
      peak = Math.max(peak, process.memoryUsage.rss())
      sinceGc += bytes
      if (sinceGc >= GC_EVERY) {
        sinceGc = 0
        gc()
      }
    },
    growth: () => peak - start
  }
}

interface Upload {
  bytes: number
  sha256: string
  /** How many chunks the client had produced when the first byte reached the upstream. */
  producedAtFirstByte: number
}

let produced = 0
let sampler = createRssSampler()
const uploads: Upload[] = []
const download = { written: 0, sha256: '', writtenAtClientFirstByte: -1 }

/** Writes `chunks` MiB a chunk at a time, as fast as the reader takes it. */
function writeDownload (res: ServerResponse, chunks: number): void {
  const hash = createHash('sha256')
  download.written = 0
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(chunks * MiB) })
  const next = (): void => {
    while (download.written < chunks) {
      const data = chunk(download.written++)
      hash.update(data)
      if (!res.write(data)) {
        res.once('drain', next)
        return
      }
    }
    download.sha256 = hash.digest('hex')
    res.end()
  }
  next()
}

/** Writes until the reader goes away. */
function writeEndlessly (res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream' })
  const next = (): void => {
    while (!res.destroyed && res.write(PATTERN));
    if (!res.destroyed) res.once('drain', next)
  }
  next()
}

const upstream = await startUpstream(t, (req, res) => {
  if (req.url === '/api/upload') {
    const hash = createHash('sha256')
    const upload: Upload = { bytes: 0, sha256: '', producedAtFirstByte: -1 }
    req.on('data', (data: Buffer) => {
      if (upload.bytes === 0) upload.producedAtFirstByte = produced
      upload.bytes += data.length
      hash.update(data)
      sampler.sample(data.length)
    })
    req.on('end', () => {
      upload.sha256 = hash.digest('hex')
      uploads.push(upload)
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ bytes: upload.bytes, sha256: upload.sha256 }))
    })
    return
  }
  if (req.url === '/api/download') return writeDownload(res, CHUNKS)
  if (req.url === '/api/download-warm-up') return writeDownload(res, 4)
  if (req.url === '/api/endless') return writeEndlessly(res)
  // Anything else is left unanswered, for the client to give up on.
  req.resume()
})
const stack = await startBrokerStack(t, { simulator: { roles: ALL_ROLES }, env: { BROKER_UPSTREAM: upstream.url } })

// A few MiB each way first, so that first-use costs (connections, compiled code, pools) are
// not counted as growth of the transfers measured below.
await (await request(`${stack.url}/api/upload`, { method: 'POST', body: Buffer.concat([chunk(0), chunk(1), chunk(2), chunk(3)]) })).body.dump()
await (await request(`${stack.url}/api/download-warm-up`)).body.dump()

t.test('a 64 MiB upload streams through byte-exact, without being buffered', async (t) => {
  const hash = createHash('sha256')
  produced = 0
  async function * body () {
    for (let i = 0; i < CHUNKS; i++) {
      const data = chunk(i)
      hash.update(data)
      produced++
      yield data
    }
  }
  sampler = createRssSampler()
  const res = await request(`${stack.url}/api/upload`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream' },
    body: Readable.from(body(), { objectMode: false })
  })
  const answer = await res.body.json() as { bytes: number, sha256: string }
  const growth = sampler.growth()
  t.equal(res.statusCode, 200)
  t.strictSame(answer, { bytes: TOTAL, sha256: hash.digest('hex') }, 'the upstream got every byte, in order')
  const upload = uploads.at(-1)
  t.ok(upload !== undefined && upload.producedAtFirstByte >= 1 && upload.producedAtFirstByte < CHUNKS / 2,
    `the upstream had bytes when the client had produced ${upload?.producedAtFirstByte} of ${CHUNKS} chunks`)
  t.ok(growth < RSS_GROWTH_LIMIT, `RSS grew ${(growth / MiB).toFixed(1)} MiB over the upload`)
  t.comment(`upload: RSS growth ${(growth / MiB).toFixed(1)} MiB for ${TOTAL / MiB} MiB`)
})

t.test('a 64 MiB download streams through byte-exact, without being buffered', async (t) => {
  sampler = createRssSampler()
  download.writtenAtClientFirstByte = -1
  const res = await request(`${stack.url}/api/download`)
  t.equal(res.statusCode, 200)
  t.equal(res.headers['content-length'], String(TOTAL))
  const hash = createHash('sha256')
  let bytes = 0
  for await (const data of res.body) {
    if (bytes === 0) download.writtenAtClientFirstByte = download.written
    bytes += (data as Buffer).length
    hash.update(data as Buffer)
    sampler.sample((data as Buffer).length)
  }
  const growth = sampler.growth()
  t.equal(bytes, TOTAL, 'every byte')
  t.equal(hash.digest('hex'), download.sha256, 'in order')
  t.ok(download.writtenAtClientFirstByte >= 1 && download.writtenAtClientFirstByte < CHUNKS / 2,
    `the client had bytes when the upstream had written ${download.writtenAtClientFirstByte} of ${CHUNKS} chunks`)
  t.ok(growth < RSS_GROWTH_LIMIT, `RSS grew ${(growth / MiB).toFixed(1)} MiB over the download`)
  t.comment(`download: RSS growth ${(growth / MiB).toFixed(1)} MiB for ${TOTAL / MiB} MiB`)
})

t.test('a client that disconnects before the response aborts the upstream request', { timeout: 10_000 }, async (t) => {
  const abort = new AbortController()
  const arrived = upstream.nextRequest()
  const pending = request(`${stack.url}/api/machines/abc/runliveresponse`, { method: 'POST', body: '{}', signal: abort.signal })
  const { req, res } = await arrived
  const upstreamClosed = once(res, 'close')
  abort.abort()
  await t.rejects(pending, { name: 'AbortError' })
  await upstreamClosed
  t.notOk(res.writableFinished, 'the upstream\'s answer was never finished')
  t.ok(req.destroyed, 'the upstream request was torn down')
})

t.test('a client that disconnects mid-upload aborts the upstream request', { timeout: 10_000 }, async (t) => {
  const abort = new AbortController()
  const arrived = upstream.nextRequest()
  let sent = 0
  async function * body () {
    for (;;) {
      sent++
      yield PATTERN
    }
  }
  const pending = request(`${stack.url}/api/upload-forever`, { method: 'PUT', body: Readable.from(body(), { objectMode: false }), signal: abort.signal })
  const { req } = await arrived
  const errors: Error[] = []
  req.on('error', (err) => errors.push(err))
  const upstreamClosed = new Promise((resolve) => req.once('close', resolve))
  await once(req, 'data')
  abort.abort()
  await t.rejects(pending)
  await upstreamClosed
  t.notOk(req.complete, `the upstream never got a whole body (the client sent ${sent} MiB)`)
  t.match(errors, [{ code: 'ECONNRESET', message: 'aborted' }], 'the upstream saw its request aborted')
})

t.test('a client that disconnects mid-download aborts the upstream request', { timeout: 10_000 }, async (t) => {
  const arrived = upstream.nextRequest()
  const res = await request(`${stack.url}/api/endless`)
  const { res: upstreamRes } = await arrived
  const upstreamClosed = once(upstreamRes, 'close')
  t.equal(res.statusCode, 200)
  await once(res.body, 'data')
  res.body.destroy() // the first chunk, then the client walks away
  await upstreamClosed
  t.notOk(upstreamRes.writableFinished, 'the upstream was cut off mid-write')
})
