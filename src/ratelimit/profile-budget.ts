import type { Clock } from '../common/clock.js'
import type { RateLimitConfig } from '../config/types.js'
import { BrokerRateLimited, withRetryAfter } from '../common/errors.js'
import { HOUR_MS, MINUTE_MS, SlidingBudget, type Window } from './budget.js'
import { budgetName, type BudgetPause } from './pauses.js'

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
  /** The pauses the API's 429s set that have not ended yet. */
  pauses: BudgetPause[]
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
  /**
   * The API answered 429 to a request counted against this budget: no request counted against
   * it before `until`; `cause` says what set the pause, for /status and the refusals meanwhile.
   */
  pause (pathLimit: PathLimit | undefined, until: number, cause: string): void
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

/** The refusal of a request that would wait `waitMs`: a budget spent, or paused by the API's 429. */
export function rateLimited (profile: string, waitMs: number, pause?: BudgetPause) {
  const words = pause === undefined ? undefined : { budget: pause.budget, until: new Date(pause.until).toISOString(), cause: pause.cause }
  return withRetryAfter(new BrokerRateLimited(profile, Math.ceil(waitMs / 1000), words), waitMs / 1000)
}

/** A request waiting for its slot in the budget's queue. */
interface Waiter {
  at: number
  timer: unknown
  readonly go: () => void
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
  /** The requests waiting in each budget, in the order of their slots. */
  readonly #queues = new Map<SlidingBudget, Waiter[]>()
  readonly #pauses = new Map<PathLimit | undefined, BudgetPause>()

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
   * wait too long, and rejects with the signal's reason when the client goes away: its slot is
   * then given back, and the requests behind it move up.
   */
  acquire (pathLimit: PathLimit | undefined, cancel?: Cancellation): Promise<void> | undefined {
    const budget = this.#for(pathLimit)
    // One reading of the clock: a millisecond passing between two would make a free slot a wait.
    const now = this.#clock.now()
    const wait = budget.nextSlot(now) - now
    if (wait > this.#maxQueueMs) throw rateLimited(this.#profile, wait, this.#pauseOf(pathLimit, now))
    const at = budget.take(now)
    return wait <= 0 ? undefined : this.#wait(budget, at, cancel?.signal)
  }

  #wait (budget: SlidingBudget, at: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        budget.release(at)
        return reject(signal.reason)
      }
      let queue = this.#queues.get(budget)
      if (queue === undefined) {
        queue = []
        this.#queues.set(budget, queue)
      }
      const waiters = queue
      const onAbort = () => {
        this.#clock.clearTimeout(waiter.timer)
        this.#leave(budget, waiters, waiter)
        reject(signal?.reason)
      }
      const waiter: Waiter = {
        at,
        timer: undefined,
        go: () => {
          signal?.removeEventListener('abort', onAbort)
          const index = waiters.indexOf(waiter)
          if (index !== -1) waiters.splice(index, 1)
          resolve()
        }
      }
      this.#schedule(waiter)
      waiters.push(waiter)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  #schedule (waiter: Waiter): void {
    waiter.timer = this.#clock.setTimeout(waiter.go, Math.max(0, waiter.at - this.#clock.now()))
  }

  /**
   * A waiter whose client went away gives its slot back; each one behind it takes the earliest
   * slot left, when that is earlier than its own, so the next in line goes when the slot frees.
   */
  #leave (budget: SlidingBudget, queue: Waiter[], left: Waiter): void {
    const index = queue.indexOf(left)
    if (index === -1) return
    const behind = queue.splice(index).slice(1)
    budget.release(left.at)
    for (const waiter of behind) budget.release(waiter.at)
    const now = this.#clock.now()
    for (const waiter of behind) {
      const at = budget.nextSlot(now)
      if (at < waiter.at) {
        budget.take(now)
        this.#clock.clearTimeout(waiter.timer)
        waiter.at = at
        this.#schedule(waiter)
      } else {
        budget.record(waiter.at)
      }
      queue.push(waiter)
    }
  }

  pause (pathLimit: PathLimit | undefined, until: number, cause: string): void {
    this.#for(pathLimit).pauseUntil(until)
    const current = this.#pauses.get(pathLimit)
    if (current === undefined || current.until < until) this.#pauses.set(pathLimit, { budget: budgetName(pathLimit), until, cause })
  }

  /** The pause on this budget when one is under way. */
  #pauseOf (pathLimit: PathLimit | undefined, now: number): BudgetPause | undefined {
    const pause = this.#pauses.get(pathLimit)
    return pause !== undefined && pause.until > now ? pause : undefined
  }

  /** The pauses not ended yet, the general budget's first. */
  pauses (): BudgetPause[] {
    const now = this.#clock.now()
    const current: BudgetPause[] = []
    for (const [pathLimit, pause] of this.#pauses) {
      if (pause.until > now) current.push({ ...pause })
      else this.#pauses.delete(pathLimit)
    }
    return current.sort((a, b) => a.budget === 'general' ? -1 : b.budget === 'general' ? 1 : a.until - b.until)
  }

  /** Counts a request another decider let through, to be sent at `at`. */
  record (pathLimit: PathLimit | undefined, at: number): void {
    this.#for(pathLimit).record(at)
  }

  /** Gives back a slot another decider let through and `record` counted, when its client went away. */
  release (pathLimit: PathLimit | undefined, at: number): void {
    this.#for(pathLimit).release(at)
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
    return { ...this.status(), store: 'local', pauses: this.pauses() }
  }

  onStoreChange (): void {}

  async close (): Promise<void> {}
}
