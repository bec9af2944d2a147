export interface TokenClaims {
  /** Expiry, in seconds since the epoch. */
  exp: number
  roles: string[]
  tid?: string
  aud?: string
  appid?: string
  /** v2.0 tokens name the client here rather than in `appid`. */
  azp?: string
}

const BASE64URL = /^[A-Za-z0-9_-]+$/

/**
 * Reads the claims the broker needs from an access token without verifying it (the API does
 * that); a value that is not a JWT with a numeric `exp` is no token at all.
 */
export function readClaims (token: string): TokenClaims | undefined {
  const parts = token.split('.')
  if (parts.length !== 3 || !parts.every((part, i) => (i === 2 || part.length > 0) && (part === '' || BASE64URL.test(part)))) {
    return undefined
  }
  let payload: Record<string, unknown>
  try {
    payload = JSON.parse(Buffer.from(parts[1] as string, 'base64url').toString('utf8'))
  } catch {
    return undefined
  }
  if (payload === null || typeof payload !== 'object' || typeof payload.exp !== 'number' || !Number.isFinite(payload.exp)) {
    return undefined
  }
  const roles = Array.isArray(payload.roles) ? payload.roles.filter((role): role is string => typeof role === 'string') : []
  return {
    exp: payload.exp,
    roles,
    tid: typeof payload.tid === 'string' ? payload.tid : undefined,
    aud: typeof payload.aud === 'string' ? payload.aud : undefined,
    appid: typeof payload.appid === 'string' ? payload.appid : undefined,
    azp: typeof payload.azp === 'string' ? payload.azp : undefined
  }
}
