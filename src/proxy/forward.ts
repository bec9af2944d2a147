import type { Dispatcher } from 'undici'
import { sleep, type Clock } from '../clock.js'
import type { Config } from '../config/types.js'
import { endpointChangesState, findEndpoint, missingPermission, type DefenderEndpoint } from '../defender/endpoints.js'
import {
  BrokerBadRequest, BrokerBadRequestTarget, BrokerInternalError, BrokerMissingPermission, BrokerNotFound, BrokerUpstreamTimeout,
  BrokerUpstreamUnreachable, isBrokerHttpError, type BrokerHttpError
} from '../errors.js'
import type { Client } from '../inbound/client-keys.js'
import { watchMachineActionId } from '../observability/audit.js'
import type { BrokerMetrics } from '../observability/metrics.js'
import type { RequestFacts } from '../observability/request-log.js'
import type { Profile, ProfileMatch } from '../profiles.js'
import { causeOf429 } from '../ratelimit/pauses.js'
import type { HeldToken } from '../tokens/token-holder.js'
import { upstreamRequestHeaders } from './headers.js'
import { takeRequestBody, type RequestBody } from './request-body.js'
import { shapeResponse } from './response.js'
import { UpstreamExchange } from './upstream-exchange.js'
import { ClientWatch } from './client-watch.js'
import type { ForwardedRequest } from './forwarded-request.js'
import { pathOf } from './request-target.js'
import { parseRetryAfter } from './retry-after.js'

export interface ForwarderOptions {
  dispatcher: Dispatcher
  config: Config
  clock: Clock
  metrics: BrokerMetrics
  route: (target: string) => ProfileMatch | undefined
  authorize: (client: Client | undefined, method: string, profile: Profile, upstreamTarget: string) => void
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

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
    const failed = (err: unknown) => upstreamFailure(err, origin, name, metrics)
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

/**
 * What the broker answers for an error a request ran into, counted and recorded in `facts`:
 * its own errors as they are; a failure of the API's body once it was being passed on is the
 * API's (502 or 504); anything else a 400 when Node or fastify said the request was at fault,
 * a 500 otherwise, which `logUnexpected` reports.
 */
export function brokerErrorFor (
  error: Error & { statusCode?: number, code?: string },
  facts: RequestFacts,
  metrics: BrokerMetrics,
  logUnexpected: (err: { message: string | undefined, code: string | undefined }) => void
): BrokerHttpError {
  const brokerError = classifyError(error, facts, metrics)
  if (brokerError.statusCode >= 500 && !isBrokerHttpError(error)) logUnexpected({ message: error?.message, code: error?.code })
  if (brokerError.statusCode < 500) metrics.inboundRejected(brokerError.code)
  facts.code = brokerError.code
  return brokerError
}

function classifyError (error: Error & { statusCode?: number }, facts: RequestFacts, metrics: BrokerMetrics): BrokerHttpError {
  if (isBrokerHttpError(error)) return error
  if (facts.upstream !== undefined && error.statusCode === undefined) return upstreamFailure(error, facts.upstream, facts.profile, metrics)
  if (error.statusCode !== undefined && error.statusCode < 500) {
    return Object.assign(new BrokerBadRequest(error.message), { statusCode: error.statusCode })
  }
  return new BrokerInternalError()
}

/** A failure to reach or read the API: counted for the profile, and answered 502 or 504. */
export function upstreamFailure (err: unknown, origin: string, profile: string | undefined, metrics: BrokerMetrics) {
  const error = upstreamError(err, origin)
  if (profile !== undefined) metrics.upstreamFailed(profile, error.code)
  return error
}

/** What a failure to reach or read the API is called in the broker's answer. */
function upstreamError (err: unknown, origin: string) {
  const code = (err as { code?: string })?.code ?? 'unknown'
  if (TIMEOUT_CODES.has(code)) return new BrokerUpstreamTimeout(origin)
  return new BrokerUpstreamUnreachable(origin, describeNetworkError(code))
}

function describeNetworkError (code: string): string {
  switch (code) {
    case 'ECONNREFUSED': return 'connection refused'
    case 'ECONNRESET':
    case 'UND_ERR_SOCKET': return 'connection reset'
    case 'ENOTFOUND':
    case 'EAI_AGAIN': return 'name not resolved'
    case 'UND_ERR_CONNECT_TIMEOUT': return 'connect timeout'
    default: return code.startsWith('ERR_TLS') || code.includes('CERT') || code.includes('SIGNATURE')
      ? `TLS: ${code}`
      : code
  }
}
