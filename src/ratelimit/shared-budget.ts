import { sleep, type Clock } from '../common/clock.js'
import type { RateLimitConfig } from '../config/types.js'
import {
  API_WINDOWS, ProfileBudget, rateLimited, windowsOf,
  type BudgetReport, type BudgetStatus, type Cancellation, type BudgetStore, type PathLimit, type RateBudget, type WindowLengths
} from './profile-budget.js'
import { BUDGET_LIMITS, budgetName, type BudgetPause } from './pauses.js'
import type { RedisBudgetStore, SharedPause, SlotDecision, SlotKeys } from './redis-budget.js'

export interface SharedBudgetOptions {
  profile: string
  config: RateLimitConfig
  store: RedisBudgetStore
  keys: (pathLimit: PathLimit | undefined) => SlotKeys
  clock: Clock
  /** Brokers expected to share the budget: the local fallback keeps to 1/expectedReplicas of it. */
  expectedReplicas: number
  windows?: WindowLengths
}

/**
 * A profile's budget shared by every broker on the same Redis. Redis decides when a request
 * may be sent (one FIFO of slots for all brokers); the wait itself happens here, in this
 * broker's local queue. While Redis does not answer in time, a local budget with this broker's
 * share of the limits decides, so no request fails because Redis is away; it also counts the
 * requests Redis let through, so switching does not forget what was just sent.
 */
export class SharedBudget implements RateBudget {
  readonly #profile: string
  readonly #config: RateLimitConfig
  readonly #store: RedisBudgetStore
  readonly #keys: (pathLimit: PathLimit | undefined) => SlotKeys
  readonly #clock: Clock
  readonly #lengths: WindowLengths
  readonly #maxQueueMs: number
  readonly #local: ProfileBudget
  readonly #listeners = new Set<(store: BudgetStore) => void>()
  /** Slots used in the general budget's windows, as of the last answer from Redis. */
  #lastUsed: number[] = []

  constructor (options: SharedBudgetOptions) {
    this.#profile = options.profile
    this.#config = options.config
    this.#store = options.store
    this.#keys = options.keys
    this.#clock = options.clock
    this.#lengths = options.windows ?? API_WINDOWS
    this.#maxQueueMs = options.config.maxQueueSeconds * 1000
    this.#local = new ProfileBudget(options.profile, options.config, options.clock, {
      windows: this.#lengths,
      divideBy: options.expectedReplicas
    })
    this.#store.onChange((shared) => {
      for (const listener of this.#listeners) listener(shared ? 'redis' : 'local-fallback')
    })
  }

  get store (): BudgetStore {
    return this.#store.shared ? 'redis' : 'local-fallback'
  }

  acquire (pathLimit: PathLimit | undefined, cancel?: Cancellation): Promise<void> | undefined {
    if (!this.#store.usable()) return this.#local.acquire(pathLimit, cancel)
    return this.#acquireShared(pathLimit, cancel)
  }

  async #acquireShared (pathLimit: PathLimit | undefined, cancel?: Cancellation): Promise<void> {
    let decision: SlotDecision
    try {
      decision = await this.#store.take(this.#keys(pathLimit), this.#windows(pathLimit), this.#maxQueueMs)
    } catch {
      return this.#local.acquire(pathLimit, cancel)
    }
    if (pathLimit === undefined) this.#lastUsed = decision.used
    if (!decision.granted) throw rateLimited(this.#profile, decision.waitMs, this.#localPause(pathLimit, decision, decision.pause))
    const at = this.#clock.now() + decision.waitMs
    this.#local.record(pathLimit, at)
    if (decision.waitMs <= 0) return
    try {
      await sleep(this.#clock, decision.waitMs, cancel?.signal)
    } catch (err) {
      // The client went away: its slot goes back, here and in Redis, for the requests after it.
      this.#local.release(pathLimit, at)
      this.#store.release(this.#keys(pathLimit), decision.member).catch(() => {})
      throw err
    }
  }

  pause (pathLimit: PathLimit | undefined, until: number, cause: string): void {
    this.#local.pause(pathLimit, until, cause)
    if (this.#store.usable()) {
      // A failure marks the store down, which is all that can be done about it here.
      this.#store.pause(this.#keys(pathLimit), until - this.#clock.now(), cause).catch(() => {})
    }
  }

  /** A pause in Redis, its end moved from the Redis server's clock to this broker's. */
  #localPause (pathLimit: PathLimit | undefined, redisTime: { now: number }, pause: SharedPause | undefined): BudgetPause | undefined {
    if (pause === undefined) return undefined
    return { budget: budgetName(pathLimit), until: this.#clock.now() + (pause.until - redisTime.now), cause: pause.cause }
  }

  /** The pauses under way in Redis, set by any broker sharing the budgets. */
  async #sharedPauses (): Promise<BudgetPause[]> {
    const read = await this.#store.pauses(BUDGET_LIMITS.map((limit) => this.#keys(limit)))
    return BUDGET_LIMITS.flatMap((limit, i) => {
      const pause = this.#localPause(limit, read, read.pauses[i])
      return pause === undefined ? [] : [pause]
    })
  }

  status (): BudgetStatus {
    const local = this.#local.status()
    if (!this.#store.shared) return local
    const [minute, hour] = this.#windows(undefined)
    return {
      perMinuteLeft: Math.max(0, (minute?.limit ?? 0) - (this.#lastUsed[0] ?? 0)),
      perHourLeft: Math.max(0, (hour?.limit ?? 0) - (this.#lastUsed[1] ?? 0)),
      queued: local.queued
    }
  }

  async report (): Promise<BudgetReport> {
    if (this.#store.usable()) {
      try {
        const [used, pauses] = await Promise.all([this.#store.used(this.#keys(undefined), this.#windows(undefined)), this.#sharedPauses()])
        this.#lastUsed = used
        return { ...this.status(), store: 'redis', pauses }
      } catch {}
    }
    return { ...this.#local.status(), store: 'local-fallback', pauses: this.#local.pauses() }
  }

  onStoreChange (listener: (store: BudgetStore) => void): void {
    this.#listeners.add(listener)
  }

  close (): Promise<void> {
    return this.#store.close()
  }

  #windows (pathLimit: PathLimit | undefined) {
    return windowsOf(pathLimit ?? this.#config, this.#lengths)
  }
}
