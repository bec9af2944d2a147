import type { Clock } from '../common/clock.js'

export interface Window {
  /** Length of the window in ms. */
  readonly ms: number
  readonly limit: number
}

export const MINUTE_MS = 60_000
export const HOUR_MS = 3_600_000

/**
 * A sliding-window budget that hands out send times first come, first served. Each granted
 * request holds a slot at the time it may be sent (now, or later when the budget is spent):
 * because slots are handed out in order, a request's slot is the earliest time at which every
 * window has room, and the wait is known at once, so a request that would wait too long is
 * refused before it waits at all.
 */
export class SlidingBudget {
  readonly #windows: readonly Window[]
  readonly #clock: Clock
  readonly #longest: number
  /** Send times of the slots handed out, oldest first, within the longest window. */
  #slots: number[] = []
  #head = 0
  #pausedUntil = 0

  constructor (windows: readonly Window[], clock: Clock) {
    this.#windows = windows
    this.#clock = clock
    this.#longest = Math.max(...windows.map((w) => w.ms))
  }

  /** When a request asked now could be sent, without taking the slot. */
  nextSlot (now = this.#clock.now()): number {
    this.#prune(now)
    let at = Math.max(now, this.#pausedUntil)
    const count = this.#slots.length - this.#head
    if (count > 0) at = Math.max(at, this.#slots[this.#slots.length - 1] as number)
    for (const { ms, limit } of this.#windows) {
      if (count >= limit) at = Math.max(at, (this.#slots[this.#slots.length - limit] as number) + ms)
    }
    return at
  }

  /** Takes the next slot and returns its time. */
  take (now = this.#clock.now()): number {
    const at = this.nextSlot(now)
    this.#slots.push(at)
    return at
  }

  /**
   * Counts a slot another decider handed out (the shared store): if this budget has to decide
   * alone later, what was already sent is not forgotten.
   */
  record (at: number): void {
    let i = this.#slots.length
    while (i > this.#head && (this.#slots[i - 1] as number) > at) i--
    this.#slots.splice(i, 0, at)
  }

  /**
   * Gives back a slot taken for `at` that will not be used (its client went away): it no longer
   * counts in any window. Slots taken after it are not moved; their holders take new ones.
   */
  release (at: number): void {
    for (let i = this.#slots.length - 1; i >= this.#head; i--) {
      const slot = this.#slots[i] as number
      if (slot < at) return
      if (slot === at) {
        this.#slots.splice(i, 1)
        return
      }
    }
  }

  /** Requests waiting for a slot in the future. */
  queued (): number {
    const now = this.#clock.now()
    let n = 0
    for (let i = this.#slots.length - 1; i >= this.#head && (this.#slots[i] as number) > now; i--) n++
    return n
  }

  /** Slots left in each window right now (slots taken for later count as used). */
  remaining (): number[] {
    const now = this.#clock.now()
    this.#prune(now)
    return this.#windows.map(({ ms, limit }) => {
      let used = 0
      for (let i = this.#slots.length - 1; i >= this.#head && (this.#slots[i] as number) > now - ms; i--) used++
      return Math.max(0, limit - used)
    })
  }

  /** No slot before `until`: the API asked for a pause with Retry-After. */
  pauseUntil (until: number): void {
    this.#pausedUntil = Math.max(this.#pausedUntil, until)
  }

  #prune (now: number): void {
    const horizon = now - this.#longest
    while (this.#head < this.#slots.length && (this.#slots[this.#head] as number) <= horizon) this.#head++
    if (this.#head > 1024 && this.#head * 2 > this.#slots.length) {
      this.#slots = this.#slots.slice(this.#head)
      this.#head = 0
    }
  }
}
