import t from 'tap'
import { DEFENDER_ENDPOINTS } from '../../src/defender/catalogue.js'
import { createBudgetKeys } from '../../src/ratelimit/budget-keys.js'

t.test('budget keys: one per app and rule, whatever the profile is called', async (t) => {
  const keys = createBudgetKeys('p:', 'AAAAAAAA-0000-0000-0000-000000000000', 'BBBBBBBB-1111-1111-1111-111111111111')
  t.same(keys(undefined), {
    slots: 'p:{aaaaaaaa-0000-0000-0000-000000000000:bbbbbbbb-1111-1111-1111-111111111111}:general:slots',
    pause: 'p:{aaaaaaaa-0000-0000-0000-000000000000:bbbbbbbb-1111-1111-1111-111111111111}:general:pause',
    cause: 'p:{aaaaaaaa-0000-0000-0000-000000000000:bbbbbbbb-1111-1111-1111-111111111111}:general:pause-cause'
  })
  const hunting = DEFENDER_ENDPOINTS.find((endpoint) => endpoint.path === '/api/advancedqueries/run')?.rateLimit
  t.match(keys(hunting).slots, /:POST:\/api\/advancedqueries\/run:slots$/)
  t.match(keys({ perMinute: 7, perHour: 70 }).slots, /:limit:7\/70:slots$/)
  t.equal(keys(hunting), keys(hunting))
})
