import t from 'tap'
import { request } from 'undici'
import type { Config } from '../src/config/types.js'
import { createTestPki } from '../src/simulator/index.js'
import { startBrokerStack, type BrokerStack } from './helpers/broker.js'
import { clientFor } from './helpers/profiles.js'
import { abandonAtUpstream, startUpstream } from './helpers/upstream.js'

const SCENARIO = { timeout: 30_000 }
const KEY = 'request-log-client-key-0123456789'
const QUERY_CANARY = 'canary-in-a-filter-value'
const pki = await createTestPki()

const withClient = (config: Config): Config => ({
  ...config,
  clients: [clientFor('soar', KEY)]
})

async function get (stack: BrokerStack, path: string, key?: string) {
  const res = await request(`${stack.url}${path}`, { headers: key === undefined ? {} : { 'x-broker-key': key } })
  await res.body.dump()
  return { status: res.statusCode, id: res.headers['x-request-id'] as string, upstreamId: res.headers['request-id'] }
}

t.test('one line per request, with the documented fields and no query values', SCENARIO, async (t) => {
  const stack = await startBrokerStack(t, { simulator: { pki }, config: withClient })
  const forwarded = await get(stack, `/api/alerts?$filter=${encodeURIComponent(`title eq '${QUERY_CANARY}'`)}&$top=1`, KEY)
  const own = await get(stack, '/healthz')
  const refused = await get(stack, '/api/machines')
  const upstreamError = await get(stack, '/api/alerts/no-such-alert', KEY)
  t.same([forwarded.status, own.status, refused.status, upstreamError.status], [200, 200, 401, 404])

  const requestLines = stack.logs.lines.filter((line) => line.msg === 'request')
  const lineOf = (id: string) => {
    const lines = stack.logs.lines.filter((line) => line.reqId === id)
    t.equal(lines.length, 1, `exactly one line for request ${id}`)
    return lines[0] as Record<string, unknown>
  }
  const durationMs = (line: Record<string, unknown>) => {
    t.type(line.durationMs, 'number')
    t.ok((line.durationMs as number) >= 0)
    return line.durationMs
  }

  const line = lineOf(forwarded.id)
  t.same(line, {
    level: 30,
    time: line.time,
    reqId: forwarded.id,
    client: 'soar',
    profile: 'default',
    method: 'GET',
    path: '/api/alerts',
    status: 200,
    durationMs: durationMs(line),
    upstreamRequestId: forwarded.upstreamId,
    msg: 'request'
  }, 'a forwarded request: client, profile, method, path, status, duration, the API\'s request id')
  t.type(forwarded.upstreamId, 'string', 'the API gave a request id')

  const ownLine = lineOf(own.id)
  t.same(ownLine, { level: 30, time: ownLine.time, reqId: own.id, method: 'GET', path: '/healthz', status: 200, durationMs: durationMs(ownLine), msg: 'request' }, 'the broker\'s own endpoint')

  const refusedLine = lineOf(refused.id)
  t.same(refusedLine, {
    level: 30, time: refusedLine.time, reqId: refused.id, method: 'GET', path: '/api/machines', status: 401, durationMs: durationMs(refusedLine), code: 'BrokerUnauthenticated', msg: 'request'
  }, 'a refusal names the broker\'s error code')

  const errorLine = lineOf(upstreamError.id)
  t.match(errorLine, { client: 'soar', profile: 'default', status: 404, upstreamRequestId: upstreamError.upstreamId, msg: 'request' }, 'the API\'s own error is the API\'s status')
  t.notOk('code' in errorLine, 'and no broker code')

  t.equal(requestLines.length, 4, 'four requests, four lines')
  t.same(stack.logs.lines.filter((l) => /incoming request|request completed/.test(String(l.msg))), [], 'none of fastify\'s own request lines')
  t.notOk(stack.logs.text().includes(QUERY_CANARY), 'no query value in the log')
  t.notOk(stack.logs.text().includes(KEY), 'no client key in the log')
  t.notOk(stack.logs.lines.some((l) => 'req' in l || 'res' in l || 'headers' in l), 'no request or response objects, so no headers')
  t.same(stack.logs.lines.filter((l) => l.msg === 'audit'), [], 'reads are not audit events')
})

t.test('a request the client abandons still gets its one line', SCENARIO, async (t) => {
  const upstream = await startUpstream(t, () => {})
  const stack = await startBrokerStack(t, { simulator: { pki }, env: { BROKER_UPSTREAM: upstream.url } })
  t.equal(await abandonAtUpstream(upstream, `${stack.url}/api/alerts?$top=1`), 'aborted')

  const lines = stack.logs.lines.filter((line) => line.msg === 'request' && line.path === '/api/alerts')
  t.equal(lines.length, 1, 'one line')
  t.match(lines[0], { profile: 'default', method: 'GET', aborted: true, level: 30 })
  t.notOk('status' in (lines[0] ?? {}), 'no status: nothing was answered')
})

t.test('token events: acquired with the next refresh time, never the token', SCENARIO, async (t) => {
  const stack = await startBrokerStack(t, { simulator: { pki } })
  const acquired = stack.logs.lines.find((line) => line.msg === 'token acquired')
  const held = await stack.app.profiles[0]?.tokens.get()
  t.match(acquired, { level: 30, profile: 'default', expiresAt: new Date(held?.expiresAt ?? 0).toISOString(), nextRefreshAt: String, roles: Array })
  for (const token of stack.simulator.entra.issuedTokens) t.notOk(stack.logs.text().includes(token), 'no token in the log')
})
