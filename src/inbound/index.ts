import type { IncomingMessage } from 'node:http'
import type { FastifyInstance } from 'fastify'
import { isBrokerTokenShaped, type BrokerTokens } from '../broker-tokens/broker-token.js'
import type { Config } from '../config/types.js'
import { BrokerForbidden, BrokerMisdirected, BrokerUnauthenticated } from '../common/errors.js'
import { isSignInRoute, OPEN_PATHS } from '../common/paths.js'
import type { Profile } from '../runtime/profiles.js'
import { fromBrowserPage, createHostCheck } from './browser-defences.js'
import { createClientRegistry, presentedKey, type Client } from './client-keys.js'
import { markAuthenticated } from './connections.js'
import { tunnelOf } from './egress-proxy.js'
import { compileRules } from './rules.js'

const ALLOW_ALL = compileRules([])

/**
 * Who may use the broker, checked before anything reaches msal-node or the API: the Host
 * header (DNS rebinding), browser pages (CSRF), then the client key or broker token. Throws
 * the refusal; returns the client whose key or token was presented (none when the broker
 * requires no keys and none came, or for a probe's open path).
 */
export function createInboundGate (config: Config, brokerTokens: BrokerTokens) {
  const hostAllowed = createHostCheck(config.listen.host, config.listen.allowedHosts)
  const clients = createClientRegistry(config.clients)
  const verify = clients.verify
  const keysRequired = config.clients.length > 0

  /** The client a broker token names, pinned to the token's profile; a token that does not verify is refused. */
  function tokenClient (token: string): Client {
    const verified = brokerTokens.verify(token)
    if (!verified.ok) throw new BrokerUnauthenticated()
    const { sub, broker_profile: profile } = verified.claims
    const client = keysRequired ? clients.named(sub) : { name: sub, profiles: undefined, allows: ALLOW_ALL }
    if (client === undefined) throw new BrokerUnauthenticated()
    return { ...client, profile }
  }

  return function admit (req: IncomingMessage, openPath: boolean): Client | undefined {
    const tunnel = tunnelOf(req.socket)
    const badHost = tunnel === undefined ? hostAllowed(req) : tunnelHostMismatch(req, tunnel.host, tunnel.port)
    if (badHost !== undefined) throw new BrokerMisdirected(JSON.stringify(badHost))
    const browser = fromBrowserPage(req)
    if (browser !== undefined) throw new BrokerForbidden(browser)
    const key = presentedKey(req.headers)
    if (openPath) {
      // A probe needs no key; one that sends a valid key still gets its connection counted as a client's.
      if (keysRequired && key !== undefined && verify(key) !== undefined) markAuthenticated(req.socket)
      return undefined
    }
    if (key !== undefined && isBrokerTokenShaped(key)) {
      const client = tokenClient(key)
      markAuthenticated(req.socket)
      return client
    }
    // Inside an intercepted CONNECT, the key of its Proxy-Authorization stands for a request that carries none.
    if (key === undefined && tunnel?.client !== undefined) {
      markAuthenticated(req.socket)
      return tunnel.client
    }
    if (!keysRequired) return undefined
    const client = verify(key)
    if (client === undefined) throw new BrokerUnauthenticated()
    markAuthenticated(req.socket)
    return client
  }
}

/** Inside an intercepted CONNECT, the one host a request may name is the CONNECT's. */
function tunnelHostMismatch (req: IncomingMessage, host: string, port: number): string | undefined {
  const sent = req.headers.host?.toLowerCase()
  if (sent === undefined) return 'no Host header'
  return sent === host || sent === `${host}:${port}` ? undefined : sent
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The client whose key was presented; undefined when the broker requires no keys, or on an open path. */
    caller: Client | undefined
  }
}

/**
 * The same checks for the broker's own endpoints, which fastify serves. Past the probes' open
 * paths, the own endpoints follow the client's rules like any path (`GET /status`,
 * `GET /metrics`); the profiles' rules are about what goes to their API, and do not apply.
 */
export function registerInbound (app: FastifyInstance, admit: ReturnType<typeof createInboundGate>): void {
  app.decorateRequest('caller', undefined)
  // A callback hook: no promise per request for checks that never wait.
  app.addHook('onRequest', (request, _reply, done) => {
    try {
      // The sign-in endpoints take their client's key in the request itself.
      const route = request.routeOptions.url ?? ''
      const client = admit(request.raw, OPEN_PATHS.has(route) || isSignInRoute(route))
      if (client !== undefined) {
        request.caller = client
        request.broker.client = client.name
        assertClientAllows(client, request.method, request.raw.url as string)
      }
    } catch (err) {
      done(err as Error)
      return
    }
    done()
  })
}

function assertClientAllows (client: Client, method: string, target: string): void {
  if (!client.allows(method, target)) throw new BrokerForbidden(`the rules of client ${client.name} do not allow it`)
}

/** A request must pass its client's rules and its profile's. */
export function createAuthorizer (profiles: readonly Profile[]) {
  const profileRules = new Map(profiles.map((profile) => [profile.config.name, compileRules(profile.config.allow)]))
  return function authorize (client: Client | undefined, method: string, profile: Profile, upstreamTarget: string): void {
    if (client !== undefined) {
      if (client.profiles !== undefined && !client.profiles.has(profile.config.name)) {
        throw new BrokerForbidden(`client ${client.name} may not use profile ${profile.config.name}`)
      }
      assertClientAllows(client, method, upstreamTarget)
    }
    if (profileRules.get(profile.config.name)?.(method, upstreamTarget) === false) {
      throw new BrokerForbidden(`the rules of profile ${profile.config.name} do not allow it`)
    }
  }
}
