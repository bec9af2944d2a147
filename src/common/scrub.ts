const JWT = /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g
const URL_CREDENTIALS = /(\w+:\/\/)[^/\s:@]*:[^/\s@]*@/g
const BEARER = /(bearer\s+)[^\s,;"]+/gi

/**
 * pino's `redact` covers fields, not the inside of strings: messages from msal-node and undici
 * pass through here before they are logged or shown, with the known secret values removed.
 */
export function scrub (text: string, secrets: readonly string[] = []): string {
  let out = text.replace(JWT, '[token]').replace(URL_CREDENTIALS, '$1[redacted]@').replace(BEARER, '$1[redacted]')
  for (const secret of secrets) {
    if (secret.length >= 4) out = out.split(secret).join('[redacted]')
  }
  return out
}
