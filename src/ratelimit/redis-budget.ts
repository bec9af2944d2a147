import { randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import { isIP } from 'node:net'
import { checkServerIdentity, rootCertificates, type PeerCertificate } from 'node:tls'
import type { Cluster, Redis, Result } from 'ioredis'
import type { Logger } from 'pino'
import type { Clock } from '../common/clock.js'
import type { RedisNode } from '../config/types.js'
import type { Window } from './budget.js'

const require = createRequire(import.meta.url)

/*
 * The shared budget is SlidingBudget's algorithm run inside Redis, so every broker on the same
 * Redis draws from one FIFO of slots per key. One Lua script per decision keeps it atomic: no
 * other broker's decision can fall between reading the slots and adding one. `now` is the Redis
 * server's TIME, never a broker's clock, as the brokers' clocks differ; a broker only learns how
 * long to wait, and waits on its own clock.
 */

// Milliseconds as an integer string: Lua 5.1 prints large numbers in %.14g.
const LUA_PRELUDE = `
if redis.replicate_commands then redis.replicate_commands() end
local function int (x) return string.format('%.0f', x) end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
`

/**
 * KEYS: slots (sorted set of send times), pause (a time before which no slot is given), the
 * pause's cause. ARGV: maxWaitMs, a member unique to this request, then window length and
 * limit pairs. Returns granted (1 or 0), now, the slot's time, the end of a pause under way (0
 * when none) and its cause ('' when none), then the slots used in each window.
 */
export const TAKE_SCRIPT = LUA_PRELUDE + `
local maxWait = tonumber(ARGV[1])
local windows = {}
local longest = 0
for i = 3, #ARGV, 2 do
  local ms = tonumber(ARGV[i])
  windows[#windows + 1] = { ms = ms, limit = tonumber(ARGV[i + 1]) }
  if ms > longest then longest = ms end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', int(now - longest))
local at = now
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if paused > at then at = paused end
local count = redis.call('ZCARD', KEYS[1])
if count > 0 then
  local last = tonumber(redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2])
  if last > at then at = last end
end
for _, w in ipairs(windows) do
  if count >= w.limit then
    local oldest = tonumber(redis.call('ZRANGE', KEYS[1], count - w.limit, count - w.limit, 'WITHSCORES')[2])
    if oldest + w.ms > at then at = oldest + w.ms end
  end
end
local granted = 0
if at - now <= maxWait then
  granted = 1
  redis.call('ZADD', KEYS[1], int(at), ARGV[2])
  redis.call('PEXPIRE', KEYS[1], int(at - now + longest))
end
local cause = ''
if paused > now then
  cause = redis.call('GET', KEYS[3]) or ''
else
  paused = 0
end
local result = { granted, now, at, paused, cause }
for _, w in ipairs(windows) do
  result[#result + 1] = redis.call('ZCOUNT', KEYS[1], '(' .. int(now - w.ms), '+inf')
end
return result
`

/**
 * KEYS: pause, its cause. ARGV: ms, cause. Moves the pause to now + ms, with its cause, unless it
 * is already later.
 */
export const PAUSE_SCRIPT = LUA_PRELUDE + `
local untilMs = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if untilMs > current then
  redis.call('SET', KEYS[1], int(untilMs), 'PX', ARGV[1])
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[1])
end
return 1
`

/**
 * KEYS: pause and cause pairs. Returns now, then for each pair the pause's end (0 when none is
 * under way) and its cause.
 */
export const PAUSES_SCRIPT = LUA_PRELUDE + `
local result = { now }
for i = 1, #KEYS, 2 do
  local untilMs = tonumber(redis.call('GET', KEYS[i]) or '0')
  if untilMs > now then
    result[#result + 1] = untilMs
    result[#result + 1] = redis.call('GET', KEYS[i + 1]) or ''
  else
    result[#result + 1] = 0
    result[#result + 1] = ''
  end
end
return result
`

/** KEYS: slots. ARGV: window lengths. The slots used in each window, slots for later included. */
export const USED_SCRIPT = LUA_PRELUDE + `
local result = {}
for i = 1, #ARGV do
  result[i] = redis.call('ZCOUNT', KEYS[1], '(' .. int(now - tonumber(ARGV[i])), '+inf')
end
return result
`

/**
 * The guard rails' caps (`guards/counters.ts`). KEYS: the counters, sorted sets of call times.
 * ARGV: a member unique to this call, then for each key the number of its windows and their
 * length and limit pairs. Counts the call in every key, or, when a window is full, in none:
 * returns 1 and now, or 0, now, the full key's and window's positions (from 1) and when a call
 * leaves that window (-1: never, a limit of 0).
 */
export const COUNT_SCRIPT = LUA_PRELUDE + `
local pos = 2
local specs = {}
for k = 1, #KEYS do
  local n = tonumber(ARGV[pos])
  pos = pos + 1
  local windows = {}
  local longest = 0
  for w = 1, n do
    windows[w] = { ms = tonumber(ARGV[pos]), limit = tonumber(ARGV[pos + 1]) }
    if windows[w].ms > longest then longest = windows[w].ms end
    pos = pos + 2
  end
  specs[k] = { windows = windows, longest = longest }
  redis.call('ZREMRANGEBYSCORE', KEYS[k], '-inf', int(now - longest))
end
for k = 1, #KEYS do
  for w, win in ipairs(specs[k].windows) do
    local from = '(' .. int(now - win.ms)
    local count = redis.call('ZCOUNT', KEYS[k], from, '+inf')
    if count >= win.limit then
      local frees = -1
      if win.limit > 0 then
        local leaving = redis.call('ZRANGEBYSCORE', KEYS[k], from, '+inf', 'WITHSCORES', 'LIMIT', count - win.limit, 1)
        frees = tonumber(leaving[2]) + win.ms
      end
      return { 0, now, k, w, int(frees) }
    end
  end
end
for k = 1, #KEYS do
  redis.call('ZADD', KEYS[k], int(now), ARGV[1])
  redis.call('PEXPIRE', KEYS[k], int(specs[k].longest))
end
return { 1, now }
`

/** What COUNT_SCRIPT decided; `counter` and `window` count from 0. */
export type CountAnswer =
  | { granted: true }
  | { granted: false, counter: number, window: number, freesInMs: number }

declare module 'ioredis' {
  interface RedisCommander<Context> {
    brokerBudgetTake (slots: string, pause: string, cause: string, ...args: Array<string | number>): Result<Array<number | string>, Context>
    brokerBudgetPause (pause: string, cause: string, ms: number, text: string): Result<number, Context>
    brokerBudgetPauses (count: number, ...keys: string[]): Result<Array<number | string>, Context>
    brokerBudgetUsed (slots: string, ...windowMs: number[]): Result<number[], Context>
    brokerGuardCount (count: number, ...args: Array<string | number>): Result<Array<number | string>, Context>
  }
}

export const DEFAULT_PROBE_INTERVAL_MS = 1000
const CONNECT_TIMEOUT_MS = 2000
const MAX_RECONNECT_DELAY_MS = 2000

/** Where the store connects, with its passwords read; never logged but for hosts and ports. */
export type RedisConnection =
  | { mode: 'single', url: string }
  | {
    mode: 'sentinel'
    sentinels: readonly RedisNode[]
    name: string
    username?: string
    password?: string
    sentinelPassword?: string
    tls: boolean
  }
  | { mode: 'cluster', nodes: readonly RedisNode[], username?: string, password?: string, tls: boolean }

export interface RedisBudgetStoreOptions {
  /** redis:// or rediss:// URL; it may hold a password, so it is never logged. Or `connection`. */
  url?: string
  /** A Sentinel group or a Redis Cluster (or one Redis, as `url`). */
  connection?: RedisConnection
  /** Longest a decision may take before the broker decides alone. */
  timeoutMs: number
  logger: Logger
  clock: Pick<Clock, 'now'>
  /** Shortest time between two probes of a Redis that stopped answering in time. */
  probeIntervalMs?: number
  /** Extra CAs (BROKER_CA_FILE) trusted besides Node's for a rediss: URL. */
  extraCaPem?: string
}

export interface SlotKeys {
  slots: string
  pause: string
  /** What set the pause (e.g. "upstream 429 on GET /api/alerts"), kept as long as the pause. */
  cause: string
}

/** A pause under way in Redis, its end on the Redis server's clock. */
export interface SharedPause {
  until: number
  cause: string
}

export interface SlotDecision {
  granted: boolean
  /** From now until the slot, in ms; when refused, the wait it would have been. */
  waitMs: number
  /** The slot's time and the time of the decision, on the Redis server's clock. */
  at: number
  now: number
  /** The slot's name in Redis, to give it back with `release`. */
  member: string
  /** The pause under way when the decision was made. */
  pause: SharedPause | undefined
  /** Slots used in each window after the decision, in the order the windows were given. */
  used: number[]
}

/**
 * The Redis client behind every shared budget of a broker. It knows whether Redis answers:
 * after an error, a timeout or a lost connection, `usable()` is false (and the budgets decide
 * alone) until the client reconnects or a probe answers in time. Switches are logged once each.
 */
export class RedisBudgetStore {
  readonly #client: Redis | Cluster
  readonly #logger: Logger
  readonly #clock: Pick<Clock, 'now'>
  readonly #target: string
  readonly #probeIntervalMs: number
  readonly #timeoutMs: number
  readonly #member = randomUUID()
  readonly #listeners = new Set<(shared: boolean) => void>()
  #sequence = 0
  #healthy = true
  #probing = false
  #lastProbe = 0
  #closing: Promise<void> | undefined
  /** A key of the last decision: probes ask the node that holds it. */
  #probeKey: string | undefined

  constructor (options: RedisBudgetStoreOptions) {
    this.#logger = options.logger
    this.#clock = options.clock
    const connection: RedisConnection = options.connection ?? { mode: 'single', url: options.url ?? '' }
    this.#target = describeConnection(connection)
    this.#probeIntervalMs = options.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS
    this.#timeoutMs = options.timeoutMs
    this.#client = createClient(connection, options.extraCaPem)
    this.#client.defineCommand('brokerBudgetTake', { numberOfKeys: 3, lua: TAKE_SCRIPT })
    this.#client.defineCommand('brokerBudgetPause', { numberOfKeys: 2, lua: PAUSE_SCRIPT })
    this.#client.defineCommand('brokerBudgetPauses', { lua: PAUSES_SCRIPT, readOnly: true })
    this.#client.defineCommand('brokerBudgetUsed', { numberOfKeys: 1, lua: USED_SCRIPT, readOnly: true })
    this.#client.defineCommand('brokerGuardCount', { lua: COUNT_SCRIPT })
    this.#client.on('ready', () => this.#up())
    this.#client.on('error', (err: Error) => this.#down(err))
    this.#client.on('close', () => this.#down(new Error('connection closed')))
    // A Cluster reports its nodes' errors apart; a node away is the cluster not answering in full.
    this.#client.on('node error', (err: Error) => this.#down(err))
  }

  /** Whether Redis answered the last command in time. */
  get shared (): boolean {
    return this.#healthy
  }

  /** Whether decisions go to Redis now; while not, it may start a probe for the next ones. */
  usable (): boolean {
    if (this.#healthy) return true
    if (this.#closing === undefined && !this.#probing && this.#client.status === 'ready' &&
      this.#clock.now() - this.#lastProbe >= this.#probeIntervalMs) {
      this.#probing = true
      this.#lastProbe = this.#clock.now()
      // On a cluster, a ping may reach a node that answers while the one holding the budgets does not.
      const probe: Promise<unknown> = this.#probeKey === undefined ? this.#client.ping() : this.#client.exists(this.#probeKey)
      withTimeout(probe, this.#timeoutMs).then(() => this.#up(), () => {}).finally(() => { this.#probing = false })
    }
    return false
  }

  /** Takes the next slot of `keys` in `windows`, unless it is more than `maxWaitMs` away. */
  async take (keys: SlotKeys, windows: readonly Window[], maxWaitMs: number): Promise<SlotDecision> {
    const member = `${this.#member}:${++this.#sequence}`
    this.#probeKey = keys.slots
    const args: Array<string | number> = [Math.floor(maxWaitMs), member]
    for (const { ms, limit } of windows) args.push(ms, limit)
    const [granted, now = 0, at = 0, paused = 0, cause = '', ...used] =
      await this.#call(() => this.#client.brokerBudgetTake(keys.slots, keys.pause, keys.cause, ...args)) as number[]
    return {
      granted: granted === 1,
      waitMs: Math.max(0, at - now),
      at,
      now,
      member,
      pause: paused > 0 ? { until: paused, cause: String(cause) } : undefined,
      used
    }
  }

  /** Gives back a slot `take` handed out that will not be used: its client went away. */
  async release (keys: SlotKeys, member: string): Promise<void> {
    await this.#call(() => this.#client.zrem(keys.slots, member))
  }

  /** No slot of `keys` for the next `ms`, for every broker; `cause` says what set the pause. */
  async pause (keys: SlotKeys, ms: number, cause: string): Promise<void> {
    await this.#call(() => this.#client.brokerBudgetPause(keys.pause, keys.cause, Math.max(1, Math.ceil(ms)), cause))
  }

  /** The pauses under way of each of `keys` (undefined for one with none), and the Redis server's time. */
  async pauses (keys: readonly SlotKeys[]): Promise<{ now: number, pauses: Array<SharedPause | undefined> }> {
    const names = keys.flatMap((k) => [k.pause, k.cause])
    const [now = 0, ...pairs] = await this.#call(() => this.#client.brokerBudgetPauses(names.length, ...names))
    const pauses = keys.map((_k, i) => {
      const until = Number(pairs[2 * i] ?? 0)
      return until > 0 ? { until, cause: String(pairs[2 * i + 1] ?? '') } : undefined
    })
    return { now: Number(now), pauses }
  }

  async used (keys: SlotKeys, windows: readonly Window[]): Promise<number[]> {
    return this.#call(() => this.#client.brokerBudgetUsed(keys.slots, ...windows.map((w) => w.ms)))
  }

  /** Counts a call in every one of `counters`, unless one of their windows is full (see COUNT_SCRIPT). */
  async count (counters: ReadonlyArray<{ key: string, windows: readonly Window[] }>): Promise<CountAnswer> {
    const member = `${this.#member}:${++this.#sequence}`
    const args: Array<string | number> = [member]
    for (const { windows } of counters) {
      args.push(windows.length)
      for (const { ms, limit } of windows) args.push(ms, limit)
    }
    const keys = counters.map(({ key }) => key)
    const [granted, now = 0, counter = 0, window = 0, frees = -1] =
      (await this.#call(() => this.#client.brokerGuardCount(keys.length, ...keys, ...args))).map(Number)
    if (granted === 1) return { granted: true }
    return { granted: false, counter: counter - 1, window: window - 1, freesInMs: frees < 0 ? Infinity : frees - now }
  }

  /** Calls counted in each window of each of `counters`, now. */
  async counted (counters: ReadonlyArray<{ key: string, windows: readonly Window[] }>): Promise<number[][]> {
    return Promise.all(counters.map(({ key, windows }) =>
      this.#call(() => this.#client.brokerBudgetUsed(key, ...windows.map((w) => w.ms)))))
  }

  onChange (listener: (shared: boolean) => void): void {
    this.#listeners.add(listener)
  }

  close (): Promise<void> {
    this.#closing ??= (async () => {
      this.#listeners.clear()
      this.#client.disconnect()
    })()
    return this.#closing
  }

  /**
   * timeoutMs counts from sending: the first decision of a broker waits for the connection
   * (connectTimeout at most) instead of finding Redis "slow" while it connects.
   */
  async #call<T> (command: () => Promise<T>): Promise<T> {
    try {
      if (this.#client.status !== 'ready') await this.#connected()
      return await withTimeout(command(), this.#timeoutMs)
    } catch (err) {
      this.#down(err as Error)
      throw err
    }
  }

  #connected (): Promise<void> {
    if (this.#client.status === 'wait') this.#client.connect().catch(() => {})
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => settle(new Error('connect timed out')), CONNECT_TIMEOUT_MS)
      timer.unref()
      const onReady = () => settle()
      const onError = (err: Error) => settle(err)
      const onEnd = () => settle(new Error('connection closed'))
      const settle = (err?: Error) => {
        clearTimeout(timer)
        this.#client.off('ready', onReady)
        this.#client.off('error', onError)
        this.#client.off('end', onEnd)
        if (err === undefined) resolve()
        else reject(err)
      }
      this.#client.once('ready', onReady)
      this.#client.once('error', onError)
      this.#client.once('end', onEnd)
    })
  }

  #up (): void {
    if (this.#healthy || this.#closing !== undefined) return
    this.#healthy = true
    this.#logger.info({ redis: this.#target }, 'rate-limit store answers again: budgets are shared through Redis')
    for (const listener of this.#listeners) listener(true)
  }

  #down (err: Error): void {
    if (!this.#healthy || this.#closing !== undefined) return
    this.#healthy = false
    this.#lastProbe = this.#clock.now()
    this.#logger.warn({
      redis: this.#target,
      reason: (err as { code?: string }).code ?? err.message
    }, 'rate-limit store unreachable: each profile keeps to its limits divided by rateLimit.expectedReplicas until Redis answers')
    for (const listener of this.#listeners) listener(false)
  }
}

/**
 * The command's answer, or a rejection once `ms` have passed (the command itself goes on,
 * unheard). When the timer fires, the answer may already be waiting on the socket behind a
 * busy event loop; setImmediate runs after the loop has read it, so only Redis's own slowness
 * counts, not this process's.
 */
function withTimeout<T> (promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  let immediate: NodeJS.Immediate | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      immediate = setImmediate(() => reject(new Error('Command timed out')))
    }, ms)
    timer.unref()
  })
  return Promise.race([promise, timeout]).finally(() => {
    clearTimeout(timer)
    clearImmediate(immediate)
  })
}

