import t from 'tap'
import type { Clock } from '../../src/common/clock.js'
import { SlidingBudget } from '../../src/ratelimit/budget.js'
import { ProfileBudget } from '../../src/ratelimit/profile-budget.js'
import { createTestClock } from '../helpers/clock.js'

t.test('the fallback keeps to its share: every limit divided by expectedReplicas, at least 1', async (t) => {
  const clock = createTestClock(0)
  const budget = new ProfileBudget('p', { perMinute: 10, perHour: 100, maxQueueSeconds: 0 }, clock, { divideBy: 3 })
  t.same(budget.status(), { perMinuteLeft: 3, perHourLeft: 33, queued: 0 })
  for (let i = 0; i < 3; i++) t.equal(budget.acquire(undefined), undefined)
  t.throws(() => budget.acquire(undefined), { code: 'BrokerRateLimited', retryAfter: 60 })
  const rare = { perMinute: 2, perHour: 120 }
  t.equal(budget.acquire(rare), undefined, '2 / 3 rounds down to 0: still 1 a minute')
  t.throws(() => budget.acquire(rare), { code: 'BrokerRateLimited' })
  t.equal(await budget.report().then((report) => report.store), 'local')
})

t.test('slots another decider handed out are counted where they fall, in order', async (t) => {
  const clock = createTestClock(0)
  const budget = new SlidingBudget([{ ms: 1000, limit: 3 }], clock)
  budget.record(500)
  budget.record(0)
  budget.record(200)
  t.same(budget.remaining(), [0])
  t.equal(budget.queued(), 2, 'the slots at 200 and 500 are still to come')
  t.equal(budget.nextSlot(), 1000, 'the oldest of the three, at 0, leaves the window first')
  const profile = new ProfileBudget('p', { perMinute: 2, perHour: 100, maxQueueSeconds: 0 }, clock)
  profile.record(undefined, 0)
  profile.record(undefined, 0)
  t.throws(() => profile.acquire(undefined), { code: 'BrokerRateLimited' }, 'a recorded request uses the budget')
})

t.test('a millisecond passing while a free slot is handed out does not turn it into a wait', async (t) => {
  let now = 0
  const ticking: Clock = { now: () => now++, setTimeout: () => undefined, clearTimeout: () => {} }
  const budget = new ProfileBudget('p', { perMinute: 5, perHour: 100, maxQueueSeconds: 0 }, ticking)
  for (let i = 0; i < 5; i++) t.equal(budget.acquire(undefined), undefined, `request ${i + 1} goes at once`)
})
