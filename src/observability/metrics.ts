import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { Clock } from '../clock.js'
import type { Profile } from '../profiles.js'

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'])

export interface BrokerMetrics {
  registry: Registry
  upstreamResponse: (profile: string, method: string, status: number, seconds: number) => void
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
  const rejections = new Counter({
    name: 'broker_inbound_rejections_total',
    help: 'Requests the broker refused itself, by reason (its error code).',
    labelNames: ['reason'] as const,
    registers
  })

  for (const { config, tokens } of profiles) {
    tokens.on('acquired', () => acquisitions.inc({ profile: config.name, result: 'success' }))
    tokens.on('failed', (failure) => {
      acquisitions.inc({ profile: config.name, result: 'failure' })
      failures.inc({ profile: config.name, code: failure.code })
    })
  }

  return {
    registry,
    upstreamResponse (profile, method, status, seconds) {
      upstream.inc({ profile, method: METHODS.has(method) ? method : 'OTHER', status: String(status) })
      duration.observe({ profile }, seconds)
    },
    inboundRejected (reason) {
      rejections.inc({ reason })
    }
  }
}
