import { resolve } from 'node:path'
import { BrokerConfigInvalid } from '../common/errors.js'
import { parseOrigin } from './origin.js'
import { describeManagedIdentitySource, managedIdentityTrigger, MANAGED_IDENTITY_OPT_IN } from './managed-identity-source.js'
import { HostSchema, LogLevelSchema, PortSchema, type LogLevel } from './schema.js'
import { fileSecret, inlineSecret } from './secret-files.js'
import type { SecretSource } from './types.js'
import { assertMatchesSchema, type PathNamer } from './validate.js'

export type Environment = NodeJS.ProcessEnv | Record<string, string | undefined>

/** Settings of the broker itself from the environment; each wins over the config file's. */
export interface BrokerEnvironment {
  readonly host?: string
  readonly port?: number
  readonly logLevel?: LogLevel
  /** Absolute path of BROKER_TOKEN_KEY_FILE. */
  readonly tokenKeyFile?: string
  /** Absolute path of BROKER_CA_FILE. */
  readonly caFile?: string
  /** Absolute path of BROKER_STATE_DIR. */
  readonly stateDir?: string
  readonly allowUnauthenticated?: boolean
  /** BROKER_EGRESS_PROXY. */
  readonly egressProxy?: boolean
  /** AZURE_AUTHORITY_HOST as an origin: it overrides every profile's authority host. */
  readonly authorityHost?: string
  /** BROKER_REDIS_URL or BROKER_REDIS_URL_FILE: budgets shared through that Redis. */
  readonly redisUrl?: SecretSource
}

/** Variables that define the environment's single profile, besides the AZURE_* credential ones. */
export const SINGLE_PROFILE_VARIABLES = Object.freeze(['BROKER_UPSTREAM', 'BROKER_SCOPE', 'BROKER_CLOUD'])

/** The variables that give the app's credential itself; with none set, a managed identity may serve. */
const SECRET_VARIABLES = Object.freeze([
  'AZURE_CLIENT_SECRET',
  'AZURE_CLIENT_SECRET_FILE',
  'AZURE_CLIENT_CERTIFICATE_PATH',
  'AZURE_FEDERATED_TOKEN_FILE'
])

const CREDENTIAL_VARIABLES = Object.freeze(['AZURE_TENANT_ID', 'AZURE_CLIENT_ID', ...SECRET_VARIABLES])

/** Where each setting of the environment's profile comes from, for messages. */
const PROFILE_VARIABLES: Readonly<Record<string, string>> = Object.freeze({
  tenantId: 'AZURE_TENANT_ID',
  clientId: 'AZURE_CLIENT_ID',
  cloud: 'BROKER_CLOUD',
  upstream: 'BROKER_UPSTREAM',
  scope: 'BROKER_SCOPE',
  authorityHost: 'AZURE_AUTHORITY_HOST',
  'credential/secret': 'AZURE_CLIENT_SECRET',
  'credential/secretFile': 'AZURE_CLIENT_SECRET_FILE',
  'credential/certificateFile': 'AZURE_CLIENT_CERTIFICATE_PATH',
  'credential/password': 'AZURE_CLIENT_CERTIFICATE_PASSWORD',
  'credential/passwordFile': 'AZURE_CLIENT_CERTIFICATE_PASSWORD_FILE',
  'credential/tokenFile': 'AZURE_FEDERATED_TOKEN_FILE',
  'credential/clientId': 'AZURE_CLIENT_ID'
})

export const environmentPath: PathNamer = segments => PROFILE_VARIABLES[segments.join('/')] ?? 'environment'

export const NO_CREDENTIALS_PATH = 'No credentials configured'
const NO_CREDENTIALS_PROBLEM = 'set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET ' +
  '(or AZURE_CLIENT_CERTIFICATE_PATH), or a config file with profiles (--config / BROKER_CONFIG; ' +
  '`defender-token-broker init` writes one), or BROKER_MANAGED_IDENTITY=true on an Azure VM. ' +
  'To try the broker without Azure, run `npm run demo`.'

/** The error for "nothing to serve": the CLI prints its message as is, and never falls back to the simulator. */
export function noCredentialsError (): Error {
  return Object.assign(new BrokerConfigInvalid(NO_CREDENTIALS_PATH, NO_CREDENTIALS_PROBLEM), { noCredentials: true })
}

export function isNoCredentialsError (err: unknown): boolean {
  return err instanceof BrokerConfigInvalid && (err as { noCredentials?: unknown }).noCredentials === true
}

/** A variable's value; set-but-empty counts as unset, as compose files often write `NAME=`. */
export function envValue (env: Environment, name: string): string | undefined {
  const value = env[name]
  return value === undefined || value === '' ? undefined : value
}

