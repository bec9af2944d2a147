/**
 * Time for everything that schedules: token refresh, backoff, budgets. Tests pass a fake one
 * (`@sinonjs/fake-timers`' `createClock()` fits this shape).
 */
export interface Clock {
  now (): number
  setTimeout (fn: () => void, ms: number): unknown
  clearTimeout (handle: unknown): void
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const handle = setTimeout(fn, ms)
    handle.unref()
    return handle
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout)
}
