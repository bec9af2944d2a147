import type { Dispatcher } from 'undici'
import { sleep, type Clock } from '../common/clock.js'
import type { Config } from '../config/types.js'
import { endpointChangesState, findEndpoint, missingPermission, type DefenderEndpoint } from '../defender/catalogue.js'
import { BrokerBadRequestTarget, BrokerMissingPermission, BrokerNotFound } from '../common/errors.js'
import type { Client } from '../inbound/client-keys.js'
import { watchMachineActionId } from '../observability/audit.js'
import type { BrokerMetrics } from '../observability/metrics.js'
import { upstreamError } from '../outbound/network-failure.js'
import type { Profile, ProfileMatch } from '../runtime/profiles.js'
import { causeOf429 } from '../ratelimit/pauses.js'
import type { HeldToken } from '../tokens/token-holder.js'
import { upstreamRequestHeaders } from './headers.js'
import { takeRequestBody, type RequestBody } from './request-body.js'
import { shapeResponse } from './response.js'
import { UpstreamExchange } from './upstream-exchange.js'
import { ClientWatch } from './client-watch.js'
import type { ForwardedRequest } from './forwarded-request.js'
import { pathOf } from '../common/paths.js'
import { parseRetryAfter } from './retry-after.js'

export interface ForwarderOptions {
  dispatcher: Dispatcher
  config: Config
  clock: Clock
  metrics: BrokerMetrics
  route: (target: string) => ProfileMatch | undefined
  authorize: (client: Client | undefined, method: string, profile: Profile, upstreamTarget: string) => void
}

/**
 * The catch-all handler: one request in, the same request out to the profile's upstream, with
 * what the Defender API needs around it: the permission preflight, the local budget, one replay
 * after a 401 with a fresh token, waiting out a 429 for reads, and paging kept on the broker.
 */
