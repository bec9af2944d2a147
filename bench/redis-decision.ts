/**
 * The latency a shared budget adds to each request: `acquire()` on a profile's local budget
 * against the same call deciding through Redis (one EVALSHA round trip), measured one call
 * after another, never waiting for a slot (the limits are far above the calls made).
 *
 *   node dist/bench/redis-decision.js [calls]       starts its own redis-server on loopback
 *   BENCH_REDIS_URL=redis://host:6379 node dist/bench/redis-decision.js
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { performance } from 'node:perf_hooks'
import { pino } from 'pino'
import { systemClock } from '../src/common/clock.js'
import { createBudgetKeys } from '../src/ratelimit/budget-keys.js'
import { ProfileBudget, type RateBudget } from '../src/ratelimit/profile-budget.js'
import { RedisBudgetStore } from '../src/ratelimit/redis-budget.js'
import { SharedBudget } from '../src/ratelimit/shared-budget.js'
import { median, percentile, round } from './stats.js'

const CALLS = Number(process.argv[2] ?? 2000)
const WARMUP = 200
const LIMITS = { perMinute: 100_000, perHour: 1_000_000, maxQueueSeconds: 0 }

async function startRedis (): Promise<{ url: string, child: ChildProcess }> {
  const probe = createServer().listen(0, '127.0.0.1')
  await once(probe, 'listening')
  const { port } = probe.address() as AddressInfo
  await new Promise((resolve) => probe.close(resolve))
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmpdir()],
    { stdio: ['ignore', 'pipe', 'inherit'] })
  let output = ''
  for await (const chunk of child.stdout as NodeJS.ReadableStream) {
    output += String(chunk)
    if (output.includes('Ready to accept connections')) break
  }
  child.stdout?.resume()
  return { url: `redis://127.0.0.1:${port}`, child }
}

/** Milliseconds each call took, after WARMUP calls that are not kept. */
async function measure (budget: RateBudget, calls: number): Promise<number[]> {
  const times: number[] = []
  for (let i = 0; i < WARMUP + calls; i++) {
    const started = performance.now()
    const wait = budget.acquire(undefined)
    if (wait !== undefined) await wait
    if (i >= WARMUP) times.push(performance.now() - started)
  }
  return times
}

function summary (times: readonly number[]) {
  return {
    medianMs: round(median(times), 4),
    p99Ms: round(percentile(times, 99), 4),
    maxMs: round(Math.max(...times), 4)
  }
}

const given = process.env.BENCH_REDIS_URL
const redis = given === undefined ? await startRedis() : { url: given, child: undefined }
const store = new RedisBudgetStore({ url: redis.url, timeoutMs: 1000, logger: pino({ enabled: false }), clock: systemClock })
try {
  const local = new ProfileBudget('bench', LIMITS, systemClock)
  const shared = new SharedBudget({
    profile: 'bench',
    config: LIMITS,
    store,
    keys: createBudgetKeys(`bench-${process.pid}:`, '00000000-0000-0000-0000-000000000000', '11111111-1111-1111-1111-111111111111'),
    clock: systemClock,
    expectedReplicas: 1
  })
  const localTimes = await measure(local, CALLS)
  const sharedTimes = await measure(shared, CALLS)
  if (shared.store !== 'redis') throw new Error('Redis did not answer every decision in time: the figures would be the local budget\'s')
  const result = {
    calls: CALLS,
    node: process.version,
    local: summary(localTimes),
    redis: summary(sharedTimes),
    addedMs: {
      median: round(median(sharedTimes) - median(localTimes), 4),
      p99: round(percentile(sharedTimes, 99) - percentile(localTimes, 99), 4)
    }
  }
  console.log(JSON.stringify(result, null, 2))
  console.log(`Redis decision adds ${result.addedMs.median} ms per request at the median, ${result.addedMs.p99} ms at p99 ` +
    `(${CALLS} sequential acquire() calls, redis-server on loopback)`)
} finally {
  await store.close()
  redis.child?.kill('SIGKILL')
}
