import { chmodSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Value } from '@sinclair/typebox/value'
import t from 'tap'
import { parse } from 'yaml'
import { configSchemaJson } from '../scripts/write-schema.js'
import { loadConfig } from '../src/config/load.js'
import { ConfigFileSchema } from '../src/config/schema.js'

const root = new URL('../', import.meta.url)

t.test('config/schema.json is the generated schema (run npm run schema after changing src/config/schema.ts)', async t => {
  t.equal(readFileSync(new URL('config/schema.json', root), 'utf8'), configSchemaJson())
})

t.test('the schema is a JSON Schema with a title', async t => {
  const schema = JSON.parse(configSchemaJson())
  t.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#')
  t.equal(schema.title, 'defender-token-broker configuration')
  t.equal(schema.additionalProperties, false)
})

t.test('every setting has a description and every object refuses unknown keys', async t => {
  const missing: string[] = []
  const open: string[] = []
  const visit = (node: any, path: string): void => {
    if (node === null || typeof node !== 'object') return
    if (node.type === 'object' && node.additionalProperties !== false) open.push(path)
    for (const [key, child] of Object.entries<any>(node.properties ?? {})) {
      if (typeof child.description !== 'string' || child.description === '') missing.push(`${path}.${key}`)
      visit(child, `${path}.${key}`)
    }
    if (node.items !== undefined) visit(node.items, `${path}[]`)
    for (const variant of node.anyOf ?? []) visit(variant, `${path}<${variant.properties?.type?.const ?? variant.const}>`)
  }
  visit(JSON.parse(configSchemaJson()), '')
  t.same(missing, [], 'properties without a description')
  t.same(open, [], 'objects that accept unknown keys')
})

t.test('config/example.yaml is valid and loads', async t => {
  const text = readFileSync(new URL('config/example.yaml', root), 'utf8')
  t.ok(Value.Check(ConfigFileSchema, parse(text)), 'valid against the schema')

  const dir = t.testdir()
  const secret = (name: string, content: string): void => {
    writeFileSync(join(dir, name), content)
    chmodSync(join(dir, name), 0o600)
  }
  secret('contoso.pem', '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n')
  secret('fabrikam-secret', 'fabrikam\n')
  secret('siem-key', 'siem\n')
  writeFileSync(join(dir, 'example.yaml'), text.replaceAll('/run/secrets/', `${dir}/`))
  const config = loadConfig({ argvConfigPath: join(dir, 'example.yaml'), env: {} })
  t.same(config.profiles.map(profile => [profile.name, profile.basePath, profile.cloud, profile.upstream]), [
    ['contoso', '/', 'public', 'https://api.securitycenter.microsoft.com'],
    ['fabrikam', '/fabrikam', 'gcc-high', 'https://api-gov.securitycenter.microsoft.us']
  ])
  t.same(config.clients.map(client => [client.name, client.allow]), [
    ['soar', ['GET /api/**', 'POST /api/machines/*/isolate', 'GET /status']],
    ['siem', ['GET /api/alerts', 'GET /api/alerts/**']],
    ['soar-rehearsal', []],
    ['prometheus', ['GET /metrics']]
  ], 'rules for the own endpoints are valid')
  t.equal(config.clients.find(client => client.name === 'soar-rehearsal')?.dryRun, true, 'a dry-run client')
  t.same(config.profiles.map(profile => profile.guards.actions.length), [1, 1], 'the broker-wide guards apply to both profiles')
  t.same(config.profiles[0]?.guards.protect?.tags, ['tier0'])
  t.same(config.listen, { host: '127.0.0.1', port: 8080, allowedHosts: ['defender-broker'] })
})
