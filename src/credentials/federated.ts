import type { INetworkModule } from '@azure/msal-node'
import { readTokenFile } from '../config/secret-files.js'
import type { ProfileConfig } from '../config/types.js'
import type { Credential } from './types.js'
import { createConfidentialClient } from './confidential-client.js'

/**
 * Workload identity: the assertion is a projected service-account token that the platform
 * rotates, so it is read again on every token request, as Azure's workload identity requires.
 */
export function createFederatedCredential (profile: ProfileConfig, tokenFile: string, networkClient: INetworkModule): Credential {
  const acquire = createConfidentialClient(profile, networkClient)
  let last = ''
  return {
    type: 'federated',
    acquire (signal) {
      return acquire({
        clientAssertion: async () => {
          last = readTokenFile(tokenFile, tokenFile)
          return last
        }
      }, 'federated', signal)
    },
    secrets: () => (last === '' ? [] : [last])
  }
}
