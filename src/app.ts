import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { Dispatcher } from 'undici'
import { systemClock, type Clock } from './clock.js'
import type { Config } from './config/types.js'
import {
  BrokerBadRequest, BrokerBadRequestTarget, BrokerInternalError, errorBody, isBrokerHttpError, type BrokerHttpError
} from './errors.js'
import { createOutboundDispatcher } from './outbound/dispatcher.js'
import { RequestLog } from './observability/request-log.js'
import { registerOwnEndpoints } from './observability/endpoints.js'
import { logTokenEvents } from './observability/token-log.js'
import { createProfileRouter, createProfiles, type Profile } from './profiles.js'
import { createForwarder } from './proxy/forward.js'
import { createAuthorizer, registerInbound } from './inbound/index.js'
import { checkRequestTarget } from './proxy/request-target.js'

export interface AppDeps {
  logger: Logger
  clock?: Clock
  /** The outbound dispatcher; the app makes (and closes) its own when none is given. */
  dispatcher?: Dispatcher
  env?: NodeJS.ProcessEnv | Record<string, string | undefined>
  random?: () => number
}

declare module 'fastify' {
  interface FastifyInstance {
    profiles: readonly Profile[]
  }
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** A caller's own request id is kept when it is harmless to log, so traces line up. */
function requestId (req: IncomingMessage): string {
  const given = req.headers['x-request-id']
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID()
}

/** Builds the broker; never listens. */
export async function buildApp (config: Config, deps: AppDeps): Promise<FastifyInstance> {
  const clock = deps.clock ?? systemClock
  const dispatcher = deps.dispatcher ?? createOutboundDispatcher({
    extraCaPem: config.extraCaPem,
    connectTimeoutMs: config.upstreamTimeouts.connectSeconds * 1000,
    env: deps.env ?? process.env
  })
  const profiles = createProfiles(config, { dispatcher, clock, random: deps.random })
  const logger = deps.logger
  logTokenEvents(profiles, logger)

  const app = fastify({
    loggerInstance: logger as FastifyBaseLogger,
    logController: new RequestLog(),
    genReqId: requestId,
    requestIdHeader: false,
    return503OnClosing: true,
    serverFactory: (handler) => createServer((req: IncomingMessage, res: ServerResponse) => {
      // Before routing, hooks and everything else: a target that could mean another path or
      // another origin is answered here and goes no further.
      const reason = checkRequestTarget(req.url)
      if (reason !== undefined) return rejectTarget(req, res, reason, logger)
      handler(req, res)
    })
  })

  app.decorate('profiles', profiles)
  app.decorateRequest('broker', null as unknown as FastifyRequest['broker'])
  app.addHook('onRequest', async (request, reply) => {
    request.broker = {}
    reply.header('x-request-id', request.id)
  })

  // Bodies are forwarded as bytes, never parsed.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, _payload, done) => done(null))

  app.setErrorHandler((error: Error & { statusCode?: number, code?: string }, request, reply) => {
    const brokerError: BrokerHttpError = isBrokerHttpError(error)
      ? error
      : error.statusCode !== undefined && error.statusCode < 500
        ? Object.assign(new BrokerBadRequest(error.message), { statusCode: error.statusCode })
        : new BrokerInternalError()
    if (brokerError.statusCode >= 500 && !isBrokerHttpError(error)) {
      request.log.error({ err: { message: error.message, code: error.code } }, 'unexpected error')
    }
    if (brokerError.retryAfter !== undefined) reply.header('retry-after', String(brokerError.retryAfter))
    reply.code(brokerError.statusCode).type('application/json; charset=utf-8').send(errorBody(brokerError, request.id))
  })

  registerInbound(app, config)
  registerOwnEndpoints(app, { profiles, clock })

  const forward = createForwarder({
    dispatcher, config, route: createProfileRouter(profiles), authorize: createAuthorizer(profiles)
  })
  app.all('/*', forward)

  app.addHook('onReady', async () => {
    for (const profile of profiles) {
      profile.tokens.start().catch(() => {})
    }
  })
  app.addHook('onClose', async () => {
    for (const profile of profiles) profile.tokens.close()
    if (deps.dispatcher === undefined) await dispatcher.close()
  })
  return app
}

function rejectTarget (req: IncomingMessage, res: ServerResponse, reason: string, logger: Logger): void {
  const id = requestId(req)
  const body = errorBody(new BrokerBadRequestTarget(reason), id)
  logger.info({ reqId: id, method: req.method, status: 400, reason }, 'request target refused')
  res.writeHead(400, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-request-id': id,
    connection: 'close'
  })
  res.end(body)
}
