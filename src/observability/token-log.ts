import type { Logger } from 'pino'
import type { Profile } from '../runtime/profiles.js'
import { hintFor } from '../tokens/token-error.js'

/**
 * Token events as log lines: acquired or refreshed with the next refresh time, failures with their
 * code, and the certificate in use when it changes or nears its expiry.
 */
export function logTokenEvents (profiles: readonly Profile[], logger: Logger): void {
  for (const { config, tokens, credential } of profiles) {
    credential.certificate?.on('change', (certificate) => {
      const fields = { profile: config.name, certificate }
      if (certificate.state === 'expired') logger.error(fields, 'certificate expired')
      else if (certificate.state === 'expiring') logger.warn(fields, 'certificate expires soon')
      else logger.info(fields, 'certificate in use')
    })
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
        hint: hintFor(failure.code, config),
        retryAt: new Date(retryAt).toISOString()
      }, 'token request failed')
    })
  }
}
