import { createHash } from 'node:crypto'
import { mkdtempSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { BROKER_TOKEN_LIFETIME_SECONDS, BrokerTokens, isBrokerTokenShaped, LOCAL_CLIENT } from '../../src/broker-tokens/broker-token.js'
import { createSigningKey, SIGNING_KEY_STATE_FILE } from '../../src/broker-tokens/signing-key.js'
import type { ClientConfig } from '../../src/config/types.js'
import { createTestClock } from '../helpers/clock.js'

const sha = (key: string): string => createHash('sha256').update(key).digest('hex')
const soar: ClientConfig = { name: 'soar', keySha256: sha('soar-key'), profiles: [], allow: [] }
const keyA = Buffer.alloc(32, 1)
const keyB = Buffer.alloc(32, 2)
const request = { issuer: 'http://broker/t/v2.0', audience: 'https://api.securitycenter.microsoft.com', client: 'soar', tenantId: 't', roles: ['Alert.Read.All'], profile: 'contoso' }

function tokens (options: { key?: Buffer, clients?: ClientConfig[], profiles?: string[], clock?: ReturnType<typeof createTestClock> } = {}) {
  return new BrokerTokens({
    key: () => options.key ?? keyA,
    clock: options.clock ?? createTestClock(),
    clients: options.clients ?? [soar],
    profiles: options.profiles ?? ['contoso']
  })
}

t.test('a token verifies at a broker with the same key and clients, with its claims', async (t) => {
  const clock = createTestClock(Date.UTC(2026, 0, 1))
  const { token, claims } = tokens({ clock }).issue(request)
  t.ok(isBrokerTokenShaped(token))
  const verified = tokens({ clock }).verify(token)
  t.same(verified, { ok: true, claims })
  t.match(claims, { iss: request.issuer, aud: request.audience, sub: 'soar', azp: 'soar', tid: 't', roles: ['Alert.Read.All'], broker_profile: 'contoso' })
  t.equal(claims.exp - claims.iat, BROKER_TOKEN_LIFETIME_SECONDS)
  t.equal(claims.iat, Date.UTC(2026, 0, 1) / 1000)
  t.notSame(tokens({ clock }).issue(request).claims.jti, claims.jti, 'each token has its own id')
})

t.test('a changed claim, header or signature does not verify', async (t) => {
  const { token } = tokens().issue(request)
  const [header, payload, signature] = token.split('.') as [string, string, string]
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as Record<string, unknown>
  const forged = Buffer.from(JSON.stringify({ ...claims, broker_profile: 'other', roles: ['Machine.Isolate'] })).toString('base64url')
  t.same(tokens({ profiles: ['contoso', 'other'] }).verify(`${header}.${forged}.${signature}`), { ok: false, reason: 'bad signature' })
  const noneHeader = Buffer.from(JSON.stringify({ alg: 'none', typ: 'JWT', kid: 'defender-token-broker' })).toString('base64url')
  t.same(tokens().verify(`${noneHeader}.${payload}.`), { ok: false, reason: 'not a broker token' })
  t.same(tokens().verify(`${header}.${payload}.${signature.slice(0, -2)}`), { ok: false, reason: 'bad signature' })
  t.same(tokens().verify(`${header}.${payload}`), { ok: false, reason: 'not a broker token' })
})

t.test('a token signed with another key does not verify', async (t) => {
  const { token } = tokens({ key: keyB }).issue(request)
  t.same(tokens({ key: keyA }).verify(token), { ok: false, reason: 'bad signature' })
})

t.test('a token expires after its lifetime', async (t) => {
  const clock = createTestClock()
  const { token } = tokens({ clock }).issue(request)
  clock.tick(BROKER_TOKEN_LIFETIME_SECONDS * 1000 - 1000)
  t.equal(tokens({ clock }).verify(token).ok, true)
  clock.tick(1000)
  t.same(tokens({ clock }).verify(token), { ok: false, reason: 'expired' })
})

t.test('a client removed, or its key rotated, invalidates its tokens', async (t) => {
  const clock = createTestClock()
  const { token } = tokens({ clock }).issue(request)
  const other: ClientConfig = { name: 'other', keySha256: sha('other-key'), profiles: [], allow: [] }
  t.same(tokens({ clock, clients: [other] }).verify(token), { ok: false, reason: 'client no longer configured' })
  t.same(tokens({ clock, clients: [{ ...soar, keySha256: sha('rotated') }] }).verify(token), { ok: false, reason: 'client key changed' })
  t.same(tokens({ clock, clients: [] }).verify(token), { ok: false, reason: 'client no longer configured' })
  t.same(tokens({ clock, profiles: ['fabrikam'] }).verify(token), { ok: false, reason: 'profile no longer configured' })
})

t.test('with no client keys, tokens name the local client, and stop verifying once keys are configured', async (t) => {
  const clock = createTestClock()
  const { token, claims } = tokens({ clock, clients: [] }).issue({ ...request, client: LOCAL_CLIENT })
  t.equal(claims.sub, LOCAL_CLIENT)
  t.equal(tokens({ clock, clients: [] }).verify(token).ok, true)
  t.same(tokens({ clock }).verify(token), { ok: false, reason: 'client no longer configured' })
  t.throws(() => tokens({ clock, clients: [] }).issue(request), TypeError, 'a client that is not configured gets none')
})

t.test('only the broker\'s own JWTs are taken for broker tokens', async (t) => {
  const entraLike = `${Buffer.from('{"alg":"RS256","typ":"JWT","kid":"x"}').toString('base64url')}.e30.sig`
  t.notOk(isBrokerTokenShaped(entraLike))
  t.notOk(isBrokerTokenShaped('a-client-key'))
  t.notOk(isBrokerTokenShaped('bm90.json.x'))
})

t.test('the signing key: made once in the state directory, or read from its file', async (t) => {
  const stateDir = mkdtempSync(join(tmpdir(), 'broker-key-'))
  const first = createSigningKey({ stateDir, brokerTokens: {} })()
  t.equal(first.length, 32)
  t.equal(statSync(join(stateDir, SIGNING_KEY_STATE_FILE)).mode & 0o777, 0o600)
  t.same(createSigningKey({ stateDir, brokerTokens: {} })(), first, 'a restart finds the same key')
  const file = join(stateDir, 'shared.key')
  writeFileSync(file, 'k'.repeat(48) + '\n', { mode: 0o600 })
  t.same(createSigningKey({ stateDir, brokerTokens: { signingKeyFile: file } })(), Buffer.from('k'.repeat(48)))
  writeFileSync(join(stateDir, 'short.key'), 'short', { mode: 0o600 })
  t.throws(() => createSigningKey({ stateDir, brokerTokens: { signingKeyFile: join(stateDir, 'short.key') } })(), { code: 'BrokerConfigInvalid' })
  writeFileSync(join(stateDir, 'open.key'), 'k'.repeat(48), { mode: 0o644 })
  t.throws(() => createSigningKey({ stateDir, brokerTokens: { signingKeyFile: join(stateDir, 'open.key') } })(), /readable by group or others/)
})
