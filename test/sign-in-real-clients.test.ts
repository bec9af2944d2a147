import t, { type Test } from 'tap'
import { createTestPki } from '../src/simulator/index.js'
import { ALL_ROLES, startBrokerStack, type BrokerStack } from './helpers/broker.js'
import { missingProgram } from './helpers/programs.js'
import { claimsOf, clientConfig, lastAuthorization, realTokenOf, stateDir, withClients } from './helpers/sign-in.js'
import { caFile, runNodeTool, runTool, startTlsFront, type ToolRun } from './helpers/tools.js'

const KEY = 'tool-key-canary-0a1b2c3d4e5f60718293a4b5c6d7e8f9'
const SCOPE = 'https://api.securitycenter.microsoft.com/.default'
const pki = await createTestPki()
const CA_FILE = caFile(pki)

/** What every tool does once it has a token: list two alerts through the broker, and print both. */
const NODE_CALL_API = `
const res = await fetch(process.env.BROKER_URL + '/api/alerts?$top=2', { headers: { authorization: 'Bearer ' + token } })
console.log(JSON.stringify({ token, status: res.status, body: await res.text() }))
`

async function stackWith (t: Test, keys: boolean): Promise<BrokerStack> {
  return await startBrokerStack(t, {
    simulator: { pki, roles: ALL_ROLES },
    env: { BROKER_STATE_DIR: stateDir() },
    ...(keys ? { config: withClients(clientConfig('soar', KEY)) } : {})
  })
}

/** The tool got its data through the broker with a broker token; the API saw the real token; the tool never did. */
function assertThroughBroker (t: Test, stack: BrokerStack, run: ToolRun, client: string): void {
  t.equal(run.code, 0, run.stderr)
  const real = realTokenOf(stack)
  t.notOk(run.stdout.includes(real) || run.stderr.includes(real), 'the tool never saw the real token')
  const out = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as { token: string, status: number, body: string }
  t.equal(out.status, 200, out.body)
  t.equal((JSON.parse(out.body) as { value: unknown[] }).value.length, 2, 'the tool got its data')
  t.match(claimsOf(out.token), { sub: client, broker_profile: 'default', roles: claimsOf(real).roles }, 'a broker token, with the real roles')
  t.equal(lastAuthorization(stack), `Bearer ${real}`, 'the API saw the real token')
  const logs = stack.logs.text()
  t.notOk(logs.includes(KEY) || logs.includes(out.token) || logs.includes(real), 'no key or token in the broker\'s logs')
}

t.test('@azure/identity ClientSecretCredential with authorityHost at the broker', async (t) => {
  const stack = await stackWith(t, true)
  const authority = await startTlsFront(t, stack.app.server, pki)
  const source = `
import { ClientSecretCredential } from '@azure/identity'
const credential = new ClientSecretCredential(process.env.TENANT_ID, 'soar', process.env.CLIENT_SECRET, {
  authorityHost: process.env.AUTHORITY_HOST, disableInstanceDiscovery: true
})
const { token } = await credential.getToken('${SCOPE}')
${NODE_CALL_API}`
  const env = { NODE_EXTRA_CA_CERTS: CA_FILE, TENANT_ID: stack.simulator.tenantId, AUTHORITY_HOST: authority, BROKER_URL: stack.url }
  assertThroughBroker(t, stack, await runNodeTool(source, { ...env, CLIENT_SECRET: KEY }), 'soar')

  const wrong = await runNodeTool(source, { ...env, CLIENT_SECRET: 'wrong-key-canary' })
  t.not(wrong.code, 0)
  t.match(wrong.stderr, /AADSTS7000215/, 'a wrong key: the library reports Entra\'s invalid_client')
})

t.test('@azure/msal-node ConfidentialClientApplication against the token endpoint', async (t) => {
  const stack = await stackWith(t, true)
  const authority = await startTlsFront(t, stack.app.server, pki)
  const source = `
import { ConfidentialClientApplication } from '@azure/msal-node'
const app = new ConfidentialClientApplication({ auth: {
  clientId: 'soar', clientSecret: process.env.CLIENT_SECRET,
  authority: process.env.AUTHORITY, knownAuthorities: [new URL(process.env.AUTHORITY).host]
} })
const result = await app.acquireTokenByClientCredential({ scopes: [process.env.SCOPE] })
const token = result.accessToken
${NODE_CALL_API}`
  const env = { NODE_EXTRA_CA_CERTS: CA_FILE, AUTHORITY: `${authority}/${stack.simulator.tenantId}`, BROKER_URL: stack.url, SCOPE }
  assertThroughBroker(t, stack, await runNodeTool(source, { ...env, CLIENT_SECRET: KEY }), 'soar')

  const foreign = await runNodeTool(source, { ...env, CLIENT_SECRET: KEY, SCOPE: 'https://graph.microsoft.com/.default' })
  t.not(foreign.code, 0)
  t.match(foreign.stderr, /invalid_scope/)
  t.match(foreign.stderr, /serves only the Microsoft Defender for Endpoint API/, 'a foreign scope: the library reports why')
})

