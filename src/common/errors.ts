/**
 * Every error the broker answers with itself, in one place. The body has the Defender API's
 * own shape, `{"error":{"code","message","target"}}`, so tools parse both alike. Messages say
 * what to do and never hold a secret, a token or a key: arguments are only ever paths, names
 * and numbers. (Codes keep their case, which is why this is not @fastify/error: it upper-cases.)
 */
export class BrokerHttpError extends Error {
  readonly code: string
  readonly statusCode: number
  /** Seconds, sent as `Retry-After`. */
  retryAfter?: number

  constructor (code: string, statusCode: number, message: string) {
    super(message)
    this.name = code
    this.code = code
    this.statusCode = statusCode
  }
}

function defineError<A extends unknown[]> (code: string, statusCode: number, message: (...args: A) => string) {
  return class extends BrokerHttpError {
    constructor (...args: A) {
      super(code, statusCode, message(...args))
    }
  }
}

/**
 * Errors that are not an answer: a start-up that cannot go on (bad settings, unreadable files),
 * or a token the broker could not get (shown in /status and the token log line, and answered
 * as `BrokerTokenUnavailable`).
 */
export class BrokerError extends Error {
  readonly code: string
  constructor (code: string, message: string) {
    super(message)
    this.name = code
    this.code = code
  }
}

function defineBrokerError<A extends unknown[]> (code: string, message: (...args: A) => string) {
  return class extends BrokerError {
    constructor (...args: A) {
      super(code, message(...args))
    }
  }
}

export const BrokerBadRequestTarget = defineError('BrokerBadRequestTarget', 400, (reason: string) => `The request target is not allowed: ${reason}. Send an origin-form path such as /api/alerts.`)
export const BrokerUnauthenticated = defineError('BrokerUnauthenticated', 401, () => 'A valid broker client key is required: send it as "Authorization: Bearer <key>" or "X-Broker-Key: <key>".')
export const BrokerForbidden = defineError('BrokerForbidden', 403, (reason: string) => `The request is not allowed: ${reason}.`)
export const BrokerMissingPermission = defineError('BrokerMissingPermission', 403, (endpoint: string, permission: string) => `The app lacks the permission for ${endpoint}: grant the WindowsDefenderATP application permission ${permission} and grant admin consent.`)
export const BrokerGuardrail = defineError('BrokerGuardrail', 403, (profile: string, reason: string) => `The guard rails of profile ${profile} refuse this call: ${reason}. See /status for the guards and their use.`)
export const BrokerTunnelRefused = defineError('BrokerTunnelRefused', 403, (host: string) => `The egress proxy does not open a tunnel to ${host}: it serves only the Entra ID sign-in and Defender API hosts. Add the host to egressProxy.tunnelAllow for a blind tunnel.`)
export const BrokerNotFound = defineError('BrokerNotFound', 404, (path: string) => `No profile serves ${path}: check the base URL and the profiles' basePath.`)
export const BrokerMethodNotAllowed = defineError('BrokerMethodNotAllowed', 405, (method: string, allowed: string) => `The method ${method} is not forwarded: it would echo the request, token included, or open a tunnel. Use one of ${allowed}.`)
export const BrokerProxyAuthenticationRequired = defineError('BrokerProxyAuthenticationRequired', 407, () => 'A valid broker client key is required to use the egress proxy: put it in the proxy URL as the password (http://tool:<key>@host:port), or send "Proxy-Authorization: Bearer <key>".')
export const BrokerMisdirected = defineError('BrokerMisdirected', 421, (host: string) => `The Host header ${host} is not one this broker answers to: add it to listen.allowedHosts.`)
/** A pause the API's 429 set on one of a profile's budgets: the budget's name, its end (ISO time) and what set it. */
export interface PauseWords {
  budget: string
  until: string
  cause: string
}

