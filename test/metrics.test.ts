import t from 'tap'
import { request } from 'undici'
import type { Config } from '../src/config/types.js'
import { createTestPki } from '../src/simulator/index.js'
import { startBrokerStack, type BrokerStack } from './helpers/broker.js'
import { clientFor } from './helpers/profiles.js'
import { rawExchange } from './helpers/raw-socket.js'
import { closedOrigin } from './helpers/upstream.js'

const SCENARIO = { timeout: 30_000 }
const KEY = 'metrics-client-key-0123456789abcdef'
/** With client keys, /metrics wants one too: a key whose only rule matches no API path. */
const SCRAPE_KEY = 'prometheus-scrape-key-0123456789ab'
const pki = await createTestPki()

interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

interface Family {
  type: string
  help: string
  samples: Sample[]
}

/** Parses Prometheus' text exposition format (version 0.0.4) into metric families. */
function parseExposition (text: string): Map<string, Family> {
  const families = new Map<string, Family>()
  const familyOf = (sample: string) => {
    for (const suffix of ['_bucket', '_sum', '_count', '']) {
      const base = suffix === '' ? sample : sample.slice(0, -suffix.length)
      if (sample.endsWith(suffix) && families.has(base)) return families.get(base) as Family
    }
    throw new Error(`sample ${sample} has no # TYPE line before it`)
  }
  for (const line of text.split('\n')) {
    if (line === '') continue
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line)
    if (meta !== null) {
      const [, kind, name, rest] = meta as unknown as [string, string, string, string]
      const family = families.get(name) ?? { type: '', help: '', samples: [] }
      if (kind === 'TYPE') family.type = rest
      else family.help = rest
      families.set(name, family)
      continue
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (sample === null) throw new Error(`not an exposition line: ${line}`)
    const [, name, labelText = '', value] = sample as unknown as [string, string, string | undefined, string]
    const labels: Record<string, string> = {}
    for (const [, key, raw] of labelText.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key as string] = (raw as string).replace(/\\(.)/g, (_m, c: string) => (c === 'n' ? '\n' : c))
    }
    familyOf(name).samples.push({ name, labels, value: Number(value) })
  }
  return families
}

async function scrape (stack: BrokerStack, key?: string): Promise<{ text: string, families: Map<string, Family>, contentType: string }> {
  const res = await request(`${stack.url}/metrics`, { headers: key === undefined ? {} : { authorization: `Bearer ${key}` } })
  if (res.statusCode !== 200) throw new Error(`/metrics answered ${res.statusCode}: ${await res.body.text()}`)
  const text = await res.body.text()
  return { text, families: parseExposition(text), contentType: String(res.headers['content-type']) }
}

const labelNames = (family: Family | undefined, sample = '') =>
  [...new Set((family?.samples ?? []).filter((s) => sample === '' || s.name === sample).map((s) => Object.keys(s.labels).sort().join(',')))]

const valueOf = (family: Family | undefined, labels: Record<string, string>) =>
  family?.samples.find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value

async function call (stack: BrokerStack, method: string, path: string, options: { key?: string, body?: string, headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...options.headers }
  if (options.key !== undefined) headers['x-broker-key'] = options.key
  if (options.body !== undefined) headers['content-type'] = 'application/json'
  const res = await request(`${stack.url}${path}`, { method: method as 'GET', headers, body: options.body })
  await res.body.dump()
  return res.statusCode
}

