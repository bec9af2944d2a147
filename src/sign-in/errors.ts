import { randomUUID } from 'node:crypto'
import type { BrokerHttpError } from '../common/errors.js'

const ONLY_DEFENDER = 'This broker serves only the Microsoft Defender for Endpoint API: ask for https://api.securitycenter.microsoft.com/.default (or the API\'s other names).'

/**
 * An answer of the sign-in endpoints in their protocols' words: an Entra ID error (`error`,
 * an AADSTS code) for the token endpoint, the same names for the managed-identity endpoints.
 * Messages hold no secret, key or token: only names, scopes, tenants and numbers.
 */
export class SignInError extends Error {
  readonly statusCode: number
  readonly error: string
  /** The AADSTS number Entra ID gives the same fault. */
  readonly aadsts: number
  /** Seconds, sent as `Retry-After`. */
  readonly retryAfter: number | undefined

  constructor (statusCode: number, error: string, aadsts: number, message: string, retryAfter?: number) {
    super(message)
    this.name = 'SignInError'
    this.statusCode = statusCode
    this.error = error
    this.aadsts = aadsts
    this.retryAfter = retryAfter
  }

  /** What the request log and the rejection metric call it. */
  get code (): string {
    return `AADSTS${this.aadsts}`
  }
}

/** The faults of a sign-in, worded as Entra ID words them, with what to do at this broker. */
export const signInErrors = {
  postOnly: (method: string) => new SignInError(400, 'invalid_request', 900561, `The endpoint only accepts POST, OPTIONS requests. Received a ${method} request.`),
  getOnly: (method: string) => new SignInError(400, 'invalid_request', 900561, `The endpoint only accepts GET requests. Received a ${method} request.`),
  notForm: () => new SignInError(400, 'invalid_request', 900144, 'The request body must be application/x-www-form-urlencoded.'),
  missingParameter: (name: string) => new SignInError(400, 'invalid_request', 900144, `The request body must contain the following parameter: '${name}'.`),
  missingQueryParameter: (name: string) => new SignInError(400, 'invalid_request', 900144, `The request must have the query parameter '${name}'.`),
  unsupportedGrantType: (grantType: string) => new SignInError(400, 'unsupported_grant_type', 70003,
    `The app requested an unsupported grant type '${grantType}'. This broker issues tokens for the client_credentials grant only.`),
  missingSecret: () => new SignInError(401, 'invalid_client', 7000218,
    'The request body must contain the following parameter: \'client_assertion\' or \'client_secret\'. At this broker the client secret is the broker client key.'),
  // Nothing the caller sent is repeated: a misconfigured tool may send its key as client_id too.
  invalidSecret: () => new SignInError(401, 'invalid_client', 7000215,
    'Invalid client secret provided. Ensure the secret being sent in the request is a client key configured at this broker (clients[].keySha256).'),
  invalidIdentityHeader: () => new SignInError(401, 'invalid_client', 7000215,
    'The X-IDENTITY-HEADER is not a client key configured at this broker: set IDENTITY_HEADER to the broker client key.'),
  imdsNeedsNoKeys: () => new SignInError(401, 'unauthorized_client', 7000215,
    'This broker has client keys, and the IMDS protocol carries none: use the App Service protocol (IDENTITY_ENDPOINT=<broker>/msi/token and IDENTITY_HEADER=<client key>).'),
  missingMetadataHeader: () => new SignInError(400, 'invalid_request', 900144, 'Required metadata header not specified'),
  tenantNotFound: (tenant: string) => new SignInError(400, 'invalid_request', 90002,
    `Tenant '${tenant}' not found. No profile of this broker has that tenantId or name: use the tenantId of one of its profiles.`),
  profileNotAllowed: (client: string, tenant: string) => new SignInError(400, 'unauthorized_client', 700016,
    `Application with identifier '${client}' was not found in the directory '${tenant}': the client may not use the profile of that tenant.`),
  identityAmbiguous: () => new SignInError(400, 'invalid_request', 900144,
    'This broker serves several profiles: name one as client_id (the profile\'s name or its clientId).'),
  identityNotFound: (id: string) => new SignInError(400, 'invalid_request', 700016,
    `No profile of this broker is named ${id} or has that clientId.`),
  scopeWithoutDefault: (scope: string) => new SignInError(400, 'invalid_scope', 1002012,
    `The provided value for scope ${scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`),
  foreignResource: (resource: string) => new SignInError(400, 'invalid_resource', 500011,
    `The resource principal named ${resource} was not found. ${ONLY_DEFENDER}`),
  foreignScope: (scope: string) => new SignInError(400, 'invalid_scope', 500011,
    `The resource principal named ${scope} was not found. ${ONLY_DEFENDER}`),
  oneResource: () => new SignInError(400, 'invalid_scope', 70011,
    `The provided request must include exactly one resource's /.default scope. ${ONLY_DEFENDER}`),
  unavailable: (profile: string, seconds: number) => new SignInError(503, 'temporarily_unavailable', 50000,
    `There was an error issuing a token: the broker holds no valid token for profile ${profile} yet. Retry in ${seconds} s; /status says why.`, seconds)
} as const

/** A refusal of the inbound gate or any other broker error, in the sign-in protocol's words. */
export function fromBrokerError (error: BrokerHttpError): SignInError {
  if (error.statusCode === 401) return new SignInError(401, 'invalid_client', 7000215, error.message)
  if (error.statusCode < 500) return new SignInError(error.statusCode, 'invalid_request', 900144, error.message)
  return new SignInError(error.statusCode === 503 ? 503 : 500, 'temporarily_unavailable', 50000, error.message, error.retryAfter)
}

/** Entra ID's error body, trace and correlation ids included. */
export function entraErrorBody (error: SignInError, nowMs: number, correlationId: string | undefined): Record<string, unknown> {
  const timestamp = new Date(nowMs).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z')
  const traceId = randomUUID()
  const correlation = correlationId ?? randomUUID()
  return {
    error: error.error,
    error_description: `AADSTS${error.aadsts}: ${error.message} Trace ID: ${traceId} Correlation ID: ${correlation} Timestamp: ${timestamp}`,
    error_codes: [error.aadsts],
    timestamp,
    trace_id: traceId,
    correlation_id: correlation
  }
}

/** The App Service managed-identity protocol's error body. */
export function appServiceErrorBody (error: SignInError, correlationId: string | undefined): Record<string, unknown> {
  return { statusCode: error.statusCode, message: error.message, correlationId: correlationId ?? randomUUID() }
}

/** IMDS's error body. */
export function imdsErrorBody (error: SignInError): Record<string, unknown> {
  return { error: error.error, error_description: error.message }
}