const MANAGED_IDENTITY_TOOL = (credential: string): string => `
import { ${credential} } from '@azure/identity'
const { token } = await new ${credential}().getToken('${SCOPE}')
${NODE_CALL_API}`

t.test('@azure/identity DefaultAzureCredential through IDENTITY_ENDPOINT and IDENTITY_HEADER', async (t) => {
  const stack = await stackWith(t, true)
  const env = { IDENTITY_ENDPOINT: `${stack.url}/msi/token`, BROKER_URL: stack.url }
  assertThroughBroker(t, stack, await runNodeTool(MANAGED_IDENTITY_TOOL('DefaultAzureCredential'), { ...env, IDENTITY_HEADER: KEY }), 'soar')
  assertThroughBroker(t, stack, await runNodeTool(MANAGED_IDENTITY_TOOL('ManagedIdentityCredential'), { ...env, IDENTITY_HEADER: KEY }), 'soar')

  const wrong = await runNodeTool(MANAGED_IDENTITY_TOOL('ManagedIdentityCredential'), { ...env, IDENTITY_HEADER: 'wrong-header-canary' })
  t.not(wrong.code, 0, 'a wrong IDENTITY_HEADER gets no token')
  t.notOk(stack.logs.text().includes('wrong-header-canary'))
})

t.test('@azure/identity ManagedIdentityCredential through IMDS (AZURE_POD_IDENTITY_AUTHORITY_HOST), at a broker without keys', async (t) => {
  const stack = await stackWith(t, false)
  const run = await runNodeTool(MANAGED_IDENTITY_TOOL('ManagedIdentityCredential'), { AZURE_POD_IDENTITY_AUTHORITY_HOST: stack.url, BROKER_URL: stack.url })
  assertThroughBroker(t, stack, run, 'local')
})

/** What the Python tools do once they have a token: the same two alerts, through requests. */
const PYTHON_CALL_API = `
import json, os, requests
res = requests.get(os.environ['BROKER_URL'] + '/api/alerts?$top=2', headers={'Authorization': 'Bearer ' + token})
print(json.dumps({'token': token, 'status': res.status_code, 'body': res.text}))
`
const python = { command: '/usr/bin/python3', versionArgs: ['-c', 'import azure.identity, requests'], neededFor: 'tools on Python\'s azure-identity (python3-azure, python3-requests)' }
const PYTHON = { skip: missingProgram(t, python) ?? false }

t.test('Python azure-identity ManagedIdentityCredential through IDENTITY_ENDPOINT and IDENTITY_HEADER', PYTHON, async (t) => {
  const stack = await stackWith(t, true)
  const source = `from azure.identity import ManagedIdentityCredential
token = ManagedIdentityCredential().get_token('${SCOPE}').token
${PYTHON_CALL_API}`
  const env = { IDENTITY_ENDPOINT: `${stack.url}/msi/token`, BROKER_URL: stack.url }
  assertThroughBroker(t, stack, await runTool(python.command, ['-c', source], { ...env, IDENTITY_HEADER: KEY }), 'soar')
  const wrong = await runTool(python.command, ['-c', source], { ...env, IDENTITY_HEADER: 'wrong-header-canary' })
  t.not(wrong.code, 0, 'a wrong IDENTITY_HEADER gets no token')
})

t.test('Python azure-identity ClientSecretCredential with authority at the broker (https, instance discovery off)', PYTHON, async (t) => {
  const stack = await stackWith(t, true)
  const authority = await startTlsFront(t, stack.app.server, pki)
  const source = `import os
from azure.identity import ClientSecretCredential
credential = ClientSecretCredential(os.environ['TENANT_ID'], 'soar', os.environ['CLIENT_SECRET'], authority=os.environ['AUTHORITY_HOST'], instance_discovery=False)
token = credential.get_token('${SCOPE}').token
${PYTHON_CALL_API}`
  const env = { REQUESTS_CA_BUNDLE: CA_FILE, TENANT_ID: stack.simulator.tenantId, AUTHORITY_HOST: authority, BROKER_URL: stack.url }
  assertThroughBroker(t, stack, await runTool(python.command, ['-c', source], { ...env, CLIENT_SECRET: KEY }), 'soar')
  const wrong = await runTool(python.command, ['-c', source], { ...env, CLIENT_SECRET: 'wrong-key-canary' })
  t.not(wrong.code, 0)
  t.match(wrong.stderr, /AADSTS7000215/)
})
