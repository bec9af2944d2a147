import t, { type Test } from 'tap'
import { getGlobalDispatcher, request, type Dispatcher } from 'undici'
import { createTestPki } from '../src/simulator/index.js'
import { startBrokerStack, ALL_ROLES } from './helpers/broker.js'
import { clientFor, withProfiles } from './helpers/profiles.js'
import { readBody, startUpstream, type UpstreamHandler } from './helpers/upstream.js'

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

/** Answers with what it received, so the client side can check the round trip too. */
const echo: UpstreamHandler = (req, res, recorded) => {
  if (req.url === '/api/files/echo') {
    res.writeHead(200, { 'content-type': 'application/octet-stream' })
    req.pipe(res)
    return
  }
  readBody(req, recorded).then((body) => {
    if (req.url === '/api/own-request-id') {
      res.writeHead(200, { 'x-request-id': 'upstream-chosen', 'content-type': 'text/plain' })
      return res.end('ok')
    }
    if (req.url?.startsWith('/redirect')) {
      res.writeHead(302, { location: 'https://elsewhere.example/api/alerts?from=redirect' })
      return res.end()
    }
    if (req.url?.startsWith('/relative-redirect')) {
      res.writeHead(307, { location: '/api/alerts?from=redirect' })
      return res.end()
    }
    const answer = Buffer.from(JSON.stringify({ method: req.method, url: req.url, bytes: body.length }))
    res.writeHead(req.method === 'POST' ? 201 : 200, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(answer.length),
      'x-upstream-header': 'kept',
      'odata-version': '4.0',
      'request-id': 'upstream-request-1'
    })
    res.end(req.method === 'HEAD' ? undefined : answer)
  }, () => res.destroy())
}

const pki = await createTestPki()
const upstream = await startUpstream(t, echo)
const fabrikamUpstream = await startUpstream(t, echo)
const stack = await startBrokerStack(t, {
  simulator: { pki, roles: ALL_ROLES },
  env: { BROKER_UPSTREAM: upstream.url },
  config: (c) => withProfiles(c, [{ name: 'fabrikam', basePath: '/fabrikam', upstream: fabrikamUpstream.url }])
})

/** The token a profile holds, after checking that the simulator issued it. */
async function issuedToken (t: Test, profile: string): Promise<string> {
  const held = await stack.app.profiles.find((p) => p.config.name === profile)?.tokens.get()
  t.ok(held !== undefined && stack.simulator.entra.issuedTokens.includes(held.value), `${profile} holds a token the simulator issued`)
  return held?.value as string
}

/** The path goes out exactly as given: `request(url)` would normalise it through WHATWG URL. */
function send (path: string, options: Partial<Dispatcher.RequestOptions> = {}) {
  return getGlobalDispatcher().request({ origin: stack.url, path, method: 'GET', ...options })
}

