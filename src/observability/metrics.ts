import { collectDefaultMetrics, Counter, Gauge, Registry, type Metric, type MetricValueWithName } from 'prom-client'
import type { Clock } from '../clock.js'
import type { Profile } from '../profiles.js'

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'])
/** AADSTS codes, msal's and Node's error codes; anything else is not a label value. */
const CODE = /^[A-Za-z][A-Za-z0-9_]{0,63}$/

function codeLabel (code: string): string {
  return CODE.test(code) ? code : 'other'
}

export interface BrokerMetrics {
  registry: Registry
  upstreamResponse: (profile: string, method: string, status: number, seconds: number) => void
  /** No response from the API: `code` is the broker's (BrokerUpstreamUnreachable, BrokerUpstreamTimeout). */
  upstreamFailed: (profile: string, code: string) => void
  inboundRejected: (reason: string) => void
}

/**
 * Prometheus metrics, labelled by profile. Every label value comes from a bounded set
 * (profile names, methods, status codes, error codes): never a raw path.
 */
export function createMetrics (profiles: readonly Profile[], clock: Clock): BrokerMetrics {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const registers = [registry]

  const acquisitions = new Counter({
    name: 'broker_token_acquisitions_total',
    help: 'Token requests to Entra ID, by result.',
    labelNames: ['profile', 'result'] as const,
    registers
  })
  const failures = new Counter({
    name: 'broker_token_refresh_failures_total',
    help: 'Failed token requests, by AADSTS code or failure kind.',
    labelNames: ['profile', 'code'] as const,
    registers
  })
  new Gauge({ // eslint-disable-line no-new
    name: 'broker_token_expiry_seconds',
    help: 'Seconds until the held token expires (negative once expired; absent before the first token).',
    labelNames: ['profile'] as const,
    registers,
    collect () {
      this.reset()
      for (const { config, tokens } of profiles) {
        const { expiresAt } = tokens.status()
        if (expiresAt !== undefined) this.set({ profile: config.name }, (expiresAt - clock.now()) / 1000)
      }
    }
  })
  new Gauge({ // eslint-disable-line no-new
    name: 'broker_ratelimit_queue_depth',
    help: 'Requests waiting for the profile\'s local budget.',
    labelNames: ['profile'] as const,
    registers,
    collect () {
      for (const { config, budget } of profiles) this.set({ profile: config.name }, budget.status().queued)
    }
  })
  const fallbacks = new Counter({
    name: 'broker_ratelimit_store_fallbacks_total',
    help: 'Times the profile\'s budget stopped being shared through Redis (unreachable or too slow) and fell back to this broker\'s share.',
    labelNames: ['profile'] as const,
    registers
  })
  new Gauge({ // eslint-disable-line no-new
    name: 'broker_ratelimit_store_shared',
    help: '1 while the profile\'s budget is shared through Redis, 0 while this broker decides alone (absent with a local store).',
    labelNames: ['profile'] as const,
    registers,
    collect () {
      for (const { config, budget } of profiles) {
        if (budget.store !== 'local') this.set({ profile: config.name }, budget.store === 'redis' ? 1 : 0)
      }
    }
  })
  const upstream = new Tally('counter', 'broker_upstream_requests_total', 'Requests sent to the Defender API, by method and status.', [])
  const duration = new Tally('histogram', 'broker_upstream_request_duration_seconds',
    'Time from sending a request to the Defender API to its response headers.',
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])
  registry.registerMetric(upstream as unknown as Metric)
  registry.registerMetric(duration as unknown as Metric)

  const upstreamFailures = new Counter({
    name: 'broker_upstream_failures_total',
    help: 'Requests that got no response from the Defender API (unreachable, timed out), by the broker\'s error code.',
    labelNames: ['profile', 'code'] as const,
    registers
  })
  const rejections = new Counter({
    name: 'broker_inbound_rejections_total',
    help: 'Requests the broker refused itself, by reason (its error code).',
    labelNames: ['reason'] as const,
    registers
  })

  for (const { config, tokens, budget } of profiles) {
    budget.onStoreChange((store) => {
      if (store === 'local-fallback') fallbacks.inc({ profile: config.name })
    })
    tokens.on('acquired', () => acquisitions.inc({ profile: config.name, result: 'success' }))
    tokens.on('failed', (failure) => {
      acquisitions.inc({ profile: config.name, result: 'failure' })
      failures.inc({ profile: config.name, code: codeLabel(failure.code) })
    })
  }

  // The series a forwarded request counts in, found once per label set. The sets are bounded:
  // profiles, methods, statuses.
  const responseSeries = new Map<string, { requests: Series, duration: Series }>()
  function seriesOf (profile: string, method: string, status: number) {
    const methodLabel = METHODS.has(method) ? method : 'OTHER'
    const key = `${profile} ${methodLabel} ${status}`
    let series = responseSeries.get(key)
    if (series === undefined) {
      series = {
        requests: upstream.series({ method: methodLabel, profile, status: String(status) }),
        duration: duration.series({ profile })
      }
      responseSeries.set(key, series)
    }
    return series
  }

  return {
    registry,
    upstreamResponse (profile, method, status, seconds) {
      const series = seriesOf(profile, method, status)
      series.requests.observe(1)
      series.duration.observe(seconds)
    },
    upstreamFailed (profile, code) {
      upstreamFailures.inc({ profile, code: codeLabel(code) })
    },
    inboundRejected (reason) {
      rejections.inc({ reason: codeLabel(reason) })
    }
  }
}

