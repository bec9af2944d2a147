/**
 * Figure 7: ten tools polling the same query once a second, on simulated time, through one
 * broker in this process: how many calls reach the API with reads shared as configured.
 */
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import FakeTimers from '@sinonjs/fake-timers'
import { request } from 'undici'
import { buildApp } from '../src/app.js'
import type { Clock } from '../src/common/clock.js'
import { loadConfig } from '../src/config/load.js'
import type { Config } from '../src/config/types.js'
import { createLogger } from '../src/observability/logger.js'
import { startSimulator } from '../src/simulator/index.js'

export interface PollingOptions {
  clients: number
  seconds: number
  collapse: boolean
  /** A cache rule for the polled read, with this lifetime; none when absent. */
  cacheSeconds?: number
}

/** The API's answer comes this long (real time) after the call: long enough for a round of polls to arrive together. */
const API_MS = 100
const PAGE = JSON.stringify({ value: [{ id: 'da637', severity: 'High', status: 'New' }] })

export async function pollingCalls (options: PollingOptions): Promise<number> {
  const fake = FakeTimers.createClock(Date.now())
  const clock: Clock = {
    now: () => fake.now,
    setTimeout: (fn, ms) => fake.setTimeout(fn, ms),
    clearTimeout: (handle) => fake.clearTimeout(handle as FakeTimers.TimerId)
  }
  let calls = 0
  const api = createServer((req, res) => {
    calls++
    req.resume()
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(PAGE)
    }, API_MS)
  })
  api.listen(0, '127.0.0.1')
  await once(api, 'listening')
  const simulator = await startSimulator({ clock, tokenLifetimeSeconds: 3 * 3600 })
  const loaded = loadConfig({
    env: {
      AZURE_TENANT_ID: simulator.tenantId,
      AZURE_CLIENT_ID: simulator.clientId,
      AZURE_CLIENT_SECRET: simulator.clientSecret,
      AZURE_AUTHORITY_HOST: simulator.entra.url,
      BROKER_UPSTREAM: `http://127.0.0.1:${(api.address() as AddressInfo).port}`
    }
  })
  const config: Config = {
    ...loaded,
    extraCaPem: simulator.caCertPem,
    reads: { ...loaded.reads, collapse: options.collapse },
    profiles: loaded.profiles.map((profile) => ({
      ...profile,
      rateLimit: { perMinute: 10_000, perHour: 100_000, maxQueueSeconds: 30 },
      cache: options.cacheSeconds === undefined ? [] : [{ allow: 'GET /api/alerts', ttlSeconds: options.cacheSeconds }]
    }))
  }
  const quiet = new Writable({ write: (_chunk, _encoding, callback) => callback() })
  const app = await buildApp(config, { logger: createLogger({ level: 'warn', destination: quiet }), clock, env: {} })
  try {
    await app.listen({ host: '127.0.0.1', port: 0 })
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/api/alerts?$filter=status+eq+'New'`
    await Promise.all(app.profiles.map((profile) => profile.tokens.get()))
    for (let second = 0; second < options.seconds; second++) {
      const polls = Array.from({ length: options.clients }, async (_, client) => {
        const res = await request(url, { headers: { 'user-agent': `tool-${client}` } })
        await res.body.dump()
        if (res.statusCode !== 200) throw new Error(`a poll got ${res.statusCode}`)
      })
      await Promise.all(polls)
      fake.tick(1000)
    }
    return calls
  } finally {
    await app.close()
    await simulator.close()
    api.closeAllConnections()
    api.close()
  }
}
