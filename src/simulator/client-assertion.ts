import { X509Certificate, createHash } from 'node:crypto'
import { entraErrors } from './entra-errors.js'
import type { EntraError } from './entra-errors.js'
import { decodeJwt, verifyJwtSignature } from './jwt.js'

export const CLIENT_ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'
export const DEFAULT_FEDERATED_AUDIENCE = 'api://AzureADTokenExchange'
const CLOCK_SKEW_SECONDS = 300

/** A federated identity credential: tokens from this issuer about this subject stand for the app. */
export interface FederatedCredential {
  issuer: string
  subject: string
  /** Defaults to `api://AzureADTokenExchange`, as in Entra ID. */
  audience?: string
  /** Public key (SPKI PEM) or certificate PEM the issuer signs its tokens with. */
  publicKeyPem: string
}

export interface RegisteredCertificate {
  certificate: X509Certificate
  sha256: string
  sha1: string
}

export function registerCertificate (pem: string): RegisteredCertificate {
  const certificate = new X509Certificate(pem)
  return {
    certificate,
    sha256: createHash('sha256').update(certificate.raw).digest('base64url'),
    sha1: createHash('sha1').update(certificate.raw).digest('base64url')
  }
}

export interface AssertionContext {
  clientId: string
  tokenEndpoint: string
  certificate: RegisteredCertificate | undefined
  federated: readonly FederatedCredential[]
  /** The simulator's clock, for the certificate's validity period. */
  nowMs: number
  /**
   * The wall clock, for the assertion's own `nbf`/`exp`: clients sign with theirs (msal-node
   * reads `Date.now()`), so a fast-forwarded test clock must not make them look stale.
   */
  wallClockMs: number
}

/** Checks a `client_assertion` as Entra ID does; null when it authenticates the app. */
export function checkClientAssertion (assertion: string, context: AssertionContext): EntraError | null {
  const jwt = decodeJwt(assertion)
  if (jwt === null) return entraErrors.invalidAssertion('The assertion is not a well-formed JWT.')
  const { header, payload } = jwt

  if (payload['iss'] === context.clientId) {
    if (payload['sub'] !== context.clientId) return entraErrors.assertionAppMismatch()
    const registered = context.certificate
    const sent = header['x5t#S256'] ?? header['x5t']
    const expected = header['x5t#S256'] !== undefined ? registered?.sha256 : registered?.sha1
    if (registered === undefined || typeof sent !== 'string' || sent !== expected) {
      const thumbprint = typeof sent === 'string' ? Buffer.from(sent, 'base64url').toString('hex').toUpperCase() : 'none'
      return entraErrors.invalidAssertion(`The key was not found., Thumbprint of key used by client: '${thumbprint}', Please visit the Azure Portal to see configured keys for app Id '${context.clientId}'.`)
    }
    if (!verifyJwtSignature(jwt, registered.certificate.publicKey)) {
      return entraErrors.invalidAssertion('The signature of the client assertion does not verify with the registered certificate.')
    }
    const { validFrom, validTo } = registered.certificate
    if (context.nowMs < Date.parse(validFrom) || context.nowMs > Date.parse(validTo)) {
      return entraErrors.invalidAssertion('The key used is expired.')
    }
    if (payload['aud'] !== context.tokenEndpoint) {
      return entraErrors.invalidAssertion(`The audience '${String(payload['aud'])}' is not the token endpoint.`)
    }
    return checkTimeRange(payload, context.wallClockMs)
  }

  const audiences = Array.isArray(payload['aud']) ? payload['aud'] : [payload['aud']]
  const match = context.federated.find((credential) =>
    credential.issuer === payload['iss'] &&
    credential.subject === payload['sub'] &&
    audiences.includes(credential.audience ?? DEFAULT_FEDERATED_AUDIENCE))
  if (match === undefined) return entraErrors.noFederatedMatch(payload['iss'], payload['sub'], payload['aud'])
  if (!verifyJwtSignature(jwt, match.publicKeyPem)) {
    return entraErrors.invalidAssertion('The signature of the federated token does not verify with the issuer\'s key.')
  }
  return checkTimeRange(payload, context.wallClockMs)
}

function checkTimeRange (payload: Record<string, unknown>, wallClockMs: number): EntraError | null {
  const now = Math.floor(wallClockMs / 1000)
  const { nbf, exp } = payload
  const notYet = typeof nbf === 'number' && nbf > now + CLOCK_SKEW_SECONDS
  const expired = typeof exp !== 'number' || exp <= now - CLOCK_SKEW_SECONDS
  return notYet || expired ? entraErrors.assertionOutOfTime(now, nbf, exp) : null
}
