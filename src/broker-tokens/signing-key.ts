import { randomBytes } from 'node:crypto'
import { readSigningKeyFile } from '../config/secret-files.js'
import { readOrCreateStateFile } from '../config/state-dir.js'
import type { Config } from '../config/types.js'

/** The state directory's file of the signing key, when no key file is given. */
export const SIGNING_KEY_STATE_FILE = 'broker-token.key'
const GENERATED_KEY_BYTES = 32

/**
 * The key that signs broker tokens: `brokerTokens.signingKeyFile` / `BROKER_TOKEN_KEY_FILE`
 * when set (replicas share it), else 32 random bytes made once in the state directory, so a
 * restart keeps the tokens already handed out valid. Read on first use, then kept: a broker
 * that never hands out a token never touches the state directory for it.
 */
export function createSigningKey (config: Pick<Config, 'brokerTokens' | 'stateDir'>): () => Buffer {
  let key: Buffer | undefined
  return function signingKey (): Buffer {
    key ??= config.brokerTokens.signingKeyFile === undefined
      ? readOrCreateStateFile(config.stateDir, SIGNING_KEY_STATE_FILE, () => randomBytes(GENERATED_KEY_BYTES))
      : readSigningKeyFile(config.brokerTokens.signingKeyFile, 'brokerTokens.signingKeyFile')
    return key
  }
}
