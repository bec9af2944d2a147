/**
 * `npm run bench`: the broker side by side with what users would run instead, in one run on
 * this machine (issue 7). Everything listens on 127.0.0.1; every server runs in a child process
 * and the load comes from autocannon in this one. Prints a table and writes bench/results.json.
 * Exits 0 whether or not the targets are met (it is a measurement); 1 when a figure could not
 * be measured; 2 when the whole run overran its time limit.
 *
 * BENCH_QUICK=1 runs every figure once, briefly, with a 64 MiB stream: a smoke run, not figures.
 * BENCH_FIGURES=1,5 runs only the figures of those numbers (while working on one of them).
 * BENCH_LOAD=autocannon uses autocannon even where wrk is installed.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { arch, cpus, loadavg, platform, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { Client, Pool, request } from 'undici'
import type { EntraReady, FixturesReady, TokenRequestsReply, UpstreamReady } from './fixtures.js'
import { assertClean, runLoad, type LoadOptions, type LoadResult } from './load.js'
import {
  cpuSeconds, findNginx, killAllChildren, nodeStartupMs, rssBytes, startBroker, startIpcChild, startNginx, waitForStatus,
  withTimeout, writeBrokerFiles, type Broker, type BrokerStartOptions, type IpcChild, type Nginx
} from './processes.js'
import { pollingCalls } from './polling.js'
import { median, MIB, percentile, round } from './stats.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const CLI = join(ROOT, 'dist/bin/defender-token-broker.js')
const FIXTURES = join(ROOT, 'dist/bench/fixtures.js')
const HTTP_PROXY = join(ROOT, 'dist/bench/http-proxy.js')
const RESULTS = join(ROOT, 'bench/results.json')

const QUICK = process.env.BENCH_QUICK === '1'
const SETTINGS = {
  quick: QUICK,
  /**
   * Short rounds, many of them: a broker must stay inside its budget (the schema's largest,
   * 100,000 a minute) for its warm-up and its round, so each round has fresh brokers, and a
   * fresh @fastify/http-proxy, each warmed `brokerWarmupSeconds`.
   */
  throughput: { connections: 32, rounds: QUICK ? 1 : 7, seconds: 2 },
  latency: { connections: 1, rounds: QUICK ? 1 : 3, seconds: QUICK ? 2 : 4 },
  /** Seconds of load on a fresh broker before it is measured: JIT and connection pools warm up. */
  brokerWarmupSeconds: 1,
  baselineWarmupSeconds: QUICK ? 1 : 2,
  /**
   * The first token answer is held back `entraDelayMs`, so the herd lands while it is in flight.
   * The broker accepts at most 256 connections: 1000 concurrent requests go over 200
   * connections, 5 pipelined on each (Node runs the handlers of pipelined requests at once).
   */
  herd: { requests: 1000, connections: 200, pipelining: 5, entraDelayMs: 500 },
  /** Each run on a fresh broker, within its budget like the throughput's rounds. */
  refresh: {
    connections: 32,
    rounds: QUICK ? 1 : 3,
    seconds: 3,
    warmupSeconds: 1,
    /** Against the simulator's 3599 s tokens: a refresh every 2 to 3 s. */
    beforeSeconds: 3596
  },
  stream: { bytes: QUICK ? 64 * MIB : 1024 * MIB, rounds: QUICK ? 1 : 2, rssSampleMs: 100 },
  idle: { starts: QUICK ? 2 : 3, settleMs: 1000 },
  nodeStartups: 5,
  timeLimitMs: 6 * 60_000
}

const TARGETS = {
  throughputRatio: 1.2,
  latencyOverheadMs: 0.5,
  herdTokenRequests: 1,
  refreshP99Ratio: 1.2,
  streamRatio: 0.8,
  streamRssGrowthMiB: 64,
  idleRssMiB: 80,
  listeningMs: 300,
  /** Ten tools polling once a second for a minute: calls with collapsing alone, and with a 5 s cache. */
  pollingCollapsed: 60,
  pollingCached: 13
}

interface Row { figure: string, value: string, target: string, met: boolean | undefined }

const rows: Row[] = []
const notes: string[] = []
const failures: string[] = []
const figures: Record<string, unknown> = {}

function log (line: string): void {
  process.stderr.write(`[bench ${((performance.now() - startedAt) / 1000).toFixed(0).padStart(3)} s] ${line}\n`)
}

const startedAt = performance.now()

// ---------------------------------------------------------------------------------------------
// Shared state: fixtures, baselines, broker files.

/** The token endpoint's child, with the stand-in API's address and page size merged into `ready`. */
let fixtures: IpcChild<FixturesReady>
let fixturesQueryId = 0

function askFixtures<T> (message: { type: string, [key: string]: unknown }, read: (reply: Record<string, unknown>) => T): Promise<T> {
  const id = ++fixturesQueryId
  const child = fixtures.child
  return withTimeout(new Promise<T>((resolve) => {
    const onMessage = (reply: Record<string, unknown>) => {
      if (reply.type === message.type && reply.id === id) {
        child.off('message', onMessage)
        resolve(read(reply))
      }
    }
    child.on('message', onMessage)
    child.send({ ...message, id })
  }), 5000, () => `the fixtures did not answer ${message.type}`)
}

