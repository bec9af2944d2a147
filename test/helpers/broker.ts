import { once } from 'node:events'
import { getGlobalDispatcher, request } from 'undici'
import type { TokenFailure } from '../../src/tokens/token-error.js'
import type { TokenHolder } from '../../src/tokens/token-holder.js'
import { Writable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { buildApp, type AppDeps } from '../../src/app.js'
import type { Clock } from '../../src/common/clock.js'
import { loadConfig } from '../../src/config/load.js'
import type { Config } from '../../src/config/types.js'
import { createLogger } from '../../src/observability/logger.js'
import { DEFENDER_ENDPOINTS } from '../../src/defender/catalogue.js'
import { startSimulator, type Simulator, type SimulatorOptions } from '../../src/simulator/index.js'

export interface LogSink {
  lines: Array<Record<string, unknown>>
  stream: Writable
  /** Every line as written, for canary searches. */
  text: () => string
}

/** A pino destination that keeps every line, for assertions on logs. */
export function createLogSink (): LogSink {
  const raw: string[] = []
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({
    write (chunk, _encoding, callback) {
      for (const line of String(chunk).split('\n')) {
        if (line === '') continue
        raw.push(line)
        lines.push(JSON.parse(line))
      }
      callback()
    }
  })
  return { lines, stream, text: () => raw.join('\n') }
}

export { createTestClock, type TestClock } from './clock.js'

interface Teardown {
  teardown: (fn: () => unknown) => void
}

export interface BrokerStack {
  simulator: Simulator
  app: FastifyInstance
  config: Config
  /** `http://127.0.0.1:PORT` of the broker. */
  url: string
  logs: LogSink
}

export interface BrokerStackOptions {
  simulator?: SimulatorOptions
  /** Environment on top of the simulator's credentials (e.g. BROKER_UPSTREAM for a custom upstream). */
  env?: Record<string, string | undefined>
  /** Changes to the loaded config (it is frozen: this makes a new one). */
  config?: (config: Config) => Config
  clock?: Clock
  deps?: Partial<AppDeps>
  /** Waits for the first token before returning (default true). */
  ready?: boolean
  /**
   * Runs once the simulator is up, before the config is loaded and the first token asked for:
   * register a certificate, change the secret, break the token endpoint.
   */
  beforeStart?: (simulator: Simulator) => unknown
  /**
   * Trusts the simulator's CA whatever the config says (default true); false leaves the CAs as
   * loaded (BROKER_CA_FILE, caFile). The outbound environment (HTTPS_PROXY, NO_PROXY) is
   * `deps.env`, empty unless given.
   */
  trustSimulatorCa?: boolean
}

/** What a user sets to run against the simulator, as for a real tenant: its app, its Entra ID and its API. */
export function simulatorEnv (simulator: Simulator): Record<string, string> {
  return {
    AZURE_TENANT_ID: simulator.tenantId,
    AZURE_CLIENT_ID: simulator.clientId,
    AZURE_CLIENT_SECRET: simulator.clientSecret,
    AZURE_AUTHORITY_HOST: simulator.entra.url,
    BROKER_UPSTREAM: simulator.defender.url
  }
}

/**
 * The simulator (msal-node runs for real against it) and the broker built from the
 * environment a user would set, listening on 127.0.0.1 port 0.
 */
export async function startBrokerStack (t: Teardown, options: BrokerStackOptions = {}): Promise<BrokerStack> {
  const simulator = await startSimulator({ ...options.simulator, ...(options.clock ? { clock: options.clock } : {}) })
  t.teardown(() => simulator.close())
  await options.beforeStart?.(simulator)
  const loaded = loadConfig({ env: { ...simulatorEnv(simulator), ...options.env } })
  const withCa = options.trustSimulatorCa === false ? loaded : { ...loaded, extraCaPem: simulator.caCertPem }
  const config = Object.freeze(options.config ? options.config(withCa) : withCa)
  const logs = createLogSink()
  const app = await buildApp(config, {
    logger: createLogger({ level: 'debug', destination: logs.stream }),
    env: {},
    ...(options.clock ? { clock: options.clock } : {}),
    ...options.deps
  })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  const url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
  if (options.ready !== false) await Promise.all(app.profiles.map((profile) => profile.tokens.get()))
  return { simulator, app, config, url, logs }
}

export interface HangingTokenStack {
  stack: BrokerStack
  /** Resolves once the first token request has reached the token endpoint, which never answers it. */
  tokenRequested: Promise<unknown>
}

/** A stack whose token endpoint hangs from the start: no first token, the broker not ready. */
export async function startHangingTokenStack (
  t: Teardown,
  options: Omit<BrokerStackOptions, 'ready' | 'beforeStart'> = {}
): Promise<HangingTokenStack> {
  let tokenRequested: Promise<unknown> | undefined
  const stack = await startBrokerStack(t, {
    ...options,
    ready: false,
    beforeStart: (simulator) => {
      simulator.entra.setMode('hang')
      tokenRequested = once(simulator.entra, 'token-request')
    }
  })
  if (tokenRequested === undefined) throw new TypeError('the simulator was not started')
  return { stack, tokenRequested }
}

/** Every application permission the API's endpoints name: a token that passes every preflight. */
export const ALL_ROLES: string[] = [...new Set(DEFENDER_ENDPOINTS.flatMap((endpoint) => endpoint.permissions))]

/** The token holder of the stack's profile at `index`, the first by default. */
export function holderOf (stack: BrokerStack, index = 0): TokenHolder {
  const profile = stack.app.profiles[index]
  if (profile === undefined) throw new TypeError(`the stack has no profile ${index}`)
  return profile.tokens
}

/** The claims of a token (a JWT), or of the bearer token in an Authorization header. */
export function claimsOf (token: string | undefined): Record<string, unknown> {
  const payload = (token ?? '').replace(/^Bearer /, '').split('.')[1] ?? ''
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>
}

/** The holder's last failure, or the next one when none is recorded yet. */
export async function nextFailure (holder: TokenHolder): Promise<[TokenFailure, number]> {
  const { lastError, retryAt } = holder.status()
  if (lastError !== undefined && retryAt !== undefined) return [lastError, retryAt]
  return await once(holder, 'failed') as [TokenFailure, number]
}

/** The status code of one `GET /api/alerts?$top=1` through the broker. */
export async function getAlerts (stack: BrokerStack): Promise<number> {
  const res = await request(`${stack.url}/api/alerts?$top=1`)
  await res.body.dump()
  return res.statusCode
}

/** The whole of `/status`, as text: for searches of what it shows. */
export async function statusText (stack: BrokerStack): Promise<string> {
  const res = await request(`${stack.url}/status`)
  return await res.body.text()
}

export interface JsonReply {
  status: number
  headers: Record<string, string | string[] | undefined>
  /** The body parsed as JSON; undefined when it is empty. */
  json: unknown
}

/** One GET of `path` (sent as it is) through the broker, its body parsed. */
export async function getJson (stack: BrokerStack, path: string, headers: Record<string, string> = {}): Promise<JsonReply> {
  const res = await getGlobalDispatcher().request({ origin: stack.url, path, method: 'GET', headers })
  const text = await res.body.text()
  return { status: res.statusCode, headers: res.headers, json: text === '' ? undefined : JSON.parse(text) }
}

/** The first profile's entry of `/status`. */
export async function statusOf (stack: BrokerStack): Promise<Record<string, unknown>> {
  const res = await request(`${stack.url}/status`)
  const body = await res.body.json() as { profiles: Array<Record<string, unknown>> }
  return body.profiles[0] ?? {}
}
