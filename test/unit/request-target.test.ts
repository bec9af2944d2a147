import t from 'tap'
import { checkRequestTarget } from '../../src/inbound/request-target.js'

t.test('origin-form targets pass', async (t) => {
  for (const target of [
    '/', '/api/alerts', '/api/alerts?$top=10&$skip=10', '/api/machines/abc123/isolate',
    "/api/alerts?$filter=severity eq 'High'".replace(' ', '%20').replace(' ', '%20'),
    '/api/files/a%20b', '/fabrikam/api/alerts', '/api/alerts?x=%2F%2e%2e',
    '/api/alerts/..x', '/api/.well-known', '/api/a.b.c'
  ]) {
    t.equal(checkRequestTarget(target), undefined, target)
  }
})

t.test('everything that could mean another path or origin is refused', async (t) => {
  const cases: Array<[string | undefined, RegExp]> = [
    [undefined, /empty/],
    ['', /empty/],
    ['http://evil.example/api/alerts', /origin-form/],
    ['https://api.securitycenter.microsoft.com/api/alerts', /origin-form/],
    ['*', /origin-form/],
    ['api/alerts', /origin-form/],
    ['//evil.example/api', /network-path/],
    ['/\\evil.example/api', /network-path/],
    ['/api\\..\\x', /backslash/],
    ['/api/%2F%2Fevil', /encoded \//],
    ['/%2F%2Fhost', /encoded \//],
    ['/%5Chost', /encoded \//],
    ['/api/%5c', /encoded \//],
    ['/api/../x', /dot-segment/],
    ['/api/./x', /dot-segment/],
    ['/api/..', /dot-segment/],
    ['/api/%2e%2e/%2e%2e/x', /dot-segment/],
    ['/api/%2E%2e/x', /dot-segment/],
    ['/api/.%2e/x', /dot-segment/],
    ['/api;/../x', /dot-segment/],
    ['/api/..;/x', /dot-segment/],
    ['/api/alerts%0d%0aX-Injected: 1', /encoded control/],
    ['/api/%00', /encoded control/],
    ['/api/a\r\nb', /control/],
    ['/api/a\nb', /control/],
    ['/api/a\u0000b', /control/],
    ['/api/a b', /control/],
    ['/api/é', /non-ASCII/],
    ['/api/%zz', /malformed/],
    ['/api/%2', /malformed/],
    ['/api/alerts#x', /fragment/]
  ]
  for (const [target, reason] of cases) {
    t.match(checkRequestTarget(target), reason, JSON.stringify(target))
  }
})
