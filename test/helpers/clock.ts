import { EventEmitter } from 'node:events'
import FakeTimers from '@sinonjs/fake-timers'
import type { Clock } from '../../src/common/clock.js'

export interface TestClock extends Clock {
  tick: (ms: number) => void
  tickAsync: (ms: number) => Promise<void>
}

/** The broker's Clock on @sinonjs/fake-timers (whose `now` is a number, not a function). */
export function createTestClock (start = Date.now()): TestClock {
  const fake = FakeTimers.createClock(start)
  return {
    now: () => fake.now,
    setTimeout: (fn, ms) => fake.setTimeout(fn, ms),
    clearTimeout: (handle) => fake.clearTimeout(handle as FakeTimers.TimerId),
    tick: (ms) => { fake.tick(ms) },
    tickAsync: async (ms) => { await fake.tickAsync(ms) }
  }
}

export interface WatchedClock {
  clock: TestClock
  /** `set` with the delay each time the broker sets a timer, `cleared` each time it clears one. */
  timers: EventEmitter<{ set: [number], cleared: [] }>
  /** Resolves once `count` timers of `ms` have been set from now on: the broker is waiting, ticks may start. */
  timersSet: (ms: number, count?: number) => Promise<void>
}

/** A test clock that tells when the broker sets or clears a timer: no tick before the broker waits. */
export function createWatchedClock (start = Math.ceil(Date.now() / 1000) * 1000): WatchedClock {
  const base = createTestClock(start)
  const timers = new EventEmitter<{ set: [number], cleared: [] }>()
  const clock: TestClock = {
    ...base,
    setTimeout: (fn, ms) => {
      const handle = base.setTimeout(fn, ms)
      timers.emit('set', ms)
      return handle
    },
    clearTimeout: (handle) => {
      base.clearTimeout(handle)
      timers.emit('cleared')
    }
  }
  const timersSet = (ms: number, count = 1) => new Promise<void>((resolve) => {
    let seen = 0
    const listener = (set: number) => {
      if (set !== ms || ++seen < count) return
      timers.off('set', listener)
      resolve()
    }
    timers.on('set', listener)
  })
  return { clock, timers, timersSet }
}
