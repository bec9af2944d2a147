/**
 * What the `@odata.nextLink` rewrite costs on a large JSON page: the same 10 MiB page, in the
 * same 64 KiB chunks, through the streaming rewriter and through a plain PassThrough (and both
 * again behind a gunzip, the path of a compressed page). Several runs each, interleaved; medians
 * of the time and of the peak memory above the level before the run.
 *
 * `npx tsc -p . && node --expose-gc dist/bench/rewrite-cost.js [runs]`
 */
import { performance } from 'node:perf_hooks'
import { PassThrough, Readable, Writable, type Duplex } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGunzip, gzipSync } from 'node:zlib'
import { createNextLinkRewriter } from '../src/proxy/next-link.js'
import { median, MIB, round } from './stats.js'

const PAGE_BYTES = 10 * MIB
const CHUNK_BYTES = 64 * 1024
const RUNS = Number(process.argv[2] ?? 9)
const UPSTREAM = 'https://api.securitycenter.microsoft.com'
const BROKER = 'http://127.0.0.1:8080/fabrikam'
const NEXT_LINK = `${UPSTREAM}/api/alerts?$top=10000&$skip=10000`

/** A page of alerts shaped like the API's, about `bytes` long, its nextLink last as OData puts it. */
function buildPage (bytes: number): Buffer {
  const items: string[] = []
  let size = 0
  for (let i = 0; size < bytes - 200; i++) {
    const item = JSON.stringify({
      id: `da${String(i).padStart(18, '0')}_-${i % 1000}`,
      incidentId: i,
      severity: ['Informational', 'Low', 'Medium', 'High'][i % 4],
      status: 'New',
      title: 'Suspicious PowerShell command line',
      machineId: `${i.toString(16).padStart(40, '0')}`,
      computerDnsName: `host-${i}.contoso.com`,
      alertCreationTime: new Date(Date.UTC(2025, 0, 1) + i * 1000).toISOString(),
      evidence: [{ entityType: 'Process', fileName: 'powershell.exe', sha1: 'a'.repeat(40) }]
    })
    items.push(item)
    size += item.length + 1
  }
  return Buffer.from(`{"@odata.context":"${UPSTREAM}/api/$metadata#Alerts","value":[${items.join(',')}],"@odata.nextLink":"${NEXT_LINK}"}`)
}

function chunksOf (bytes: Buffer): Buffer[] {
  const chunks: Buffer[] = []
  for (let at = 0; at < bytes.length; at += CHUNK_BYTES) chunks.push(bytes.subarray(at, at + CHUNK_BYTES))
  return chunks
}

interface Sample {
  ms: number
  /** Peak growth of V8 heap plus array buffers (where Buffers live) above the level before the run. */
  heapBytes: number
  rssBytes: number
  outBytes: number
  rewritten: boolean
}

function memory (): { heap: number, rss: number } {
  const usage = process.memoryUsage()
  return { heap: usage.heapUsed + usage.arrayBuffers, rss: usage.rss }
}

async function measure (chunks: readonly Buffer[], stages: () => Duplex[]): Promise<Sample> {
  globalThis.gc?.()
  const before = memory()
  let peak = before
  let outBytes = 0
  // The last two chunks, by reference: the sink itself allocates nothing.
  let last: Buffer[] = []
  const sink = new Writable({
    write (chunk: Buffer, _encoding, callback) {
      outBytes += chunk.length
      last = [last.at(-1) ?? Buffer.alloc(0), chunk]
      const now = memory()
      peak = { heap: Math.max(peak.heap, now.heap), rss: Math.max(peak.rss, now.rss) }
      callback()
    }
  })
  const started = performance.now()
  await pipeline([Readable.from(chunks, { objectMode: false }), ...stages(), sink])
  const ms = performance.now() - started
  return {
    ms,
    heapBytes: peak.heap - before.heap,
    rssBytes: peak.rss - before.rss,
    outBytes,
    rewritten: Buffer.concat(last).includes(`"@odata.nextLink":"${BROKER}/api/alerts?`)
  }
}

const page = buildPage(PAGE_BYTES)
const plain = chunksOf(page)
const gzipped = chunksOf(gzipSync(page))
const variants: Array<{ name: string, chunks: Buffer[], stages: () => Duplex[], rewrites: boolean }> = [
  { name: 'PassThrough', chunks: plain, stages: () => [new PassThrough()], rewrites: false },
  { name: 'nextLink rewriter', chunks: plain, stages: () => [createNextLinkRewriter(UPSTREAM, BROKER)], rewrites: true },
  { name: 'gunzip + PassThrough', chunks: gzipped, stages: () => [createGunzip(), new PassThrough()], rewrites: false },
  { name: 'gunzip + rewriter', chunks: gzipped, stages: () => [createGunzip(), createNextLinkRewriter(UPSTREAM, BROKER)], rewrites: true }
]

if (globalThis.gc === undefined) console.warn('run with node --expose-gc for steadier memory figures')
// One warm-up run of each: compiled code and pools are not what is measured.
for (const variant of variants) await measure(variant.chunks, variant.stages)

const samples = new Map<string, Sample[]>(variants.map((v) => [v.name, []]))
for (let run = 0; run < RUNS; run++) {
  // Interleaved, so that drift in the machine's load falls on every variant alike.
  for (const variant of run % 2 === 0 ? variants : [...variants].reverse()) {
    const sample = await measure(variant.chunks, variant.stages)
    const expected = page.length + (variant.rewrites ? BROKER.length - UPSTREAM.length : 0)
    if (sample.outBytes !== expected || sample.rewritten !== variant.rewrites) {
      console.error(`${variant.name}: ${sample.outBytes} bytes out, ${expected} expected; nextLink rewritten: ${sample.rewritten}`)
      process.exit(1)
    }
    samples.get(variant.name)?.push(sample)
  }
}

const rows = variants.map(({ name }) => {
  const runs = samples.get(name) ?? []
  const ms = median(runs.map((s) => s.ms))
  return {
    variant: name,
    'median ms': round(ms, 1),
    'MiB/s': round(page.length / MIB / (ms / 1000), 0),
    'peak heap+buffers MiB': round(median(runs.map((s) => s.heapBytes)) / MIB, 2),
    'peak RSS growth MiB': round(median(runs.map((s) => s.rssBytes)) / MIB, 2)
  }
})
const [pass, rewrite, gunzipPass, gunzipRewrite] = rows.map((row) => row['median ms']) as [number, number, number, number]
console.log(`nextLink rewrite on a ${round(page.length / MIB, 1)} MiB JSON page, ${CHUNK_BYTES / 1024} KiB chunks, ${RUNS} runs each (medians), node ${process.version}`)
console.table(rows)
console.log(`rewrite adds ${round(rewrite - pass, 1)} ms over PassThrough (x${round(rewrite / pass, 1)}); behind gunzip it adds ${round(gunzipRewrite - gunzipPass, 1)} ms (x${round(gunzipRewrite / gunzipPass, 2)})`)
