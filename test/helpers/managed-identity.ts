import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  DEMO_ROLES,
  startManagedIdentityEndpoint,
  type EntraSimulator,
  type IssueAccessTokenOptions,
  type ManagedIdentity,
  type ManagedIdentityEndpoint,
  type TestPki
} from '../../src/simulator/index.js'
import { DEMO_TENANT_ID } from '../../src/simulator/index.js'
import type { Test } from 'tap'
import { claimsOf, getAlerts, startBrokerStack, type BrokerStack, type BrokerStackOptions } from './broker.js'

interface Teardown {
  teardown: (fn: () => unknown) => void
  testdir: () => string
}

/** The variables msal-node reads to find a managed identity source; cleared unless a test sets them. */
const SOURCE_VARIABLES = [
  'IDENTITY_ENDPOINT', 'IDENTITY_HEADER', 'IDENTITY_SERVER_THUMBPRINT', 'MSI_ENDPOINT', 'MSI_SECRET',
  'IMDS_ENDPOINT', 'AZURE_POD_IDENTITY_AUTHORITY_HOST', 'DEFAULT_IDENTITY_CLIENT_ID', 'OBJECT_ID'
]

/**
 * msal-node reads `process.env` itself, and at the first token request of the process only:
 * the variables are set for the whole test file and given back at its end.
 */
export function setSourceEnvironment (t: Pick<Teardown, 'teardown'>, values: Record<string, string>): void {
  const saved = new Map(SOURCE_VARIABLES.map((name) => [name, process.env[name]]))
  for (const name of SOURCE_VARIABLES) delete process.env[name]
  Object.assign(process.env, values)
  t.teardown(() => {
    for (const [name, value] of saved) {
      if (value === undefined) delete process.env[name]
      else process.env[name] = value
    }
  })
}

export const SYSTEM_IDENTITY: ManagedIdentity = {
  tenantId: DEMO_TENANT_ID,
  clientId: '22222222-2222-4000-8000-000000000001',
  objectId: '22222222-2222-4000-8000-0000000000a1',
  systemAssigned: true,
  roles: [...DEMO_ROLES]
}

export const USER_IDENTITY: ManagedIdentity = {
  tenantId: DEMO_TENANT_ID,
  clientId: '33333333-3333-4000-8000-000000000001',
  objectId: '33333333-3333-4000-8000-0000000000a1',
  resourceId: '/subscriptions/00000000-0000-4000-8000-000000000000/resourceGroups/soc/providers/Microsoft.ManagedIdentity/userAssignedIdentities/defender-broker',
  roles: ['Alert.Read.All']
}

export interface SharedEndpoint {
  endpoint: ManagedIdentityEndpoint
  /** The Entra simulator whose key signs the endpoint's tokens: the current stack's. */
  signWith: (entra: EntraSimulator) => void
}

/**
 * One stand-in for the whole file, as msal-node keeps the source (and its URL) it found first.
 * Each stack has its own Entra simulator, whose key must sign the tokens its Defender simulator checks.
 */
export async function startSharedEndpoint (t: Pick<Teardown, 'teardown'>, identityHeader: string): Promise<SharedEndpoint> {
  let signer: EntraSimulator | undefined
  const endpoint = await startManagedIdentityEndpoint({
    entra: {
      issueAccessToken: (options: IssueAccessTokenOptions) => {
        if (signer === undefined) throw new TypeError('no Entra simulator signs the tokens yet')
        return signer.issueAccessToken(options)
      }
    },
    identities: [SYSTEM_IDENTITY, USER_IDENTITY],
    identityHeader
  })
  t.teardown(() => endpoint.close())
  return { endpoint, signWith: (entra) => { signer = entra } }
}

export interface ManagedIdentityStackOptions extends Omit<BrokerStackOptions, 'beforeStart'> {
  pki: TestPki
  shared: SharedEndpoint
  credential: Record<string, unknown>
  /** The profile's client id: the identity's, for /status and `check`. */
  clientId?: string
}

/** A broker whose one profile, from a config file, authenticates with a managed identity. */
export async function startManagedIdentityStack (t: Teardown, options: ManagedIdentityStackOptions): Promise<BrokerStack> {
  const file = join(t.testdir(), 'broker.json')
  return await startBrokerStack(t, {
    ...options,
    simulator: { pki: options.pki, ...options.simulator },
    env: { BROKER_UPSTREAM: undefined, BROKER_CONFIG: file, ...options.env },
    beforeStart: (simulator) => {
      options.shared.signWith(simulator.entra)
      writeFileSync(file, JSON.stringify({
        profiles: [{
          name: 'default',
          basePath: '/',
          tenantId: simulator.tenantId,
          clientId: options.clientId ?? SYSTEM_IDENTITY.clientId,
          credential: options.credential,
          upstream: simulator.defender.url
        }]
      }))
    }
  })
}

/**
 * Each way to name USER_IDENTITY in the config, with the query parameter msal-node names it by
 * and its value; `resourceIdParameter` is the source's name for a resource id.
 */
export function userIdentityNames (resourceIdParameter: string): Array<[Record<string, string>, string, string]> {
  return [
    [{ clientId: USER_IDENTITY.clientId }, 'client_id', USER_IDENTITY.clientId],
    [{ resourceId: USER_IDENTITY.resourceId ?? '' }, resourceIdParameter, USER_IDENTITY.resourceId ?? ''],
    [{ objectId: USER_IDENTITY.objectId }, 'object_id', USER_IDENTITY.objectId]
  ]
}

/**
 * A stack whose credential names USER_IDENTITY by `ids`: its one token request names the
 * identity by `parameter` and nothing else does, and the API accepts the identity's token.
 */
export async function assertUserIdentityNamed (
  t: Test,
  options: { pki: TestPki, shared: SharedEndpoint, ids: Record<string, string>, parameter: string, value: string }
): Promise<void> {
  const { shared, parameter } = options
  const seen = shared.endpoint.requests.length
  const stack = await startManagedIdentityStack(t, {
    pki: options.pki,
    shared,
    credential: { type: 'managedIdentity', ...options.ids },
    clientId: USER_IDENTITY.clientId
  })
  const requests = shared.endpoint.requests.slice(seen)
  t.equal(requests.length, 1, 'one token request')
  t.equal(requests[0]?.query[parameter], options.value, `${parameter} carries the identity`)
  t.same(Object.keys(requests[0]?.query ?? {}).sort(), ['api-version', parameter, 'resource'].sort(), 'and nothing else names one')
  t.equal(await getAlerts(stack), 200)
  t.match(claimsOf(shared.endpoint.issuedTokens.at(-1)), { appid: USER_IDENTITY.clientId, roles: USER_IDENTITY.roles })
}