export function createForwarder (options: ForwarderOptions) {
  const { dispatcher, route, authorize, clock, metrics } = options
  const responseTimeoutMs = options.config.upstreamTimeouts.responseSeconds * 1000
  const { maxAttempts, maxWaitSeconds, maxPauseSeconds } = options.config.retry

  return async function forward (request: ForwardedRequest): Promise<void> {
    const { req, res, facts } = request
    const target = req.url as string
    const match = route(target)
    if (match === undefined) throw new BrokerNotFound(pathOf(target))
    const { profile, upstreamTarget } = match
    const name = profile.config.name
    const origin = profile.config.upstream
    const method = req.method as string
    facts.profile = name
    const endpoint = findEndpoint(method, upstreamTarget)
    // What the audit records: a hunting query is a POST that changes nothing; an unknown POST may.
    const stateChange = endpointChangesState(method, endpoint)
    facts.changesState = stateChange
    const failed = (err: unknown) => upstreamError(err, origin)
    authorize(request.caller, method, profile, upstreamTarget)
    assertSameOrigin(origin, upstreamTarget)

    // Most requests find the token held and the body absent: no promise to wait on for either.
    let token = profile.tokens.usable() ?? await profile.tokens.get()
    preflight(endpoint, token)

    // Whatever is under way for the client stops when it goes away: a wait, or the API's call.
    const client = new ClientWatch(res)
    const idempotentRead = method === 'GET' || method === 'HEAD'
    let renewed = false
    let body: RequestBody | undefined

    for (let attempt = 1; ; attempt++) {
      const wait = profile.budget.acquire(endpoint?.rateLimit, client)
      if (wait !== undefined) await wait
      if (client.gone) return
      // Read only once the rules, the preflight and the budget let the request through: one
      // refused, or waiting its turn, holds no body. (Unread, Node discards it after the answer.)
      if (body === undefined) {
        const taken = takeRequestBody(req)
        body = taken instanceof Promise ? await taken : taken
        if (client.gone) return
      }
      const started = performance.now()
      const exchange = client.watch(new UpstreamExchange()).start(dispatcher, {
        origin,
        path: upstreamTarget,
        method: method as Dispatcher.HttpMethod,
        headers: upstreamRequestHeaders(req.headers, `Bearer ${token.value}`),
        body: bodyOf(body),
        headersTimeout: responseTimeoutMs,
        bodyTimeout: responseTimeoutMs
      })
      let head
      try {
        head = await exchange.head
      } catch (err) {
        if (client.gone) return
        throw failed(err)
      }
      const status = head.status
      metrics.upstreamResponse(name, method, status, (performance.now() - started) / 1000)

      if (status === 401 && !renewed) {
        // The API refused the token (revoked, rotated credential): one fresh token (at most one
        // such request per refresh.after401Seconds, else the 401 goes back), and one replay when
        // the body was kept for it; otherwise the 401 goes back and the next request gets it.
        renewed = true
        const renewal = profile.tokens.renewAfter401(token.value)
        if (renewal !== undefined && body.replayable) {
          await exchange.dump()
          token = await renewal
          preflight(endpoint, token)
          continue
        }
        renewal?.catch(() => {})
      }
      if (status === 429) {
        const seconds = parseRetryAfter(head.headers['retry-after'], clock.now())
        if (seconds !== undefined) {
          // Only the budget the request was counted against, and never longer than retry.maxPauseSeconds.
          const until = clock.now() + Math.min(seconds, maxPauseSeconds) * 1000
          profile.budget.pause(endpoint?.rateLimit, until, causeOf429(method, endpoint?.path, upstreamTarget))
        }
        if (idempotentRead && attempt < maxAttempts && seconds !== undefined && seconds <= maxWaitSeconds) {
          await exchange.dump()
          try {
            await sleep(clock, seconds * 1000, client.signal)
          } catch {
            return
          }
          continue
        }
      }

      const requestId = head.headers['request-id'] ?? head.headers['x-ms-request-id']
      if (typeof requestId === 'string') facts.upstreamRequestId = requestId
      facts.upstreamStatus = status
      const base = profile.config.basePath === '/' ? '' : profile.config.basePath
      facts.upstream = origin
      let shaped
      try {
        const shaping = shapeResponse(method, status, head.headers, exchange, origin, `http://${req.headers.host}${base}`)
        shaped = shaping instanceof Promise ? await shaping : shaping
      } catch (err) {
        if (client.gone) return
        throw failed(err)
      }
      const headers = shaped.headers
      const sent = stateChange && status >= 200 && status < 300
        ? watchMachineActionId(shaped.body ?? exchange.stream(), headers, (id) => { facts.machineActionId = id })
        : shaped.body
      if (Buffer.isBuffer(sent)) {
        request.send(status, headers, sent)
        return
      }
      try {
        // The API's body through transforms, or as it comes, straight into the client's response.
        await (sent !== undefined
          ? request.sendStream(status, headers, sent)
          : exchange.pipeTo(res, () => request.writeHead(status, headers)))
      } catch (err) {
        if (client.gone) return
        throw failed(err)
      }
      return
    }
  }
}

function bodyOf (body: RequestBody) {
  return body.replayable ? body.bytes : body.stream
}

/** Refuses, before calling the API, what the token's roles cannot do. */
function preflight (endpoint: DefenderEndpoint | undefined, token: HeldToken): void {
  if (endpoint === undefined) return
  const missing = missingPermission(endpoint, token.roles)
  if (missing !== undefined) throw new BrokerMissingPermission(endpoint.action, missing)
}

/**
 * One `/`, then anything but `/` or a backslash, in printable ASCII: a path-absolute reference, which
 * keeps the origin it is resolved against (RFC 3986 5.2, and the WHATWG URL parser alike).
 */
const PATH_ABSOLUTE = /^\/(?![/\\])[\x21-\x7e]*$/

/** The URL sent upstream is built from the profile's origin and must still have it. */
function assertSameOrigin (origin: string, path: string): void {
  // What the request-target checks let through takes the first test; the URL parser decides the rest.
  if (PATH_ABSOLUTE.test(path)) return
  if (new URL(path, origin).origin !== origin) {
    throw new BrokerBadRequestTarget('a target that leaves the upstream origin')
  }
}
