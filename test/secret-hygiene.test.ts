import t, { type Test } from 'tap'
import { once } from 'node:events'
import { createPrivateKey, randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { getGlobalDispatcher } from 'undici'
import type { Dispatcher } from 'undici'
import { createTestPki } from '../src/simulator/index.js'
import type { TokenFailure } from '../src/tokens/token-error.js'
import { createTestClock, startBrokerStack, type BrokerStack, holderOf, nextFailure } from './helpers/broker.js'
import { clientFor } from './helpers/profiles.js'

const pki = await createTestPki()
/** A scenario that waits on an event that never comes fails here, not at the file's timeout. */
const SCENARIO = { timeout: 20_000 }

function canary (label: string): string {
  return `CANARY-${label}-${randomBytes(12).toString('hex')}`
}

/** Everything the client was sent: status, headers and bodies, as text. */
class Client {
  readonly received: string[] = []
  readonly #stack: BrokerStack

  constructor (stack: BrokerStack) {
    this.#stack = stack
  }

  async send (path: string, options: { method?: Dispatcher.HttpMethod, headers?: Record<string, string>, body?: string } = {}) {
    const res = await getGlobalDispatcher().request({
      origin: this.#stack.url,
      path,
      method: options.method ?? 'GET',
      headers: options.headers ?? {},
      body: options.body ?? null
    })
    const text = await res.body.text()
    this.received.push(`${res.statusCode} ${JSON.stringify(res.headers)}\n${text}`)
    return res.statusCode
  }

  /** The broker's own endpoints, which must hold no secret either. */
  async probe (): Promise<void> {
    for (const path of ['/healthz', '/readyz', '/status']) await this.send(path)
  }
}

/** Each token whole, and its signature alone: a truncated or re-encoded copy still shows that. */
function tokenCanaries (stack: BrokerStack): Record<string, string> {
  const out: Record<string, string> = {}
  stack.simulator.entra.issuedTokens.forEach((token, i) => {
    out[`token ${i}`] = token
    const signature = token.split('.')[2]
    if (signature !== undefined && signature.length >= 16) out[`signature of token ${i}`] = signature
  })
  return out
}

/** The base64 lines of a PEM key: any one of them in the open is a leak. */
function keyLines (label: string, pem: string): Record<string, string> {
  const out: Record<string, string> = {}
  pem.split('\n').filter((line) => /^[A-Za-z0-9+/=]{40,}$/.test(line)).forEach((line, i) => { out[`${label}, line ${i}`] = line })
  return out
}

interface Places {
  logs: string
  responses?: string
  upstream?: string
}

function assertNowhere (t: Test, canaries: Record<string, string>, places: Places): void {
  t.ok(Object.keys(canaries).length > 0, 'there are canaries to look for')
  t.ok(places.logs.length > 0, 'there are logs to look in')
  const leaks: string[] = []
  for (const [name, value] of Object.entries(canaries)) {
    for (const [where, text] of Object.entries(places)) {
      if (text !== undefined && text.includes(value)) leaks.push(`${name} leaked into the ${where}`)
    }
  }
  t.strictSame(leaks, [], `none of ${Object.keys(canaries).length} canaries in ${Object.keys(places).join(', ')}`)
}

function placesOf (stack: BrokerStack, client: Client, withUpstream: boolean): Places {
  return {
    logs: stack.logs.text(),
    responses: client.received.join('\n'),
    ...(withUpstream ? { upstream: JSON.stringify(stack.simulator.defender.requests) } : {})
  }
}

t.test('a day of successful requests, refreshes and upstream errors leaks nothing', SCENARIO, async (t) => {
  const clock = createTestClock()
  const secret = canary('SECRET')
  const inbound = canary('INBOUND')
  const brokerKey = canary('XKEY')
  const comment = canary('BODY')
  const stack = await startBrokerStack(t, {
    clock,
    simulator: { pki },
    env: { AZURE_CLIENT_SECRET: secret },
    beforeStart: (simulator) => simulator.entra.setSecret(simulator.clientId, secret)
  })
  const holder = holderOf(stack)
  const { entra, defender, sampleMachineId } = stack.simulator
  const client = new Client(stack)
  const headers = { authorization: `Bearer ${inbound}`, 'x-broker-key': brokerKey }

  t.equal(await client.send('/api/alerts?$top=2', { headers }), 200)
  t.equal(await client.send(`/api/machines/${sampleMachineId}/isolate`, {
    method: 'POST',
    headers: { ...headers, 'content-type': 'application/json' },
    body: JSON.stringify({ Comment: comment, IsolationType: 'Full' })
  }), 201)
  defender.forceNext(500)
  t.equal(await client.send('/api/alerts', { headers }), 500, 'an upstream 500 is passed back')
  defender.forceNext(401)
  defender.forceNext(401)
  t.equal(await client.send('/api/machines', { headers }), 401, 'an upstream 401 after the one replay with a fresh token is passed back')
  defender.forceNext(400, { body: { error: { code: 'BadRequest', message: 'Forced.' } } })
  t.equal(await client.send('/api/alerts', { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify({ Comment: comment }) }), 400)

  const { refreshAt } = holder.status()
  if (refreshAt === undefined) throw new TypeError('no token held')
  const refreshed = once(holder, 'acquired')
  clock.tick(refreshAt - clock.now())
  await refreshed
  t.equal(await client.send('/api/alerts?$top=1', { headers }), 200)
  await client.probe()

  t.ok(entra.issuedTokens.length >= 2, 'two tokens were issued')
  const sent = defender.requests.map((r) => r.headers.authorization)
  t.ok(sent.every((value) => value !== undefined && entra.issuedTokens.some((token) => value === `Bearer ${token}`)),
    'the API only ever saw the broker\'s tokens in Authorization')
  t.ok(defender.requests.every((r) => r.headers['x-broker-key'] === undefined), 'no X-Broker-Key went upstream')
  assertNowhere(t, { secret, 'the inbound Authorization': inbound, 'the inbound X-Broker-Key': brokerKey }, placesOf(stack, client, true))
  assertNowhere(t, tokenCanaries(stack), placesOf(stack, client, false))
  // The API echoes the comment in the machine action it returns: only the logs are looked at.
  assertNowhere(t, { 'a request body': comment }, { logs: stack.logs.text() })
})

t.test('failed token calls (wrong secret, garbage, timeout) leak nothing', SCENARIO, async (t) => {
  const clock = createTestClock()
  const secret = canary('SECRET')
  const stack = await startBrokerStack(t, {
    clock,
    ready: false,
    simulator: { pki },
    env: { AZURE_CLIENT_SECRET: secret }
  })
  const holder = holderOf(stack)
  const { entra, clientId } = stack.simulator
  const client = new Client(stack)

  const [wrong, firstRetry] = await nextFailure(holder)
  t.equal(wrong.code, 'AADSTS7000215', 'the secret Entra ID holds is another')
  t.equal(await client.send('/api/alerts'), 503)
  await client.probe()

  entra.setSecret(clientId, secret)
  const acquired = once(holder, 'acquired')
  clock.tick(firstRetry - clock.now())
  const [token] = await acquired

  entra.setMode('garbage')
  let failed = once(holder, 'failed')
  clock.tick(token.refreshAt - clock.now())
  const [garbage, retryAt] = await failed as [TokenFailure, number]
  t.equal(garbage.code, 'invalid_response')
  t.equal(await client.send('/api/alerts?$top=1'), 200)

  entra.setMode('hang')
  const hanging = once(entra, 'token-request')
  failed = once(holder, 'failed')
  clock.tick(retryAt - clock.now())
  await hanging
  clock.tick(10_000)
  t.equal((await failed)[0].code, 'BrokerTokenTimeout')
  t.equal(await client.send('/api/alerts?$top=1'), 200)
  await client.probe()

  t.ok(stack.logs.lines.filter((line) => line.msg === 'token request failed').length >= 3, 'three failures were logged')
  assertNowhere(t, { secret, ...tokenCanaries(stack) }, placesOf(stack, client, false))
  assertNowhere(t, { secret }, placesOf(stack, client, true))
})

t.test('an unreachable upstream leaks nothing', SCENARIO, async (t) => {
  const closed = createServer()
  closed.listen(0, '127.0.0.1')
  await once(closed, 'listening')
  const { port } = closed.address() as AddressInfo
  closed.close()
  await once(closed, 'close')

  const secret = canary('SECRET')
  const stack = await startBrokerStack(t, {
    simulator: { pki },
    env: { AZURE_CLIENT_SECRET: secret, BROKER_UPSTREAM: `http://127.0.0.1:${port}` },
    beforeStart: (simulator) => simulator.entra.setSecret(simulator.clientId, secret)
  })
  const client = new Client(stack)
  t.equal(await client.send('/api/alerts', { headers: { authorization: `Bearer ${canary('INBOUND')}` } }), 502)
  await client.probe()
  assertNowhere(t, { secret, ...tokenCanaries(stack) }, placesOf(stack, client, false))
})

t.test('the certificate\'s private key and its password leak nothing', SCENARIO, async (t) => {
  const clock = createTestClock()
  const password = canary('PASSWORD')
  const [held, other] = await Promise.all([
    pki.issueClientCertificate('defender-token-broker hygiene', { password }),
    pki.issueClientCertificate('defender-token-broker other')
  ])
  const file = join(t.testdir(), 'client.pem')
  writeFileSync(file, held.pem, { mode: 0o600 })
  const stack = await startBrokerStack(t, {
    clock,
    simulator: { pki },
    env: { AZURE_CLIENT_SECRET: undefined, AZURE_CLIENT_CERTIFICATE_PATH: file, AZURE_CLIENT_CERTIFICATE_PASSWORD: password },
    beforeStart: (simulator) => simulator.entra.setCertificate(simulator.clientId, held.certPem)
  })
  const holder = holderOf(stack)
  const client = new Client(stack)
  t.equal(await client.send('/api/alerts?$top=1'), 200)

  stack.simulator.entra.setCertificate(stack.simulator.clientId, other.certPem)
  const failed = once(holder, 'failed')
  stack.simulator.defender.forceNext(401)
  t.equal(await client.send('/api/alerts?$top=1'), 503, 'the API refused the token and no new one came')
  t.equal((await failed)[0].code, 'AADSTS700027', 'a certificate Entra ID no longer holds')
  await client.probe()

  const decrypted = createPrivateKey({ key: held.keyPem, passphrase: password }).export({ type: 'pkcs8', format: 'pem' }).toString()
  const canaries = { password, ...keyLines('the encrypted key', held.keyPem), ...keyLines('the key', decrypted) }
  t.ok(Object.keys(canaries).length > 10, 'the key lines are canaries')
  assertNowhere(t, canaries, placesOf(stack, client, true))
  assertNowhere(t, tokenCanaries(stack), placesOf(stack, client, false))
})

t.test('client keys, right or wrong, are never forwarded or logged', SCENARIO, async (t) => {
  const key = canary('KEY')
  const wrongKey = canary('WRONGKEY')
  const stack = await startBrokerStack(t, {
    simulator: { pki },
    config: (config) => ({
      ...config,
      clients: [clientFor('soar', key)]
    })
  })
  const client = new Client(stack)
  t.equal(await client.send('/api/alerts?$top=1', { headers: { authorization: `Bearer ${key}` } }), 200)
  t.equal(await client.send('/api/alerts?$top=1', { headers: { 'x-broker-key': key } }), 200)
  t.equal(await client.send('/api/alerts?$top=1', { headers: { authorization: `Bearer ${wrongKey}` } }), 401)
  t.equal(await client.send('/api/alerts?$top=1', { headers: { 'x-broker-key': wrongKey } }), 401)
  t.ok(stack.logs.lines.some((line) => line.client === 'soar'), 'the client is logged by name')
  assertNowhere(t, { key, wrongKey }, placesOf(stack, client, true))
  assertNowhere(t, tokenCanaries(stack), placesOf(stack, client, false))
})
