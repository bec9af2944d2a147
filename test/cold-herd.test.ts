import t from 'tap'
import { request } from 'undici'
import { startBrokerStack } from './helpers/broker.js'

t.test('a cold herd of 200 concurrent requests costs one token request', async (t) => {
  const stack = await startBrokerStack(t, {
    ready: false,
    simulator: { perMinute: 10_000 },
    config: (c) => ({ ...c, profiles: c.profiles.map((p) => ({ ...p, rateLimit: { perMinute: 10_000, perHour: 10_000, maxQueueSeconds: 30 } })) })
  })
  // Distinct reads: identical ones in flight at once would share one call to the API.
  const responses = await Promise.all(Array.from({ length: 200 }, (_, i) =>
    request(`${stack.url}/api/alerts?$top=${i + 1}`).then(async (res) => {
      await res.body.dump()
      return res.statusCode
    })))
  t.same(new Set(responses), new Set([200]), 'every request was served')
  t.equal(stack.simulator.entra.tokenRequests, 1, 'one token request')
  t.equal(stack.simulator.defender.requests.length, 200, 'every request reached the API')
  t.ok(stack.simulator.defender.requests.every((r) => r.headers.authorization === `Bearer ${stack.simulator.entra.issuedTokens[0]}`),
    'each carried the one token')
})