t.test('method, path, query and body arrive unchanged; status, headers and body come back', async (t) => {
  const cases: Array<{ method: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, body?: Buffer, type?: string }> = [
    { method: 'GET', path: "/api/alerts?$top=10&$filter=severity%20eq%20'High'&$orderby=alertCreationTime%20desc&x=a%2Fb+c;d" },
    { method: 'GET', path: '/api/Machines/ABC%20def/logonusers?' },
    { method: 'HEAD', path: '/api/machines?$top=1' },
    { method: 'POST', path: '/api/machines/abc/isolate', body: Buffer.from('{ "Comment": "isolate",  "IsolationType":"Full" ,"n":1.50 }'), type: 'application/json' },
    { method: 'PUT', path: '/api/indicators/1', body: Buffer.from('{"indicatorValue":"1.2.3.4"}'), type: 'application/json' },
    { method: 'PATCH', path: '/api/alerts/da1', body: Buffer.from('{"status":"Resolved"}'), type: 'application/json; charset=utf-8' },
    { method: 'DELETE', path: '/api/indicators/1?reason=x%2By' },
    { method: 'POST', path: '/api/advancedqueries/run', body: Buffer.from('DeviceInfo | take 1\n\u00e9\r\n'), type: 'text/plain' },
    { method: 'POST', path: '/api/files/upload', body: Buffer.from(Array.from({ length: 256 }, (_, i) => i)) },
    { method: 'POST', path: '/api/machines/abc/offboard', body: Buffer.alloc(0) }
  ]
  for (const { method, path, body, type } of cases) {
    const before = upstream.requests.length
    const res = await send(path, {
      method,
      ...(body === undefined ? {} : { body }),
      headers: type === undefined ? {} : { 'content-type': type }
    })
    const text = await res.body.text()
    const name = `${method} ${path}`
    t.equal(upstream.requests.length, before + 1, `${name}: one upstream request`)
    const seen = upstream.requests[before]
    t.equal(seen?.method, method, `${name}: method`)
    t.equal(seen?.url, path, `${name}: path and query byte for byte`)
    t.equal(seen?.body.toString('hex'), (body ?? Buffer.alloc(0)).toString('hex'), `${name}: body byte for byte`)
    t.equal(seen?.headers['content-type'], type, `${name}: content type as sent`)
    if (body !== undefined) t.equal(seen?.headers['content-length'], String(body.length), `${name}: length as sent`)

    const answer = JSON.stringify({ method, url: path, bytes: body?.length ?? 0 })
    t.equal(res.statusCode, method === 'POST' ? 201 : 200, `${name}: status`)
    t.equal(res.headers['content-type'], 'application/json; charset=utf-8', `${name}: content-type back`)
    t.equal(res.headers['content-length'], String(Buffer.byteLength(answer)), `${name}: content-length back`)
    t.equal(res.headers['x-upstream-header'], 'kept', `${name}: other headers back`)
    t.equal(res.headers['odata-version'], '4.0')
    t.equal(res.headers['request-id'], 'upstream-request-1')
    t.equal(text, method === 'HEAD' ? '' : answer, `${name}: body back`)
    t.match(res.headers['x-request-id'], UUID, `${name}: x-request-id`)
  }
})

t.test('a body of every byte value comes back byte for byte', async (t) => {
  const body = Buffer.concat([Buffer.from(Array.from({ length: 256 }, (_, i) => 255 - i)), Buffer.from('\r\n0\r\n\r\n')])
  const res = await send('/api/files/echo', { method: 'PUT', body })
  const back = Buffer.from(await res.body.arrayBuffer())
  t.equal(res.statusCode, 200)
  t.equal(back.toString('hex'), body.toString('hex'))
})

t.test('redirects are passed back, never followed', async (t) => {
  for (const [path, status, location] of [
    ['/redirect?to=elsewhere', 302, 'https://elsewhere.example/api/alerts?from=redirect'],
    ['/relative-redirect', 307, '/api/alerts?from=redirect']
  ] as const) {
    const before = upstream.requests.length
    const res = await request(`${stack.url}${path}`)
    await res.body.dump()
    t.equal(res.statusCode, status, `${path}: the upstream's status`)
    t.equal(res.headers.location, location, `${path}: Location as the upstream sent it`)
    t.same(upstream.requests.slice(before).map((r) => r.url), [path], `${path}: one upstream request, no follow-up`)
  }
})

t.test('the longest basePath picks the profile, and the basePath is stripped upstream', async (t) => {
  const cases: Array<[string, 'default' | 'fabrikam', string]> = [
    ['/fabrikam/api/alerts?$top=1', 'fabrikam', '/api/alerts?$top=1'],
    ['/fabrikam', 'fabrikam', '/'],
    ['/fabrikam?$top=1', 'fabrikam', '/?$top=1'],
    ['/fabrikam/', 'fabrikam', '/'],
    ['/api/alerts', 'default', '/api/alerts'],
    ['/fabrikamx/api/alerts', 'default', '/fabrikamx/api/alerts'],
    ['/api/fabrikam/alerts', 'default', '/api/fabrikam/alerts']
  ]
  for (const [path, profile, upstreamPath] of cases) {
    const chosen = profile === 'fabrikam' ? fabrikamUpstream : upstream
    const other = profile === 'fabrikam' ? upstream : fabrikamUpstream
    const before = [chosen.requests.length, other.requests.length]
    const res = await send(path)
    await res.body.dump()
    t.equal(res.statusCode, 200, `${path}: served`)
    t.equal(chosen.requests.length, (before[0] as number) + 1, `${path}: went to ${profile}`)
    t.equal(other.requests.length, before[1], `${path}: and nowhere else`)
    t.equal(chosen.requests.at(-1)?.url, upstreamPath, `${path}: arrived as ${upstreamPath}`)
    t.equal(chosen.requests.at(-1)?.headers.authorization, `Bearer ${await issuedToken(t, profile)}`, `${path}: ${profile}'s token`)
  }
})

