import fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { Dispatcher } from 'undici'
import { BrokerTokens } from './broker-tokens/broker-token.js'
import { createSigningKey } from './broker-tokens/signing-key.js'
import { systemClock, type Clock } from './common/clock.js'
import { BrokerNotFound } from './common/errors.js'
import { pathOf } from './common/paths.js'
import type { Config } from './config/types.js'
import { createTunnelRouter, interceptedHosts } from './egress/hosts.js'
import { createKeyVerifier } from './inbound/client-keys.js'
import { EgressProxy } from './inbound/egress-proxy.js'
import { FrontDoor, requestId } from './inbound/front-door.js'
import { createClientRegistry } from './inbound/client-keys.js'
import { createAuthorizer, createInboundGate, registerInbound } from './inbound/index.js'
import { DEFAULT_SERVER_LIMITS, type ServerLimits } from './inbound/limits.js'
import { Refusals } from './inbound/refusal.js'
import { createAuditLog } from './observability/audit.js'
import { lazyChildLogger } from './observability/logger.js'
import { createMetrics } from './observability/metrics.js'
import { FastifyRequestLog, RequestLog } from './observability/request-log.js'
import { logTokenEvents } from './observability/token-log.js'
import { createOutboundDispatcher } from './outbound/dispatcher.js'
import { registerOwnEndpoints } from './own-routes.js'
import { SharedReads } from './proxy/shared-reads.js'
import { createForwarder } from './proxy/forward.js'
import { createForwardingPipeline } from './proxy/pipeline.js'
import { createProfileRouter, createProfiles, type Profile } from './runtime/profiles.js'
import { createIssuer } from './sign-in/issuer.js'
import { registerSignIn } from './sign-in/routes.js'

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
  const refusals = new Refusals({ metrics, requestLog, logger })
  const brokerTokens = new BrokerTokens({
    key: createSigningKey(config), clock, clients: config.clients, profiles: config.profiles.map(({ name }) => name)
  })
  const admit = createInboundGate(config, brokerTokens)
  let closing = false
  const route = createProfileRouter(profiles)
  const forwarding = createForwardingPipeline({
    requestId,
    admit,
    forward: createForwarder({
      dispatcher,
      config,
      clock,
      metrics,
      route,
      routeTunnelled: createTunnelRouter(profiles, route),
      authorize: createAuthorizer(profiles),
      reads: new SharedReads({ clock, ...config.reads, profiles: config.profiles })
    }),
    requestLog,
    refusals,
    closing: () => closing
  })
  const limits: ServerLimits = { ...DEFAULT_SERVER_LIMITS, ...deps.limits }
  const egressProxy = config.egressProxy.enabled ? await createEgressProxy(config, clock, refusals, requestLog, logger) : undefined
  const frontDoor = new FrontDoor({ limits, keysRequired: config.clients.length > 0, refusals, forward: forwarding, egressProxy })

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
    // What fastify's router refuses before any hook runs gets the API's error shape and an id like everything else.
    frameworkErrors: (error, request, reply) => refusals.toReply(error, request as FastifyRequest, reply as FastifyReply),
    clientErrorHandler: (err, socket) => frontDoor.clientError(err, socket),
    serverFactory: (handler) => frontDoor.createServer(handler)
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

  app.setErrorHandler((error: Error, request, reply) => refusals.toReply(error, request, reply))

  registerInbound(app, admit)
  registerOwnEndpoints(app, { profiles, clock, metrics, clients: config.clients })
  registerSignIn(app, {
    issuer: createIssuer({ profiles, clients: createClientRegistry(config.clients), keysRequired: config.clients.length > 0, brokerTokens }),
    clock,
    metrics,
    refusals
  })
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
    frontDoor.closeIdle()
  })
  app.addHook('onClose', async () => {
    for (const profile of profiles) profile.tokens.close()
    await Promise.all(profiles.map((profile) => profile.budget.close()))
    if (deps.dispatcher === undefined) await dispatcher.close()
    audit.close()
  })
  return app
}

/** The egress proxy with its CA, made or read now: a CA that cannot be had stops the start, not the first tool. */
async function createEgressProxy (config: Config, clock: Clock, refusals: Refusals, requestLog: RequestLog, logger: Logger): Promise<EgressProxy> {
  // Loaded only with the mode on: the certificate library is not part of a plain broker's start.
  const { LeafCertificates, loadEgressCa } = await import('./egress/certificates.js')
  const leaves = new LeafCertificates(await loadEgressCa(config, clock), clock)
  return new EgressProxy({
    intercepted: interceptedHosts(config),
    tunnelAllow: config.egressProxy.tunnelAllow,
    contextFor: (host) => leaves.contextFor(host),
    keysRequired: config.clients.length > 0,
    verify: createKeyVerifier(config.clients),
    refusals,
    requestLog,
    connectTimeoutMs: config.upstreamTimeouts.connectSeconds * 1000,
    logger
  })
}
