/**
 * The artifact users run, black-box: `dist/bin/defender-token-broker.js` as the package's bin,
 * `npm start` and the image start it, against the simulator. Every own endpoint and a forwarded
 * request go through the bundle, and so do the packages it loads only on demand: prom-client
 * (a chunk of the bundle, at the first scrape), yaml (a config file), ioredis (a shared budget)
 * from node_modules.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { builtinModules } from 'node:module'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { request } from 'undici'
import { startSimulator } from '../src/simulator/index.js'
import { command, startCluster, startSentinelGroup } from './helpers/redis-ha.js'
import { requireRedis, startRedis } from './helpers/redis.js'
import { CLI_PATH, cliEnv, runCli, spawnCli, type CliProcess } from './helpers/spawn.js'

const PROFILE = 'from-yaml'
const home = t.testdir({})
const simulator = await startSimulator()
t.teardown(() => simulator.close())
const caFile = join(home, 'simulator-ca.pem')
writeFileSync(caFile, simulator.caCertPem)

/** A config file for the simulator's app; `extra` is more YAML at the top level. */
function brokerYaml (extra: string[] = []): string {
  return [
    'listen: { host: 127.0.0.1, port: 0 }',
    `caFile: ${caFile}`,
    'profiles:',
    `  - name: ${PROFILE}`,
    '    basePath: /',
    `    tenantId: ${simulator.tenantId}`,
    `    clientId: ${simulator.clientId}`,
    `    credential: { type: secret, secret: "${simulator.clientSecret}" }`,
    `    authorityHost: ${simulator.entra.url}`,
    `    upstream: ${simulator.defender.url}`,
    ...extra,
    ''
  ].join('\n')
}

/** `serve --config broker.yaml` from the bundle, once it holds its token. */
async function serveBundle (t: Test, yaml: string): Promise<{ cli: CliProcess, url: string }> {
  const dir = t.testdir({ 'broker.yaml': yaml })
  const cli = spawnCli(t, ['serve', '--config', join(dir, 'broker.yaml')], { env: cliEnv(home) })
  const line = await cli.waitForLine('stdout', /"msg":"broker listening"/)
  await cli.waitForLine('stdout', /"msg":"token acquired"/)
  return { cli, url: (JSON.parse(line) as { listen: string }).listen }
}

async function get (url: string): Promise<{ status: number, contentType: string, text: string }> {
  const response = await request(url)
  return { status: response.statusCode, contentType: String(response.headers['content-type']), text: await response.body.text() }
}

/** The line of a sample in Prometheus text: name, labels (in any order) and value. */
function sample (name: string, labels: Record<string, string>, value: string): RegExp {
  const escape = (text: string) => text.replace(/[.+*?^$()[\]{}|\\]/g, '\\$&')
  const lookaheads = Object.entries(labels).map(([key, label]) => `(?=[^}]*\\b${key}="${escape(label)}")`).join('')
  return new RegExp(`^${name}\\{${lookaheads}[^}]*\\} ${escape(value)}$`, 'm')
}