function tokenRequests (): Promise<number> {
  return askFixtures({ type: 'tokenRequests' }, reply => (reply as unknown as TokenRequestsReply).count)
}

let brokerFiles: ReturnType<typeof writeBrokerFiles>
const brokerStarts: { logLevel: string, listeningMs: number }[] = []

async function launchBroker (options: Partial<BrokerStartOptions> & { logLevel: 'info' | 'warn' }): Promise<Broker> {
  const broker = await startBroker({
    cli: CLI,
    files: brokerFiles,
    authorityHost: fixtures.ready.entra,
    ...options
  })
  brokerStarts.push({ logLevel: options.logLevel, listeningMs: broker.listeningMs })
  return broker
}

/** A fresh broker, ready (token held), for one measurement; stopped afterwards. */
async function withBroker<T> (options: Partial<BrokerStartOptions> & { logLevel: 'info' | 'warn' }, fn: (broker: Broker) => Promise<T>): Promise<T> {
  const broker = await launchBroker(options)
  try {
    await waitForStatus(`${broker.url}/readyz`, 200, 20_000)
    return await fn(broker)
  } finally {
    await broker.stop()
  }
}

/** The budget each broker is configured with (see writeBrokerFiles): the schema's largest. */
const BROKER_BUDGET = { perMinute: 100_000, perHour: 1_000_000 }

/**
 * A broker kept across the rounds of a figure, warm like the baselines. The broker enforces its
 * profile's request budget; this counts what was sent to it and starts a fresh one (warmed up
 * again) before a run that could reach the budget, so the figures measure the proxy, not the
 * rate limiter.
 */
class ManagedBroker {
  readonly #options: Partial<BrokerStartOptions> & { logLevel: 'info' | 'warn' }
  readonly #connections: number
  #broker: Broker | undefined
  #sent: { at: number, count: number }[] = []
  #lastRps = 0
  starts = 0

  constructor (options: Partial<BrokerStartOptions> & { logLevel: 'info' | 'warn' }, connections: number) {
    this.#options = options
    this.#connections = connections
  }

