import { randomInt } from 'node:crypto'
import type { Clock } from '../common/clock.js'
import { startDefenderSimulator } from './defender.js'
import type { DefenderSimulator } from './defender.js'
import { startEntraSimulator } from './entra.js'
import type { EntraSimulator, UnconsentedApp } from './entra.js'
import { createTestPki } from './pki.js'
import type { TestPki } from './pki.js'
import { SAMPLE_TENANT_ID } from './sample-data.js'

export { createTestPki } from './pki.js'
export { signJwt } from './jwt.js'
export type { ClientCertificate, ClientCertificateOptions, TestPki } from './pki.js'
export { startEntraSimulator, DEFAULT_AUDIENCE, DEFAULT_TOKEN_LIFETIME_SECONDS } from './entra.js'
export type { AccessTokenClaims, ConsentGap, EntraApp, EntraMode, EntraSimulator, EntraSimulatorOptions, FederatedCredential, IssueAccessTokenOptions, TokenRequestEvent, UnconsentedApp } from './entra.js'
export { startManagedIdentityEndpoint, APP_SERVICE_TOKEN_PATH, IMDS_TOKEN_PATH } from './managed-identity.js'
export type { ManagedIdentity, ManagedIdentityEndpoint, ManagedIdentityEndpointOptions, ManagedIdentityRequest } from './managed-identity.js'
export { startDefenderSimulator, ACTION_DONE_MS, ACTION_PENDING_MS, API_PAGE_SIZE, DEFAULT_PER_MINUTE, EXPORT_PAGE_SIZE } from './defender.js'
export type { DefenderSimulator, DefenderSimulatorOptions, ForcedResponse, MachineAction, RecordedRequest } from './defender.js'
export { SAMPLE_ALERT_COUNT, SAMPLE_MACHINE_COUNT } from './sample-data.js'
export type { Alert, Machine, SampleData } from './sample-data.js'

export const DEMO_TENANT_ID = SAMPLE_TENANT_ID
export const DEMO_CLIENT_ID = '11111111-1111-4000-8000-000000000002'
export const DEMO_ROLES: readonly string[] = [
  'Alert.Read.All', 'Machine.Read.All', 'Machine.Isolate', 'AdvancedQuery.Read.All', 'Ti.ReadWrite',
  'Vulnerability.Read.All', 'Software.Read.All', 'User.Read.All', 'File.Read.All', 'Ip.Read.All'
]
/** The demo's lists page at this size, so a newcomer sees `@odata.nextLink` at work. */
export const DEMO_PAGE_SIZE = 100

export interface SimulatorOptions {
  /** A PKI to reuse; a fresh one is made otherwise. */
  pki?: TestPki
  clock?: Pick<Clock, 'now'>
  /** Where the Entra simulator listens; the Defender simulator stays on loopback unless `defenderHost` says otherwise. */
  host?: string
  defenderHost?: string
  tokenLifetimeSeconds?: number
  refreshInSeconds?: number
  roles?: readonly string[]
  perMinute?: number
  pageSize?: number
  /** Tenants where the demo app is not consented to (see ConsentGap): a partner app before the customer's admin grants it. */
  unconsented?: Array<Omit<UnconsentedApp, 'clientId'>>
}

export interface Simulator {
  pki: TestPki
  entra: EntraSimulator
  defender: DefenderSimulator
  tenantId: string
  clientId: string
  clientSecret: string
  caCertPem: string
  /** A machine of the sample data, for ready-to-paste examples. */
  sampleMachineId: string
  close (): Promise<void>
}

/** The demo's whole world: a CA, an Entra ID token endpoint with one app, and a Defender API. */
export async function startSimulator (options: SimulatorOptions = {}): Promise<Simulator> {
  const pki = options.pki ?? await createTestPki()
  const clientSecret = createClientSecret()
  const entra = await startEntraSimulator({
    pki,
    host: options.host,
    clock: options.clock,
    tokenLifetimeSeconds: options.tokenLifetimeSeconds,
    refreshInSeconds: options.refreshInSeconds,
    unconsented: options.unconsented?.map((tenant) => ({ ...tenant, clientId: DEMO_CLIENT_ID })),
    apps: [{ tenantId: DEMO_TENANT_ID, clientId: DEMO_CLIENT_ID, secret: clientSecret, roles: [...(options.roles ?? DEMO_ROLES)] }]
  })
  let defender: DefenderSimulator
  try {
    defender = await startDefenderSimulator({
      verifyAccessToken: (token) => entra.verifyAccessToken(token),
      host: options.defenderHost,
      clock: options.clock,
      perMinute: options.perMinute,
      pageSize: options.pageSize,
      tenantId: DEMO_TENANT_ID
    })
  } catch (error) {
    await entra.close()
    throw error
  }
  return {
    pki,
    entra,
    defender,
    tenantId: DEMO_TENANT_ID,
    clientId: DEMO_CLIENT_ID,
    clientSecret,
    caCertPem: pki.caCertPem,
    sampleMachineId: defender.data.machines[0]?.id ?? '',
    async close () {
      await Promise.all([entra.close(), defender.close()])
    }
  }
}

const SECRET_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-'

/** Shaped like the secrets Entra ID generates (`xxx8Q~` and 34 more characters). */
function createClientSecret (): string {
  const pick = (count: number): string => Array.from({ length: count }, () => SECRET_ALPHABET[randomInt(SECRET_ALPHABET.length)]).join('')
  return `${pick(3)}8Q~${pick(34)}`
}
