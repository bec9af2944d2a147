import { sleep, type Clock } from '../clock.js'
import type { RateLimitConfig } from '../config/types.js'
import { BrokerRateLimited, withRetryAfter } from '../errors.js'
import { HOUR_MS, MINUTE_MS, SlidingBudget } from './budget.js'

export interface PathLimit {
  perMinute: number
  perHour: number
}

export interface BudgetStatus {
  perMinuteLeft: number
  perHourLeft: number
  queued: number
}

/**
 * A profile's local request budget: the API's general limit, and a budget of its own for each
 * endpoint the API limits differently (advanced hunting, …). A request over budget waits its
 * turn, or is refused at once when the wait would pass `maxQueueSeconds`.
 */
export class ProfileBudget {
  readonly #profile: string
  readonly #clock: Clock
  readonly #maxQueueMs: number
  readonly #general: SlidingBudget
  readonly #byPath = new Map<PathLimit, SlidingBudget>()

  constructor (profile: string, config: RateLimitConfig, clock: Clock) {
    this.#profile = profile
    this.#clock = clock
    this.#maxQueueMs = config.maxQueueSeconds * 1000
    this.#general = this.#budget(config)
  }

  #budget (limit: PathLimit): SlidingBudget {
    return new SlidingBudget([{ ms: MINUTE_MS, limit: limit.perMinute }, { ms: HOUR_MS, limit: limit.perHour }], this.#clock)
  }

  #for (pathLimit: PathLimit | undefined): SlidingBudget {
    if (pathLimit === undefined) return this.#general
    let budget = this.#byPath.get(pathLimit)
    if (budget === undefined) {
      budget = this.#budget(pathLimit)
      this.#byPath.set(pathLimit, budget)
    }
    return budget
  }

  /**
   * Resolves when the request may be sent. Throws BrokerRateLimited at once when it would
   * wait too long, and rejects with the signal's reason when the client goes away.
   */
  acquire (pathLimit: PathLimit | undefined, signal?: AbortSignal): Promise<void> | undefined {
    const budget = this.#for(pathLimit)
    const now = this.#clock.now()
    const wait = budget.nextSlot() - now
    if (wait > this.#maxQueueMs) {
      throw withRetryAfter(new BrokerRateLimited(this.#profile, Math.ceil(wait / 1000)), wait / 1000)
    }
    budget.take()
    return wait <= 0 ? undefined : sleep(this.#clock, wait, signal)
  }

  /** The API answered 429: no request of this kind before `until`. */
  pause (pathLimit: PathLimit | undefined, until: number): void {
    this.#for(pathLimit).pauseUntil(until)
  }

  status (): BudgetStatus {
    const [perMinuteLeft = 0, perHourLeft = 0] = this.#general.remaining()
    let queued = this.#general.queued()
    for (const budget of this.#byPath.values()) queued += budget.queued()
    return { perMinuteLeft, perHourLeft, queued }
  }
}
