import { constants, createPrivateKey, createPublicKey, sign, verify } from 'node:crypto'
import type { KeyObject, SignKeyObjectInput } from 'node:crypto'

export type JwtAlgorithm = 'RS256' | 'PS256'

export interface DecodedJwt {
  header: Record<string, unknown>
  payload: Record<string, unknown>
  signingInput: string
  signature: Buffer
}

export function base64UrlJson (value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

/** Compact JWS with RS256 (Entra's access tokens) or PS256 (msal-node's certificate assertions). */
export function signJwt (
  payload: Record<string, unknown>,
  privateKey: KeyObject | string,
  header: Record<string, unknown> = {},
  algorithm: JwtAlgorithm = 'RS256'
): string {
  const signingInput = `${base64UrlJson({ typ: 'JWT', ...header, alg: algorithm })}.${base64UrlJson(payload)}`
  const signature = sign('sha256', Buffer.from(signingInput), keyWithPadding(typeof privateKey === 'string' ? createPrivateKey(privateKey) : privateKey, algorithm))
  return `${signingInput}.${signature.toString('base64url')}`
}

/** Splits and parses a compact JWS; null when it is not one. Does not verify anything. */
export function decodeJwt (token: string): DecodedJwt | null {
  const parts = token.split('.')
  if (parts.length !== 3) return null
  const [header, payload, signature] = parts as [string, string, string]
  try {
    const decoded = {
      header: JSON.parse(Buffer.from(header, 'base64url').toString('utf8')) as unknown,
      payload: JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as unknown
    }
    if (!isObject(decoded.header) || !isObject(decoded.payload)) return null
    return {
      header: decoded.header,
      payload: decoded.payload,
      signingInput: `${header}.${payload}`,
      signature: Buffer.from(signature, 'base64url')
    }
  } catch {
    return null
  }
}

export function verifyJwtSignature (jwt: DecodedJwt, publicKey: KeyObject | string): boolean {
  const algorithm = jwt.header['alg']
  if (algorithm !== 'RS256' && algorithm !== 'PS256') return false
  const key = typeof publicKey === 'string' ? createPublicKey(publicKey) : publicKey
  try {
    return verify('sha256', Buffer.from(jwt.signingInput), keyWithPadding(key, algorithm), jwt.signature)
  } catch {
    return false
  }
}

function keyWithPadding (key: KeyObject, algorithm: JwtAlgorithm): SignKeyObjectInput {
  return algorithm === 'PS256'
    ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }
    : { key, padding: constants.RSA_PKCS1_PADDING }
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
