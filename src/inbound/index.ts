import type { IncomingMessage } from 'node:http'
import type { FastifyInstance } from 'fastify'
import type { Config } from '../config/types.js'
import { BrokerForbidden, BrokerMisdirected, BrokerUnauthenticated } from '../common/errors.js'
import { OPEN_PATHS } from '../common/paths.js'
import type { Profile } from '../runtime/profiles.js'
import { fromBrowserPage, createHostCheck } from './browser-defences.js'
import { createKeyVerifier, presentedKey, type Client } from './client-keys.js'
import { markAuthenticated } from './connections.js'
import { tunnelOf } from './egress-proxy.js'
import { compileRules } from './rules.js'

/**
 * Who may use the broker, checked before anything reaches msal-node or the API: the Host
 * header (DNS rebinding), browser pages (CSRF), then the client key. Throws the refusal;
 * returns the client whose key was presented (none when the broker requires no keys, or for a
 * probe's open path).
 */
export function createInboundGate (config: Config) {
  const hostAllowed = createHostCheck(config.listen.host, config.listen.allowedHosts)
  const verify = createKeyVerifier(config.clients)
  const keysRequired = config.clients.length > 0

  return function admit (req: IncomingMessage, openPath: boolean): Client | undefined {
    const tunnel = tunnelOf(req.socket)
    const badHost = tunnel === undefined ? hostAllowed(req) : tunnelHostMismatch(req, tunnel.host, tunnel.port)
    if (badHost !== undefined) throw new BrokerMisdirected(JSON.stringify(badHost))
    const browser = fromBrowserPage(req)
    if (browser !== undefined) throw new BrokerForbidden(browser)
    if (!keysRequired) return undefined
    if (openPath) {
      // A probe needs no key; one that sends a valid key still gets its connection counted as a client's.
      const key = presentedKey(req.headers)
      if (key !== undefined && verify(key) !== undefined) markAuthenticated(req.socket)
      return undefined
    }
    const key = presentedKey(req.headers)
    // Inside an intercepted CONNECT, the key of its Proxy-Authorization stands for a request that carries none.
    const client = key === undefined ? tunnel?.client : verify(key)
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
      const client = admit(request.raw, OPEN_PATHS.has(request.routeOptions.url ?? ''))
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