const REDIS_OPTIONS = {
  lazyConnect: true,
  connectTimeout: CONNECT_TIMEOUT_MS,
  maxRetriesPerRequest: 1,
  retryStrategy: (times: number) => Math.min(times * 100, MAX_RECONNECT_DELAY_MS)
}

function createClient (connection: RedisConnection, extraCaPem: string | undefined): Redis | Cluster {
  const tlsOptions = { tls: extraCaPem === undefined ? {} : { ca: [...rootCertificates, extraCaPem] } }
  // Loaded only by a broker that shares its budgets: the others never need it.
  const { Redis, Cluster } = require('ioredis') as typeof import('ioredis')
  const auth = {
    ...(connection.mode !== 'single' && connection.username !== undefined ? { username: connection.username } : {}),
    ...(connection.mode !== 'single' && connection.password !== undefined ? { password: connection.password } : {})
  }
  switch (connection.mode) {
    case 'single':
      return new Redis(connection.url, {
        ...(new URL(connection.url).protocol === 'rediss:' ? tlsOptions : {}),
        ...REDIS_OPTIONS
      })
    case 'sentinel':
      return new Redis({
        ...REDIS_OPTIONS,
        ...auth,
        sentinels: connection.sentinels.map(({ host, port }) => ({ host, port })),
        name: connection.name,
        ...(connection.sentinelPassword === undefined ? {} : { sentinelPassword: connection.sentinelPassword }),
        ...(connection.tls ? { ...tlsOptions, enableTLSForSentinelMode: true, sentinelTLS: tlsOptions.tls } : {}),
        // Follow a failover as the sentinels announce it, not only when the old primary drops us.
        failoverDetector: true,
        sentinelRetryStrategy: (times: number) => Math.min(times * 100, MAX_RECONNECT_DELAY_MS),
        // A demoted primary refuses writes: reconnect, and the sentinels name the new one.
        reconnectOnError: (err: Error) => err.message.startsWith('READONLY') ? 2 : false
      })
    case 'cluster':
      return new Cluster(connection.nodes.map(({ host, port }) => ({ host, port })), {
        lazyConnect: true,
        redisOptions: {
          connectTimeout: CONNECT_TIMEOUT_MS,
          maxRetriesPerRequest: 1,
          ...auth,
          ...(connection.tls ? { tls: { ...tlsOptions.tls, ...clusterIdentity(connection.nodes) } } : {})
        },
        // Managed clusters (ElastiCache, Azure) hand out names their certificates hold: keep them.
        ...(connection.tls ? { dnsLookup: (address: string, callback: (err: null, address: string) => void) => callback(null, address) } : {}),
        slotsRefreshTimeout: CONNECT_TIMEOUT_MS,
        clusterRetryStrategy: (times: number) => Math.min(times * 100, MAX_RECONNECT_DELAY_MS)
      })
  }
}