export function readBrokerEnvironment (env: Environment, cwd: string): BrokerEnvironment {
  const result: { -readonly [K in keyof BrokerEnvironment]: BrokerEnvironment[K] } = {}
  const host = envValue(env, 'BROKER_HOST')
  if (host !== undefined) {
    assertMatchesSchema(HostSchema, host, () => 'BROKER_HOST')
    result.host = host
  }
  const port = envValue(env, 'BROKER_PORT')
  if (port !== undefined) {
    if (!/^\d{1,5}$/.test(port)) throw new BrokerConfigInvalid('BROKER_PORT', 'must be an integer from 0 to 65535')
    const number = Number(port)
    assertMatchesSchema(PortSchema, number, () => 'BROKER_PORT')
    result.port = number
  }
  const logLevel = envValue(env, 'BROKER_LOG_LEVEL')
  if (logLevel !== undefined) {
    assertMatchesSchema(LogLevelSchema, logLevel, () => 'BROKER_LOG_LEVEL')
    result.logLevel = logLevel
  }
  const tokenKeyFile = envValue(env, 'BROKER_TOKEN_KEY_FILE')
  if (tokenKeyFile !== undefined) result.tokenKeyFile = resolve(cwd, tokenKeyFile)
  const caFile = envValue(env, 'BROKER_CA_FILE')
  if (caFile !== undefined) result.caFile = resolve(cwd, caFile)
  const stateDir = envValue(env, 'BROKER_STATE_DIR')
  if (stateDir !== undefined) result.stateDir = resolve(cwd, stateDir)
  const allow = booleanVariable(env, 'BROKER_ALLOW_UNAUTHENTICATED')
  if (allow !== undefined) result.allowUnauthenticated = allow
  const egressProxy = booleanVariable(env, 'BROKER_EGRESS_PROXY')
  if (egressProxy !== undefined) result.egressProxy = egressProxy
  const authorityHost = envValue(env, 'AZURE_AUTHORITY_HOST')
  if (authorityHost !== undefined) {
    result.authorityHost = parseOrigin(authorityHost, 'AZURE_AUTHORITY_HOST', { allowLoopbackHttp: false })
  }
  const redisUrl = envValue(env, 'BROKER_REDIS_URL')
  const redisUrlFile = envValue(env, 'BROKER_REDIS_URL_FILE')
  if (redisUrl !== undefined && redisUrlFile !== undefined) {
    throw new BrokerConfigInvalid('BROKER_REDIS_URL', 'and BROKER_REDIS_URL_FILE are both set: set only one of them')
  }
  if (redisUrl !== undefined) result.redisUrl = inlineSecret(redisUrl, 'BROKER_REDIS_URL')
  if (redisUrlFile !== undefined) result.redisUrl = fileSecret(resolve(cwd, redisUrlFile), 'BROKER_REDIS_URL_FILE')
  return result
}

function booleanVariable (env: Environment, name: string): boolean | undefined {
  const value = envValue(env, name)
  if (value === undefined) return undefined
  const flag = value.toLowerCase()
  if (!['true', 'false', '1', '0'].includes(flag)) throw new BrokerConfigInvalid(name, 'must be true, false, 1 or 0')
  return flag === 'true' || flag === '1'
}

/** With profiles in the config file, the single-profile variables have nothing to apply to. */
export function assertNoSingleProfileVariables (env: Environment): void {
  for (const name of SINGLE_PROFILE_VARIABLES) {
    if (envValue(env, name) !== undefined) {
      const setting = name.slice('BROKER_'.length).toLowerCase()
      throw new BrokerConfigInvalid(name,
        'applies only to the single profile the environment defines, but the config file defines profiles: ' +
        `unset ${name} and set ${setting} in each profile of the file instead`)
    }
  }
}

export interface EnvironmentProfile {
  /** Shaped like a profile of the config file. */
  readonly profile: Record<string, unknown>
  /** For a managed identity: the variable that chose it and the endpoint msal-node will ask, e.g. `IDENTITY_ENDPOINT (App Service)`. */
  readonly managedIdentitySource?: string
}

/**
 * The profile `default` at `/` from the variables azure-identity's DefaultAzureCredential reads,
 * with its precedence: secret, then certificate, then federated token (EnvironmentCredential,
 * WorkloadIdentityCredential), then a managed identity (see `managedIdentityTrigger`), named by
 * AZURE_CLIENT_ID when it is user-assigned. Undefined when none of them is set. File paths are
 * resolved against `cwd`.
 */
