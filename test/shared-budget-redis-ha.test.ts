import t from 'tap'
import { loadConfig } from '../src/config/load.js'
import type { Config, RateLimitConfig, RedisTarget } from '../src/config/types.js'
import type { BudgetStore, RateBudget } from '../src/ratelimit/profile-budget.js'
import { startSimulator, type Simulator } from '../src/simulator/index.js'
import { simulatorEnv } from './helpers/broker.js'
import { command, startCluster, startSentinelGroup } from './helpers/redis-ha.js'
import { countStatuses, requireRedis, startBudgetBroker, type BudgetBroker } from './helpers/redis.js'
import { readBody, startUpstream, type Upstream } from './helpers/upstream.js'

interface Teardown {
  teardown: (fn: () => unknown) => void
}

type Broker = BudgetBroker

const KEY_PREFIX = 'ha-test:'

/**
 * `count` brokers, each its own app, config and Redis client, serving the simulator's app
 * through one upstream that notes when each request arrived, all on the Redis `target`.
 */
async function startBrokers (t: Teardown, count: number, options: {
  simulator: Simulator
  upstream: Upstream
  target: RedisTarget
  rateLimit: RateLimitConfig
  expectedReplicas: number
  windows?: { minuteMs: number, hourMs: number }
}): Promise<Broker[]> {
  const { simulator } = options
  return Promise.all(Array.from({ length: count }, async () => {
    const loaded = loadConfig({ env: { ...simulatorEnv(simulator), BROKER_UPSTREAM: options.upstream.url } })
    const config: Config = Object.freeze({
      ...loaded,
      extraCaPem: simulator.caCertPem,
      profiles: loaded.profiles.map((profile) => ({ ...profile, rateLimit: options.rateLimit })),
      rateLimit: {
        // timeoutMs 1000: other tests share the machine, and a Redis found slow by accident would
        // let a broker decide alone, which these tests count.
        store: { type: 'redis' as const, target: options.target, keyPrefix: KEY_PREFIX, timeoutMs: 1000 },
        expectedReplicas: options.expectedReplicas,
        ...(options.windows === undefined ? {} : { windows: options.windows })
      }
    })
    return await startBudgetBroker(t, config)
  }))
}

let sent = 0
/** A GET of its own query, so that no two requests collapse into one upstream call. */
async function get (broker: Broker): Promise<number> {
  const response = await fetch(`${broker.url}/api/alerts?$top=${++sent}`, { signal: AbortSignal.timeout(20_000) })
  await response.text()
  return response.status
}

const statuses = countStatuses

async function budgetOf (broker: Broker): Promise<unknown> {
  const response = await fetch(`${broker.url}/status`, { signal: AbortSignal.timeout(5000) })
  const status = await response.json() as { profiles: Array<{ budget: unknown }> }
  return status.profiles[0]?.budget
}

