import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Config } from '../config/types.js'
import { BrokerForbidden, BrokerMisdirected, BrokerUnauthenticated } from '../errors.js'
import type { Profile } from '../profiles.js'
import { fromBrowserPage, createHostCheck } from './browser-defences.js'
import { createKeyVerifier, presentedKey, type Client } from './client-keys.js'
import { compileRules } from './rules.js'

declare module 'fastify' {
  interface FastifyRequest {
    client: Client | undefined
  }
}

/** Probes reach these without a key: an orchestrator has none. */
const OPEN_PATHS = new Set(['/healthz', '/readyz'])

/**
 * Who may use the broker, checked before anything reaches msal-node or the API: the Host
 * header (DNS rebinding), browser pages (CSRF), then the client key.
 */
export function registerInbound (app: FastifyInstance, config: Config): void {
  const hostAllowed = createHostCheck(config.listen.host, config.listen.allowedHosts)
  const verify = createKeyVerifier(config.clients)
  const keysRequired = config.clients.length > 0

  app.decorateRequest('client', undefined)
  // A callback hook: no promise per request for checks that never wait.
  app.addHook('onRequest', (request, _reply, done) => {
    const badHost = hostAllowed(request.raw)
    if (badHost !== undefined) return done(new BrokerMisdirected(JSON.stringify(badHost)))
    const browser = fromBrowserPage(request.raw)
    if (browser !== undefined) return done(new BrokerForbidden(browser))
    if (!keysRequired || OPEN_PATHS.has(request.routeOptions.url ?? '')) return done()
    const client = verify(presentedKey(request.headers))
    if (client === undefined) return done(new BrokerUnauthenticated())
    request.client = client
    request.broker.client = client.name
    done()
  })
}

/** A request must pass its client's rules and its profile's. */
export function createAuthorizer (profiles: readonly Profile[]) {
  const profileRules = new Map(profiles.map((profile) => [profile.config.name, compileRules(profile.config.allow)]))
  return function authorize (request: FastifyRequest, profile: Profile, upstreamTarget: string): void {
    const client = request.client
    const method = request.raw.method as string
    if (client !== undefined) {
      if (client.profiles !== undefined && !client.profiles.has(profile.config.name)) {
        throw new BrokerForbidden(`client ${client.name} may not use profile ${profile.config.name}`)
      }
      if (!client.allows(method, upstreamTarget)) throw new BrokerForbidden(`the rules of client ${client.name} do not allow it`)
    }
    if (profileRules.get(profile.config.name)?.(method, upstreamTarget) === false) {
      throw new BrokerForbidden(`the rules of profile ${profile.config.name} do not allow it`)
    }
  }
}
