import t from 'tap'
import { clientResponseHeaders, upstreamRequestHeaders } from '../../src/proxy/headers.js'

t.test('request headers: hop-by-hop, listed and identity headers are dropped', async (t) => {
  const out = upstreamRequestHeaders({
    host: 'localhost:8080',
    connection: 'keep-alive, X-Secret-Hop',
    'keep-alive': 'timeout=5',
    'x-secret-hop': 'dropped',
    te: 'trailers',
    trailer: 'x',
    'transfer-encoding': 'chunked',
    upgrade: 'websocket',
    'proxy-authorization': 'Basic abc',
    'proxy-connection': 'keep-alive',
    authorization: 'Bearer inbound-key',
    'x-broker-key': 'inbound-key',
    forwarded: 'for=1.2.3.4',
    'x-forwarded-for': '1.2.3.4',
    'x-forwarded-host': 'evil',
    cookie: 'a=b',
    expect: '100-continue',
    'x-request-id': 'abc',
    accept: 'application/json',
    'content-type': 'application/json',
    'content-length': '12',
    'x-custom': ['a', 'b']
  }, 'Bearer upstream-token')
  t.same(out, {
    accept: 'application/json',
    'content-type': 'application/json',
    'content-length': '12',
    'x-custom': ['a', 'b'],
    authorization: 'Bearer upstream-token'
  })
})

t.test('request headers: method overrides and URL rewrites are dropped', async (t) => {
  const out = upstreamRequestHeaders({
    'x-http-method-override': 'DELETE',
    'x-http-method': 'DELETE',
    'x-method-override': 'DELETE',
    'x-original-url': '/api/machines/abc/isolate',
    'x-rewrite-url': '/api/machines/abc/isolate',
    accept: 'application/json'
  }, 'Bearer upstream-token')
  t.same(out, { accept: 'application/json', authorization: 'Bearer upstream-token' })
})

t.test('response headers: hop-by-hop and listed headers are dropped', async (t) => {
  const out = clientResponseHeaders({
    connection: 'close, x-hop',
    'x-hop': '1',
    'keep-alive': 'timeout=5',
    'transfer-encoding': 'chunked',
    'proxy-authenticate': 'Basic',
    'set-cookie': ['a=b'],
    'content-type': 'application/json',
    'request-id': 'r1',
    'retry-after': '10',
    location: 'https://example/'
  })
  t.same(out, {
    'content-type': 'application/json',
    'request-id': 'r1',
    'retry-after': '10',
    location: 'https://example/'
  })
})
