import { setFlagsFromString } from 'node:v8'
import closeWithGrace from 'close-with-grace'
import type { FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import { buildApp, type AppDeps } from './app.js'
import type { Config } from './config/types.js'
import { assertSafeExposure } from './inbound/exposure.js'
import { describeProxies } from './outbound/dispatcher.js'

export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000

/**
 * undici parses HTTP in WebAssembly. On Node 20, V8 recompiles that parser with TurboFan after
 * the first few responses, which takes some 36 MiB of compiler memory for a moment, and the C
 * allocator keeps 10 MiB of it: a tenth of an idle broker's RSS, for a parser that is idle. Ten
 * times V8's default budget leaves it alone until the broker has real traffic. Node 24 does not
 * recompile it so early; there the setting changes nothing. It is set here, once Node's own
 * modules are loaded: a flag changed at run time makes V8 refuse their compiled code cache.
 */
export const WASM_TIERING_BUDGET = 18_000_000

export interface ServeOptions extends Omit<AppDeps, 'logger'> {
  logger: Logger
  /** The demo holds no real credential, so it may listen anywhere. */
  demo?: boolean
  /** Called once the app is closed, before the process exits (the demo stops its simulator). */
  onClose?: () => Promise<void>
}

export interface RunningBroker {
  app: FastifyInstance
  /** `http://host:port` as listened on. */
  url: string
  close: () => Promise<void>
}

/** The process: check exposure, build, listen, and close gracefully on SIGTERM/SIGINT. */
export async function startServer (config: Config, options: ServeOptions): Promise<RunningBroker> {
  assertSafeExposure(config, { demo: options.demo === true })
  const { logger } = options
  setFlagsFromString(`--wasm-tiering-budget=${WASM_TIERING_BUDGET}`)
  const app = await buildApp(config, options)
  await app.listen({ host: config.listen.host, port: config.listen.port })
  const address = app.server.address()
  const port = typeof address === 'object' && address !== null ? address.port : config.listen.port
  const host = config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host
  const url = `http://${host}:${port}`

  for (const profile of config.profiles) {
    if (config.source !== 'environment' || profile.credential.type !== 'managedIdentity') continue
    logger.info({ profile: profile.name, credential: profile.credential.type, source: profile.credentialSource },
      `no secret, certificate or federated token is set: profile ${profile.name} uses the managed identity found by ${profile.credentialSource}`)
  }
  logger.info({
    listen: url,
    inbound: config.clients.length > 0 ? `${config.clients.length} client key(s)` : 'no client keys: local processes only',
    profiles: config.profiles.map((p) => ({
      name: p.name,
      basePath: p.basePath,
      credential: p.credential.type,
      credentialSource: p.credentialSource,
      upstream: p.upstream,
      tenantId: p.tenantId
    })),
    outboundProxy: describeProxies(options.env ?? process.env) ?? 'none',
    caFile: config.caFile ?? 'none: the system\'s CAs only',
    config: config.source
  }, 'broker listening')
  // The start-up summary is not held back with the batched lines: it says the broker is up.
  logger.flush()

  let closed: Promise<void> | undefined
  const close = () => {
    closed ??= (async () => {
      grace.uninstall()
      await app.close()
      await options.onClose?.()
    })()
    return closed
  }
  const grace = closeWithGrace({
    delay: DEFAULT_SHUTDOWN_GRACE_MS,
    logger,
    onSecondSignal: (signal) => logger.error({ signal }, 'second signal: exiting at once (code 1), in-flight requests cut off'),
    onTimeout: (delay) => logger.error({ graceMs: delay }, 'in-flight requests did not finish in time: exiting (code 1)')
  }, async ({ signal, err }) => {
    if (err !== undefined) logger.error({ err: { message: err.message } }, 'closing after an unexpected error')
    else logger.info({ signal }, 'shutting down: draining in-flight requests')
    await close()
  })
  return { app, url, close }
}