t.test('x-request-id on every response, errors included', async (t) => {
  const ok = await request(`${stack.url}/api/alerts`)
  await ok.body.dump()
  t.match(ok.headers['x-request-id'], UUID, 'a forwarded response')

  const kept = await request(`${stack.url}/api/alerts`, { headers: { 'x-request-id': 'soar-run-42.step:7' } })
  await kept.body.dump()
  t.equal(kept.headers['x-request-id'], 'soar-run-42.step:7', 'a caller\'s harmless id is kept')

  const replaced = await request(`${stack.url}/api/alerts`, { headers: { 'x-request-id': 'a b\u00e9"{}' } })
  await replaced.body.dump()
  t.match(replaced.headers['x-request-id'], UUID, 'any other is replaced')

  const health = await request(`${stack.url}/healthz`)
  await health.body.dump()
  t.match(health.headers['x-request-id'], UUID, 'the broker\'s own endpoints')

  const misdirected = await request(`${stack.url}/api/alerts`, { headers: { host: 'evil.example' } })
  const id = misdirected.headers['x-request-id']
  t.match(id, UUID)
  t.equal(misdirected.statusCode, 421)
  t.strictSame(await misdirected.body.json(), {
    error: {
      code: 'BrokerMisdirected',
      message: 'The Host header "evil.example" is not one this broker answers to: add it to listen.allowedHosts.',
      target: id
    }
  }, 'an error the broker makes: the whole body, its target the response\'s id')
})

t.test('the upstream gets the broker\'s token, never the client\'s Authorization or X-Broker-Key', async (t) => {
  const before = upstream.requests.length
  const res = await request(`${stack.url}/api/alerts`, {
    headers: { authorization: 'Bearer client-own-token', 'x-broker-key': 'client-key' }
  })
  await res.body.dump()
  t.equal(res.statusCode, 200)
  const seen = upstream.requests[before]
  t.equal(seen?.headers.authorization, `Bearer ${await issuedToken(t, 'default')}`, 'the simulator\'s token')
  t.equal(seen?.headers['x-broker-key'], undefined)
  t.same(seen?.rawHeaders.filter((_, i) => i % 2 === 0 && /^authorization$/i.test(seen.rawHeaders[i] as string)), ['authorization'],
    'one Authorization header')
})

t.test('with client keys: the key is checked, then neither form of it goes upstream', async (t) => {
  const key = 'broker-client-key-canary-7f3a'
  const keyed = await startUpstream(t)
  const keyedStack = await startBrokerStack(t, {
    simulator: { pki, roles: ALL_ROLES },
    env: { BROKER_UPSTREAM: keyed.url },
    config: (c) => ({ ...c, clients: [clientFor('soar', key)] })
  })
  const token = keyedStack.simulator.entra.issuedTokens.at(-1)
  for (const headers of [{ authorization: `Bearer ${key}` }, { 'x-broker-key': key }]) {
    const res = await request(`${keyedStack.url}/api/alerts`, { headers })
    await res.body.dump()
    t.equal(res.statusCode, 200, `${Object.keys(headers)[0]}: accepted`)
  }
  t.equal(keyed.requests.length, 2)
  for (const seen of keyed.requests) {
    t.equal(seen.headers.authorization, `Bearer ${token}`)
    t.equal(seen.headers['x-broker-key'], undefined)
    t.notOk(seen.rawHeaders.some((value) => value.includes(key)), 'the key is in no header the upstream saw')
  }

  const refused = await request(`${keyedStack.url}/api/alerts`, { headers: { authorization: 'Bearer wrong' } })
  t.equal(refused.statusCode, 401)
  t.strictSame(await refused.body.json(), {
    error: {
      code: 'BrokerUnauthenticated',
      message: 'A valid broker client key is required: send it as "Authorization: Bearer <key>" or "X-Broker-Key: <key>".',
      target: refused.headers['x-request-id']
    }
  })
  t.equal(keyed.requests.length, 2, 'a wrong key reaches nothing')
})

t.test('the upstream\'s own x-request-id does not replace the broker\'s', async (t) => {
  const res = await send('/api/own-request-id', { headers: { 'x-request-id': 'client-chosen' } })
  t.equal(await res.body.text(), 'ok')
  t.equal(res.headers['x-request-id'], 'client-chosen', 'the id the broker logged this request under')
})
