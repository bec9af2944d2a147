import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { inspect } from 'node:util'
import t from 'tap'
import { stringify } from 'yaml'
import { loadConfig, type LoadConfigOptions } from '../src/config/load.js'

/*
 * No error the configuration raises may carry a secret: not in its message, not in any
 * property a logger could serialise. Each scenario plants canaries where a secret could go
 * wrong and checks every rendering of the error.
 */

const TENANT = '00000000-0000-0000-0000-000000000000'
const CLIENT = '11111111-1111-1111-1111-111111111111'
// shaped like a real Entra client secret: 40 characters with "~" and "."
const CANARY = 'Qk8Q~canary.Secret_vAlue-0123456789abcd'
const NUMBER_CANARY = 7373737373737

function renderings (err: unknown): string {
  const error = err as Error
  return [error.message, String(error), error.stack ?? '', inspect(error, { depth: null }), JSON.stringify(error)].join('\n')
}

function assertNoCanary (t: { ok: (value: unknown, message: string) => void, notMatch: (found: string, pattern: string, message: string) => void }, options: LoadConfigOptions, scenario: string): void {
  let thrown: unknown
  try {
    loadConfig(options)
  } catch (err) {
    thrown = err
  }
  t.ok(thrown instanceof Error && (thrown as { code?: string }).code === 'BrokerConfigInvalid', `${scenario}: fails with BrokerConfigInvalid`)
  const text = renderings(thrown)
  t.notMatch(text, CANARY, `${scenario}: no string canary`)
  t.notMatch(text, String(NUMBER_CANARY), `${scenario}: no number canary`)
}

function profile (credential: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { profiles: [{ name: 'a', basePath: '/', tenantId: TENANT, clientId: CLIENT, credential, ...extra }] }
}

t.test('secrets of the wrong type or in the wrong place in a config file', async t => {
  const dir = t.testdir()
  const cases: Record<string, Record<string, unknown>> = {
    'secret as a number': profile({ type: 'secret', secret: NUMBER_CANARY }),
    'secret as an object': profile({ type: 'secret', secret: { value: CANARY, n: NUMBER_CANARY } }),
    'secret as a list': profile({ type: 'secret', secret: [CANARY, NUMBER_CANARY] }),
    'secret as a boolean next to a canary key': profile({ type: 'secret', secret: true, [CANARY]: NUMBER_CANARY }),
    'secretFile as an object': profile({ type: 'secret', secretFile: { path: CANARY } }),
    'secret and secretFile both set': profile({ type: 'secret', secret: CANARY, secretFile: '/nonexistent' }),
    'secret in an unknown credential type': profile({ type: 'password', password: CANARY }),
    'secret with no credential type': profile({ secret: CANARY }),
    'secret as the credential': profile(CANARY),
    'empty secret': profile({ type: 'secret', secret: '' }, { upstream: CANARY }),
    'password as a number': profile({ type: 'certificate', certificateFile: '/x.pem', password: NUMBER_CANARY }),
    'password as an object': profile({ type: 'certificate', certificateFile: '/x.pem', password: { CANARY } }),
    'secret pasted as a key': { [CANARY]: 'x', listen: { port: NUMBER_CANARY } },
    'secret pasted as a tenant id': profile({ type: 'managedIdentity' }, { tenantId: CANARY, clientId: NUMBER_CANARY }),
    'secret pasted as a key digest': { ...profile({ type: 'managedIdentity' }), clients: [{ name: 'c', keySha256: CANARY }] },
    'secret pasted as a key digest number': { ...profile({ type: 'managedIdentity' }), clients: [{ name: 'c', keySha256: NUMBER_CANARY }] },
    'credentials in the upstream': profile({ type: 'managedIdentity' }, { upstream: `https://user:${CANARY}@api.securitycenter.microsoft.com` }),
    'secret as an http upstream host': profile({ type: 'managedIdentity' }, { upstream: `http://${CANARY.replace(/[~_]/g, '')}.example` }),
    'secret as the authority host': profile({ type: 'managedIdentity' }, { authorityHost: CANARY }),
    'secret in a rule': profile({ type: 'managedIdentity' }, { allow: [`GET /${CANARY}*`] }),
    'secret as a log level': { logLevel: CANARY },
    'secret as a port': { listen: { port: CANARY } }
  }
  for (const [scenario, settings] of Object.entries(cases)) {
    for (const [extension, text] of [['.yaml', stringify(settings)], ['.json', JSON.stringify(settings)]]) {
      const file = join(dir, `config${extension}`)
      writeFileSync(file, text as string)
      assertNoCanary(t, { argvConfigPath: file, env: {} }, `${scenario} (${extension})`)
    }
  }
})

t.test('secrets in files that do not parse', async t => {
  const dir = t.testdir({
    'unterminated.yaml': `profiles:\n  - credential: { type: secret, secret: "${CANARY}\n`,
    'bad-indent.yaml': `profiles:\n  - credential:\n      secret: ${CANARY}\n     type: secret\n`,
    'duplicate.yaml': `secret: ${CANARY}\nsecret: ${NUMBER_CANARY}\n`,
    'tab.yaml': `listen:\n\tsecret: ${CANARY}\n`,
    'bad.json': `{"profiles": [{"credential": {"secret": ${CANARY}}}]}`,
    'bad-number.json': `{"secret": ${NUMBER_CANARY}x}`,
    'bad.conf': `{"secret": "${CANARY}", `
  })
  for (const name of ['unterminated.yaml', 'bad-indent.yaml', 'duplicate.yaml', 'tab.yaml', 'bad.json', 'bad-number.json', 'bad.conf']) {
    assertNoCanary(t, { argvConfigPath: join(dir, name), env: {} }, name)
  }
})