/** One labelled series of a Tally: for a counter `observe(n)` adds n. */
interface Series {
  readonly labels: Record<string, string>
  observe: (value: number) => void
  count: number
  sum: number
  /** Per bucket, observations at most its bound (not cumulative); empty for a counter. */
  readonly buckets: Float64Array
}

/**
 * A counter or histogram of the forwarding path, kept in plain numbers: an observation is a
 * bucket search and a few adds. prom-client's own hash the label set on every observation;
 * this one is registered with its registry, which formats it at scrape time like its own.
 */
class Tally {
  readonly aggregator = 'sum'
  readonly #series = new Map<string, Series>()

  constructor (
    readonly type: 'counter' | 'histogram',
    readonly name: string,
    readonly help: string,
    readonly bounds: readonly number[]
  ) {}

  /** The series of one label set, made on first use. */
  series (labels: Record<string, string>): Series {
    const key = JSON.stringify(labels)
    let series = this.#series.get(key)
    if (series === undefined) {
      const bounds = this.bounds
      const made: Series = {
        labels,
        count: 0,
        sum: 0,
        buckets: new Float64Array(bounds.length),
        observe (value) {
          made.count++
          made.sum += value
          for (let i = 0; i < bounds.length; i++) {
            if (value <= (bounds[i] as number)) {
              (made.buckets[i] as number)++
              return
            }
          }
        }
      }
      series = made
      this.#series.set(key, series)
    }
    return series
  }

  reset (): void {
    for (const series of this.#series.values()) {
      series.count = 0
      series.sum = 0
      series.buckets.fill(0)
    }
  }

  /** What prom-client's registry reads of a metric to format it. */
  async get (): Promise<{ name: string, help: string, type: string, aggregator: string, values: MetricValueWithName<string>[] }> {
    const values: Array<MetricValueWithName<string>> = []
    for (const { labels, count, sum, buckets } of this.#series.values()) {
      if (this.type === 'counter') {
        values.push({ labels, value: sum, metricName: this.name })
        continue
      }
      let cumulative = 0
      this.bounds.forEach((bound, i) => {
        cumulative += buckets[i] as number
        values.push({ labels: { le: bound, ...labels }, value: cumulative, metricName: `${this.name}_bucket` })
      })
      values.push(
        { labels: { le: '+Inf', ...labels }, value: count, metricName: `${this.name}_bucket` },
        { labels, value: sum, metricName: `${this.name}_sum` },
        { labels, value: count, metricName: `${this.name}_count` }
      )
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }
}
