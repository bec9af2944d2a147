import { existsSync, readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import t from 'tap'
import { parse, parseAllDocuments } from 'yaml'
import { loadConfig } from '../src/config/load.js'

t.test('the compose file parses, wires the broker as a sidecar and references files that exist', async (t) => {
  const file = 'config/docker-compose.yml'
  const compose = parse(readFileSync(file, 'utf8'))
  const broker = compose.services['defender-broker']
  t.ok(existsSync(resolve(dirname(file), broker.build, 'Dockerfile')), 'build context holds the Dockerfile')
  t.notOk(broker.ports, 'no published port: only the compose network reaches it')
  t.same(broker.secrets, ['defender-client-secret', 'soar-key'])
  t.equal(broker.environment.AZURE_CLIENT_SECRET_FILE, '/run/secrets/defender-client-secret')
  t.equal(compose.networks.tools.internal, true, 'the tools network has no egress')
  t.same(compose.services.soar.networks, ['tools'])
  t.equal(compose.services.soar.depends_on['defender-broker'].condition, 'service_healthy')
  const configInImage = broker.environment.BROKER_CONFIG.replace('/app/', '')
  t.ok(existsSync(configInImage), `${configInImage} exists and is copied into the image`)
  t.match(readFileSync('Dockerfile', 'utf8'), /COPY config \.\/config/)
})

t.test('the compose broker config is valid and asks for client keys', async (t) => {
  const dir = t.testdir({ 'soar-key': 'a-key-for-the-test' })
  const { chmodSync, writeFileSync } = await import('node:fs')
  chmodSync(resolve(dir, 'soar-key'), 0o600)
  const text = readFileSync('config/compose-broker.yaml', 'utf8').replace('/run/secrets/soar-key', resolve(dir, 'soar-key'))
  writeFileSync(resolve(dir, 'broker.yaml'), text)
  const config = loadConfig({
    argvConfigPath: resolve(dir, 'broker.yaml'),
    env: { AZURE_TENANT_ID: '00000000-0000-4000-8000-000000000001', AZURE_CLIENT_ID: '11111111-1111-4000-8000-000000000002', AZURE_CLIENT_SECRET: 'x' }
  })
  t.equal(config.listen.host, '0.0.0.0')
  t.same(config.listen.allowedHosts, ['defender-broker'])
  t.equal(config.clients.length, 1)
  t.equal(config.profiles[0]?.name, 'default')
})

t.test('the Kubernetes manifests parse: sidecar, workload identity, probes, locked down', async (t) => {
  const docs = parseAllDocuments(readFileSync('config/kubernetes/deployment.yaml', 'utf8')).map((d) => d.toJS())
  const account = docs.find((d) => d.kind === 'ServiceAccount')
  const deployment = docs.find((d) => d.kind === 'Deployment')
  t.ok(account.metadata.annotations['azure.workload.identity/client-id'])
  const pod = deployment.spec.template
  t.equal(pod.metadata.labels['azure.workload.identity/use'], 'true')
  t.equal(pod.spec.serviceAccountName, account.metadata.name)
  const broker = pod.spec.containers.find((c: { name: string }) => c.name === 'defender-broker')
  t.match(JSON.stringify(broker.livenessProbe), /healthz/)
  t.match(JSON.stringify(broker.readinessProbe), /readyz/)
  t.equal(broker.securityContext.readOnlyRootFilesystem, true)
  t.equal(broker.securityContext.allowPrivilegeEscalation, false)
  t.equal(pod.spec.securityContext.runAsNonRoot, true)
  t.equal(broker.env.find((e: { name: string }) => e.name === 'BROKER_HOST').value, '127.0.0.1', 'loopback only inside the pod')
})
