import type { Clock } from '../common/clock.js'
import type { Window } from '../ratelimit/budget.js'
import type { RedisBudgetStore } from '../ratelimit/redis-budget.js'

/** One count the caps keep: its name (a Redis key when shared) and the windows it is limited in. */
export interface Counter {
  readonly key: string
  readonly windows: readonly Window[]
}

export type CountDecision =
  | { readonly granted: true }
  /** The counter and window that are full, and when (this broker's clock) a call frees in it. */
  | { readonly granted: false, readonly counter: number, readonly window: number, readonly freesAt: number }

/**
 * Counts of calls in sliding windows: a call counts in every counter given, or in none when one
 * is full. Kept in memory, or in Redis by every broker sharing it (see SharedCounts).
 */
export interface Counts {
  take: (counters: readonly Counter[]) => CountDecision | Promise<CountDecision>
  /** Calls counted in each window of each counter, now. */
  used: (counters: readonly Counter[]) => number[][] | Promise<number[][]>
}

/** The counts of one broker. `divideBy` shares the limits among the brokers that decide alone. */
export class LocalCounts implements Counts {
  readonly #clock: Pick<Clock, 'now'>
  readonly #divideBy: number
  /** Times of the calls counted, oldest first, by counter key. */
  readonly #times = new Map<string, number[]>()

  constructor (clock: Pick<Clock, 'now'>, divideBy = 1) {
    this.#clock = clock
    this.#divideBy = divideBy
  }

  take (counters: readonly Counter[]): CountDecision {
    const now = this.#clock.now()
    for (const [c, counter] of counters.entries()) {
      const times = this.#pruned(counter, now)
      for (const [w, { ms, limit }] of counter.windows.entries()) {
        const share = this.#share(limit)
        let inWindow = 0
        for (let i = times.length - 1; i >= 0 && (times[i] as number) > now - ms; i--) inWindow++
        if (inWindow >= share) {
          const oldest = share === 0 ? now : times[times.length - share] as number
          return { granted: false, counter: c, window: w, freesAt: share === 0 ? Infinity : oldest + ms }
        }
      }
    }
    for (const counter of counters) this.record(counter, now)
    return { granted: true }
  }

  /** Counts a call another decider let through (the shared store), so falling back forgets nothing. */
  record (counter: Counter, at: number): void {
    const times = this.#times.get(counter.key) ?? []
    times.push(at)
    this.#times.set(counter.key, times)
  }

  used (counters: readonly Counter[]): number[][] {
    const now = this.#clock.now()
    return counters.map((counter) => {
      const times = this.#pruned(counter, now)
      return counter.windows.map(({ ms }) => times.filter((time) => time > now - ms).length)
    })
  }

  #share (limit: number): number {
    return this.#divideBy === 1 ? limit : Math.floor(limit / this.#divideBy)
  }

  #pruned (counter: Counter, now: number): number[] {
    const times = this.#times.get(counter.key)
    if (times === undefined) return []
    const longest = Math.max(...counter.windows.map(({ ms }) => ms))
    let drop = 0
    while (drop < times.length && (times[drop] as number) <= now - longest) drop++
    if (drop > 0) times.splice(0, drop)
    if (times.length === 0) this.#times.delete(counter.key)
    return times
  }
}

/**
 * Counts shared by every broker on the same Redis: one Lua script decides for all the counters
 * of a call at once. While Redis does not answer in time, this broker's share of each limit
 * (divided by rateLimit.expectedReplicas) decides, as for the budgets.
 */
export class SharedCounts implements Counts {
  readonly #store: RedisBudgetStore
  readonly #clock: Pick<Clock, 'now'>
  readonly #local: LocalCounts

  constructor (store: RedisBudgetStore, clock: Pick<Clock, 'now'>, expectedReplicas: number) {
    this.#store = store
    this.#clock = clock
    this.#local = new LocalCounts(clock, expectedReplicas)
  }

  take (counters: readonly Counter[]): CountDecision | Promise<CountDecision> {
    if (!this.#store.usable()) return this.#local.take(counters)
    return this.#takeShared(counters)
  }

  async #takeShared (counters: readonly Counter[]): Promise<CountDecision> {
    let decision
    try {
      decision = await this.#store.count(counters)
    } catch {
      return this.#local.take(counters)
    }
    const now = this.#clock.now()
    if (decision.granted) {
      for (const counter of counters) this.#local.record(counter, now)
      return { granted: true }
    }
    return { granted: false, counter: decision.counter, window: decision.window, freesAt: now + decision.freesInMs }
  }

  async used (counters: readonly Counter[]): Promise<number[][]> {
    if (this.#store.usable()) {
      try {
        return await this.#store.counted(counters)
      } catch {}
    }
    return this.#local.used(counters)
  }
}
