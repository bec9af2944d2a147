/** Load from autocannon, in this process (the servers under test run in children). */
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

export async function runLoad (baseUrl: string, options: LoadOptions): Promise<LoadResult> {
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