t.test('names, types and label sets after real traffic; label values bounded', SCENARIO, async (t) => {
  const uniqueAlert = 'da-unique-alert-7f3e9c'
  const uniqueMachine = 'unique-machine-5b2d8a'
  const uniqueQuery = 'unique-query-value-19ab'
  const stack = await startBrokerStack(t, {
    simulator: { pki },
    config: (config: Config): Config => ({
      ...config,
      clients: [
        clientFor('soar', KEY, { allow: ['GET /api/**', 'POST /api/machines/*/isolate'] }),
        clientFor('prometheus', SCRAPE_KEY, { allow: ['GET /metrics'] })
      ],
      profiles: config.profiles.map((profile) => ({ ...profile, rateLimit: { ...profile.rateLimit, perMinute: 7, maxQueueSeconds: 120 } }))
    })
  })
  const holder = stack.app.profiles[0]?.tokens
  const machine = stack.simulator.sampleMachineId

  // Upstream statuses: 200, 201, 404, 500, and a 401 the broker answers by replaying once.
  t.equal(await call(stack, 'GET', `/api/alerts?$filter=title%20eq%20'${uniqueQuery}'`, { key: KEY }), 200)
  t.equal(await call(stack, 'POST', `/api/machines/${machine}/isolate`, { key: KEY, body: '{"Comment":"m","IsolationType":"Full"}' }), 201)
  t.equal(await call(stack, 'GET', `/api/alerts/${uniqueAlert}`, { key: KEY }), 404)
  stack.simulator.defender.forceNext(500)
  t.equal(await call(stack, 'GET', `/api/machines/${uniqueMachine}`, { key: KEY }), 500)
  stack.simulator.defender.forceNext(401)
  t.equal(await call(stack, 'GET', '/api/alerts', { key: KEY }), 200, 'a 401, a fresh token, a replay')
  // Inbound rejections: no key, a rule miss, a wrong Host, a bad target, over budget.
  t.equal(await call(stack, 'GET', `/api/alerts/${uniqueAlert}`), 401)
  t.equal(await call(stack, 'DELETE', `/api/machines/${uniqueMachine}`, { key: KEY }), 403)
  t.equal(await call(stack, 'GET', '/api/alerts', { key: KEY, headers: { host: 'evil.example' } }), 421)
  t.equal((await rawExchange(stack.url, `GET /api/%2e%2e/${uniqueMachine} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`)).status, 400)
  // A token request that fails, then one that succeeds.
  stack.simulator.entra.setMode('error500')
  const held = await holder?.get()
  await holder?.renew(held?.value ?? '').catch(() => {})
  stack.simulator.entra.setMode('ok')
  await holder?.renew(held?.value ?? '')
  // The seventh upstream request of the minute (the replay counts) takes the last slot; the next waits.
  t.equal(await call(stack, 'GET', '/api/alerts', { key: KEY }), 200)
  const controller = new AbortController()
  const queued = request(`${stack.url}/api/alerts`, { headers: { 'x-broker-key': KEY }, signal: controller.signal }).catch(() => 'aborted')
  t.teardown(() => controller.abort())

  let scraped = await scrape(stack, SCRAPE_KEY)
  for (let i = 0; i < 50 && valueOf(scraped.families.get('broker_ratelimit_queue_depth'), { profile: 'default' }) !== 1; i++) {
    await new Promise((resolve) => setImmediate(resolve))
    scraped = await scrape(stack, SCRAPE_KEY)
  }
  const { text, families, contentType } = scraped
  t.match(contentType, /^text\/plain; version=0\.0\.4/, 'Prometheus text format')

  const expected: Array<[string, string, string[]]> = [
    ['broker_token_acquisitions_total', 'counter', ['profile,result']],
    ['broker_token_expiry_seconds', 'gauge', ['profile']],
    ['broker_token_refresh_failures_total', 'counter', ['code,profile']],
    ['broker_upstream_requests_total', 'counter', ['method,profile,status']],
    ['broker_upstream_request_duration_seconds', 'histogram', []],
    ['broker_ratelimit_queue_depth', 'gauge', ['profile']],
    ['broker_inbound_rejections_total', 'counter', ['reason']],
    ['broker_upstream_failures_total', 'counter', []]
  ]
  for (const [name, type, labels] of expected) {
    const family = families.get(name)
    t.equal(family?.type, type, `${name} is a ${type}`)
    t.ok((family?.help ?? '') !== '', `${name} has help text`)
    if (labels.length > 0) t.same(labelNames(family), labels, `${name} labels: ${labels.join(' | ')}`)
  }
  const duration = families.get('broker_upstream_request_duration_seconds')
  t.same(labelNames(duration, 'broker_upstream_request_duration_seconds_bucket'), ['le,profile'], 'histogram buckets by profile')
  t.same(labelNames(duration, 'broker_upstream_request_duration_seconds_count'), ['profile'])
  t.same(labelNames(duration, 'broker_upstream_request_duration_seconds_sum'), ['profile'])
  t.equal(valueOf(duration, { le: '+Inf', profile: 'default' }), 7, 'every upstream response observed (the 401 and its replay both count)')
  t.equal(duration?.samples.find((s) => s.name.endsWith('_count'))?.value, 7)
  const buckets = (duration?.samples ?? []).filter((s) => s.name.endsWith('_bucket')).map((s) => s.value)
  t.equal(buckets.length, 12, 'eleven bounds and +Inf')
  t.ok(buckets.every((value, i) => i === 0 || value >= (buckets[i - 1] as number)), `buckets are cumulative: ${buckets.join(' ')}`)
  t.ok((buckets.at(-2) as number) > 0, 'local responses fall in the finite buckets')
  const sum = duration?.samples.find((s) => s.name.endsWith('_sum'))?.value ?? 0
  t.ok(sum > 0 && sum < 7 * 30, `the sum of the durations (${sum} s)`)

  const upstream = families.get('broker_upstream_requests_total')
  t.equal(valueOf(upstream, { method: 'GET', status: '200' }), 3)
  t.equal(valueOf(upstream, { method: 'POST', status: '201' }), 1)
  t.equal(valueOf(upstream, { method: 'GET', status: '404' }), 1)
  t.equal(valueOf(upstream, { method: 'GET', status: '500' }), 1)
  t.equal(valueOf(upstream, { method: 'GET', status: '401' }), 1)

  const acquisitions = families.get('broker_token_acquisitions_total')
  t.equal(valueOf(acquisitions, { profile: 'default', result: 'success' }), 3, 'the first token, the renewal after the 401, the renewal after the failure')
  t.equal(valueOf(acquisitions, { profile: 'default', result: 'failure' }), 1)
  const failures = families.get('broker_token_refresh_failures_total')?.samples ?? []
  t.equal(failures.length, 1, 'one failure code')
  t.match(failures[0]?.labels.code, /^[A-Za-z][A-Za-z0-9_]*$/, 'the code is a code')
  const expiry = valueOf(families.get('broker_token_expiry_seconds'), { profile: 'default' }) ?? 0
  t.ok(expiry > 3000 && expiry <= 3600, `seconds to expiry of a fresh token (${expiry})`)
  t.equal(valueOf(families.get('broker_ratelimit_queue_depth'), { profile: 'default' }), 1, 'one request waiting')

  const rejections = families.get('broker_inbound_rejections_total')
  t.same(Object.fromEntries((rejections?.samples ?? []).map((s) => [s.labels.reason, s.value])), {
    BrokerUnauthenticated: 1, BrokerForbidden: 1, BrokerMisdirected: 1, BrokerBadRequestTarget: 1
  }, 'rejections by the broker\'s error code')

  for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
    t.ok(families.has(name), `default metric ${name}`)
  }

  // Bounded label values: nothing a client chose ends up in a label.
  for (const unique of [uniqueAlert, uniqueMachine, uniqueQuery, machine, '/api/', KEY, SCRAPE_KEY, 'evil.example']) {
    t.notOk(text.includes(unique), `the exposition does not hold ${unique}`)
  }
  const allowed: Record<string, RegExp> = {
    profile: /^default$/,
    method: /^(GET|HEAD|POST|PUT|PATCH|DELETE|OTHER)$/,
    status: /^[1-5]\d\d$/,
    result: /^(success|failure)$/,
    code: /^[A-Za-z][A-Za-z0-9_]{0,63}$/,
    reason: /^Broker[A-Za-z]+$/,
    le: /^(\+Inf|[0-9.e+-]+)$/
  }
  for (const [name, family] of families) {
    if (!name.startsWith('broker_')) continue
    for (const sample of family.samples) {
      for (const [label, value] of Object.entries(sample.labels)) {
        t.ok(allowed[label]?.test(value), `${sample.name}{${label}="${value}"} is from a bounded set`)
      }
    }
  }
  controller.abort()
  t.equal(await queued, 'aborted')
})

t.test('an unreachable API counts as an upstream failure, not as a status', SCENARIO, async (t) => {
  const stack = await startBrokerStack(t, { simulator: { pki }, env: { BROKER_UPSTREAM: await closedOrigin(t) } })
  t.equal(await call(stack, 'GET', '/api/alerts'), 502)
  const { families } = await scrape(stack)
  const failures = families.get('broker_upstream_failures_total')
  t.same(labelNames(failures), ['code,profile'])
  t.equal(valueOf(failures, { profile: 'default', code: 'BrokerUpstreamUnreachable' }), 1)
  t.equal(families.get('broker_upstream_requests_total')?.samples.length, 0, 'no upstream status was seen')
  t.equal(families.get('broker_inbound_rejections_total')?.samples.length, 0, 'and it is not an inbound rejection')
})