/**
 * A cluster may announce its nodes by IP address (Azure Cache for Redis does) while their
 * certificate names the cluster: a node reached by address is checked against the name of the
 * first node configured, when that is a name.
 */
function clusterIdentity (nodes: readonly RedisNode[]): { checkServerIdentity?: (host: string, cert: PeerCertificate) => Error | undefined } {
  const name = nodes.find((node) => isIP(node.host) === 0)?.host
  if (name === undefined) return {}
  return { checkServerIdentity: (host, cert) => checkServerIdentity(isIP(host) === 0 ? host : name, cert) }
}

/** Hosts and ports only, for logs. */
export function describeConnection (connection: RedisConnection): string {
  const list = (nodes: readonly RedisNode[], tls: boolean) =>
    nodes.map(({ host, port }) => `${tls ? 'rediss' : 'redis'}://${host.includes(':') ? `[${host}]` : host}:${port}`).join(',')
  switch (connection.mode) {
    case 'single': return describeTarget(connection.url)
    case 'sentinel': return `sentinel ${connection.name} via ${list(connection.sentinels, connection.tls)}`
    case 'cluster': return `cluster ${list(connection.nodes, connection.tls)}`
  }
}

/** host:port of a Redis URL, for logs: never the user name or password it may hold. */
export function describeTarget (url: string): string {
  const parsed = new URL(url)
  return `${parsed.protocol}//${parsed.hostname}:${parsed.port === '' ? '6379' : parsed.port}`
}
