import { sleep, type Clock } from '../clock.js'
import type { RateLimitConfig } from '../config/types.js'
import { BrokerRateLimited, withRetryAfter } from '../errors.js'
import { HOUR_MS, MINUTE_MS, SlidingBudget, type Window } from './budget.js'

export interface PathLimit {
  perMinute: number
  perHour: number
}

export interface BudgetStatus {
  perMinuteLeft: number
  perHourLeft: number
  queued: number
}

/** Who decides when a request may be sent: this broker alone, the shared Redis, or this broker while Redis is away. */
export type BudgetStore = 'local' | 'redis' | 'local-fallback'

export interface BudgetReport extends BudgetStatus {
  store: BudgetStore
}

/** What the forwarder, /status and /metrics need of a profile's budget, local or shared. */
/** What stops a wait: an AbortController will do; the forwarder makes its signal only when asked. */
export interface Cancellation {
  readonly signal: AbortSignal
}

export interface RateBudget {
  /** Who decides right now. */
  readonly store: BudgetStore
  /**
   * Undefined when the request may be sent now; otherwise a promise that resolves when it may,
   * rejects with BrokerRateLimited when it would wait too long, and with the signal's reason
   * when the client goes away. The local budget also throws BrokerRateLimited at once.
   * `cancel.signal` is read only when the request has to wait.
   */
  acquire (pathLimit: PathLimit | undefined, cancel?: Cancellation): Promise<void> | undefined
  /** The API answered 429: no request of this kind before `until`. */
  pause (pathLimit: PathLimit | undefined, until: number): void
  /** Right now, without asking anyone: what /metrics reads. */
  status (): BudgetStatus
  /** What /status shows: the shared budget's figures when there is one. */
  report (): Promise<BudgetReport>
  /** Called with the new store each time the decider changes. */
  onStoreChange (listener: (store: BudgetStore) => void): void
  close (): Promise<void>
}

/** Window lengths: the API's minute and hour; only tests shorten them. */
export interface WindowLengths {
  minuteMs: number
  hourMs: number
}

export const API_WINDOWS: Readonly<WindowLengths> = Object.freeze({ minuteMs: MINUTE_MS, hourMs: HOUR_MS })

export interface LocalBudgetOptions {
  windows?: WindowLengths
  /** This broker's share of each limit is 1/divideBy (rateLimit.expectedReplicas). */
  divideBy?: number
}

/** The windows of a limit, in the order status figures are given: minute, hour. */
export function windowsOf (limit: PathLimit, lengths: WindowLengths, divideBy = 1): Window[] {
  const share = (n: number) => Math.max(1, Math.floor(n / divideBy))
  return [{ ms: lengths.minuteMs, limit: share(limit.perMinute) }, { ms: lengths.hourMs, limit: share(limit.perHour) }]
}

export function rateLimited (profile: string, waitMs: number) {
  return withRetryAfter(new BrokerRateLimited(profile, Math.ceil(waitMs / 1000)), waitMs / 1000)
}

/**
 * A profile's local request budget: the API's general limit, and a budget of its own for each
 * endpoint the API limits differently (advanced hunting, …). A request over budget waits its
 * turn, or is refused at once when the wait would pass `maxQueueSeconds`.
 */
export class ProfileBudget implements RateBudget {
  readonly #profile: string
  readonly #clock: Clock
  readonly #maxQueueMs: number
  readonly #lengths: WindowLengths
  readonly #divideBy: number
  readonly #general: SlidingBudget
  readonly #byPath = new Map<PathLimit, SlidingBudget>()

  constructor (profile: string, config: RateLimitConfig, clock: Clock, options: LocalBudgetOptions = {}) {
    this.#profile = profile
    this.#clock = clock
    this.#maxQueueMs = config.maxQueueSeconds * 1000
    this.#lengths = options.windows ?? API_WINDOWS
    this.#divideBy = options.divideBy ?? 1
    this.#general = this.#budget(config)
  }

  #budget (limit: PathLimit): SlidingBudget {
    return new SlidingBudget(windowsOf(limit, this.#lengths, this.#divideBy), this.#clock)
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
  acquire (pathLimit: PathLimit | undefined, cancel?: Cancellation): Promise<void> | undefined {
    const budget = this.#for(pathLimit)
    // One reading of the clock: a millisecond passing between two would make a free slot a wait.
    const now = this.#clock.now()
    const wait = budget.nextSlot(now) - now
    if (wait > this.#maxQueueMs) throw rateLimited(this.#profile, wait)
    budget.take(now)
    return wait <= 0 ? undefined : sleep(this.#clock, wait, cancel?.signal)
  }

  /** The API answered 429: no request of this kind before `until`. */
  pause (pathLimit: PathLimit | undefined, until: number): void {
    this.#for(pathLimit).pauseUntil(until)
  }

  /** Counts a request another decider let through, to be sent at `at`. */
  record (pathLimit: PathLimit | undefined, at: number): void {
    this.#for(pathLimit).record(at)
  }

  status (): BudgetStatus {
    const [perMinuteLeft = 0, perHourLeft = 0] = this.#general.remaining()
    let queued = this.#general.queued()
    for (const budget of this.#byPath.values()) queued += budget.queued()
    return { perMinuteLeft, perHourLeft, queued }
  }

  get store (): BudgetStore {
    return 'local'
  }

  async report (): Promise<BudgetReport> {
    return { ...this.status(), store: 'local' }
  }

  onStoreChange (): void {}

  async close (): Promise<void> {}
}
