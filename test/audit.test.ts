import fs, { readFileSync, statSync, writeFileSync } from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import t from 'tap'
import { request } from 'undici'
import { systemClock } from '../src/common/clock.js'
import { loadConfig } from '../src/config/load.js'
import type { Config } from '../src/config/types.js'
import { BrokerConfigInvalid } from '../src/common/errors.js'
import { ACTION_BODY_LIMIT, createAuditLog, machineActionIdOf } from '../src/observability/audit.js'
import { createLogger } from '../src/observability/logger.js'
import { createTestPki } from '../src/simulator/index.js'
import { createLogSink, startBrokerStack, type BrokerStack } from './helpers/broker.js'
import { clientFor } from './helpers/profiles.js'
import { abandonAtUpstream, readBody, startUpstream } from './helpers/upstream.js'

const SCENARIO = { timeout: 30_000 }
const pki = await createTestPki()
const KEY = 'audit-test-client-key-0123456789'
const ISOLATE_BODY = JSON.stringify({ Comment: 'audit test', IsolationType: 'Selective' })

const withClient = (config: Config): Config => ({
  ...config,
  clients: [clientFor('soar', KEY, { allow: ['GET /api/**', 'POST /api/machines/*/isolate'] })]
})

const withAuditFile = (file: string) => (config: Config): Config => ({ ...config, audit: { file } })

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
}

async function send (stack: BrokerStack, method: string, path: string, options: { key?: string, body?: string } = {}): Promise<Answer> {
  const headers: Record<string, string> = {}
  if (options.key !== undefined) headers.authorization = `Bearer ${options.key}`
  if (options.body !== undefined) headers['content-type'] = 'application/json'
  const res = await request(`${stack.url}${path}`, { method: method as 'GET', headers, body: options.body })
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() }
}

const auditLines = (stack: BrokerStack) => stack.logs.lines.filter((line) => line.msg === 'audit')

t.test('a request that changes state is an audit line of the main log; a read is not', SCENARIO, async (t) => {
  const stack = await startBrokerStack(t, { simulator: { pki } })
  const machine = stack.simulator.sampleMachineId
  const isolate = await send(stack, 'POST', `/api/machines/${machine}/isolate?comment=q-value-not-logged`, { body: ISOLATE_BODY })
  t.equal(isolate.status, 201, 'the isolation went through')
  const read = await send(stack, 'GET', '/api/alerts')
  t.equal(read.status, 200)

  const action = stack.simulator.defender.machineActions[0]
  t.ok(action, 'the API made a machine action')
  const lines = auditLines(stack)
  t.equal(lines.length, 1, 'one audit line: the POST, not the GET')
  t.same(lines[0], {
    level: 30,
    time: lines[0]?.time,
    reqId: isolate.headers['x-request-id'],
    profile: 'default',
    method: 'POST',
    target: `/api/machines/${machine}/isolate`,
    status: 201,
    upstreamStatus: 201,
    upstreamRequestId: isolate.headers['request-id'],
    machineActionId: action?.id,
    msg: 'audit'
  }, 'client (none: no keys configured), profile, method, target without the query, statuses, ids')
  t.equal(JSON.parse(isolate.text).id, action?.id, 'the client got the same machine action, body untouched')
  t.notOk(stack.logs.text().includes('q-value-not-logged'), 'no query value in any log line')
  t.equal(stack.logs.lines.filter((line) => line.msg === 'request').length, 2, 'and each request has its request line')
})