export function profileFromEnvironment (env: Environment, cwd: string): EnvironmentProfile | undefined {
  const trigger = managedIdentityTrigger(env)
  const secretVariable = SECRET_VARIABLES.find(name => envValue(env, name) !== undefined)
  if (trigger !== undefined && secretVariable === undefined) return managedIdentityProfile(env, trigger)
  if (trigger === MANAGED_IDENTITY_OPT_IN && secretVariable !== undefined) {
    throw new BrokerConfigInvalid(MANAGED_IDENTITY_OPT_IN,
      `and ${secretVariable} are both set: unset ${secretVariable} to use the managed identity, or ${MANAGED_IDENTITY_OPT_IN} to use the app's credential`)
  }
  if (CREDENTIAL_VARIABLES.every(name => envValue(env, name) === undefined)) return undefined
  const tenantId = envValue(env, 'AZURE_TENANT_ID')
  if (tenantId === undefined) {
    throw new BrokerConfigInvalid('AZURE_TENANT_ID', 'is not set: set it to the directory (tenant) id of the app registration')
  }
  const clientId = envValue(env, 'AZURE_CLIENT_ID')
  if (clientId === undefined) {
    throw new BrokerConfigInvalid('AZURE_CLIENT_ID', 'is not set: set it to the application (client) id of the app registration')
  }
  return {
    profile: withBrokerVariables(env, {
      name: 'default',
      basePath: '/',
      tenantId,
      clientId,
      credential: credentialFromEnvironment(env, cwd)
    })
  }
}

function managedIdentityProfile (env: Environment, trigger: string): EnvironmentProfile {
  const tenantId = envValue(env, 'AZURE_TENANT_ID')
  const clientId = envValue(env, 'AZURE_CLIENT_ID')
  const endpoint = describeManagedIdentitySource(env)
  return {
    profile: withBrokerVariables(env, {
      name: 'default',
      basePath: '/',
      ...(tenantId === undefined ? {} : { tenantId }),
      credential: { type: 'managedIdentity', ...(clientId === undefined ? {} : { clientId }) }
    }),
    managedIdentitySource: endpoint.startsWith(`${trigger} `) ? endpoint : `${trigger}: ${endpoint}`
  }
}

function withBrokerVariables (env: Environment, profile: Record<string, unknown>): Record<string, unknown> {
  for (const [setting, name] of [['cloud', 'BROKER_CLOUD'], ['upstream', 'BROKER_UPSTREAM'], ['scope', 'BROKER_SCOPE']] as const) {
    const value = envValue(env, name)
    if (value !== undefined) profile[setting] = value
  }
  return profile
}

function credentialFromEnvironment (env: Environment, cwd: string): Record<string, unknown> {
  const secret = envValue(env, 'AZURE_CLIENT_SECRET')
  const secretFile = envValue(env, 'AZURE_CLIENT_SECRET_FILE')
  if (secret !== undefined && secretFile !== undefined) {
    throw new BrokerConfigInvalid('AZURE_CLIENT_SECRET', 'and AZURE_CLIENT_SECRET_FILE are both set: set only one of them')
  }
  if (secret !== undefined) return { type: 'secret', secret }
  if (secretFile !== undefined) return { type: 'secret', secretFile: resolve(cwd, secretFile) }

  const certificateFile = envValue(env, 'AZURE_CLIENT_CERTIFICATE_PATH')
  if (certificateFile !== undefined) {
    const password = envValue(env, 'AZURE_CLIENT_CERTIFICATE_PASSWORD')
    const passwordFile = envValue(env, 'AZURE_CLIENT_CERTIFICATE_PASSWORD_FILE')
    if (password !== undefined && passwordFile !== undefined) {
      throw new BrokerConfigInvalid('AZURE_CLIENT_CERTIFICATE_PASSWORD',
        'and AZURE_CLIENT_CERTIFICATE_PASSWORD_FILE are both set: set only one of them')
    }
    return {
      type: 'certificate',
      certificateFile: resolve(cwd, certificateFile),
      ...(password === undefined ? {} : { password }),
      ...(passwordFile === undefined ? {} : { passwordFile: resolve(cwd, passwordFile) })
    }
  }

  const tokenFile = envValue(env, 'AZURE_FEDERATED_TOKEN_FILE')
  if (tokenFile !== undefined) return { type: 'federated', tokenFile: resolve(cwd, tokenFile) }

  throw new BrokerConfigInvalid('AZURE_CLIENT_SECRET',
    'is not set, nor AZURE_CLIENT_SECRET_FILE, AZURE_CLIENT_CERTIFICATE_PATH or AZURE_FEDERATED_TOKEN_FILE: ' +
    'set one of them to give the app\'s credential')
}
