import { createTestClock } from '../helpers/clock.js'
import t from 'tap'
import { SlidingBudget } from '../../src/ratelimit/budget.js'
import { ProfileBudget } from '../../src/ratelimit/profile-budget.js'

t.test('a sliding window hands out slots in order, then later ones', async (t) => {
  const clock = createTestClock(0)
  const budget = new SlidingBudget([{ ms: 60_000, limit: 3 }, { ms: 3_600_000, limit: 5 }], clock)
  t.same([budget.take(), budget.take(), budget.take()], [0, 0, 0])
  t.equal(budget.take(), 60_000, 'the fourth waits for the first to leave the minute')
  t.equal(budget.take(), 60_000)
  t.equal(budget.nextSlot(), 3_600_000, 'the hour is spent after five')
  t.same(budget.remaining(), [0, 0])
  t.equal(budget.queued(), 2)
  clock.tick(60_000)
  t.equal(budget.queued(), 0)
  clock.tick(3_600_000)
  t.same(budget.remaining(), [3, 5], 'slots leave the windows as time passes')
  budget.pauseUntil(clock.now() + 5_000)
  t.equal(budget.take(), clock.now() + 5_000, 'a pause holds every slot back')
})

t.test('a profile budget queues FIFO within maxQueueSeconds and refuses beyond', async (t) => {
  const clock = createTestClock(0)
  const budget = new ProfileBudget('p', { perMinute: 2, perHour: 100, maxQueueSeconds: 30 }, clock)
  t.equal(budget.acquire(undefined), undefined, 'within budget: no wait at all')
  t.equal(budget.acquire(undefined), undefined)
  let thrown: unknown
  try { budget.acquire(undefined) } catch (err) { thrown = err }
  t.match(thrown, { code: 'BrokerRateLimited', statusCode: 429, retryAfter: 60 }, 'a 60 s wait is over 30 s: refused at once')

  const hunting = { perMinute: 1, perHour: 10 }
  const order: string[] = []
  t.equal(budget.acquire(hunting), undefined, 'a path with its own limit has its own budget')
  clock.tick(40_000)
  const second = budget.acquire(hunting)?.then(() => order.push('second'))
  const third = (() => { try { return budget.acquire(hunting) } catch (err) { return err } })()
  t.match(third, { code: 'BrokerRateLimited' }, 'the third would wait 80 s')
  t.same(budget.status(), { perMinuteLeft: 0, perHourLeft: 98, queued: 1 })
  await clock.tickAsync(20_000)
  await second
  t.same(order, ['second'])

  const patient = new ProfileBudget('p', { perMinute: 1, perHour: 100, maxQueueSeconds: 120 }, clock)
  patient.acquire(undefined)
  const aborted = new AbortController()
  const waiting = patient.acquire(undefined, aborted)
  t.equal(patient.status().queued, 1)
  aborted.abort(new Error('client gone'))
  await t.rejects(waiting as Promise<void>, /client gone/)
})

t.test('a waiter whose client goes away gives its slot back, and the one behind it moves up', async (t) => {
  const clock = createTestClock(0)
  const budget = new ProfileBudget('p', { perMinute: 1, perHour: 100, maxQueueSeconds: 300 }, clock)
  t.equal(budget.acquire(undefined), undefined)
  const leaving = new AbortController()
  const second = budget.acquire(undefined, leaving) as Promise<void>
  const done: number[] = []
  const third = (budget.acquire(undefined) as Promise<void>).then(() => done.push(clock.now()))
  t.equal(budget.status().queued, 2, 'two wait: for 60 s and 120 s')
  leaving.abort(new Error('client gone'))
  await t.rejects(second, /client gone/)
  t.equal(budget.status().queued, 1, 'the one whose client left is out of the queue')
  await clock.tickAsync(60_000)
  await third
  t.same(done, [60_000], 'the third goes at 60 s, in the slot given back, not at 120 s')
  t.same(budget.status(), { perMinuteLeft: 0, perHourLeft: 98, queued: 0 }, 'two slots used, not three')
  const fourth = (budget.acquire(undefined) as Promise<void>).then(() => done.push(clock.now()))
  await clock.tickAsync(60_000)
  await fourth
  t.same(done, [60_000, 120_000], 'the next one goes a minute after the third, not two')
})
