import createError from '@fastify/error'

/**
 * Every error the broker answers with itself, in one place. The body has the Defender API's
 * own shape, `{"error":{"code","message","target"}}`, so tools parse both alike. Messages say
 * what to do and never hold a secret, a token or a key: arguments are only ever paths, names
 * and numbers.
 */
export const BrokerBadRequestTarget = createError<'BrokerBadRequestTarget', 400, [string]>(
  'BrokerBadRequestTarget',
  'The request target is not allowed: %s. Send an origin-form path such as /api/alerts.',
  400
)
export const BrokerUnauthenticated = createError<'BrokerUnauthenticated', 401, []>(
  'BrokerUnauthenticated',
  'A valid broker client key is required: send it as "Authorization: Bearer <key>" or "X-Broker-Key: <key>".',
  401
)
export const BrokerForbidden = createError<'BrokerForbidden', 403, [string]>(
  'BrokerForbidden',
  'The request is not allowed: %s.',
  403
)
export const BrokerMissingPermission = createError<'BrokerMissingPermission', 403, [string, string]>(
  'BrokerMissingPermission',
  'The app lacks the permission for %s: grant the WindowsDefenderATP application permission %s and grant admin consent.',
  403
)
export const BrokerNotFound = createError<'BrokerNotFound', 404, [string]>(
  'BrokerNotFound',
  'No profile serves %s: check the base URL and the profiles\' basePath.',
  404
)
export const BrokerMisdirected = createError<'BrokerMisdirected', 421, [string]>(
  'BrokerMisdirected',
  'The Host header %s is not one this broker answers to: add it to listen.allowedHosts.',
  421
)
export const BrokerRateLimited = createError<'BrokerRateLimited', 429, [string, number]>(
  'BrokerRateLimited',
  'The local budget of profile %s is spent: retry after %d seconds.',
  429
)
export const BrokerUpstreamUnreachable = createError<'BrokerUpstreamUnreachable', 502, [string, string]>(
  'BrokerUpstreamUnreachable',
  'The Defender API at %s could not be reached (%s): check the network, proxy and upstream settings.',
  502
)
export const BrokerTokenUnavailable = createError<'BrokerTokenUnavailable', 503, [string, number]>(
  'BrokerTokenUnavailable',
  'No valid token for profile %s: Entra ID did not issue one; retry after %d seconds and see /status for the reason.',
  503
)
export const BrokerUpstreamTimeout = createError<'BrokerUpstreamTimeout', 504, [string]>(
  'BrokerUpstreamTimeout',
  'The Defender API at %s did not answer in time.',
  504
)

export const BrokerBadRequest = createError<'BrokerBadRequest', 400, [string]>(
  'BrokerBadRequest',
  'The request cannot be forwarded: %s.',
  400
)
export const BrokerInternalError = createError<'BrokerInternalError', 500, []>(
  'BrokerInternalError',
  'The broker failed to handle the request: see its log for the request id.',
  500
)

/** Errors that stop the process before it serves: bad settings, unreadable files. */
export const BrokerConfigInvalid = createError<'BROKER_CONFIG_INVALID', [string, string]>(
  'BROKER_CONFIG_INVALID',
  '%s: %s'
)

export interface BrokerHttpError extends Error {
  code: string
  statusCode: number
  /** Seconds, sent as `Retry-After`. */
  retryAfter?: number
}

export function isBrokerHttpError (err: unknown): err is BrokerHttpError {
  return err instanceof Error &&
    typeof (err as BrokerHttpError).code === 'string' &&
    (err as BrokerHttpError).code.startsWith('Broker') &&
    typeof (err as BrokerHttpError).statusCode === 'number'
}

export function withRetryAfter<E extends Error> (err: E, seconds: number): E & { retryAfter: number } {
  return Object.assign(err, { retryAfter: Math.max(1, Math.ceil(seconds)) })
}

export function errorBody (err: BrokerHttpError, requestId: string): string {
  return JSON.stringify({ error: { code: err.code, message: err.message, target: requestId } })
}
