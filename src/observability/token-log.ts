import type { Logger } from 'pino'
import type { Profile } from '../profiles.js'
import { hintFor } from '../tokens/token-error.js'

/** Token events as log lines: acquired or refreshed with the next refresh time, failures with their code. */
export function logTokenEvents (profiles: readonly Profile[], logger: Logger): void {
  for (const { config, tokens } of profiles) {
    tokens.on('acquired', (token, refreshed) => {
      logger.info({
        profile: config.name,
        expiresAt: new Date(token.expiresAt).toISOString(),
        nextRefreshAt: new Date(token.refreshAt).toISOString(),
        roles: token.roles
      }, refreshed ? 'token refreshed' : 'token acquired')
    })
    tokens.on('failed', (failure, retryAt) => {
      logger.warn({
        profile: config.name,
        code: failure.code,
        error: failure.message,
        hint: hintFor(failure.code),
        retryAt: new Date(retryAt).toISOString()
      }, 'token request failed')
    })
  }
}
