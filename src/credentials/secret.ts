import { createHash } from 'node:crypto'
import type { INetworkModule } from '@azure/msal-node'
import type { ProfileConfig, SecretSource } from '../config/types.js'
import type { Credential } from './types.js'
import { createConfidentialClient } from './confidential-client.js'

export function createSecretCredential (profile: ProfileConfig, source: SecretSource, networkClient: INetworkModule): Credential {
  const acquire = createConfidentialClient(profile, networkClient)
  let last: string | undefined
  return {
    type: 'secret',
    acquire (signal) {
      // Read on every call: a rotated secret file takes effect at the next token request.
      last = source.read()
      return acquire({ clientSecret: last }, digest(last), signal)
    },
    secrets: () => last === undefined || last === '' ? [] : [last]
  }
}

function digest (value: string): string {
  return createHash('sha256').update(value).digest('hex')
}
