import { createHash } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { request } from 'undici'
import { startBrokerStack, ALL_ROLES } from './helpers/broker.js'
import { cliEnv, runCli } from './helpers/spawn.js'
import { startUpstream } from './helpers/upstream.js'

// `defender-token-broker keygen NAME`, run as users run it (the built entry point): a key nobody
// hand-rolled, and config lines that the broker loads and then accepts the key with.

const home = t.testdir({})
const BASE64URL_32_BYTES = /^[A-Za-z0-9_-]{43}$/

interface Generated {
  key: string
  keySha256: string
  configLines: string
  stdout: string
}

async function keygen (name: string): Promise<Generated> {
  const exit = await runCli(t, ['keygen', name], { env: cliEnv(home) })
  t.equal(exit.code, 0, `keygen ${name}: exit 0`)
  t.equal(exit.stderr, '', `keygen ${name}: nothing on stderr`)
  const key = /^ {2}(\S+)$/m.exec(exit.stdout)?.[1] ?? ''
  const keySha256 = /^ {4}keySha256: (\S+)$/m.exec(exit.stdout)?.[1] ?? ''
  const configLines = /^clients:\n(?: {2,}.*\n)+/m.exec(exit.stdout)?.[0] ?? ''
  return { key, keySha256, configLines, stdout: exit.stdout }
}

const soar = await keygen('soar')

t.test('the key: 32 random bytes, base64url; the digest printed is its SHA-256', async (t) => {
  t.match(soar.key, BASE64URL_32_BYTES, '43 base64url characters')
  const bytes = Buffer.from(soar.key, 'base64url')
  t.equal(bytes.length, 32, '32 bytes')
  t.equal(bytes.toString('base64url'), soar.key, 'canonical base64url, no padding')
  t.equal(soar.keySha256, createHash('sha256').update(soar.key).digest('hex'), 'keySha256 is the SHA-256 of the key as sent')
  t.match(soar.stdout, /"Authorization: Bearer <key>" or "X-Broker-Key: <key>"/, 'says how a tool sends it')
  t.match(soar.configLines, /^clients:\n {2}- name: soar\n {4}keySha256: [0-9a-f]{64}\n/, 'config lines for the client')
})

t.test('--json, and the default name; a new key every time', async (t) => {
  const exit = await runCli(t, ['keygen', '--json'], { env: cliEnv(home) })
  t.equal(exit.code, 0)
  const printed = JSON.parse(exit.stdout) as { name: string, key: string, keySha256: string }
  t.equal(printed.name, 'my-tool')
  t.match(printed.key, BASE64URL_32_BYTES)
  t.equal(printed.keySha256, createHash('sha256').update(printed.key).digest('hex'))
  t.not(printed.key, soar.key, 'not the key of the other run')
})

t.test('a name that would not be a valid client name: exit 2, no key printed', async (t) => {
  const exit = await runCli(t, ['keygen', 'Bad_Name'], { env: cliEnv(home) })
  t.equal(exit.code, 2)
  t.equal(exit.stdout, '', 'nothing on stdout')
  t.match(exit.stderr, /the client name "Bad_Name" must be lower-case letters, digits and dashes/)
})

t.test('the printed lines, pasted into a config file, load; the broker then takes the key and nothing else', async (t) => {
  const upstream = await startUpstream(t)
  const file = join(t.testdir({}), 'broker.yaml')
  writeFileSync(file, soar.configLines)
  const stack = await startBrokerStack(t, { simulator: { roles: ALL_ROLES }, env: { BROKER_UPSTREAM: upstream.url, BROKER_CONFIG: file } })
  t.same(stack.config.clients.map((client) => ({ name: client.name, keySha256: client.keySha256 })), [{ name: 'soar', keySha256: soar.keySha256 }])

  for (const headers of [{ authorization: `Bearer ${soar.key}` }, { 'x-broker-key': soar.key }]) {
    const res = await request(`${stack.url}/api/alerts`, { headers })
    await res.body.dump()
    t.equal(res.statusCode, 200, `${Object.keys(headers)[0]}: accepted`)
  }
  const refused = await request(`${stack.url}/api/alerts`, { headers: { authorization: `Bearer ${soar.keySha256}` } })
  await refused.body.dump()
  t.equal(refused.statusCode, 401, 'the digest is not a key')
  t.notOk(stack.logs.text().includes(soar.key), 'the key is in no log line')
})

t.test('the commented lines, once uncommented, load too', async (t) => {
  const upstream = await startUpstream(t)
  const file = join(t.testdir({}), 'broker.yaml')
  writeFileSync(file, soar.configLines.replace(/# (profiles|allow):/g, '$1:'))
  const stack = await startBrokerStack(t, { simulator: { roles: ALL_ROLES }, env: { BROKER_UPSTREAM: upstream.url, BROKER_CONFIG: file } })
  t.same(stack.config.clients[0]?.profiles, ['default'])
  t.same(stack.config.clients[0]?.allow, ['GET /api/**'])
  const headers = { 'x-broker-key': soar.key }
  const read = await request(`${stack.url}/api/alerts`, { headers })
  await read.body.dump()
  t.equal(read.statusCode, 200, 'a read is allowed')
  const write = await request(`${stack.url}/api/machines/x/isolate`, { method: 'POST', headers, body: '{}' })
  await write.body.dump()
  t.equal(write.statusCode, 403, 'a write is not')
})
