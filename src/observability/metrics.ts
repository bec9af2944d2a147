import type { Metric, MetricValueWithName, Registry } from 'prom-client'
import type { Clock } from '../common/clock.js'
import type { Profile } from '../runtime/profiles.js'

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'])
/** AADSTS codes, msal's and Node's error codes; anything else is not a label value. */
const CODE = /^[A-Za-z][A-Za-z0-9_]{0,63}$/

function codeLabel (code: string): string {
  return CODE.test(code) ? code : 'other'
}

export interface Exposition {
  contentType: string
  text: string
}

export interface BrokerMetrics {
  /**
   * The Prometheus text of every metric, for GET /metrics; given `profiles`, only the series of
   * those profiles and the broker-wide ones, with no `profile` label.
   */
  scrape: (profiles?: ReadonlySet<string>) => Promise<Exposition>
  upstreamResponse: (profile: string, method: string, status: number, seconds: number) => void
  /** No response from the API: `code` is the broker's (BrokerUpstreamUnreachable, BrokerUpstreamTimeout). */
  upstreamFailed: (profile: string, code: string) => void
  inboundRejected: (reason: string) => void
  /** A read answered with no call of its own: `reason` is collapsed or cached. */
  callSaved: (profile: string, reason: 'collapsed' | 'cached') => void
  /** A state-changing call a guard rail refused: `guard` is cap, protect or indicators. */
  guardRefused: (profile: string, guard: string) => void
  /** A state-changing call answered as a dry run. */
  dryRun: (profile: string) => void
}

/**
 * Prometheus metrics, labelled by profile. Every label value comes from a bounded set
 * (profile names, methods, status codes, error codes): never a raw path.
 *
 * The broker counts in plain numbers (Tally, Reading) and prom-client is loaded at the first
 * scrape, which formats them beside its default process metrics: a broker nobody scrapes never
 * loads it, and counting costs a request no label hashing.
 */
