import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { Dispatcher } from 'undici'
import { systemClock, type Clock } from './clock.js'
import type { Config } from './config/types.js'
import { BrokerBadRequest, BrokerBadRequestTarget, BrokerNotFound, errorBody, type BrokerHttpError } from './errors.js'
import { createOutboundDispatcher } from './outbound/dispatcher.js'
import { createAuditLog } from './observability/audit.js'
import { lazyChildLogger } from './observability/logger.js'
import { FastifyRequestLog, RequestLog } from './observability/request-log.js'
import { registerOwnEndpoints, RESERVED_PATHS } from './observability/endpoints.js'
import { logTokenEvents } from './observability/token-log.js'
import { createMetrics, type BrokerMetrics } from './observability/metrics.js'
import { createProfileRouter, createProfiles, type Profile } from './profiles.js'
import { brokerErrorFor, createForwarder } from './proxy/forward.js'
import { createForwardingPipeline } from './proxy/pipeline.js'
import { createAuthorizer, createInboundGate, registerInbound } from './inbound/index.js'
import { trackConnections, type ConnectionDrain } from './inbound/connections.js'
import { applyConnectionLimits, DEFAULT_SERVER_LIMITS, serverOptions, type ServerLimits } from './inbound/limits.js'
import {
  isTrack, protocolViolation, rawErrorResponse, refusalHeaders, refuseConnect, refusedMethod, refuseUpgrade, responseOutstanding, unmetExpectation
} from './inbound/protocol.js'
import { checkRequestTarget, pathOf } from './proxy/request-target.js'

export interface AppDeps {
  logger: Logger
  clock?: Clock
  /** The outbound dispatcher; the app makes (and closes) its own when none is given. */
  dispatcher?: Dispatcher
  env?: NodeJS.ProcessEnv | Record<string, string | undefined>
  random?: () => number
  /** Server limits other than the defaults (tests use short timeouts). */
  limits?: Partial<ServerLimits>
}

declare module 'fastify' {
  interface FastifyInstance {
    profiles: readonly Profile[]
  }
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/
const OWN_PATHS = new Set<string>(RESERVED_PATHS)

/** The broker's own endpoints (fastify serves them); every other path is bound for the API. */
function isOwnEndpoint (target: string): boolean {
  return OWN_PATHS.has(pathOf(target))
}

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
  const profiles = createProfiles(config, { dispatcher, clock, random: deps.random, logger: deps.logger })
  const logger = deps.logger
  logTokenEvents(profiles, logger)
  const metrics = createMetrics(profiles, clock)
  const audit = createAuditLog({ file: config.audit.file, logger, clock })
  const requestLog = new RequestLog(audit, logger)
  const admit = createInboundGate(config)
  let closing = false
  const forwarding = createForwardingPipeline({
    requestId,
    admit,
    forward: createForwarder({
      dispatcher, config, clock, metrics, route: createProfileRouter(profiles), authorize: createAuthorizer(profiles)
    }),
    requestLog,
    metrics,
    logger,
    closing: () => closing
  })

