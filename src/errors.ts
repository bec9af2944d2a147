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

/** Errors that stop the process before it serves: bad settings, unreadable files. */
export class BrokerStartupError extends Error {
  readonly code: string
  constructor (code: string, message: string) {
    super(message)
    this.name = code
    this.code = code
  }
}

function defineConfigError<A extends unknown[]> (code: string, message: (...args: A) => string) {
  return class extends BrokerStartupError {
    constructor (...args: A) {
      super(code, message(...args))
    }
  }
}

export const BrokerBadRequestTarget = defineError('BrokerBadRequestTarget', 400, (reason: string) => `The request target is not allowed: ${reason}. Send an origin-form path such as /api/alerts.`)
export const BrokerUnauthenticated = defineError('BrokerUnauthenticated', 401, () => 'A valid broker client key is required: send it as "Authorization: Bearer <key>" or "X-Broker-Key: <key>".')
export const BrokerForbidden = defineError('BrokerForbidden', 403, (reason: string) => `The request is not allowed: ${reason}.`)
export const BrokerMissingPermission = defineError('BrokerMissingPermission', 403, (endpoint: string, permission: string) => `The app lacks the permission for ${endpoint}: grant the WindowsDefenderATP application permission ${permission} and grant admin consent.`)
export const BrokerNotFound = defineError('BrokerNotFound', 404, (path: string) => `No profile serves ${path}: check the base URL and the profiles' basePath.`)
export const BrokerMethodNotAllowed = defineError('BrokerMethodNotAllowed', 405, (method: string, allowed: string) => `The method ${method} is not forwarded: it would echo the request, token included, or open a tunnel. Use one of ${allowed}.`)
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
export const BrokerUpstreamUnreachable = defineError('BrokerUpstreamUnreachable', 502, (origin: string, reason: string) => `The Defender API at ${origin} could not be reached (${reason}): check the network, proxy and upstream settings.`)
export const BrokerTokenUnavailable = defineError('BrokerTokenUnavailable', 503, (profile: string, seconds: number) => `No valid token for profile ${profile}: Entra ID did not issue one; retry in ${seconds} s and see /status for the reason.`)
export const BrokerUpstreamTimeout = defineError('BrokerUpstreamTimeout', 504, (origin: string) => `The Defender API at ${origin} did not answer in time.`)

export const BrokerBadRequest = defineError('BrokerBadRequest', 400, (reason: string) => `The request cannot be forwarded: ${reason}.`)
export const BrokerInternalError = defineError('BrokerInternalError', 500, () => 'The broker failed to handle the request: see its log for the request id.')

export const BrokerConfigInvalid = defineConfigError('BROKER_CONFIG_INVALID', (path: string, problem: string) => `${path}: ${problem}`)

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
