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
