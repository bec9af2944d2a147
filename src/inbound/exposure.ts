import type { Config } from '../config/types.js'
import { BrokerConfigInvalid } from '../common/errors.js'
import { isLoopbackHost } from '../config/origin.js'

/**
 * Whoever reaches the broker holds the app's permissions: with no client keys it serves only
 * processes on this machine, unless the operator says in so many words that they accept more.
 */
export function assertSafeExposure (config: Config, options: { demo: boolean }): void {
  if (options.demo || config.clients.length > 0 || config.allowUnauthenticated) return
  if (isLoopbackHost(config.listen.host)) return
  throw new BrokerConfigInvalid('listen.host (BROKER_HOST)',
    `the broker would listen on ${config.listen.host} with no client keys, so anyone who reaches it could use the app's permissions. ` +
    'Add a client key (run `defender-token-broker keygen NAME` and put its lines under `clients:`), ' +
    'listen on 127.0.0.1, or set BROKER_ALLOW_UNAUTHENTICATED=true if you accept that risk')
}