function storeSwitch (budget: RateBudget, store: BudgetStore, ms = 15_000): Promise<void> {
  if (budget.store === store) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the budget did not switch to ${store} in ${ms} ms`)), ms)
    budget.onStoreChange((now) => {
      if (now === store) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
}

/** Answers 200 and notes when each request arrived. */
async function timedUpstream (t: Teardown): Promise<{ upstream: Upstream, times: number[] }> {
  const times: number[] = []
  const upstream = await startUpstream(t, (req, res, recorded) => {
    times.push(performance.now())
    readBody(req, recorded).then(() => {
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' })
      res.end('{"value":[]}')
    }, () => res.destroy())
  })
  return { upstream, times }
}

/** The most arrivals within any `windowMs`. */
function busiestWindow (times: number[], windowMs: number): number {
  const sorted = times.slice().sort((a, b) => a - b)
  let most = 0
  for (let i = 0, j = 0; i < sorted.length; i++) {
    while ((sorted[i] as number) - (sorted[j] as number) >= windowMs) j++
    most = Math.max(most, i - j + 1)
  }
  return most
}

if (requireRedis(t)) {
  t.test('Sentinel: the primary fails over while three brokers serve; no request fails and the budget holds', async (t) => {
    const group = await startSentinelGroup(t)
    const firstPrimary = await group.primaryPort()
    const simulator = await startSimulator()
    t.teardown(() => simulator.close())
    const { upstream, times } = await timedUpstream(t)
    const windowMs = 1000
    const perWindow = 9
    const brokers = await startBrokers(t, 3, {
      simulator,
      upstream,
      target: { mode: 'sentinel', sentinels: group.sentinels, name: group.name, tls: false },
      rateLimit: { perMinute: perWindow, perHour: 100_000, maxQueueSeconds: 10 },
      expectedReplicas: 3,
      windows: { minuteMs: windowMs, hourMs: 600_000 }
    })

    // Each broker has two clients asking again as soon as they have their answer.
    const answers: number[] = []
    const serving = { on: true }
    const started = performance.now()
    const clients = brokers.flatMap((broker) => [0, 1].map(async () => {
      while (serving.on) answers.push(await get(broker))
    }))
    const waitFor = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
    await waitFor(2 * windowMs)
    t.same(await Promise.all(brokers.map(async (broker) => ((await budgetOf(broker)) as { store: string }).store)),
      ['redis', 'redis', 'redis'], 'shared before the failover')
    const newPrimary = await group.failover()
    t.not(newPrimary, firstPrimary, 'the sentinels name the former replica')
    await Promise.all(brokers.map((broker) => storeSwitch(broker.budget, 'redis')))
    const slotsKey = async () => {
      const keys = await command(newPrimary, 'KEYS', `${KEY_PREFIX}*:general:slots`) as string[]
      return keys[0] === undefined ? 0 : Number(await command(newPrimary, 'ZCARD', keys[0]))
    }
    await waitFor(2 * windowMs)
    serving.on = false
    await Promise.all(clients)
    const elapsed = performance.now() - started

    t.same(statuses(answers), { 200: answers.length }, `all ${answers.length} requests were answered by the API`)
    t.equal(times.length, answers.length)
    t.ok(await slotsKey() > 0, 'the budget is kept on the new primary')
    // The window around the failover may hold slots of the old primary, of each broker deciding
    // alone, and of the new primary, which knows nothing of the brokers' own decisions: at most
    // three windows' worth. Over the whole run, the excess is at most one window's worth.
    const most = busiestWindow(times, windowMs)
    t.ok(most <= 3 * perWindow, `at most ${most} requests in one window of ${perWindow}`)
    const allowed = perWindow * (Math.ceil(elapsed / windowMs) + 1)
    t.ok(times.length <= allowed + perWindow,
      `${times.length} requests in ${Math.round(elapsed)} ms: at most ${allowed} by the budget, and ${perWindow} of slack`)
    t.ok(times.length >= perWindow * Math.floor(elapsed / windowMs) / 2, `the brokers kept serving (${times.length} requests)`)
    for (const broker of brokers) {
      const fallbacks = broker.logs.lines.filter((line) => line.level === 40 && /rate-limit store unreachable/.test(String(line.msg)))
      const back = broker.logs.lines.filter((line) => /rate-limit store answers again/.test(String(line.msg)))
      t.equal(back.length, fallbacks.length, `each fallback (${fallbacks.length}) is logged, and the way back`)
      const metrics = await (await fetch(`${broker.url}/metrics`, { signal: AbortSignal.timeout(5000) })).text()
      t.match(metrics, new RegExp(`broker_ratelimit_store_fallbacks_total\\{profile="default"\\} ${fallbacks.length}\n`), 'and counted')
      t.match(metrics, /broker_ratelimit_store_shared\{profile="default"\} 1\n/, 'shared again')
      t.notMatch(JSON.stringify(broker.logs.lines), /"redis":"redis:\/\/[^"]*@/, 'no password in the logs')
    }
  })

  t.test('Cluster: three brokers on a three-primary cluster share one budget exactly as on one Redis', async (t) => {
    const nodes = await startCluster(t)
    const simulator = await startSimulator()
    t.teardown(() => simulator.close())
    const { upstream } = await timedUpstream(t)
    const perMinute = 12
    const brokers = await startBrokers(t, 3, {
      simulator,
      upstream,
      target: { mode: 'cluster', nodes: nodes.slice(0, 1).map(({ host, port }) => ({ host, port })), tls: false },
      rateLimit: { perMinute, perHour: 1500, maxQueueSeconds: 0 },
      expectedReplicas: 1
    })

    const answers = await Promise.all(brokers.flatMap((broker) => Array.from({ length: perMinute }, () => get(broker))))
    t.equal(upstream.requests.length, perMinute, `${perMinute} of ${answers.length} requests reached the API`)
    t.same(statuses(answers), { 200: perMinute, 429: 2 * perMinute })
    for (const broker of brokers) {
      t.same(await budgetOf(broker), { store: 'redis', perMinuteLeft: 0, perHourLeft: 1500 - perMinute, queued: 0, pauses: [] },
        'every broker\'s /status shows the shared budget')
    }
    // The app's keys share one hash slot: they all live on one node of the three.
    const holders = await Promise.all(nodes.map(async ({ port }) => (await command(port, 'KEYS', `${KEY_PREFIX}*`) as string[]).length))
    t.equal(holders.filter((count) => count > 0).length, 1, `one node holds the app's keys (${holders.join(', ')})`)
  })

  t.test('Cluster: the node holding the app\'s keys crashes; each broker decides alone, logged, counted and shown', async (t) => {
    const nodes = await startCluster(t)
    const simulator = await startSimulator()
    t.teardown(() => simulator.close())
    const { upstream } = await timedUpstream(t)
    const perMinute = 30
    const brokers = await startBrokers(t, 3, {
      simulator,
      upstream,
      target: { mode: 'cluster', nodes: nodes.map(({ host, port }) => ({ host, port })), tls: false },
      rateLimit: { perMinute, perHour: 1500, maxQueueSeconds: 0 },
      expectedReplicas: 3
    })
    const burst = (perBroker: number) => Promise.all(brokers.flatMap((broker) => Array.from({ length: perBroker }, () => get(broker))))

    t.same(statuses(await burst(4)), { 200: 12 }, 'shared: 12 of 30')
    const holders = await Promise.all(nodes.map(async ({ port }) => (await command(port, 'KEYS', `${KEY_PREFIX}*`) as string[]).length))
    const holder = nodes[holders.findIndex((count) => count > 0)]
    if (holder === undefined) throw new Error('no node holds the keys')
    const fallen = Promise.all(brokers.map((broker) => storeSwitch(broker.budget, 'local-fallback')))
    await holder.kill()
    t.same(statuses(await burst(4)), { 200: 12 }, 'with the node gone, every request still gets its answer from the API')
    await fallen
    t.same(statuses(await burst(4)), { 200: 6, 429: 6 },
      'each broker keeps to 30 / 3 = 10 a minute, counting the 4 it sent through Redis and the 4 since: 2 more each')
    for (const broker of brokers) {
      t.match(await budgetOf(broker), { store: 'local-fallback' }, '/status shows the broker deciding alone')
      const metrics = await (await fetch(`${broker.url}/metrics`, { signal: AbortSignal.timeout(5000) })).text()
      t.match(metrics, /broker_ratelimit_store_shared\{profile="default"\} 0\n/)
      t.match(metrics, /broker_ratelimit_store_fallbacks_total\{profile="default"\} [1-9]\d*\n/)
      const warnings = broker.logs.lines.filter((line) => line.level === 40 && /rate-limit store unreachable/.test(String(line.msg)))
      t.ok(warnings.length >= 1, 'the switch is logged')
      t.match(warnings[0], { redis: `cluster redis://127.0.0.1:${nodes[0]?.port ?? 0},redis://127.0.0.1:${nodes[1]?.port ?? 0},redis://127.0.0.1:${nodes[2]?.port ?? 0}` },
        'the log names the cluster\'s hosts and ports')
    }
  })
}