t.test('requests the broker refuses are audited with its code when they would change state', SCENARIO, async (t) => {
  const stack = await startBrokerStack(t, {
    simulator: { pki },
    config: (config) => {
      const clients = withClient(config)
      return { ...clients, profiles: clients.profiles.map((profile) => ({ ...profile, rateLimit: { ...profile.rateLimit, perMinute: 1, maxQueueSeconds: 0 } })) }
    }
  })
  const machine = stack.simulator.sampleMachineId
  const noKey = await send(stack, 'POST', `/api/machines/${machine}/isolate`, { body: ISOLATE_BODY })
  const ruleMiss = await send(stack, 'POST', `/api/machines/${machine}/unisolate`, { key: KEY, body: ISOLATE_BODY })
  const allowed = await send(stack, 'POST', `/api/machines/${machine}/isolate`, { key: KEY, body: ISOLATE_BODY })
  const overBudget = await send(stack, 'POST', `/api/machines/${machine}/isolate`, { key: KEY, body: ISOLATE_BODY })
  const readNoKey = await send(stack, 'GET', '/api/alerts')
  t.same([noKey.status, ruleMiss.status, allowed.status, overBudget.status, readNoKey.status], [401, 403, 201, 429, 401])

  const lines = auditLines(stack).map(({ level, time, msg, ...event }) => event)
  t.same(lines, [
    { reqId: noKey.headers['x-request-id'], method: 'POST', target: `/api/machines/${machine}/isolate`, status: 401, code: 'BrokerUnauthenticated' },
    { reqId: ruleMiss.headers['x-request-id'], client: 'soar', profile: 'default', method: 'POST', target: `/api/machines/${machine}/unisolate`, status: 403, code: 'BrokerForbidden' },
    {
      reqId: allowed.headers['x-request-id'],
      client: 'soar',
      profile: 'default',
      method: 'POST',
      target: `/api/machines/${machine}/isolate`,
      status: 201,
      upstreamStatus: 201,
      upstreamRequestId: allowed.headers['request-id'],
      machineActionId: stack.simulator.defender.machineActions[0]?.id
    },
    { reqId: overBudget.headers['x-request-id'], client: 'soar', profile: 'default', method: 'POST', target: `/api/machines/${machine}/isolate`, status: 429, code: 'BrokerRateLimited' }
  ], 'one line each, in order; the GET refused for want of a key is not an audit event')
  t.equal(stack.simulator.defender.machineActions.length, 1, 'only the allowed one reached the API')
  t.notOk(stack.logs.text().includes(KEY), 'the client key is in no line')
})

t.test('a hunting query is a POST that changes nothing: not an audit event; isolation is, and so is an unknown POST', SCENARIO, async (t) => {
  const stack = await startBrokerStack(t, { simulator: { pki } })
  const machine = stack.simulator.sampleMachineId
  const hunt = await send(stack, 'POST', '/api/advancedqueries/run', { body: JSON.stringify({ Query: 'DeviceInfo | take 1' }) })
  t.equal(hunt.status, 200, 'the query ran')
  const spelled = await send(stack, 'POST', '/api/v1.0/AdvancedQueries/Run', { body: JSON.stringify({ Query: 'DeviceInfo | take 1' }) })
  t.equal(spelled.status, 200, 'another spelling of it, which the API routes too')
  const isolate = await send(stack, 'POST', `/api/machines/${machine}/isolate`, { body: ISOLATE_BODY })
  t.equal(isolate.status, 201)
  const unknown = await send(stack, 'POST', '/api/somethingNew/run', { body: '{}' })
  t.equal(unknown.status, 404, 'forwarded: the API decides')

  t.same(auditLines(stack).map((line) => [line.method, line.target, line.status]), [
    ['POST', `/api/machines/${machine}/isolate`, 201],
    ['POST', '/api/somethingNew/run', 404]
  ], 'isolation, and the POST the table does not know (it may change something); neither hunting query')
  t.equal(stack.logs.lines.filter((line) => line.msg === 'request' && line.method === 'POST').length, 4, 'each request still has its request line')
})

t.test('the upstream path decides, behind a profile prefix and when the broker refuses', SCENARIO, async (t) => {
  const stack = await startBrokerStack(t, {
    simulator: { pki },
    config: (config) => withClient({ ...config, profiles: config.profiles.map((profile) => ({ ...profile, basePath: '/contoso' })) })
  })
  const hunt = JSON.stringify({ Query: 'DeviceInfo | take 1' })
  const ruleMiss = await send(stack, 'POST', '/contoso/api/advancedqueries/run', { key: KEY, body: hunt })
  const noKey = await send(stack, 'POST', '/api/advancedqueries/run', { body: hunt })
  const isolateMiss = await send(stack, 'POST', '/contoso/api/machines/m1/unisolate', { key: KEY, body: ISOLATE_BODY })
  t.same([ruleMiss.status, noKey.status, isolateMiss.status], [403, 401, 403])
  t.same(auditLines(stack).map((line) => [line.target, line.code]), [
    ['/contoso/api/machines/m1/unisolate', 'BrokerForbidden']
  ], 'a refused hunting query is a refused read, not an audit event; a refused release from isolation is one')
})

