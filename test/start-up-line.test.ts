import { createServer } from 'node:net'
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { startSimulator } from '../src/simulator/index.js'
import { simulatorEnv } from './helpers/broker.js'
import { cliEnv, spawnCli, stopsCleanly } from './helpers/spawn.js'

// The 'broker listening' line says what the broker will do: which proxy its outbound calls take
// (host and port, never the proxy's user or password), which extra CA file it trusts, and each
// profile's credential with where it is found (a path or a variable, never the value).

const PROXY_USER = 'canary-proxy-user-8c1d'
const PROXY_PASSWORD = 'canary-proxy-password-3f9e7a'

const home = t.testdir({})
const simulator = await startSimulator()
t.teardown(() => simulator.close())
const caFile = join(home, 'simulator-ca.pem')
writeFileSync(caFile, simulator.caCertPem)
const secretFile = join(home, 'client-secret')
writeFileSync(secretFile, `${simulator.clientSecret}\n`)
chmodSync(secretFile, 0o600)

// Something listening where the proxy is said to be; the simulator's hosts are in NO_PROXY, so
// nothing is sent to it: the line is what is tested.
const proxy = createServer((socket) => socket.destroy())
await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
t.teardown(() => new Promise((resolve) => proxy.close(resolve)))
const proxyPort = (proxy.address() as { port: number }).port

t.test('the listening line names the proxy without its credentials, the CA file and each credential\'s source', async (t) => {
  const env = cliEnv(home, {
    ...simulatorEnv(simulator),
    AZURE_CLIENT_SECRET_FILE: secretFile,
    BROKER_CA_FILE: caFile,
    BROKER_PORT: '0',
    HTTPS_PROXY: `http://${PROXY_USER}:${PROXY_PASSWORD}@127.0.0.1:${proxyPort}/`,
    HTTP_PROXY: `http://${PROXY_USER}:${PROXY_PASSWORD}@proxy.invalid`,
    NO_PROXY: '127.0.0.1,localhost'
  })
  delete env.AZURE_CLIENT_SECRET
  const cli = spawnCli(t, ['serve'], { env })
  const line = JSON.parse(await cli.waitForLine('stdout', /"msg":"broker listening"/)) as Record<string, unknown>
  await cli.waitForLine('stdout', /"msg":"token acquired"/)
  t.same(line.outboundProxy, { HTTPS_PROXY: `http://127.0.0.1:${proxyPort}`, HTTP_PROXY: 'http://proxy.invalid:80' },
    'each proxy by scheme, host and port')
  t.equal(line.caFile, caFile, 'the extra CA file')
  t.match(line.profiles, [{ name: 'default', credential: 'secret', credentialSource: secretFile }], 'the credential and the file it is read from')
  await stopsCleanly(t, cli)
  const output = cli.stdout() + cli.stderr()
  for (const canary of [PROXY_USER, PROXY_PASSWORD, simulator.clientSecret]) t.notOk(output.includes(canary), 'no credential in the output')
})

t.test('with no proxy and no CA file, the line says so, and an inline secret is named by its variable', async (t) => {
  const cli = spawnCli(t, ['serve'], { env: cliEnv(home, { ...simulatorEnv(simulator), BROKER_PORT: '0' }) })
  const line = JSON.parse(await cli.waitForLine('stdout', /"msg":"broker listening"/)) as Record<string, unknown>
  t.equal(line.outboundProxy, 'none')
  t.equal(line.caFile, 'none: the system\'s CAs only')
  t.match(line.profiles, [{ credential: 'secret', credentialSource: 'AZURE_CLIENT_SECRET' }])
  await stopsCleanly(t, cli)
  t.notOk((cli.stdout() + cli.stderr()).includes(simulator.clientSecret), 'never the secret')
})
