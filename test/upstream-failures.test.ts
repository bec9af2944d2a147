import { once } from 'node:events'
import type { ServerResponse } from 'node:http'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { startBrokerStack, ALL_ROLES } from './helpers/broker.js'
import { withProfiles } from './helpers/profiles.js'
import { rawExchange } from './helpers/raw-socket.js'
import { closedOrigin, readBody, startUpstream } from './helpers/upstream.js'

const PART = Buffer.alloc(4096, 'a')

/** The upstream's behaviour is picked by the path, so one stack serves every case. */
const upstream = await startUpstream(t, (req, res, recorded) => {
  switch (req.url) {
    case '/api/silent':
      return // never answers: the broker's response timeout has to
    case '/api/reset-before-headers':
      return req.socket.destroy()
    case '/api/stall-mid-body':
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(PART.length * 4) })
      return res.write(PART)
    case '/api/reset-mid-body':
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(PART.length * 4) })
      return res.write(PART, () => res.socket?.destroy())
    case '/api/reset-mid-chunked-body':
      res.writeHead(200, { 'content-type': 'application/json' })
      return res.write(`{"value":[${'{"id":1},'.repeat(1000)}`, () => res.socket?.destroy())
    case '/api/reset-early-chunked-body':
      res.writeHead(200, { 'content-type': 'application/json' })
      return res.write('{"value":[{"id":1},', () => res.socket?.destroy())
    default:
      readBody(req, recorded).then(() => res.end('{"value":[]}'), () => res.destroy())
  }
})
const downOrigin = await closedOrigin(t)
const stack = await startBrokerStack(t, {
  simulator: { roles: ALL_ROLES },
  env: { BROKER_UPSTREAM: upstream.url },
  config: (c) => ({
    ...withProfiles(c, [{ name: 'down', basePath: '/down', upstream: downOrigin }]),
    upstreamTimeouts: { connectSeconds: 1, responseSeconds: 0.3 }
  })
})

async function assertStillServing (t: Test): Promise<void> {
  const health = await request(`${stack.url}/healthz`)
  t.equal(health.statusCode, 200, '/healthz answers')
  t.strictSame(await health.body.json(), { status: 'ok' })
  const next = await request(`${stack.url}/api/alerts?next`)
  t.equal(next.statusCode, 200, 'the next request is forwarded')
  t.equal(await next.body.text(), '{"value":[]}')
}

/** Waits for the upstream to see its side of an exchange go away. */
function closed (res: ServerResponse): Promise<unknown> {
  return res.closed ? Promise.resolve() : once(res, 'close')
}

t.test('upstream down: 502 BrokerUpstreamUnreachable', async (t) => {
  const res = await request(`${stack.url}/down/api/alerts`)
  const id = res.headers['x-request-id']
  t.equal(res.statusCode, 502)
  t.equal(res.headers['content-type'], 'application/json; charset=utf-8')
  t.strictSame(await res.body.json(), {
    error: {
      code: 'BrokerUpstreamUnreachable',
      message: `The Defender API at ${downOrigin} could not be reached: connection refused (ECONNREFUSED). Check the network, proxy and upstream settings.`,
      target: id
    }
  })
  t.match(id, /^[0-9a-f-]{36}$/)
  await assertStillServing(t)
})

t.test('upstream closes the connection before any answer: 502 BrokerUpstreamUnreachable', async (t) => {
  const res = await request(`${stack.url}/api/reset-before-headers`)
  t.equal(res.statusCode, 502)
  t.strictSame(await res.body.json(), {
    error: {
      code: 'BrokerUpstreamUnreachable',
      message: `The Defender API at ${upstream.url} could not be reached: connection reset (UND_ERR_SOCKET). Check the network, proxy and upstream settings.`,
      target: res.headers['x-request-id']
    }
  })
  await assertStillServing(t)
})

t.test('upstream silent past responseSeconds: 504 BrokerUpstreamTimeout, and the upstream request is dropped', async (t) => {
  const arrived = upstream.nextRequest()
  const pending = request(`${stack.url}/api/silent`)
  const { res: upstreamRes } = await arrived
  const res = await pending
  t.equal(res.statusCode, 504)
  t.strictSame(await res.body.json(), {
    error: {
      code: 'BrokerUpstreamTimeout',
      message: `The Defender API at ${upstream.url} did not answer in time.`,
      target: res.headers['x-request-id']
    }
  })
  await closed(upstreamRes)
  t.notOk(upstreamRes.writableFinished, 'the upstream saw its request closed before it had answered')
  await assertStillServing(t)
})

t.test('upstream resets mid-body: the client sees the response cut off', async (t) => {
  for (const path of ['/api/reset-mid-body', '/api/reset-mid-chunked-body']) {
    const res = await request(`${stack.url}${path}`)
    t.equal(res.statusCode, 200, `${path}: the headers had come through`)
    await t.rejects(res.body.text(), `${path}: reading the body fails rather than ending early and cleanly`)
  }
  await assertStillServing(t)
})

/** broker_upstream_failures_total of the default profile for BrokerUpstreamUnreachable, from /metrics. */
async function unreachableCount (): Promise<number> {
  const text = await (await request(`${stack.url}/metrics`)).body.text()
  const line = /^broker_upstream_failures_total\{profile="default",code="BrokerUpstreamUnreachable"\} (\d+)$/m.exec(text)
  return Number(line?.[1] ?? 0)
}

t.test('a JSON page cut off before any of it reached the client is a 502', async (t) => {
  // The nextLink rewrite holds back a few bytes; when the API fails within them, nothing has
  // been sent yet and the client can be told plainly.
  const before = await unreachableCount()
  const res = await request(`${stack.url}/api/reset-early-chunked-body`)
  const id = res.headers['x-request-id']
  t.equal(res.statusCode, 502)
  const after = await unreachableCount()
  t.equal(after, before + 1, 'counted in broker_upstream_failures_total')
  t.strictSame(await res.body.json(), {
    error: {
      code: 'BrokerUpstreamUnreachable',
      message: `The Defender API at ${upstream.url} could not be reached: connection reset (UND_ERR_SOCKET). Check the network, proxy and upstream settings.`,
      target: id
    }
  })
  await assertStillServing(t)
})

t.test('a chunked body cut off upstream is not closed off cleanly to the client', async (t) => {
  // Were the broker to end its own chunked response normally, the client would take the
  // half of a JSON page it got for the whole.
  const response = await rawExchange(stack.url, `GET /api/reset-mid-chunked-body HTTP/1.1\r\nHost: ${new URL(stack.url).host}\r\n\r\n`)
  t.equal(response.status, 200)
  t.notOk(response.text.endsWith('\r\n0\r\n\r\n'), 'no terminating chunk')
  await assertStillServing(t)
})

t.test('upstream stalls mid-body past responseSeconds: the client sees the response cut off', async (t) => {
  const arrived = upstream.nextRequest()
  const res = await request(`${stack.url}/api/stall-mid-body`)
  t.equal(res.statusCode, 200)
  await t.rejects(res.body.arrayBuffer(), 'the body never completes')
  const { res: upstreamRes } = await arrived
  await closed(upstreamRes)
  t.notOk(upstreamRes.writableFinished, 'the upstream saw its request closed before its body was all sent')
  await assertStillServing(t)
})
