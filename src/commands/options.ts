import { loadConfig } from '../config/load.js'
import type { Config } from '../config/types.js'

export interface CommandOptions {
  configPath?: string
  env: NodeJS.ProcessEnv | Record<string, string | undefined>
  json: boolean
}

/** Loads the config for a command; a bad one is printed (no secret is ever in the message) and is exit code 1. */
export function loadForCommand (options: CommandOptions): Config | undefined {
  try {
    return loadConfig({ argvConfigPath: options.configPath, env: options.env })
  } catch (err) {
    const error = err as { code?: string, message?: string }
    if (typeof error.code !== 'string' || !error.code.startsWith('BROKER_')) throw err
    process.stderr.write(`defender-token-broker: ${error.message}\n`)
    return undefined
  }
}
