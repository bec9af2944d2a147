import type { ConfidentialClientApplication, Configuration, INetworkModule } from '@azure/msal-node'
import { BrokerConfigInvalid } from '../common/errors.js'
import { loadMsal } from './msal.js'
import type { ProfileConfig } from '../config/types.js'
import type { AcquiredToken } from './types.js'
import { runTokenCall } from './network-client.js'

export type ClientAuth = Pick<Configuration['auth'], 'clientSecret' | 'clientCertificate' | 'clientAssertion'>

/**
 * One ConfidentialClientApplication for a profile, built again only when its credential
 * material changes (a rotated secret or certificate), so msal-node keeps its authority
 * metadata between token calls.
 */
export function createConfidentialClient (profile: ProfileConfig, networkClient: INetworkModule) {
  let app: ConfidentialClientApplication | undefined
  let appKey: string | undefined

  async function appFor (auth: ClientAuth, key: string): Promise<ConfidentialClientApplication> {
    if (app === undefined || appKey !== key) {
      const { ConfidentialClientApplication, LogLevel } = await loadMsal()
      const authority = new URL(profile.authorityHost)
      const { tenantId, clientId } = profile
      // The config loader requires both for every credential but a managed identity.
      if (tenantId === undefined || clientId === undefined) throw new BrokerConfigInvalid(`profile ${profile.name}`, 'needs tenantId and clientId')
      app = new ConfidentialClientApplication({
        auth: {
          clientId,
          authority: `${authority.origin}/${tenantId}`,
          // A custom authority host (Azure Stack, ADFS, a simulator) is trusted as given,
          // with no instance discovery, as the Azure SDK does.
          ...(profile.customAuthority ? { knownAuthorities: [authority.host] } : {}),
          ...auth
        },
        system: {
          networkClient,
          // The token holder retries with its own backoff; one call is one request.
          disableInternalRetries: true,
          loggerOptions: { logLevel: LogLevel.Error, piiLoggingEnabled: false, loggerCallback: () => {} }
        }
      })
      appKey = key
    }
    return app
  }

  return async function acquire (auth: ClientAuth, key: string, signal: AbortSignal): Promise<AcquiredToken> {
    const client = await appFor(auth, key)
    try {
      const result = await runTokenCall(signal, () =>
        client.acquireTokenByClientCredential({ scopes: [profile.scope], skipCache: true }))
      return fromResult(result)
    } catch (err) {
      // After a 429 or 5xx, msal-node answers every call from its throttling cache for 60 s (or
      // the Retry-After, up to an hour, on the real clock) without asking Entra ID. The token
      // holder's backoff decides when to ask again, so the app and that cache go.
      if (app === client) app = undefined
      throw err
    }
  }
}

export function fromResult (result: { accessToken: string, expiresOn: Date | null, refreshOn?: Date } | null): AcquiredToken {
  const token: AcquiredToken = { accessToken: result?.accessToken ?? '' }
  if (result?.refreshOn && result.expiresOn) {
    token.refreshBeforeExpiryMs = result.expiresOn.getTime() - result.refreshOn.getTime()
  }
  return token
}
