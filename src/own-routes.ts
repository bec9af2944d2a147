import type { FastifyInstance } from 'fastify'
import type { Clock } from './common/clock.js'
import { BrokerNotFound } from './common/errors.js'
import { RESERVED_PATHS } from './common/paths.js'
import type { ClientConfig } from './config/types.js'
import { dryRunClientsOf } from './guards/guards.js'
import type { Profile } from './runtime/profiles.js'
import { hintFor } from './tokens/token-error.js'
import type { BudgetReport } from './ratelimit/profile-budget.js'
import type { BrokerMetrics } from './observability/metrics.js'

export interface OwnEndpointsOptions {
  profiles: readonly Profile[]
  clients: readonly ClientConfig[]
  clock: Clock
  metrics: BrokerMetrics
}

function iso (ms: number | undefined): string | undefined {
  return ms === undefined ? undefined : new Date(ms).toISOString()
}

/** A profile's budget as /status shows it: each pause the API's 429s set, with its end in ISO time and its cause. */
function budgetView (report: BudgetReport) {
  return { ...report, pauses: report.pauses.map(({ budget, until, cause }) => ({ budget, until: iso(until), cause })) }
}

/**
 * A profile's guard rails as /status shows them: each cap with its use, the protected machines,
 * the indicator allowlist, and the clients whose state-changing calls are dry runs. Absent when
 * the profile has none and no client of it is a dry-run one.
 */
async function guardsView (profile: Profile, clients: readonly ClientConfig[]) {
  const { guards, config } = profile
  const dryRunClients = dryRunClientsOf(clients, config.name)
  if (!guards.active && dryRunClients.length === 0) return undefined
  return {
    actions: await guards.use(),
    protect: guards.config.protect,
    indicators: guards.config.indicators,
    dryRunClients
  }
}

/** The broker's own routes; registered before the catch-all so no profile can shadow them. */
export function registerOwnEndpoints (app: FastifyInstance, { profiles, clients, clock, metrics }: OwnEndpointsOptions): void {
  let closing = false
  app.addHook('preClose', async () => {
    closing = true
  })

  app.get('/healthz', async () => ({ status: 'ok' }))

  // The names are the broker's whatever the method: nothing under them goes upstream.
  for (const path of RESERVED_PATHS) {
    app.route({
      method: ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'],
      url: path,
      handler: async () => { throw new BrokerNotFound(path) }
    })
  }

  app.get('/readyz', async (_request, reply) => {
    const reasons: Record<string, string> = {}
    for (const profile of profiles) {
      if (profile.tokens.isReady()) continue
      const status = profile.tokens.status()
      const error = status.lastError === undefined ? '' : `: ${status.lastError.code}`
      reasons[profile.config.name] = status.state === 'none'
        ? `no token yet${error}`
        : `token expired${error}`
    }
    if (closing) reasons.broker = 'shutting down'
    const ready = Object.keys(reasons).length === 0
    reply.code(ready ? 200 : 503)
    return ready ? { status: 'ready' } : { status: 'not ready', reasons }
  })

  // A client limited to some profiles sees theirs and nothing of the others'.
  app.get('/metrics', async (request, reply) => {
    const { contentType, text } = await metrics.scrape(request.caller?.profiles)
    reply.type(contentType)
    return text
  })

  app.get('/status', async (request) => {
    const now = clock.now()
    // A client limited to some profiles sees those only: not the others' tenants, roles or errors.
    const only = request.caller?.profiles
    const shown = only === undefined ? profiles : profiles.filter(({ config }) => only.has(config.name))
    const [budgets, guards] = await Promise.all([
      Promise.all(shown.map(({ budget }) => budget.report())),
      Promise.all(shown.map((profile) => guardsView(profile, clients)))
    ])
    return {
      time: iso(now),
      profiles: shown.map(({ config, tokens, credential }, index) => {
        const status = tokens.status()
        return {
          name: config.name,
          basePath: config.basePath,
          tenantId: config.tenantId,
          clientId: config.clientId,
          credential: config.credential.type,
          cloud: config.cloud,
          // A managed identity's tokens come from its endpoint, not from an authority.
          authority: config.credential.type === 'managedIdentity' ? undefined : `${config.authorityHost}/${config.tenantId}`,
          upstream: config.upstream,
          scope: config.scope,
          token: {
            state: status.state,
            expiresAt: iso(status.expiresAt),
            expiresInSeconds: status.expiresAt === undefined ? undefined : Math.round((status.expiresAt - now) / 1000),
            refreshAt: iso(status.refreshAt),
            roles: status.roles
          },
          certificate: credential.certificate?.status(),
          budget: budgetView(budgets[index] as BudgetReport),
          guards: guards[index],
          nextAttemptAt: iso(status.retryAt),
          lastError: status.lastError === undefined
            ? undefined
            : { code: status.lastError.code, message: status.lastError.message, at: iso(status.lastError.at), hint: hintFor(status.lastError.code, config) }
        }
      })
    }
  })
}
