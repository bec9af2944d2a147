import type { ManagedIdentityApplication, ManagedIdentityIdParams } from '@azure/msal-node'
import { loadMsal } from './msal.js'
import type { CredentialConfig, ProfileConfig } from '../config/types.js'
import { fromResult } from './confidential-client.js'
import { BrokerManagedIdentityFailed } from '../common/errors.js'
import { createNetworkClient, runTokenCall, type NetworkClientOptions, type TokenResponse } from './network-client.js'
import type { Credential } from './types.js'

type ManagedIdentityConfig = Extract<CredentialConfig, { type: 'managedIdentity' }>

/** The `resource` a managed identity endpoint takes: the scope without `/.default`. */
export function resourceOf (scope: string): string {
  return scope.endsWith('/.default') ? scope.slice(0, -'/.default'.length) : scope
}

/**
 * The managed identity of the Azure resource the broker runs on. msal-node finds the source
 * (App Service's IDENTITY_ENDPOINT and IDENTITY_HEADER, IMDS, Azure Arc, …) in `process.env`
 * at the first token request of the process and keeps it, with the network client of the
 * application that asked first, for every later one: each call therefore names its own
 * dispatcher (`runTokenCall`), whichever network client msal-node kept.
 */
export function createManagedIdentityCredential (
  profile: ProfileConfig,
  credential: ManagedIdentityConfig,
  network: NetworkClientOptions
): Credential {
  let app: ManagedIdentityApplication | undefined
  const resource = resourceOf(profile.scope)
  return {
    type: 'managedIdentity',
    async acquire (signal) {
      if (app === undefined) {
        const { LogLevel, ManagedIdentityApplication } = await loadMsal()
        app = new ManagedIdentityApplication({
          managedIdentityIdParams: identityOf(credential),
          system: {
            networkClient: createNetworkClient(network),
            // The token holder retries with its own backoff; one call is one request.
            disableInternalRetries: true,
            loggerOptions: { logLevel: LogLevel.Error, piiLoggingEnabled: false, loggerCallback: () => {} }
          }
        })
      }
      const client = app
      // forceRefresh: the token holder decides when to ask, never msal-node's process-wide cache.
      const result = await runTokenCall(signal, () => client.acquireToken({ resource, forceRefresh: true }), { network, refused })
      return fromResult(result)
    },
    // The endpoint's secret (App Service, Service Fabric) travels in a header; it must not reach a message either.
    secrets: () => [process.env.IDENTITY_HEADER, process.env.MSI_SECRET].filter((value): value is string => Boolean(value))
  }
}

/**
 * The endpoints answer errors in shapes of their own (App Service `{ statusCode, message }`,
 * IMDS `{ error, error_description }`); msal-node makes little of the first. The message is the
 * endpoint's, with its status.
 */
function refused (response: TokenResponse): Error {
  const body = (typeof response.body === 'object' && response.body !== null ? response.body : {}) as Record<string, unknown>
  const nested = typeof body['error'] === 'object' && body['error'] !== null ? body['error'] as Record<string, unknown> : {}
  const said = [body['message'], body['error_description'], nested['message'], body['error']].find((value) => typeof value === 'string' && value !== '')
  return new BrokerManagedIdentityFailed(response.origin, response.status, typeof said === 'string' ? said : 'no reason given')
}

function identityOf (credential: ManagedIdentityConfig): ManagedIdentityIdParams {
  if (credential.clientId !== undefined) return { userAssignedClientId: credential.clientId }
  if (credential.resourceId !== undefined) return { userAssignedResourceId: credential.resourceId }
  if (credential.objectId !== undefined) return { userAssignedObjectId: credential.objectId }
  return {}
}
