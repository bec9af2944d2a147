import { egressCaCertificate } from '../egress/certificates.js'
import { loadForCommand, type CommandOptions } from './options.js'

/**
 * The egress proxy's CA certificate, for the tools to trust: made now in the state directory
 * when the broker has none yet (the broker serving from the same directory then uses it), or
 * read from egressProxy.caCertFile. Only the certificate: its key never leaves the broker.
 */
export async function runCa (options: CommandOptions): Promise<number> {
  const config = loadForCommand(options)
  if (config === undefined) return 1
  try {
    process.stdout.write(await egressCaCertificate(config))
  } catch (err) {
    const error = err as { code?: string, message?: string }
    if (error.code !== 'BrokerConfigInvalid') throw err
    process.stderr.write(`defender-token-broker: ${error.message}\n`)
    return 1
  }
  return 0
}
