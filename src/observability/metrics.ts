import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
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
  const upstream = new Counter({
    name: 'broker_upstream_requests_total',
    help: 'Requests sent to the Defender API, by method and status.',
    labelNames: ['profile', 'method', 'status'] as const,
    registers
  })
  const duration = new Histogram({
    name: 'broker_upstream_request_duration_seconds',
    help: 'Time from sending a request to the Defender API to its response headers.',
    labelNames: ['profile'] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers
  })
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

  // The labelled series a forwarded request counts in, looked up once per label set rather than
  // hashed from the labels on every request. The sets are bounded: profiles, methods, statuses.
  const responseSeries = new Map<string, { count: () => void, observe: (seconds: number) => void }>()
  function seriesOf (profile: string, method: string, status: number) {
    const methodLabel = METHODS.has(method) ? method : 'OTHER'
    const key = `${profile} ${methodLabel} ${status}`
    let series = responseSeries.get(key)
    if (series === undefined) {
      const counter = upstream.labels({ profile, method: methodLabel, status: String(status) })
      const histogram = duration.labels({ profile })
      series = { count: () => counter.inc(), observe: (seconds) => histogram.observe(seconds) }
      responseSeries.set(key, series)
    }
    return series
  }

  return {
    registry,
    upstreamResponse (profile, method, status, seconds) {
      const series = seriesOf(profile, method, status)
      series.count()
      series.observe(seconds)
    },
    upstreamFailed (profile, code) {
      upstreamFailures.inc({ profile, code: codeLabel(code) })
    },
    inboundRejected (reason) {
      rejections.inc({ reason: codeLabel(reason) })
    }
  }
}