export function createMetrics (profiles: readonly Profile[], clock: Clock): BrokerMetrics {
  const acquisitions = new Tally('counter', 'broker_token_acquisitions_total', 'Token requests to Entra ID, by result.', [])
  const failures = new Tally('counter', 'broker_token_refresh_failures_total', 'Failed token requests, by AADSTS code or failure kind.', [])
  const expiry = new Reading('broker_token_expiry_seconds',
    'Seconds until the held token expires (negative once expired; absent before the first token).',
    () => profiles.flatMap(({ config, tokens }) => {
      const { expiresAt } = tokens.status()
      return expiresAt === undefined ? [] : [{ labels: { profile: config.name }, value: (expiresAt - clock.now()) / 1000 }]
    }))
  const queueDepth = new Reading('broker_ratelimit_queue_depth', 'Requests waiting for the profile\'s local budget.',
    () => profiles.map(({ config, budget }) => ({ labels: { profile: config.name }, value: budget.status().queued })))
  const fallbacks = new Tally('counter', 'broker_ratelimit_store_fallbacks_total',
    'Times the profile\'s budget stopped being shared through Redis (unreachable or too slow) and fell back to this broker\'s share.', [])
  const shared = new Reading('broker_ratelimit_store_shared',
    '1 while the profile\'s budget is shared through Redis, 0 while this broker decides alone (absent with a local store).',
    () => profiles.flatMap(({ config, budget }) =>
      budget.store === 'local' ? [] : [{ labels: { profile: config.name }, value: budget.store === 'redis' ? 1 : 0 }]))
  const upstream = new Tally('counter', 'broker_upstream_requests_total', 'Requests sent to the Defender API, by method and status.', [])
  const duration = new Tally('histogram', 'broker_upstream_request_duration_seconds',
    'Time from sending a request to the Defender API to its response headers.',
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])
  const upstreamFailures = new Tally('counter', 'broker_upstream_failures_total',
    'Requests that got no response from the Defender API (unreachable, timed out), by the broker\'s error code.', [])
  const rejections = new Tally('counter', 'broker_inbound_rejections_total', 'Requests the broker refused itself, by reason (its error code).', [])
  const saved = new Tally('counter', 'broker_upstream_calls_saved_total',
    'Reads answered with no call to the Defender API of their own, by reason: collapsed (an identical read in flight answered them too) or cached.', [])
  const guardRefusals = new Tally('counter', 'broker_guardrail_refusals_total',
    'State-changing calls the guard rails refused, by guard: cap, protect (a protected machine, or one that could not be read) or indicators (an allowlisted value).', [])
  const dryRuns = new Tally('counter', 'broker_dry_runs_total', 'State-changing calls answered as a dry run, with no call to the Defender API.', [])
  const own: Array<Tally | Reading> = [acquisitions, failures, expiry, queueDepth, fallbacks, shared, upstream, duration, upstreamFailures, rejections, saved, guardRefusals, dryRuns]

  let registry: Promise<Registry> | undefined
  const loadRegistry = async () => {
    // prom-client is CommonJS: its module.exports is the namespace's `default`, under Node's
    // ESM loader and in the bundle alike. The bundle's chunk of it exports nothing else, so the
    // named exports Node would add are not there to be used.
    const prom = (await import('prom-client')).default
    const made = new prom.Registry()
    prom.collectDefaultMetrics({ register: made })
    for (const metric of own) made.registerMetric(metric as unknown as Metric)
    return made
  }

  for (const { config, tokens, budget } of profiles) {
    budget.onStoreChange((store) => {
      if (store === 'local-fallback') fallbacks.series({ profile: config.name }).observe(1)
    })
    tokens.on('acquired', () => acquisitions.series({ profile: config.name, result: 'success' }).observe(1))
    tokens.on('failed', (failure) => {
      acquisitions.series({ profile: config.name, result: 'failure' }).observe(1)
      failures.series({ profile: config.name, code: codeLabel(failure.code) }).observe(1)
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
    async scrape (only) {
      registry ??= loadRegistry()
      const made = await registry
      const text = await made.metrics()
      return { contentType: made.contentType, text: only === undefined ? text : onlyProfiles(text, only) }
    },
    upstreamResponse (profile, method, status, seconds) {
      const series = seriesOf(profile, method, status)
      series.requests.observe(1)
      series.duration.observe(seconds)
    },
    upstreamFailed (profile, code) {
      upstreamFailures.series({ profile, code: codeLabel(code) }).observe(1)
    },
    inboundRejected (reason) {
      rejections.series({ reason: codeLabel(reason) }).observe(1)
    },
    callSaved (profile, reason) {
      saved.series({ profile, reason }).observe(1)
    },
    guardRefused (profile, guard) {
      guardRefusals.series({ guard, profile }).observe(1)
    },
    dryRun (profile) {
      dryRuns.series({ profile }).observe(1)
    }
  }
}

/**
 * A sample's `profile` label. Profile names are plain (lower-case letters, digits, `-`), and a
 * `"` inside another label's value is escaped, so the match cannot start inside one.
 */
const PROFILE_LABEL = /[{,]profile="([^"]*)"/

/**
 * The exposition without the samples labelled with a profile not in `profiles`: one pass over
 * the text, no second registry. HELP and TYPE lines stay (a family may have no samples).
 */
export function onlyProfiles (text: string, profiles: ReadonlySet<string>): string {
  let kept = ''
  let start = 0
  while (start < text.length) {
    const newline = text.indexOf('\n', start)
    const end = newline === -1 ? text.length : newline + 1
    const line = text.slice(start, end)
    start = end
    const profile = line.startsWith('#') ? null : PROFILE_LABEL.exec(line)
    if (profile !== null && !profiles.has(profile[1] as string)) continue
    kept += line
  }
  return kept
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

/** What prom-client's registry reads of a metric to format it. */
interface MetricReport {
  name: string
  help: string
  type: string
  aggregator: string
  values: MetricValueWithName<string>[]
}

/**
 * A counter or histogram kept in plain numbers: an observation is a bucket search and a few
 * adds. It is registered with prom-client's registry, which formats it at scrape time like
 * one of its own.
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

  async get (): Promise<MetricReport> {
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

/** A gauge read when scraped: what is held right now (a token's expiry, a queue's depth). */
class Reading {
  readonly aggregator = 'sum'

  constructor (
    readonly name: string,
    readonly help: string,
    readonly read: () => Array<{ labels: Record<string, string>, value: number }>
  ) {}

  async get (): Promise<MetricReport> {
    const values = this.read().map(({ labels, value }) => ({ labels, value, metricName: this.name }))
    return { name: this.name, help: this.help, type: 'gauge', aggregator: this.aggregator, values }
  }
}