t.test('secrets in the environment', async t => {
  const dir = t.testdir()
  const ids = { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT }
  const cases: Record<string, Record<string, string>> = {
    'no tenant id': { AZURE_CLIENT_ID: CLIENT, AZURE_CLIENT_SECRET: CANARY },
    'no client id': { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_SECRET: CANARY },
    'secret and secret file': { ...ids, AZURE_CLIENT_SECRET: CANARY, AZURE_CLIENT_SECRET_FILE: join(dir, 'x') },
    'bad tenant id next to a secret': { ...ids, AZURE_TENANT_ID: CANARY, AZURE_CLIENT_SECRET: CANARY },
    'bad client id': { ...ids, AZURE_CLIENT_ID: String(NUMBER_CANARY), AZURE_CLIENT_SECRET: CANARY },
    'two passwords': {
      ...ids,
      AZURE_CLIENT_CERTIFICATE_PATH: join(dir, 'c.pem'),
      AZURE_CLIENT_CERTIFICATE_PASSWORD: CANARY,
      AZURE_CLIENT_CERTIFICATE_PASSWORD_FILE: join(dir, 'p')
    },
    'password with a missing certificate': { ...ids, AZURE_CLIENT_CERTIFICATE_PATH: join(dir, 'c.pem'), AZURE_CLIENT_CERTIFICATE_PASSWORD: CANARY },
    'credentials in the authority host': { ...ids, AZURE_CLIENT_SECRET: CANARY, AZURE_AUTHORITY_HOST: `https://u:${CANARY}@login.test` },
    'credentials in the upstream': { ...ids, AZURE_CLIENT_SECRET: CANARY, BROKER_UPSTREAM: `https://u:${CANARY}@api.test` },
    'secret as the port': { ...ids, AZURE_CLIENT_SECRET: CANARY, BROKER_PORT: CANARY },
    'number as the port': { ...ids, AZURE_CLIENT_SECRET: CANARY, BROKER_PORT: String(NUMBER_CANARY) },
    'secret as the flag': { ...ids, AZURE_CLIENT_SECRET: CANARY, BROKER_ALLOW_UNAUTHENTICATED: CANARY },
    'secret as the log level': { ...ids, AZURE_CLIENT_SECRET: CANARY, BROKER_LOG_LEVEL: CANARY },
    'secret as the scope': { ...ids, AZURE_CLIENT_SECRET: CANARY, BROKER_SCOPE: CANARY },
    'secret as the cloud': { ...ids, AZURE_CLIENT_SECRET: CANARY, BROKER_CLOUD: CANARY },
    'secret as the host': { ...ids, AZURE_CLIENT_SECRET: CANARY, BROKER_HOST: `${CANARY} /` }
  }
  for (const [scenario, env] of Object.entries(cases)) assertNoCanary(t, { env }, scenario)
})

t.test('secret files whose content is refused', async t => {
  const dir = t.testdir()
  const write = (name: string, content: string, mode: number): string => {
    const file = join(dir, name)
    writeFileSync(file, content)
    chmodSync(file, mode)
    return file
  }
  const ids = { AZURE_TENANT_ID: TENANT, AZURE_CLIENT_ID: CLIENT }
  assertNoCanary(t, { env: { ...ids, AZURE_CLIENT_SECRET_FILE: write('open-secret', CANARY, 0o644) } }, 'group-readable secret file')
  assertNoCanary(t, { env: { ...ids, AZURE_CLIENT_CERTIFICATE_PATH: write('no-key.pem', `-----BEGIN CERTIFICATE-----\n${CANARY}\n-----END CERTIFICATE-----\n`, 0o600) } }, 'certificate without key')
  assertNoCanary(t, { env: { ...ids, AZURE_CLIENT_CERTIFICATE_PATH: write('no-cert.pem', `-----BEGIN PRIVATE KEY-----\n${CANARY}\n-----END PRIVATE KEY-----\n`, 0o600) } }, 'key without certificate')
  assertNoCanary(t, { env: { ...ids, AZURE_CLIENT_SECRET: 'x', BROKER_CA_FILE: write('ca.pem', CANARY, 0o644) } }, 'CA file without certificates')
  const config = write('broker.yaml', stringify({ ...profile({ type: 'managedIdentity' }), clients: [{ name: 'c', keyFile: write('key', CANARY, 0o640) }] }), 0o644)
  assertNoCanary(t, { argvConfigPath: config, env: {} }, 'group-readable key file')

  const rotated = write('rotated', 'first', 0o600)
  const loaded = loadConfig({ env: { ...ids, AZURE_CLIENT_SECRET_FILE: rotated } })
  const credential = loaded.profiles[0]?.credential
  if (credential?.type !== 'secret') throw new Error('expected a secret credential')
  writeFileSync(rotated, CANARY)
  chmodSync(rotated, 0o644)
  let thrown: unknown
  try {
    credential.secret.read()
  } catch (err) {
    thrown = err
  }
  t.ok(thrown instanceof Error, 'a rotated file that became readable by others is refused')
  t.notMatch(renderings(thrown), CANARY, 'rotation error: no canary')
})
