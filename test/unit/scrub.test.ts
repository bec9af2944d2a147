import t from 'tap'
import { scrub } from '../../src/common/scrub.js'

t.test('scrub removes tokens, URL credentials, bearer values and known secrets', async (t) => {
  t.equal(scrub('got eyJhbGciOi.eyJleHAiOjF9.c2ln back'), 'got [token] back')
  t.equal(scrub('proxy http://user:hunter2@proxy:3128 failed'), 'proxy http://[redacted]@proxy:3128 failed')
  t.equal(scrub('Authorization: Bearer abc.def'), 'Authorization: Bearer [redacted]')
  t.equal(scrub('secret s3cr3t-value leaked', ['s3cr3t-value']), 'secret [redacted] leaked')
  t.equal(scrub('short abc', ['abc']), 'short abc', 'values too short to be secrets are left alone')
})
