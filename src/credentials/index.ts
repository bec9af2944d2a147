import type { Dispatcher } from 'undici'
import type { ProfileConfig } from '../config/types.js'
import { createNetworkClient } from './network-client.js'
import { createSecretCredential } from './secret.js'
import { createCertificateCredential } from './certificate.js'
import { createFederatedCredential } from './federated.js'
import type { Credential } from './types.js'

export type { Credential, AcquiredToken } from './types.js'

export interface CredentialDeps {
  dispatcher: Dispatcher
  timeoutMs: number
}

/** The only way into msal-node: one credential per profile, by type. */
export function createCredential (profile: ProfileConfig, deps: CredentialDeps): Credential {
  const networkClient = createNetworkClient({ dispatcher: deps.dispatcher, timeoutMs: deps.timeoutMs })
  const credential = profile.credential
  switch (credential.type) {
    case 'secret':
      return createSecretCredential(profile, credential.secret, networkClient)
    case 'certificate':
      return createCertificateCredential(profile, credential.certificateFile, credential.password, networkClient)
    case 'federated':
      return createFederatedCredential(profile, credential.tokenFile, networkClient)
    case 'managedIdentity':
      throw new TypeError(`credential type ${credential.type} is not available in this version`)
  }
}
