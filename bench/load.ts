/**
 * Load: wrk when it is installed (a C load generator: on two cores it leaves the proxies under
 * test the CPU that autocannon, in this process, would take from them), else autocannon.
 * Runs that record every response time use autocannon, whose per-response callback wrk has no
 * counterpart of.
 */
import { execFile } from 'node:child_process'
import { accessSync, constants, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import autocannon from 'autocannon'
import { percentile } from './stats.js'

/** Requests per connection before autocannon opens a new one, for every target alike. */
export const RECONNECT_EVERY = 1000

export interface LoadOptions {
  connections: number
  /** Seconds. */
  duration: number
  path?: string
  /** Keep every response time (fractional ms): autocannon's own histogram has 1 ms resolution. */
  record?: boolean
}

export interface LoadResult {
  /** 2xx responses per second. */
  rps: number
  ok: number
  non2xx: number
  errors: number
  timeouts: number
  seconds: number
  /** ms; from the recorded response times when `record`, else autocannon's (whole ms). */
  p50: number
  p99: number
  max: number
  latencies?: number[]
  /** Count by status code, when any response was not 2xx. */
  statuses?: Record<string, number>
}

export type LoadGenerator = 'wrk' | 'autocannon'

function findWrk (): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue
    try {
      accessSync(join(dir, 'wrk'), constants.X_OK)
      return join(dir, 'wrk')
    } catch {}
  }
  return undefined
}

const WRK = process.env.BENCH_LOAD === 'autocannon' ? undefined : findWrk()

/** What generates the load of runs that do not record each response. */
export const LOAD_GENERATOR: LoadGenerator = WRK === undefined ? 'autocannon' : 'wrk'

export async function runLoad (baseUrl: string, options: LoadOptions): Promise<LoadResult> {
  return WRK !== undefined && options.record !== true ? runWrk(WRK, baseUrl, options) : runAutocannon(baseUrl, options)
}

/** wrk's summary as one JSON line, from its `done` hook; latencies in µs. */
const WRK_SCRIPT = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests":%d,"us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%d,"p99":%d,"max":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
`
let wrkScript: string | undefined

interface WrkSummary {
  requests: number
  us: number
  connect: number
  read: number
  write: number
  status: number
  timeout: number
  p50: number
  p99: number
  max: number
}

/**
 * One thread, like autocannon's one process. wrk follows the server's `connection: close` with
 * a new connection (the broker closes one after 1000 requests); it keeps the others' open.
 */
function runWrk (wrk: string, baseUrl: string, options: LoadOptions): Promise<LoadResult> {
  if (wrkScript === undefined) {
    const script = join(tmpdir(), `dtb-bench-wrk-${process.pid}.lua`)
    writeFileSync(script, WRK_SCRIPT)
    process.once('exit', () => rmSync(script, { force: true }))
    wrkScript = script
  }
  const args = ['-t1', `-c${options.connections}`, `-d${options.duration}s`, '--timeout', '10s', '-s', wrkScript, baseUrl + (options.path ?? '/api/alerts')]
  return new Promise((resolve, reject) => {
    execFile(wrk, args, { timeout: (options.duration + 30) * 1000 }, (err, stdout, stderr) => {
      const line = /^WRK (\{.*\})$/m.exec(stdout)?.[1]
      if (err !== null || line === undefined) {
        reject(new Error(`wrk failed: ${err?.message ?? ''} ${stderr.slice(-500)} ${stdout.slice(-500)}`.trim()))
        return
      }
      const w = JSON.parse(line) as WrkSummary
      const seconds = w.us / 1e6
      const ok = w.requests - w.status
      resolve({
        rps: ok / seconds,
        ok,
        non2xx: w.status,
        errors: w.connect + w.read + w.write,
        timeouts: w.timeout,
        seconds,
        p50: w.p50 / 1000,
        p99: w.p99 / 1000,
        max: w.max / 1000
      })
    })
  })
}

async function runAutocannon (baseUrl: string, options: LoadOptions): Promise<LoadResult> {
  const instance = autocannon({
    url: baseUrl + (options.path ?? '/api/alerts'),
    connections: options.connections,
    duration: options.duration,
    pipelining: 1,
    // autocannon ignores `connection: close`: it would send on into a connection the server is
    // closing and count the 503s Node answers there. The broker closes a connection after 1000
    // requests (maxRequestsPerSocket), so every target gets new connections as often.
    reconnectRate: RECONNECT_EVERY,
    timeout: 10
  })
  let latencies: number[] | undefined
  if (options.record === true) {
    const kept: number[] = []
    latencies = kept
    instance.on('response', (_client, statusCode, _bytes, ms) => {
      if (statusCode >= 200 && statusCode < 300) kept.push(ms)
    })
  }
  const result = await instance
  const seconds = result.duration > 0 ? result.duration : options.duration
  const ok = result['2xx']
  return {
    rps: ok / seconds,
    ok,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    seconds,
    p50: latencies === undefined ? result.latency.p50 : percentile(latencies, 50),
    p99: latencies === undefined ? result.latency.p99 : percentile(latencies, 99),
    max: latencies === undefined ? result.latency.max : latencies.reduce((a, b) => (b > a ? b : a), 0),
    ...(latencies === undefined ? {} : { latencies }),
    ...(result.non2xx === 0 ? {} : { statuses: Object.fromEntries(Object.entries(result.statusCodeStats).map(([code, s]) => [code, s.count])) })
  }
}

/** Failed requests make a figure meaningless: say so rather than report it. */
export function assertClean (what: string, result: LoadResult): void {
  if (result.non2xx > 0 || result.errors > 0 || result.timeouts > 0) {
    throw new Error(`${what}: ${result.non2xx} non-2xx responses, ${result.errors} errors, ${result.timeouts} timeouts ` +
      `(of ${result.ok + result.non2xx} responses${result.statuses === undefined ? '' : `; by status ${JSON.stringify(result.statuses)}`})`)
  }
}