t.test('audit.file: JSON lines appended, mode 0600, each written and fsync\'d before the response ends', SCENARIO, async (t) => {
  const dir = t.testdir({})
  const file = join(dir, 'audit.jsonl')
  const calls: Array<[string, number]> = []
  const { writeSync, fsyncSync } = fs
  fs.writeSync = ((fd: number, ...rest: unknown[]) => {
    if (Buffer.isBuffer(rest[0]) && rest[0].includes('"reqId"')) calls.push(['write', fd])
    return (writeSync as (...args: unknown[]) => number)(fd, ...rest)
  }) as typeof fs.writeSync
  fs.fsyncSync = (fd) => {
    calls.push(['fsync', fd])
    fsyncSync(fd)
  }
  syncBuiltinESMExports()
  t.teardown(() => {
    fs.writeSync = writeSync
    fs.fsyncSync = fsyncSync
    syncBuiltinESMExports()
  })

  const stack = await startBrokerStack(t, { simulator: { pki }, config: withAuditFile(file) })
  const machine = stack.simulator.sampleMachineId
  const first = await send(stack, 'POST', `/api/machines/${machine}/isolate`, { body: ISOLATE_BODY })
  const afterFirst = readFileSync(file, 'utf8')
  t.equal(first.status, 201)
  t.equal(statSync(file).mode & 0o777, 0o600, 'created with mode 0600')
  const lines = afterFirst.split('\n')
  t.equal(lines.length, 2, 'one line, ended by a line break, on disk as soon as the response is read')
  const event = JSON.parse(lines[0] as string)
  t.match(event.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'an ISO time')
  t.same(event, {
    time: event.time,
    reqId: first.headers['x-request-id'],
    profile: 'default',
    method: 'POST',
    target: `/api/machines/${machine}/isolate`,
    status: 201,
    upstreamStatus: 201,
    upstreamRequestId: first.headers['request-id'],
    machineActionId: stack.simulator.defender.machineActions[0]?.id
  })
  t.equal(auditLines(stack).length, 0, 'not in the main log as well')

  await send(stack, 'DELETE', '/api/indicators/42')
  const fd = calls.find(([call]) => call === 'write')?.[1]
  t.same(calls.filter(([, other]) => other === fd).map(([call]) => call), ['write', 'fsync', 'write', 'fsync'], 'each line is fsync\'d after its write')
  await stack.app.close()

  const again = await startBrokerStack(t, { simulator: { pki }, config: withAuditFile(file) })
  await send(again, 'PATCH', '/api/alerts/da637')
  const all = readFileSync(file, 'utf8').trim().split('\n').map((line) => JSON.parse(line))
  t.same(all.map((line) => [line.method, line.target]), [
    ['POST', `/api/machines/${machine}/isolate`], ['DELETE', '/api/indicators/42'], ['PATCH', '/api/alerts/da637']
  ], 'a restart appends: nothing is truncated')
})

t.test('audit.file is checked at load and at open', async (t) => {
  const dir = t.testdir({ 'not-a-dir': 'x', sub: {} })
  const env = { AZURE_TENANT_ID: '00000000-0000-4000-8000-000000000001', AZURE_CLIENT_ID: '11111111-1111-4000-8000-000000000002', AZURE_CLIENT_SECRET: 'x' }
  const load = (auditFile: string) => {
    writeFileSync(join(dir, 'broker.yaml'), `audit: { file: ${JSON.stringify(auditFile)} }\n`)
    return loadConfig({ argvConfigPath: join(dir, 'broker.yaml'), env })
  }
  t.equal(load('audit.jsonl').audit.file, join(dir, 'audit.jsonl'), 'a relative path is relative to the config file')
  t.same(loadConfig({ env }).audit, {}, 'absent: the main log')
  t.throws(() => load('missing/audit.jsonl'), { code: 'BrokerConfigInvalid', message: `audit.file: the directory ${join(dir, 'missing')} does not exist: create it, or mount a writable volume there` })
  t.throws(() => load('not-a-dir/audit.jsonl'), { message: `audit.file: ${join(dir, 'not-a-dir')} is not a directory: give the path of a file in a writable directory` })
  t.throws(() => load('sub'), { message: `audit.file: ${join(dir, 'sub')} is not a regular file: give the path of a file (unset audit.file to send audit events to stdout)` })
  t.throws(() => load(''), { code: 'BrokerConfigInvalid' }, 'an empty path is refused by the schema')

  const logger = createLogger({ level: 'info', destination: createLogSink().stream })
  t.throws(() => createAuditLog({ file: join(dir, 'sub'), logger, clock: systemClock }), BrokerConfigInvalid, 'a directory cannot be opened for appending')
})