  // The refusal says `connection: close`, so no request pipelined behind it may run (RFC 9112 9.6).
  const refusedConnections = new WeakSet<object>()
  const limits: ServerLimits = { ...DEFAULT_SERVER_LIMITS, ...deps.limits }
  let connections: ConnectionDrain | undefined
  const app = fastify({
    loggerInstance: logger as FastifyBaseLogger,
    logController: new FastifyRequestLog(requestLog),
    genReqId: requestId,
    childLoggerFactory: (logger, bindings, options) => lazyChildLogger(logger as unknown as Logger, bindings, options),
    requestIdHeader: false,
    // While draining, a request already on an open connection is answered as usual, with
    // `connection: close`: /readyz says 503 and why, a forwarded one still completes.
    return503OnClosing: false,
    trustProxy: false,
    // What fastify's router refuses before any hook runs (a percent-encoding that is not UTF-8)
    // gets the API's error shape and an id like everything else.
    frameworkErrors: (error, request, reply) => refuseUnroutable(error, request as FastifyRequest, reply as FastifyReply, metrics),
    // Bytes after a refusal, or behind a request still being answered, get no answer of their own:
    // it would arrive in place of the one the client is waiting for.
    clientErrorHandler: (err, socket) => refusedConnections.has(socket)
      ? socket.end()
      : responseOutstanding(socket) ? socket.destroy() : rejectUnparsable(err, socket, logger, metrics),
    serverFactory: (handler) => {
      const server = createServer(serverOptions(limits), (req: IncomingMessage, res: ServerResponse) => {
        if (refusedConnections.has(req.socket)) return
        // Before routing, hooks and everything else: a method that would echo the token back
        // (TRACE), a target that could mean another path or another origin, or framing a server
        // behind could read differently, is answered here and goes no further.
        const target = req.httpVersionMajor === 1
          ? checkRequestTarget(req.url)
          : 'a request line with no HTTP/1.x version (a line break in the target)'
        const refusal = refusedMethod(req.method) ??
          (target !== undefined ? new BrokerBadRequestTarget(target) : refusalOf(protocolViolation(req)))
        if (refusal !== undefined) {
          refusedConnections.add(req.socket)
          metrics.inboundRejected(refusal.code)
          return rejectRequest(req, res, refusal, logger)
        }
        if (isOwnEndpoint(req.url as string)) handler(req, res)
        else forwarding(req, res)
      })
      server.on('upgrade', (req: IncomingMessage, socket: Duplex) => {
        metrics.inboundRejected(refuseUpgrade(req, socket, logger).code)
      })
      // Without a listener Node would drop a CONNECT's connection unanswered.
      server.on('connect', (req: IncomingMessage, socket: Duplex) => {
        metrics.inboundRejected(refuseConnect(req, socket, logger).code)
      })
      server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
        refusedConnections.add(req.socket)
        const refusal = unmetExpectation()
        metrics.inboundRejected(refusal.code)
        rejectRequest(req, res, refusal, logger)
      })
      connections = trackConnections(server, {
        maxConnections: limits.maxConnections,
        unauthenticatedIdleTimeoutMs: limits.unauthenticatedIdleTimeoutMs,
        keysRequired: config.clients.length > 0
      })
      return applyConnectionLimits(server, limits)
    }
  })

  app.decorate('profiles', profiles)
  app.decorateRequest('broker', null as unknown as FastifyRequest['broker'])
  app.addHook('onRequest', (request, reply, done) => {
    request.broker = {}
    reply.header('x-request-id', request.id)
    done()
  })

  // The own endpoints take no body: whatever comes is left unread, never parsed.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, _payload, done) => done(null))

  app.setErrorHandler((error: Error & { statusCode?: number, code?: string }, request, reply) => {
    const brokerError = brokerErrorFor(error, request.broker ?? {}, metrics,
      (unexpected) => request.log.error({ err: unexpected }, 'unexpected error'))
    if (brokerError.retryAfter !== undefined) reply.header('retry-after', String(brokerError.retryAfter))
    reply.code(brokerError.statusCode).type('application/json; charset=utf-8').send(errorBody(brokerError, request.id))
  })

  registerInbound(app, admit)
  registerOwnEndpoints(app, { profiles, clock, metrics })
  // A method the own endpoints do not serve (PROPFIND /status): still the broker's, not the API's.
  app.setNotFoundHandler((request) => {
    throw new BrokerNotFound(pathOf(request.raw.url as string))
  })

  app.addHook('onReady', async () => {
    for (const profile of profiles) {
      profile.tokens.start().catch(() => {})
    }
  })
  // Draining: what has nothing in progress is closed at once; the rest as it finishes.
  app.addHook('preClose', async () => {
    closing = true
    connections?.closeIdle()
  })
  app.addHook('onClose', async () => {
    for (const profile of profiles) profile.tokens.close()
    await Promise.all(profiles.map((profile) => profile.budget.close()))
    if (deps.dispatcher === undefined) await dispatcher.close()
    audit.close()
  })
  return app
}

function refuseUnroutable (error: FastifyError, request: FastifyRequest, reply: FastifyReply, metrics: BrokerMetrics): void {
  const refusal: BrokerHttpError = error.code === 'FST_ERR_BAD_URL'
    ? new BrokerBadRequestTarget('a percent-encoding that does not decode to UTF-8')
    : Object.assign(new BrokerBadRequest('its path cannot be routed'), { statusCode: error.statusCode ?? 400 })
  metrics.inboundRejected(refusal.code)
  request.broker = { code: refusal.code }
  reply.code(refusal.statusCode).header('x-request-id', request.id).type('application/json; charset=utf-8')
    .send(errorBody(refusal, request.id))
}

function refusalOf (reason: string | undefined): BrokerHttpError | undefined {
  return reason === undefined ? undefined : new BrokerBadRequest(reason)
}

function rejectRequest (req: IncomingMessage, res: ServerResponse, error: BrokerHttpError, logger: Logger): void {
  const id = requestId(req)
  const body = errorBody(error, id)
  logger.info({ reqId: id, method: req.method, status: error.statusCode, code: error.code, reason: error.message }, 'request refused')
  res.writeHead(error.statusCode, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    ...refusalHeaders(error),
    'x-request-id': id,
    connection: 'close'
  })
  res.end(body)
}

/** Bytes Node's HTTP parser refuses never reach a handler; they still get the API's error shape and an id. */
function rejectUnparsable (err: Error & { code?: string }, socket: Duplex, logger: Logger, metrics: BrokerMetrics): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const error = parserRefusal(err)
  const id = randomUUID()
  metrics.inboundRejected(error.code)
  logger.info({ reqId: id, status: error.statusCode, reason: err.code }, 'request refused by the HTTP parser')
  if (socket.writable) socket.write(rawErrorResponse(error, id))
  socket.destroy()
}

/** What the broker answers for bytes Node's parser refused, by the parser's error code. */
function parserRefusal (err: Error & { code?: string }): BrokerHttpError {
  switch (err.code) {
    // Node's parser knows no TRACK: it gets the 405 a TRACE gets.
    case 'HPE_INVALID_METHOD': return isTrack(err) ? refusedMethod('TRACK') as BrokerHttpError : new BrokerBadRequest('it is not valid HTTP/1.1')
    case 'HPE_INVALID_URL': return new BrokerBadRequestTarget('a control, space or non-ASCII character')
    case 'HPE_HEADER_OVERFLOW': return Object.assign(new BrokerBadRequest('its headers are too large'), { statusCode: 431 })
    case 'ERR_HTTP_REQUEST_TIMEOUT': return Object.assign(new BrokerBadRequest('it did not arrive in time'), { statusCode: 408 })
    default: return new BrokerBadRequest('it is not valid HTTP/1.1')
  }
}
