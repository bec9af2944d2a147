import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Clock } from '../common/clock.js'
import type { Refusals } from '../inbound/refusal.js'
import type { BrokerMetrics } from '../observability/metrics.js'
import { appServiceErrorBody, entraErrorBody, fromBrokerError, imdsErrorBody, SignInError } from './errors.js'
import type { Issuer } from './issuer.js'
import { managedIdentityRoutes } from './managed-identity.js'
import { correlationIdOf } from './request-origin.js'
import { tokenEndpointRoutes } from './token-endpoint.js'

export interface SignInOptions {
  issuer: Issuer
  clock: Clock
  metrics: BrokerMetrics
  refusals: Refusals
}

/** A form body is small: a client id, a secret, a grant type and a scope. */
const FORM_BODY_LIMIT = 16 * 1024
const JSON_TYPE = 'application/json; charset=utf-8'

type ErrorBody = (error: SignInError, request: FastifyRequest) => Record<string, unknown>

/**
 * The ways in for tools that get a token before calling the API: the Entra ID-shaped token
 * endpoint and its documents, and the managed-identity endpoints. Each answers faults in its
 * protocol's shape, counted and logged through the request log like every refusal.
 */
export function registerSignIn (app: FastifyInstance, options: SignInOptions): void {
  const { clock, metrics, refusals } = options

  function errorHandler (body: ErrorBody) {
    return (error: FastifyError, request: FastifyRequest, reply: FastifyReply): void => {
      let answer: SignInError
      if (error instanceof SignInError) {
        answer = error
        request.broker.code = answer.code
        if (answer.statusCode < 500) metrics.inboundRejected(answer.code)
      } else {
        answer = fromBrokerError(refusals.errorFor(error, request.broker, request.id))
      }
      if (answer.retryAfter !== undefined) reply.header('retry-after', String(Math.max(1, Math.ceil(answer.retryAfter))))
      reply.code(answer.statusCode).header('x-request-id', request.id).header('cache-control', 'no-store').type(JSON_TYPE)
        .send(JSON.stringify(body(answer, request)))
    }
  }

  app.register(async (entra) => {
    entra.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: FORM_BODY_LIMIT }, (_request, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)))
    })
    entra.setErrorHandler(errorHandler((error, request) => entraErrorBody(error, clock.now(), correlationIdOf(request))))
    tokenEndpointRoutes(entra, options)
  })
  app.register(async (appService) => {
    appService.setErrorHandler(errorHandler((error, request) => appServiceErrorBody(error, correlationIdOf(request))))
    managedIdentityRoutes(appService, options, 'appService')
  })
  app.register(async (imds) => {
    imds.setErrorHandler(errorHandler((error) => imdsErrorBody(error)))
    managedIdentityRoutes(imds, options, 'imds')
  })
}