t.test('an aborted request that changes state is still audited', SCENARIO, async (t) => {
  const upstream = await startUpstream(t, () => {})
  const stack = await startBrokerStack(t, { simulator: { pki }, env: { BROKER_UPSTREAM: upstream.url } })
  t.equal(await abandonAtUpstream(upstream, `${stack.url}/api/machines/m1/isolate`, { method: 'POST', body: ISOLATE_BODY }), 'aborted')

  const reqLines = stack.logs.lines.filter((line) => line.msg === 'request' && line.method === 'POST')
  t.equal(reqLines.length, 1, 'one request line')
  t.equal(reqLines[0]?.aborted, true, 'marked aborted')
  t.equal(reqLines[0]?.status, undefined, 'no status: nothing was answered')
  t.same(auditLines(stack).map(({ level, time, msg, reqId, ...event }) => event), [
    { profile: 'default', method: 'POST', target: '/api/machines/m1/isolate', aborted: true }
  ], 'an audit line: the API may have acted')
})

t.test('the machine action id is read from compressed and chunked answers, never from big ones', SCENARIO, async (t) => {
  const action = { '@odata.context': 'https://api.securitycenter.microsoft.com/api/$metadata#MachineActions/$entity', id: 'b2b3c4d5-0000-4000-8000-000000000001', type: 'Isolate', machineId: 'm1' }
  const big = { ...action, id: 'not-read', padding: 'x'.repeat(ACTION_BODY_LIMIT) }
  const upstream = await startUpstream(t, (req, res) => {
    readBody(req).then(() => {
      const json = { 'content-type': 'application/json; odata.metadata=minimal' }
      if (req.url?.startsWith('/gzip')) {
        const bytes = gzipSync(JSON.stringify(action))
        res.writeHead(201, { ...json, 'content-encoding': 'gzip', 'content-length': bytes.length, 'request-id': 'up-gzip' })
        res.end(bytes)
      } else if (req.url?.startsWith('/chunked')) {
        res.writeHead(201, { ...json, 'request-id': 'up-chunked' })
        const text = JSON.stringify(action)
        res.write(text.slice(0, 10))
        res.end(text.slice(10))
      } else if (req.url?.startsWith('/big')) {
        res.writeHead(201, { ...json, 'request-id': 'up-big' })
        res.end(JSON.stringify(big))
      } else {
        res.writeHead(400, { ...json, 'request-id': 'up-error' })
        res.end(JSON.stringify({ error: { code: 'BadRequest', message: 'no', target: 'x' }, id: 'not-an-action' }))
      }
    }, () => res.destroy())
  })
  const stack = await startBrokerStack(t, { simulator: { pki }, env: { BROKER_UPSTREAM: upstream.url } })
  const gzip = await request(`${stack.url}/gzip/isolate`, { method: 'POST', body: '{}' })
  t.same(gzipSync(JSON.stringify(action)).length, Number(gzip.headers['content-length']), 'the compressed body goes out as it came')
  await gzip.body.arrayBuffer()
  const chunked = await request(`${stack.url}/chunked/isolate`, { method: 'POST', body: '{}' })
  t.same(await chunked.body.json(), action, 'the chunked body arrives whole')
  const bigAnswer = await request(`${stack.url}/big/isolate`, { method: 'POST', body: '{}' })
  t.equal((await bigAnswer.body.text()).length, JSON.stringify(big).length, 'the big body arrives whole')
  const failed = await request(`${stack.url}/error/isolate`, { method: 'POST', body: '{}' })
  await failed.body.dump()

  t.same(auditLines(stack).map((line) => [line.upstreamRequestId, line.machineActionId]), [
    ['up-gzip', action.id], ['up-chunked', action.id], ['up-big', undefined], ['up-error', undefined]
  ])
})

t.test('machineActionIdOf: only a MachineAction\'s id', async (t) => {
  const of = (value: unknown) => machineActionIdOf(Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)))
  t.equal(of({ '@odata.context': 'https://x/api/$metadata#MachineActions/$entity', id: 'a1' }), 'a1')
  t.equal(of({ id: 'a2', machineId: 'm', type: 'RunAntiVirusScan', status: 'Pending' }), 'a2', 'no @odata.context: a machineId and a type')
  t.equal(of({ '@odata.context': 'https://x/api/$metadata#Indicators/$entity', id: '995' }), undefined, 'an indicator is not a machine action')
  t.equal(of([{ id: 'a3', machineId: 'm', type: 't' }]), undefined, 'a list')
  t.equal(of({ id: 'a b\n{"forged":1}', machineId: 'm', type: 't' }), undefined, 'an id with odd characters')
  t.equal(of({ id: 42, machineId: 'm', type: 't' }), undefined, 'a number')
  t.equal(of('{"id":'), undefined, 'broken JSON')
})
