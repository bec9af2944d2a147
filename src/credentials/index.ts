import type { Dispatcher } from 'undici'
import type { Clock } from '../common/clock.js'
import type { ProfileConfig } from '../config/types.js'
import { createNetworkClient } from './network-client.js'
import { createSecretCredential } from './secret.js'
import { createCertificateCredential } from './certificate.js'
import { createFederatedCredential } from './federated.js'
import { createManagedIdentityCredential } from './managed-identity.js'
import type { Credential } from './types.js'

export type { Credential, AcquiredToken } from './types.js'
export type { CertificateState, CertificateStatus, CertificateWatch } from './certificate-watch.js'

export interface CredentialDeps {
  dispatcher: Dispatcher
  timeoutMs: number
  /** For the certificate's expiry watch. */
  clock: Pick<Clock, 'now'>
}

/** The only way into msal-node: one credential per profile, by type. */
export function createCredential (profile: ProfileConfig, deps: CredentialDeps): Credential {
  const network = { dispatcher: deps.dispatcher, timeoutMs: deps.timeoutMs }
  const credential = profile.credential
  switch (credential.type) {
    case 'secret':
      return createSecretCredential(profile, credential.secret, createNetworkClient(network))
    case 'certificate':
      return createCertificateCredential(profile, credential.certificateFile, credential.password, createNetworkClient(network), deps.clock)
    case 'federated':
      return createFederatedCredential(profile, credential.tokenFile, createNetworkClient(network))
    case 'managedIdentity':
      return createManagedIdentityCredential(profile, credential, network)
  }
}
