import { createLogger } from '../observability/logger.js'
import { startServer } from '../server.js'
import { loadForCommand, type CommandOptions } from './options.js'

export async function runServe (options: CommandOptions): Promise<number> {
  const config = loadForCommand(options)
  if (config === undefined) return 1
  const logger = createLogger({ level: config.logLevel })
  try {
    await startServer(config, { logger, env: options.env })
  } catch (err) {
    const error = err as { code?: string, message?: string }
    if (error.code === 'BrokerConfigInvalid' || error.code === 'EADDRINUSE' || error.code === 'EACCES') {
      process.stderr.write(`defender-token-broker: ${error.message}\n`)
      return 1
    }
    throw err
  }
  return -1
}
