import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { stringify } from 'yaml'
import { loadConfig } from '../src/config/load.js'
import type { Config } from '../src/config/types.js'
import { startSimulator, type Machine, type Simulator } from '../src/simulator/index.js'
import { ALL_ROLES, simulatorEnv } from './helpers/broker.js'
import { newClientKey, sha256 } from './helpers/profiles.js'
import { countStatuses, requireRedis, startBudgetBroker, startRedis, type BudgetBroker } from './helpers/redis.js'

if (!requireRedis(t)) process.exit(0)

const KEYS = { soar: newClientKey(), hunter: newClientKey() }
const ISOLATE = JSON.stringify({ Comment: 'playbook loop', IsolationType: 'Selective' })

/** `count` brokers as replicas run them: each its own config, app and Redis client, one Redis, one app. */
async function startBrokers (t: Test, simulator: Simulator, redisUrl: string, count: number, expectedReplicas = 1): Promise<BudgetBroker[]> {
  const file = join(t.testdir(), 'broker.yaml')
  writeFileSync(file, stringify({
    guards: { actions: [{ allow: 'POST /api/machines/*/isolate', perHour: 5, perClientPerHour: 3 }] },
    clients: [{ name: 'soar', keySha256: sha256(KEYS.soar) }, { name: 'hunter', keySha256: sha256(KEYS.hunter) }],
    rateLimit: { expectedReplicas, store: { type: 'redis', timeoutMs: 1000 } }
  }))
  return Promise.all(Array.from({ length: count }, async () => {
    const loaded = loadConfig({ env: { ...simulatorEnv(simulator), BROKER_CONFIG: file, BROKER_REDIS_URL: redisUrl } })
    const config: Config = Object.freeze({ ...loaded, extraCaPem: simulator.caCertPem })
    return startBudgetBroker(t, config)
  }))
}

function isolate (broker: BudgetBroker, key: string, machine: Machine): Promise<number> {
  return fetch(`${broker.url}/api/machines/${machine.id}/isolate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: ISOLATE
  }).then(async (response) => {
    await response.text()
    return response.status
  })
}

const posts = (simulator: Simulator) => simulator.defender.requests.filter((recorded) => recorded.method === 'POST').length

t.test('two brokers on one Redis share the caps: per client and for the app', { timeout: 60_000 }, async (t) => {
  const simulator = await startSimulator({ roles: ALL_ROLES })
  t.teardown(() => simulator.close())
  const redis = await startRedis(t)
  const [a, b] = await startBrokers(t, simulator, redis.url, 2) as [BudgetBroker, BudgetBroker]
  const machines = [...simulator.defender.data.machines]

  // The SOAR's loop alternates between the replicas, all at once: three isolations an hour, not three per broker.
  const soar = await Promise.all(Array.from({ length: 6 }, (_, i) => isolate(i % 2 === 0 ? a : b, KEYS.soar, machines.shift() as Machine)))
  t.same(countStatuses(soar), { 201: 3, 403: 3 }, 'the client\'s three, whichever broker took them')
  const hunter = await Promise.all(Array.from({ length: 4 }, (_, i) => isolate(i % 2 === 0 ? b : a, KEYS.hunter, machines.shift() as Machine)))
  t.same(countStatuses(hunter), { 201: 2, 403: 2 }, 'the app\'s five an hour, counted across both brokers')
  t.equal(posts(simulator), 5, 'five isolations reached the API')

  const status = await (await fetch(`${b.url}/status`, { headers: { authorization: `Bearer ${KEYS.soar}` } })).json() as any
  t.same(status.profiles[0].guards.actions[0].used, { perHour: 5 }, 'either broker\'s /status reads the shared use')
})

t.test('with Redis gone, each broker keeps to its share of the caps', { timeout: 60_000 }, async (t) => {
  const simulator = await startSimulator({ roles: ALL_ROLES })
  t.teardown(() => simulator.close())
  const redis = await startRedis(t)
  const [a, b] = await startBrokers(t, simulator, redis.url, 2, 2) as [BudgetBroker, BudgetBroker]
  const machines = [...simulator.defender.data.machines]
  t.equal(await isolate(a, KEYS.soar, machines.shift() as Machine), 201, 'one through Redis')
  await redis.kill()
  // perClientPerHour 3 over 2 replicas: each decides alone with 1, and remembers the one Redis let through on a.
  const alone = [
    await isolate(a, KEYS.soar, machines.shift() as Machine),
    await isolate(b, KEYS.soar, machines.shift() as Machine),
    await isolate(b, KEYS.soar, machines.shift() as Machine)
  ]
  t.same(alone, [403, 201, 403], 'a has used its share already; b has one')
  t.ok(posts(simulator) <= 3, 'no more than the cap reached the API')
})