  #record (result: LoadResult): void {
    this.#sent.push({ at: performance.now(), count: result.ok + result.non2xx })
    this.#lastRps = Math.max(this.#lastRps, result.rps)
  }

  /** The broker, ready and warm, with room in its budget for `seconds` of load. */
  async ready (seconds: number): Promise<Broker> {
    const now = performance.now()
    const lastMinute = this.#sent.filter(s => s.at > now - 70_000).reduce((n, s) => n + s.count, 0)
    const total = this.#sent.reduce((n, s) => n + s.count, 0)
    const expected = this.#lastRps * (seconds + 1) * 1.3
    if (this.#broker !== undefined && (lastMinute + expected > BROKER_BUDGET.perMinute * 0.9 || total + expected > BROKER_BUDGET.perHour * 0.9)) {
      await this.stop()
    }
    if (this.#broker === undefined) {
      const broker = await launchBroker(this.#options)
      this.#broker = broker
      this.#sent = []
      this.starts++
      await waitForStatus(`${broker.url}/readyz`, 200, 20_000)
      this.#record(await runLoad(broker.url, { connections: this.#connections, duration: SETTINGS.brokerWarmupSeconds }))
    }
    return this.#broker
  }

  async run (options: Omit<LoadOptions, 'connections'>): Promise<{ result: LoadResult, broker: Broker }> {
    const broker = await this.ready(options.duration)
    const result = await runLoad(broker.url, { ...options, connections: this.#connections })
    this.#record(result)
    return { result, broker }
  }

  async stop (): Promise<void> {
    const broker = this.#broker
    this.#broker = undefined
    await broker?.stop()
  }
}

/** The target answers the alert page as the upstream serves it. */
async function verify (name: string, baseUrl: string): Promise<void> {
  const response = await request(`${baseUrl}/api/alerts?$top=2`, { headersTimeout: 10_000, bodyTimeout: 10_000 })
  const body = await response.body.arrayBuffer()
  if (response.statusCode !== 200 || body.byteLength !== fixtures.ready.pageBytes) {
    throw new Error(`${name} answered ${response.statusCode} with ${body.byteLength} bytes, not the ${fixtures.ready.pageBytes}-byte page`)
  }
}

const ONLY = process.env.BENCH_FIGURES?.split(',').map(n => n.trim())

async function figure (name: string, fn: () => Promise<void>): Promise<void> {
  if (ONLY !== undefined && !ONLY.includes(name.split('.', 1)[0] as string)) return
  log(`${name}…`)
  try {
    await fn()
  } catch (err) {
    const message = (err as Error)?.message ?? String(err)
    failures.push(`${name}: ${message}`)
    figures[name] = { error: message }
    rows.push({ figure: name, value: `not measured: ${message.slice(0, 160)}`, target: '', met: undefined })
    log(`${name} failed: ${message}`)
  }
}

const fmtInt = (n: number) => Math.round(n).toLocaleString('en-US')
const fmtMs = (n: number) => `${n.toFixed(3)} ms`
const fmtMiB = (n: number) => `${(n / MIB).toFixed(1)} MiB`

// ---------------------------------------------------------------------------------------------
// Figures.

async function idleAndStartup (): Promise<void> {
  const starts: number[] = []
  const rss: number[] = []
  for (let i = 0; i < SETTINGS.idle.starts; i++) {
    const broker = await launchBroker({ logLevel: 'info' })
    try {
      starts.push(broker.listeningMs)
      await waitForStatus(`${broker.url}/readyz`, 200, 20_000)
      await sleep(SETTINGS.idle.settleMs)
      const bytes = rssBytes(broker.pid)
      if (bytes !== undefined) rss.push(bytes)
      // The broker answers the page as the upstream serves it (after the sample: idle means idle).
      if (i === 0) await verify('broker', broker.url)
    } finally {
      await broker.stop()
    }
  }
  const nodeStarts: number[] = []
  for (let i = 0; i < SETTINGS.nodeStartups; i++) nodeStarts.push(await nodeStartupMs())

  const idleRss = rss.length === 0 ? undefined : median(rss)
  const listening = median(starts)
  figures.idle = {
    rssBytes: rss,
    medianRssBytes: idleRss,
    listeningMs: starts.map(n => round(n, 1)),
    medianListeningMs: round(listening, 1),
    nodeStartupMs: nodeStarts.map(n => round(n, 1)),
    medianNodeStartupMs: round(median(nodeStarts), 1)
  }
  rows.push({
    figure: `6. idle RSS after ready (median of ${rss.length})`,
    value: idleRss === undefined ? 'n/a (no /proc)' : fmtMiB(idleRss),
    target: `<= ${TARGETS.idleRssMiB} MiB`,
    met: idleRss === undefined ? undefined : idleRss <= TARGETS.idleRssMiB * MIB
  })
  rows.push({
    figure: `6. spawn to 'broker listening' (median of ${starts.length})`,
    value: `${listening.toFixed(0)} ms`,
    target: `<= ${TARGETS.listeningMs} ms`,
    met: listening <= TARGETS.listeningMs
  })
  rows.push({
    figure: '6.   for scale: spawn to exit of `node -e 0`',
    value: `${median(nodeStarts).toFixed(0)} ms`,
    target: '',
    met: undefined
  })
}

async function latency (): Promise<void> {
  const { connections, rounds, seconds } = SETTINGS.latency
  const direct: LoadResult[] = []
  const broker: LoadResult[] = []
  const managed = new ManagedBroker({ logLevel: 'info' }, connections)
  await runLoad(fixtures.ready.upstream, { connections, duration: SETTINGS.baselineWarmupSeconds })
  try {
    for (let n = 0; n < rounds; n++) {
      const d = await runLoad(fixtures.ready.upstream, { connections, duration: seconds, record: true })
      assertClean('direct at 1 connection', d)
      direct.push(d)
      const { result } = await managed.run({ duration: seconds, record: true })
      assertClean('broker at 1 connection', result)
      broker.push(result)
      log(`  round ${n + 1}: p50 direct ${fmtMs(d.p50)}, broker ${fmtMs(result.p50)}`)
    }
  } finally {
    await managed.stop()
  }
  const summary = (results: LoadResult[]) => ({
    rounds: results.map(r => ({ p50: round(r.p50, 4), p99: round(r.p99, 4), max: round(r.max, 3), rps: round(r.rps, 0), requests: r.ok })),
    p50: round(median(results.map(r => r.p50)), 4),
    p99: round(median(results.map(r => r.p99)), 4)
  })
  const d = summary(direct)
  const b = summary(broker)
  const overhead = b.p50 - d.p50
  figures.latency = { connections, direct: d, broker: b, p50OverheadMs: round(overhead, 4), brokerStarts: managed.starts }
  rows.push({ figure: '2. latency, 1 connection: direct p50 / p99', value: `${fmtMs(d.p50)} / ${fmtMs(d.p99)}`, target: '', met: undefined })
  rows.push({ figure: '2. latency, 1 connection: broker p50 / p99', value: `${fmtMs(b.p50)} / ${fmtMs(b.p99)}`, target: '', met: undefined })
  rows.push({
    figure: '2. broker p50 - direct p50',
    value: fmtMs(overhead),
    target: `<= ${TARGETS.latencyOverheadMs} ms`,
    met: overhead <= TARGETS.latencyOverheadMs
  })
}

function startHttpProxy (): Promise<IpcChild<{ type: 'ready', url: string }>> {
  return startIpcChild<{ type: 'ready', url: string }>(HTTP_PROXY, {
    BENCH_UPSTREAM: fixtures.ready.upstream,
    BENCH_TOKEN: fixtures.ready.staticToken
  })
}

async function throughput (nginx: Nginx | undefined): Promise<void> {
  const { connections, rounds, seconds } = SETTINGS.throughput
  type Target = { name: string, run: () => Promise<{ result: LoadResult, rssAfter?: number }> }
  const fixed = (name: string, url: string): Target => ({
    name,
    run: async () => ({ result: await runLoad(url, { connections, duration: seconds }) })
  })
  // A broker can serve its budget's 100,000 requests a minute and no more, so each round gets a
  // fresh one; @fastify/http-proxy, the other proxy in Node, gets a fresh process too, warmed
  // as long: both are measured at the same age of their JIT and heap. (Kept running, it gets
  // faster over a minute or two of load: 12,400 to 15,500 req/s in one run here.)
  const warmed = (url: string) => runLoad(url, { connections, duration: SETTINGS.brokerWarmupSeconds })
  const broker = (name: string, logLevel: 'info' | 'warn'): Target => ({
    name,
    run: () => withBroker({ logLevel }, async (b) => {
      await warmed(b.url)
      const result = await runLoad(b.url, { connections, duration: seconds })
      const rss = rssBytes(b.pid)
      return rss === undefined ? { result } : { result, rssAfter: rss }
    })
  })
  const freshHttpProxy: Target = {
    name: '@fastify/http-proxy',
    run: async () => {
      const child = await startHttpProxy()
      try {
        await warmed(child.ready.url)
        return { result: await runLoad(child.ready.url, { connections, duration: seconds }) }
      } finally {
        await child.stop()
      }
    }
  }
  const targets: Target[] = [
    fixed('direct', fixtures.ready.upstream),
    broker('broker (log info)', 'info'),
    freshHttpProxy,
    ...(nginx === undefined ? [] : [fixed('nginx', nginx.url)]),
    broker('broker (log warn)', 'warn')
  ]
  for (const url of [fixtures.ready.upstream, ...(nginx === undefined ? [] : [nginx.url])]) {
    await runLoad(url, { connections, duration: SETTINGS.baselineWarmupSeconds })
  }
  const results = new Map<string, { result: LoadResult, rssAfter?: number }[]>(targets.map(t => [t.name, []]))
  for (let n = 0; n < rounds; n++) {
    for (const target of targets) {
      const outcome = await target.run()
      assertClean(`${target.name} at ${connections} connections`, outcome.result)
      results.get(target.name)?.push(outcome)
    }
    log(`  round ${n + 1}: ${targets.map(t => `${t.name} ${fmtInt(results.get(t.name)?.at(-1)?.result.rps ?? NaN)}`).join(', ')} req/s`)
  }
  const med = (name: string) => median((results.get(name) ?? []).map(o => o.result.rps))
  const byTarget: Record<string, unknown> = {}
  for (const target of targets) {
    const outcomes = results.get(target.name) ?? []
    byTarget[target.name] = {
      medianRps: round(med(target.name), 0),
      rounds: outcomes.map(o => ({
        rps: round(o.result.rps, 0),
        requests: o.result.ok,
        seconds: o.result.seconds,
        p50Ms: o.result.p50,
        p99Ms: o.result.p99,
        ...(o.rssAfter === undefined ? {} : { rssAfterBytes: o.rssAfter })
      }))
    }
  }
  // Each round runs the targets one after the other, so a round's ratio compares them under the
  // same conditions; the median of those is steadier on a shared machine than a ratio of medians.
  const pairedRatio = (name: string) => {
    const over = results.get('@fastify/http-proxy') ?? []
    return median((results.get(name) ?? []).map((o, i) => o.result.rps / (over[i]?.result.rps ?? NaN)))
  }
  const ratio = pairedRatio('broker (log info)')
  const ratioWarn = pairedRatio('broker (log warn)')
  figures.throughput = {
    connections,
    targets: byTarget,
    brokerOverHttpProxy: round(ratio, 3),
    brokerWarnOverHttpProxy: round(ratioWarn, 3),
    brokerOverNginx: nginx === undefined ? null : round(med('broker (log info)') / med('nginx'), 3),
    brokerOverDirect: round(med('broker (log info)') / med('direct'), 3),
    freshProcessPerRound: ['broker (log info)', '@fastify/http-proxy', 'broker (log warn)']
  }
  for (const target of targets) {
    rows.push({ figure: `1. throughput, ${connections} conn: ${target.name}`, value: `${fmtInt(med(target.name))} req/s`, target: '', met: undefined })
  }
  if (nginx === undefined) rows.push({ figure: `1. throughput, ${connections} conn: nginx`, value: 'skipped (not installed)', target: '', met: undefined })
  rows.push({
    figure: '1. broker (info) / @fastify/http-proxy (median of rounds)',
    value: `${ratio.toFixed(2)}x`,
    target: `>= ${TARGETS.throughputRatio}x`,
    met: ratio >= TARGETS.throughputRatio
  })
  rows.push({ figure: '1.   for scale: broker (warn) / @fastify/http-proxy (median of rounds)', value: `${ratioWarn.toFixed(2)}x`, target: '', met: undefined })
}

async function polling (): Promise<void> {
  const shape = { clients: 10, seconds: 60 }
  const alone = await pollingCalls({ ...shape, collapse: false })
  const collapsed = await pollingCalls({ ...shape, collapse: true })
  const cached = await pollingCalls({ ...shape, collapse: true, cacheSeconds: 5 })
  figures.polling = { ...shape, callsAlone: alone, callsCollapsed: collapsed, callsCached5s: cached }
  const of = `${shape.clients} tools polling one query each second for ${shape.seconds} s`
  rows.push({ figure: `7. API calls, ${of}: each read its own call`, value: fmtInt(alone), target: '', met: undefined })
  rows.push({ figure: '7. API calls, identical reads collapsed (the default)', value: fmtInt(collapsed), target: `<= ${TARGETS.pollingCollapsed}`, met: collapsed <= TARGETS.pollingCollapsed })
  rows.push({ figure: '7. API calls, collapsed and a 5 s cache rule', value: fmtInt(cached), target: `<= ${TARGETS.pollingCached}`, met: cached <= TARGETS.pollingCached })
}

async function coldHerd (): Promise<void> {
  const count = SETTINGS.herd.requests
  const before = await tokenRequests()
  const started: { herd?: Promise<{ statuses: Record<string, number>, probe: number | string, ms: number, firstAnswerMs: number }> } = {}
  const { connections, pipelining } = SETTINGS.herd
  const fire = (url: string) => {
    const firedAt = performance.now()
    // The probe goes first, on a connection of its own: was the token there as the herd arrived?
    const probeClient = new Client(url)
    const pool = new Pool(url, { connections, pipelining, headersTimeout: 30_000, bodyTimeout: 30_000 })
    let firstAnswerMs = Number.POSITIVE_INFINITY
    const statusOf = (dispatcher: Client | Pool, path: string) => dispatcher.request({ path, method: 'GET' }).then(async (response) => {
      if (dispatcher === pool) firstAnswerMs = Math.min(firstAnswerMs, performance.now() - firedAt)
      await response.body.dump()
      return response.statusCode
    }, (err: { code?: string }) => err.code ?? 'error')
    const probe = statusOf(probeClient, '/readyz')
    const all = Array.from({ length: count }, () => statusOf(pool, '/api/alerts'))
    return Promise.all([probe, Promise.all(all)]).then(async ([probeStatus, statuses]) => {
      const ms = performance.now() - firedAt
      await Promise.all([pool.close(), probeClient.close()])
      const counted: Record<string, number> = {}
      for (const status of statuses) counted[String(status)] = (counted[String(status)] ?? 0) + 1
      return { statuses: counted, probe: probeStatus, ms, firstAnswerMs }
    })
  }
  await askFixtures({ type: 'slowNextToken', ms: SETTINGS.herd.entraDelayMs }, () => undefined)
  const broker = await launchBroker({
    logLevel: 'info',
    onListening: (url) => { started.herd = fire(url) }
  })
  try {
    if (started.herd === undefined) throw new Error('the herd was not started')
    const outcome = await withTimeout(started.herd, 60_000, () => 'the herd did not finish within 60 s')
    await sleep(300)
    const tokens = (await tokenRequests()) - before
    figures.coldHerd = {
      requests: count,
      connections,
      pipelining,
      tokenRequests: tokens,
      statuses: outcome.statuses,
      readyzWhenHerdArrived: outcome.probe,
      entraAnswerDelayMs: SETTINGS.herd.entraDelayMs,
      herdMs: round(outcome.ms, 1),
      /** No request can be answered before the held-back token: this is at least entraAnswerDelayMs when all of them waited. */
      firstAnswerMs: round(outcome.firstAnswerMs, 1)
    }
    const ok = outcome.statuses['200'] ?? 0
    if (ok !== count) notes.push(`cold herd: ${ok} of ${count} requests answered 200 (${JSON.stringify(outcome.statuses)})`)
    rows.push({
      figure: `3. cold herd: token requests for ${count} requests at start`,
      value: `${tokens} (${ok}/${count} answered 200, the first after ${outcome.firstAnswerMs.toFixed(0)} ms, the last after ${outcome.ms.toFixed(0)} ms; /readyz said ${outcome.probe} as they arrived)`,
      target: `= ${TARGETS.herdTokenRequests}`,
      met: tokens === TARGETS.herdTokenRequests && ok === count
    })
  } finally {
    await broker.stop()
  }
}

async function refreshUnderLoad (): Promise<void> {
  const { connections, rounds, seconds, beforeSeconds } = SETTINGS.refresh
  const steady: number[] = []
  const refreshing: number[] = []
  const perRound: unknown[] = []
  let refreshes = 0
  let steadyTokenRequests = 0
  // Each run on a fresh broker, warmed up alike, stopped after its run: the token requests
  // counted during a run are its own.
  const measure = (what: string, refreshBeforeSeconds?: number) => withBroker({
    logLevel: 'info',
    ...(refreshBeforeSeconds === undefined ? {} : { refreshBeforeSeconds })
  }, async (b) => {
    await runLoad(b.url, { connections, duration: SETTINGS.refresh.warmupSeconds })
    const tokensBefore = await tokenRequests()
    const result = await runLoad(b.url, { connections, duration: seconds, record: true })
    const tokens = (await tokenRequests()) - tokensBefore
    assertClean(`broker at ${connections} connections${what}`, result)
    return { result, tokens }
  })
  for (let n = 0; n < rounds; n++) {
    const s = await measure('')
    const r = await measure(' while refreshing', beforeSeconds)
    steady.push(...(s.result.latencies ?? []))
    refreshing.push(...(r.result.latencies ?? []))
    refreshes += r.tokens
    steadyTokenRequests += s.tokens
    perRound.push({
      steady: { p99: round(s.result.p99, 3), rps: round(s.result.rps, 0), tokenRequests: s.tokens },
      refreshing: { p99: round(r.result.p99, 3), rps: round(r.result.rps, 0), tokenRequests: r.tokens }
    })
    log(`  round ${n + 1}: p99 steady ${fmtMs(s.result.p99)}, refreshing ${fmtMs(r.result.p99)} (${r.tokens} token requests)`)
  }
  const steadyP99 = percentile(steady, 99)
  const refreshingP99 = percentile(refreshing, 99)
  const ratio = refreshingP99 / steadyP99
  figures.refresh = {
    connections,
    seconds: seconds * rounds,
    refreshBeforeSeconds: beforeSeconds,
    steady: { p50: round(percentile(steady, 50), 4), p99: round(steadyP99, 4), max: round(steady.reduce((a, b) => Math.max(a, b), 0), 3), requests: steady.length, tokenRequests: steadyTokenRequests },
    refreshing: { p50: round(percentile(refreshing, 50), 4), p99: round(refreshingP99, 4), max: round(refreshing.reduce((a, b) => Math.max(a, b), 0), 3), requests: refreshing.length, tokenRequests: refreshes },
    p99Ratio: round(ratio, 3),
    rounds: perRound
  }
  if (refreshes === 0) notes.push('refresh under load: no token request happened during the refreshing runs, so the figure proves nothing')
  rows.push({
    figure: `4. p99 at ${connections} conn: steady / refreshing (${refreshes} refreshes in ${seconds * rounds} s)`,
    value: `${fmtMs(steadyP99)} / ${fmtMs(refreshingP99)}`,
    target: '',
    met: undefined
  })
  rows.push({
    figure: '4. p99 refreshing / steady',
    value: `${ratio.toFixed(2)}x`,
    target: `<= ${TARGETS.refreshP99Ratio}x`,
    met: refreshes > 0 ? ratio <= TARGETS.refreshP99Ratio : undefined
  })
}

/** CPU seconds (user + system) of this process, or of a child from /proc. */
function cpuOf (pid: number | undefined): number | undefined {
  if (pid === undefined) {
    const { user, system } = process.cpuUsage()
    return (user + system) / 1e6
  }
  return cpuSeconds(pid)
}

interface Download {
  seconds: number
  mbps: number
  rssBefore?: number
  rssMax?: number
  /** CPU seconds per GiB moved, by process: the stand-in API, the proxy (when there is one), the client. */
  cpuPerGiB: { upstream?: number, proxy?: number, client?: number }
}

/**
 * Downloads /stream?bytes=N from `baseUrl`, dropping the bytes; sampling the proxy's RSS
 * meanwhile, and counting the CPU each process on the path spent.
 */
async function download (baseUrl: string, bytes: number, proxyPid?: number): Promise<Download> {
  const rssBefore = rssBytes(proxyPid)
  let rssMax = rssBefore
  const sampler = proxyPid === undefined
    ? undefined
    : setInterval(() => {
      const rss = rssBytes(proxyPid)
      if (rss !== undefined && (rssMax === undefined || rss > rssMax)) rssMax = rss
    }, SETTINGS.stream.rssSampleMs)
  const pids = { upstream: upstreamPid, proxy: proxyPid, client: undefined }
  const cpuBefore = { upstream: cpuOf(pids.upstream), proxy: proxyPid === undefined ? undefined : cpuOf(proxyPid), client: cpuOf(undefined) }
  const started = performance.now()
  try {
    const response = await request(`${baseUrl}/stream?bytes=${bytes}`, { headersTimeout: 30_000, bodyTimeout: 30_000 })
    if (response.statusCode !== 200) throw new Error(`${baseUrl}/stream answered ${response.statusCode}`)
    let received = 0
    for await (const chunk of response.body) received += (chunk as Buffer).length
    if (received !== bytes) throw new Error(`${baseUrl}/stream gave ${received} bytes, not ${bytes}`)
  } finally {
    if (sampler !== undefined) clearInterval(sampler)
  }
  const seconds = (performance.now() - started) / 1000
  const last = rssBytes(proxyPid)
  if (last !== undefined && (rssMax === undefined || last > rssMax)) rssMax = last
  const gib = bytes / (1024 * MIB)
  const spent = (before: number | undefined, after: number | undefined) =>
    before === undefined || after === undefined ? undefined : round((after - before) / gib, 3)
  const cpuPerGiB = {
    upstream: spent(cpuBefore.upstream, cpuOf(pids.upstream)),
    proxy: proxyPid === undefined ? undefined : spent(cpuBefore.proxy, cpuOf(proxyPid)),
    client: spent(cpuBefore.client, cpuOf(undefined))
  }
  return { seconds, mbps: bytes / seconds / 1e6, ...(rssBefore === undefined ? {} : { rssBefore }), ...(rssMax === undefined ? {} : { rssMax }), cpuPerGiB }
}

/** The stand-in API's process, whose CPU the streaming figure counts. */
let upstreamPid: number | undefined

async function streaming (httpProxy: IpcChild<{ type: 'ready', url: string }>, nginx: Nginx | undefined): Promise<void> {
  const { bytes, rounds } = SETTINGS.stream
  const direct: Download[] = []
  const broker: Download[] = []
  const others: Record<string, Download[]> = { '@fastify/http-proxy': [], ...(nginx === undefined ? {} : { nginx: [] }) }
  const growth: number[] = []
  const perRound: unknown[] = []
  await withBroker({ logLevel: 'info' }, async (b) => {
    await download(b.url, 16 * MIB, b.pid)
    await download(httpProxy.ready.url, 16 * MIB, httpProxy.child.pid)
    if (nginx !== undefined) await download(nginx.url, 16 * MIB)
    for (let n = 0; n < rounds; n++) {
      const d = await download(fixtures.ready.upstream, bytes)
      const r = await download(b.url, bytes, b.pid)
      const h = await download(httpProxy.ready.url, bytes, httpProxy.child.pid)
      others['@fastify/http-proxy']?.push(h)
      // nginx's master and worker are not one pid: its CPU is left out.
      if (nginx !== undefined) others.nginx?.push(await download(nginx.url, bytes))
      direct.push(d)
      broker.push(r)
      const grew = r.rssBefore === undefined || r.rssMax === undefined ? undefined : r.rssMax - r.rssBefore
      if (grew !== undefined) growth.push(grew)
      perRound.push({
        directMBps: round(d.mbps, 1),
        brokerMBps: round(r.mbps, 1),
        httpProxyMBps: round(h.mbps, 1),
        ...(nginx === undefined ? {} : { nginxMBps: round(others.nginx?.at(-1)?.mbps ?? NaN, 1) }),
        rssBeforeBytes: r.rssBefore,
        rssMaxBytes: r.rssMax,
        cpuPerGiB: { direct: d.cpuPerGiB, broker: r.cpuPerGiB, httpProxy: h.cpuPerGiB }
      })
      log(`  round ${n + 1}: direct ${d.mbps.toFixed(0)} MB/s, broker ${r.mbps.toFixed(0)} MB/s, @fastify/http-proxy ${h.mbps.toFixed(0)} MB/s` +
        `${nginx === undefined ? '' : `, nginx ${(others.nginx?.at(-1)?.mbps ?? NaN).toFixed(0)} MB/s`}, broker RSS +${grew === undefined ? '?' : fmtMiB(grew)}`)
    }
  })
  const mbps = (list: Download[]) => median(list.map(x => x.mbps))
  const cpu = (list: Download[], key: 'upstream' | 'proxy' | 'client') => {
    const values = list.map(x => x.cpuPerGiB[key]).filter((v): v is number => v !== undefined)
    return values.length === 0 ? undefined : round(median(values), 3)
  }
  const ratio = mbps(broker) / mbps(direct)
  const worstGrowth = growth.length === 0 ? undefined : Math.max(...growth)
  const cpuOfPath = (list: Download[]) => ({ upstream: cpu(list, 'upstream'), proxy: cpu(list, 'proxy'), client: cpu(list, 'client') })
  figures.streaming = {
    bytes,
    directMBps: round(mbps(direct), 1),
    brokerMBps: round(mbps(broker), 1),
    httpProxyMBps: round(mbps(others['@fastify/http-proxy'] ?? []), 1),
    nginxMBps: nginx === undefined ? null : round(mbps(others.nginx ?? []), 1),
    ratio: round(ratio, 3),
    httpProxyRatio: round(mbps(others['@fastify/http-proxy'] ?? []) / mbps(direct), 3),
    nginxRatio: nginx === undefined ? null : round(mbps(others.nginx ?? []) / mbps(direct), 3),
    cpuSecondsPerGiB: { direct: cpuOfPath(direct), broker: cpuOfPath(broker), httpProxy: cpuOfPath(others['@fastify/http-proxy'] ?? []) },
    maxRssGrowthBytes: worstGrowth,
    rounds: perRound
  }
  const size = bytes >= 1024 * MIB ? `${bytes / (1024 * MIB)} GiB` : fmtMiB(bytes)
  const ofDirect = (list: Download[]) => `${mbps(list).toFixed(0)} MB/s (${(mbps(list) / mbps(direct)).toFixed(2)}x)`
  rows.push({
    figure: `5. streaming ${size}: direct / broker`,
    value: `${mbps(direct).toFixed(0)} / ${mbps(broker).toFixed(0)} MB/s`,
    target: '',
    met: undefined
  })
  rows.push({
    figure: '5.   for scale: @fastify/http-proxy' + (nginx === undefined ? '' : ' / nginx'),
    value: ofDirect(others['@fastify/http-proxy'] ?? []) + (nginx === undefined ? '' : ` / ${ofDirect(others.nginx ?? [])}`),
    target: '',
    met: undefined
  })
  const c = (figure: number | undefined) => figure === undefined ? '?' : figure.toFixed(2)
  const b = cpuOfPath(broker)
  const d = cpuOfPath(direct)
  rows.push({
    figure: '5.   CPU s per GiB: API + client direct; API + broker + client',
    value: `${c(d.upstream)} + ${c(d.client)}; ${c(b.upstream)} + ${c(b.proxy)} + ${c(b.client)}`,
    target: '',
    met: undefined
  })
  rows.push({ figure: '5. streaming: broker / direct', value: `${ratio.toFixed(2)}x`, target: `>= ${TARGETS.streamRatio}x`, met: ratio >= TARGETS.streamRatio })
  rows.push({
    figure: '5. streaming: broker RSS growth (worst round)',
    value: worstGrowth === undefined ? 'n/a (no /proc)' : fmtMiB(worstGrowth),
    target: `<= ${TARGETS.streamRssGrowthMiB} MiB`,
    met: worstGrowth === undefined ? undefined : worstGrowth <= TARGETS.streamRssGrowthMiB * MIB
  })
}

// ---------------------------------------------------------------------------------------------

function printTable (): void {
  const order = (row: Row) => Number(/^(\d)/.exec(row.figure)?.[1] ?? 9)
  const sorted = rows.map((row, i) => ({ row, i })).sort((a, b) => order(a.row) - order(b.row) || a.i - b.i).map(x => x.row)
  const cells = sorted.map(r => [r.figure, r.value, r.target, r.met === undefined ? '' : r.met ? 'yes' : 'NO'])
  const header = ['figure', 'value', 'target', 'met?']
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map(c => (c[i] as string).length)))
  const line = (c: string[]) => c.map((s, i) => s.padEnd(widths[i] as number)).join(' | ').trimEnd()
  process.stdout.write(`\n${line(header)}\n${widths.map(w => '-'.repeat(w)).join('-|-')}\n`)
  for (const c of cells) process.stdout.write(`${line(c)}\n`)
  for (const note of notes) process.stdout.write(`note: ${note}\n`)
  for (const failure of failures) process.stdout.write(`not measured: ${failure}\n`)
}

