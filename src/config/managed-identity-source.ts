import { BrokerConfigInvalid } from '../common/errors.js'
import type { Environment } from './environment.js'

/** The address IMDS answers at on every Azure VM, with no variable to announce it. */
export const IMDS_ADDRESS = '169.254.169.254'

/** Opts the environment's profile into a managed identity where no variable announces one (IMDS). */
export const MANAGED_IDENTITY_OPT_IN = 'BROKER_MANAGED_IDENTITY'

function isSet (env: Environment, name: string): boolean {
  const value = env[name]
  return value !== undefined && value !== ''
}

/**
 * Where msal-node's ManagedIdentityApplication will ask for tokens, in its own order (Service
 * Fabric, App Service, Machine Learning, Cloud Shell, Azure Arc, then IMDS), named by the
 * variable that announces it: for the start-up log, never a value.
 */
export function describeManagedIdentitySource (env: Environment): string {
  const all = (...names: string[]) => names.every((name) => isSet(env, name))
  if (all('IDENTITY_ENDPOINT', 'IDENTITY_HEADER', 'IDENTITY_SERVER_THUMBPRINT')) return 'IDENTITY_ENDPOINT (Service Fabric)'
  if (all('IDENTITY_ENDPOINT', 'IDENTITY_HEADER')) return 'IDENTITY_ENDPOINT (App Service)'
  if (all('MSI_ENDPOINT', 'MSI_SECRET')) return 'MSI_ENDPOINT (Azure Machine Learning)'
  if (all('MSI_ENDPOINT')) return 'MSI_ENDPOINT (Cloud Shell)'
  if (all('IDENTITY_ENDPOINT', 'IMDS_ENDPOINT')) return 'IDENTITY_ENDPOINT (Azure Arc)'
  if (all('AZURE_POD_IDENTITY_AUTHORITY_HOST')) return 'AZURE_POD_IDENTITY_AUTHORITY_HOST (IMDS)'
  return `IMDS (${IMDS_ADDRESS})`
}

/**
 * The variable that makes the environment's profile use a managed identity when it names no
 * secret, certificate or federated token, as DefaultAzureCredential falls back to one:
 * IDENTITY_ENDPOINT or MSI_ENDPOINT, which the platform sets, or BROKER_MANAGED_IDENTITY=true
 * for IMDS, which no variable announces (DefaultAzureCredential probes it last; a broker that
 * probed would turn a forgotten secret into a wait for a network timeout). Undefined: none.
 */
export function managedIdentityTrigger (env: Environment): string | undefined {
  const optIn = env[MANAGED_IDENTITY_OPT_IN]
  if (optIn !== undefined && optIn !== '') {
    const flag = optIn.toLowerCase()
    if (!['true', 'false', '1', '0'].includes(flag)) throw new BrokerConfigInvalid(MANAGED_IDENTITY_OPT_IN, 'must be true, false, 1 or 0')
    return flag === 'true' || flag === '1' ? MANAGED_IDENTITY_OPT_IN : undefined
  }
  return ['IDENTITY_ENDPOINT', 'MSI_ENDPOINT'].find((name) => isSet(env, name))
}