t.test('serve from the bundle with a YAML config: every own endpoint and a forwarded request', async (t) => {
  const { url } = await serveBundle(t, brokerYaml())

  const healthz = await get(`${url}/healthz`)
  t.equal(healthz.status, 200, 'GET /healthz: 200')
  t.same(JSON.parse(healthz.text), { status: 'ok' }, 'GET /healthz: status ok')

  const readyz = await get(`${url}/readyz`)
  t.equal(readyz.status, 200, 'GET /readyz: 200')
  t.same(JSON.parse(readyz.text), { status: 'ready' }, 'GET /readyz: ready')

  const alerts = await get(`${url}/api/alerts`)
  t.equal(alerts.status, 200, 'a forwarded GET /api/alerts: 200')
  const body = JSON.parse(alerts.text) as { value?: unknown[] }
  t.ok(Array.isArray(body.value) && body.value.length > 0, "a forwarded GET /api/alerts: the simulator's alerts")

  const status = await get(`${url}/status`)
  t.equal(status.status, 200, 'GET /status: 200')
  t.match(JSON.parse(status.text), {
    profiles: [{ name: PROFILE, tenantId: simulator.tenantId, credential: 'secret', token: { state: 'valid' }, budget: { store: 'local' } }]
  }, 'GET /status: the profile the YAML file names (yaml loaded from node_modules), with its token')

  const metrics = await get(`${url}/metrics`)
  t.equal(metrics.status, 200, 'GET /metrics: 200')
  t.match(metrics.contentType, /^text\/plain; version=0\.0\.4/, 'GET /metrics: Prometheus text')
  for (const [name, type] of [
    ['broker_token_acquisitions_total', 'counter'],
    ['broker_token_expiry_seconds', 'gauge'],
    ['broker_upstream_requests_total', 'counter'],
    ['broker_upstream_request_duration_seconds', 'histogram'],
    ['broker_ratelimit_queue_depth', 'gauge'],
    ['broker_inbound_rejections_total', 'counter']
  ] as const) {
    t.ok(metrics.text.includes(`\n# TYPE ${name} ${type}\n`), `GET /metrics: the broker's ${name} (${type})`)
  }
  t.match(metrics.text, sample('broker_token_acquisitions_total', { profile: PROFILE, result: 'success' }, '1'), 'GET /metrics: the token acquired')
  t.match(metrics.text, sample('broker_upstream_requests_total', { profile: PROFILE, method: 'GET', status: '200' }, '1'), 'GET /metrics: the forwarded request')
  t.match(metrics.text, sample('broker_upstream_request_duration_seconds_bucket', { profile: PROFILE, le: '+Inf' }, '1'), 'GET /metrics: its duration')
  t.match(metrics.text, /^# TYPE process_cpu_user_seconds_total counter$/m, "GET /metrics: prom-client's default process metrics")
})

t.test('guard rails from the bundle: a dry run, a cap, the refusals counted, and check printing them', async (t) => {
  const guards = [
    'guards:',
    '  actions: [{ allow: "POST /api/machines/*/isolate", perHour: 1 }]',
    '  indicators: { allowlist: [contoso.com] }'
  ]
  const { url } = await serveBundle(t, brokerYaml(guards))
  const [first, second] = simulator.defender.data.machines.filter((machine) => machine.machineTags.length === 0)
  const isolate = async (machine: string, headers: Record<string, string> = {}) => {
    const response = await request(`${url}/api/machines/${machine}/isolate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify({ Comment: 'bundle', IsolationType: 'Full' })
    })
    return { status: response.statusCode, body: await response.body.json() as any }
  }
  const posts = () => simulator.defender.requests.filter((recorded) => recorded.method === 'POST').length
  const before = posts()
  const dry = await isolate(first?.id as string, { 'x-broker-dry-run': 'true' })
  t.match(dry, { status: 201, body: { id: /^dryrun-/, type: 'Isolate', status: 'Pending' } }, 'a dry run in the API\'s shape')
  t.equal(posts(), before, 'that reached nothing')
  t.equal((await isolate(first?.id as string)).status, 201, 'the one isolation the cap allows')
  const capped = await isolate(second?.id as string)
  t.match(capped, { status: 403, body: { error: { code: 'BrokerGuardrail', message: /allows 1 an hour for the app/ } } }, 'the next is refused')
  const metrics = await get(`${url}/metrics`)
  t.match(metrics.text, sample('broker_guardrail_refusals_total', { profile: PROFILE, guard: 'cap' }, '1'), 'the refusal counted by guard')
  t.match(metrics.text, sample('broker_dry_runs_total', { profile: PROFILE }, '1'), 'the dry run counted')

  const dir = t.testdir({ 'broker.yaml': brokerYaml(guards) })
  const check = await runCli(t, ['check', '--config', join(dir, 'broker.yaml')], { env: cliEnv(home) })
  t.equal(check.code, 0, 'check exits 0')
  t.match(check.stdout, /^ {2}guards {6}cap "POST \/api\/machines\/\*\/isolate": 1 an hour for the app$/m, 'check prints the cap')
  t.match(check.stdout, /^ {14}no Block\/AlertAndBlock\/BlockAndRemediate indicator on: contoso\.com$/m, 'and the allowlist')
})

t.test('serve from the bundle with a budget shared through Redis (ioredis loaded from node_modules)', async (t) => {
  if (!requireRedis(t)) return
  const redis = await startRedis(t)
  const { url } = await serveBundle(t, brokerYaml([`rateLimit: { store: { type: redis, url: "${redis.url}", timeoutMs: 1000 } }`]))

  const alerts = await get(`${url}/api/alerts`)
  t.equal(alerts.status, 200, 'a forwarded GET /api/alerts: 200, its slot taken in Redis')
  const status = JSON.parse((await get(`${url}/status`)).text) as { profiles: Array<{ budget: { store: string } }> }
  t.equal(status.profiles[0]?.budget.store, 'redis', '/status: the budget is shared through Redis')
  const metrics = await get(`${url}/metrics`)
  t.equal(metrics.status, 200, 'GET /metrics: 200')
  t.match(metrics.text, sample('broker_ratelimit_store_shared', { profile: PROFILE }, '1'), 'GET /metrics: broker_ratelimit_store_shared 1')
})

t.test('serve from the bundle with a budget on a Redis Cluster and on a Sentinel group (ioredis\'s Cluster and sentinels)', async (t) => {
  if (!requireRedis(t)) return
  const nodes = await startCluster(t)
  const group = await startSentinelGroup(t)
  const primary = await group.primaryPort()
  for (const [mode, store, holders] of [
    ['cluster', `{ type: redis, nodes: ["127.0.0.1:${nodes[0]?.port ?? 0}"], keyPrefix: "bundle:", timeoutMs: 1000 }`, nodes.map((node) => node.port)],
    ['sentinel', `{ type: redis, sentinels: [${group.sentinels.map((s) => `"redis://127.0.0.1:${s.port}"`).join(', ')}], name: ${group.name}, keyPrefix: "bundle:", timeoutMs: 1000 }`, [primary]]
  ] as const) {
    const { url } = await serveBundle(t, brokerYaml([`rateLimit: { store: ${store} }`]))
    const alerts = await get(`${url}/api/alerts`)
    t.equal(alerts.status, 200, `${mode}: a forwarded GET /api/alerts: 200, its slot taken in Redis`)
    const status = JSON.parse((await get(`${url}/status`)).text) as { profiles: Array<{ budget: { store: string } }> }
    t.equal(status.profiles[0]?.budget.store, 'redis', `${mode}: /status: the budget is shared through Redis`)
    const keys = await Promise.all(holders.map(async (port) => (await command(port, 'KEYS', 'bundle:*') as string[]).length))
    t.ok(keys.some((count) => count > 0), `${mode}: the budget's keys are in Redis`)
  }
})

t.test('the package depends on exactly the packages the bundle loads at run time', async (t) => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { dependencies?: Record<string, string> }
  const bundleDir = join(CLI_PATH, '..')
  const files = readdirSync(bundleDir, { recursive: true, encoding: 'utf8' }).filter((file) => file.endsWith('.js'))
  t.ok(files.length > 1, 'the bundle has its chunks')
  const loaded = new Set<string>()
  for (const file of files) {
    const code = readFileSync(join(bundleDir, file), 'utf8')
    // Import statements, dynamic imports, and require calls (esbuild's __require, a createRequire
    // renamed require2...). One inside a string (ajv's generated code, an error message) is not one.
    const patterns = [
      /(?:^|[;}])\s*import\s*(?:[\w$*{][^;"'`]*?from\s*)?"([^"]+)"/gm,
      /(?<![\w$.'"`])import\("([^"]+)"\)/g,
      /(?<![\w$.'"`])(?:__require|require\d*)\("([^"]+)"\)/g
    ]
    for (const pattern of patterns) {
      for (const [, specifier] of code.matchAll(pattern)) {
        const name = specifier as string
        if (name.startsWith('.') || name.startsWith('node:') || builtinModules.includes(name.split('/')[0] as string)) continue
        loaded.add(name.startsWith('@') ? name.split('/').slice(0, 2).join('/') : name.split('/')[0] as string)
      }
    }
  }
  t.same([...loaded].sort(), Object.keys(pkg.dependencies ?? {}).sort(),
    "package.json's dependencies are what the bundle requires from node_modules, nothing it holds itself")
})