function gitRevision (): string | undefined {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim() !== ''
    return dirty ? `${head} (src modified)` : head
  } catch {
    return undefined
  }
}

/** Config files, the client secret's file and nginx's prefix: removed however the run ends. */
const tmp = mkdtempSync(join(tmpdir(), 'dtb-bench-'))

function cleanUp (): void {
  killAllChildren()
  rmSync(tmp, { recursive: true, force: true })
}

async function main (): Promise<number> {
  const loadBefore = loadavg()
  let httpProxy: IpcChild<{ type: 'ready', url: string }> | undefined
  let upstreamChild: IpcChild<UpstreamReady> | undefined
  let nginx: Nginx | undefined
  let nginxVersion: string | null = null
  try {
    upstreamChild = await startIpcChild<UpstreamReady>(FIXTURES, { BENCH_SERVE: 'upstream' })
    const entra = await startIpcChild<EntraReady>(FIXTURES, { BENCH_SERVE: 'entra' })
    upstreamPid = upstreamChild.child.pid
    fixtures = { ...entra, ready: { ...entra.ready, upstream: upstreamChild.ready.upstream, pageBytes: upstreamChild.ready.pageBytes } }
    brokerFiles = writeBrokerFiles(tmp, fixtures.ready)
    httpProxy = await startHttpProxy()
    const nginxBin = findNginx()
    if (nginxBin === undefined) {
      notes.push('nginx is not installed: its baseline is skipped (apt-get install nginx to include it)')
    } else {
      try {
        nginx = await startNginx(nginxBin, join(tmp, 'nginx'), Number(new URL(fixtures.ready.upstream).port), fixtures.ready.staticToken)
        nginxVersion = nginx.version
      } catch (err) {
        notes.push(`nginx baseline skipped: ${(err as Error).message.slice(0, 300)}`)
      }
    }
    await verify('direct', fixtures.ready.upstream)
    await verify('@fastify/http-proxy', httpProxy.ready.url)
    if (nginx !== undefined) await verify('nginx', nginx.url)

    await figure('6. idle and start-up', idleAndStartup)
    await figure('2. latency at 1 connection', latency)
    await figure('1. throughput at 32 connections', () => throughput(nginx))
    await figure('4. refresh under load', refreshUnderLoad)
    await figure('3. cold herd', coldHerd)
    await figure('7. polling', polling)
    await figure('5. streaming', () => streaming(httpProxy as IpcChild<{ type: 'ready', url: string }>, nginx))
  } finally {
    await Promise.allSettled([fixtures?.stop(), upstreamChild?.stop(), httpProxy?.stop(), nginx?.stop()])
    cleanUp()
  }

  figures.brokerStarts = brokerStarts.map(s => ({ ...s, listeningMs: round(s.listeningMs, 1) }))
  const results = {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${platform()} ${arch()}`,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    loadavgBefore: loadBefore.map(n => round(n, 2)),
    loadavgAfter: loadavg().map(n => round(n, 2)),
    revision: gitRevision(),
    nginx: nginxVersion,
    durationSeconds: round((performance.now() - startedAt) / 1000, 1),
    settings: SETTINGS,
    targets: TARGETS,
    table: rows,
    figures,
    notes,
    failures
  }
  writeFileSync(RESULTS, JSON.stringify(results, null, 2) + '\n')
  printTable()
  process.stdout.write(`\nresults: ${RESULTS} (${results.durationSeconds} s, node ${process.version}, ` +
    `load average ${loadBefore.map(n => n.toFixed(2)).join(' ')} at the start)\n`)
  return failures.length === 0 ? 0 : 1
}

const watchdog = setTimeout(() => {
  process.stderr.write(`bench: over ${SETTINGS.timeLimitMs / 60_000} minutes, giving up\n`)
  cleanUp()
  process.exit(2)
}, SETTINGS.timeLimitMs)
watchdog.unref()

process.once('exit', cleanUp)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    cleanUp()
    process.exit(130)
  })
}

main().then((code) => {
  process.exit(code)
}, (err: unknown) => {
  process.stderr.write(`bench: ${(err as Error)?.stack ?? String(err)}\n`)
  cleanUp()
  process.exit(1)
})