export const BrokerRateLimited = defineError('BrokerRateLimited', 429, (profile: string, seconds: number, pause?: PauseWords) => pause === undefined
  ? `The local budget of profile ${profile} is spent: retry in ${seconds} s.`
  : `The ${pause.budget === 'general' ? 'general budget' : `budget for ${pause.budget}`} of profile ${profile} is paused until ${pause.until} by the Defender API's 429 (${pause.cause}): retry in ${seconds} s.`)
export const BrokerUpstreamUnreachable = defineError('BrokerUpstreamUnreachable', 502, (origin: string, reason: string) => `The Defender API at ${origin} could not be reached: ${reason}. Check the network, proxy and upstream settings.`)
export const BrokerTunnelUnreachable = defineError('BrokerTunnelUnreachable', 502, (target: string, reason: string) => `The egress proxy could not reach ${target} for the tunnel: ${reason}.`)
export const BrokerTokenUnavailable = defineError('BrokerTokenUnavailable', 503, (profile: string, seconds: number) => `No valid token for profile ${profile}: Entra ID did not issue one; retry in ${seconds} s and see /status for the reason.`)
export const BrokerUpstreamTimeout = defineError('BrokerUpstreamTimeout', 504, (origin: string) => `The Defender API at ${origin} did not answer in time.`)

export const BrokerBadRequest = defineError('BrokerBadRequest', 400, (reason: string) => `The request cannot be forwarded: ${reason}.`)
export const BrokerRequestTimeout = defineError('BrokerRequestTimeout', 408, () => 'The request cannot be forwarded: it did not arrive in time.')
export const BrokerExpectationFailed = defineError('BrokerExpectationFailed', 417, () => 'The request cannot be forwarded: it has an Expect header other than 100-continue.')
export const BrokerHeadersTooLarge = defineError('BrokerHeadersTooLarge', 431, () => 'The request cannot be forwarded: its headers are too large.')
export const BrokerInternalError = defineError('BrokerInternalError', 500, () => 'The broker failed to handle the request: see its log for the request id.')

export const BrokerConfigInvalid = defineBrokerError('BrokerConfigInvalid', (path: string, problem: string) => `${path}: ${problem}`)

export const BrokerTokenTimeout = defineBrokerError('BrokerTokenTimeout', (reason: string) => reason)
export const BrokerTokenInvalid = defineBrokerError('BrokerTokenInvalid', (reason: string) => reason)
/** The managed identity endpoint (App Service, IMDS, …) answered the token request with an error. */
export const BrokerManagedIdentityFailed = defineBrokerError('BrokerManagedIdentityFailed',
  (origin: string, status: number, reason: string) => `the managed identity endpoint ${origin} answered ${status}: ${reason}`)

/**
 * A token request that got no answer: refused, reset, an untrusted certificate, a proxy that
 * said no. Its code is the network failure's (`ECONNREFUSED`, `proxy_refused`, …), which says
 * more than one code for all of them would.
 */
export class BrokerTokenEndpointUnreachable extends BrokerError {
  constructor (origin: string, failure: { code: string, reason: string }) {
    super(failure.code, `${origin} could not be reached: ${failure.reason}`)
  }
}

/**
 * The coded error for a request Node or fastify found at fault, by the status they gave it:
 * 408, 417 and 431 have codes of their own; any other is a 400.
 */
export function requestFault (statusCode: number | undefined, reason: string): BrokerHttpError {
  switch (statusCode) {
    case 408: return new BrokerRequestTimeout()
    case 417: return new BrokerExpectationFailed()
    case 431: return new BrokerHeadersTooLarge()
    default: return new BrokerBadRequest(reason)
  }
}

export function isBrokerHttpError (err: unknown): err is BrokerHttpError {
  return err instanceof BrokerHttpError
}

export function withRetryAfter<E extends BrokerHttpError> (err: E, seconds: number): E {
  err.retryAfter = Math.max(1, Math.ceil(seconds))
  return err
}

export function errorBody (err: BrokerHttpError, requestId: string): string {
  return JSON.stringify({ error: { code: err.code, message: err.message, target: requestId } })
}
