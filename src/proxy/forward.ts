import type { Socket } from 'node:net'
import type { Dispatcher } from 'undici'
import type { Clock } from '../common/clock.js'
import { BrokerBadRequestTarget, BrokerNotFound } from '../common/errors.js'
import { pathOf } from '../common/paths.js'
import type { Config } from '../config/types.js'
import { assertPermitted, endpointChangesState, findEndpoint } from '../defender/catalogue.js'
import type { Tunnel } from '../egress/hosts.js'
import type { Client } from '../inbound/client-keys.js'
import { tunnelOf } from '../inbound/egress-proxy.js'
import { watchMachineActionId } from '../observability/audit.js'
import type { BrokerMetrics } from '../observability/metrics.js'
import { upstreamError } from '../outbound/network-failure.js'
import type { Profile, ProfileMatch } from '../runtime/profiles.js'
import type { Answer, Call } from './call.js'
import { renewAfter401, waitOut429, type ExchangePolicy, type RetryLimits } from './exchange-policies.js'
import type { ForwardedRequest } from './forwarded-request.js'
import type { DryRunAnswer } from '../guards/dry-run.js'
import { createGuardStep } from './guard-step.js'
import { upstreamRequestHeaders } from './headers.js'
import { takeRequestBody } from './request-body.js'
import { shapeResponse } from './response.js'
import { readKey, SHARED_BODY_LIMIT, wantsFresh, type ReadOutcome, type SharedReads } from './shared-reads.js'
import { cutBody, holdBody, rejoin, StoredBody, streamedBody, type AnswerBody, type StoredAnswer } from './stored-answer.js'
import { UpstreamExchange, type UpstreamHead } from './upstream-exchange.js'

export interface ForwarderOptions {
  dispatcher: Dispatcher
  config: Config
  clock: Clock
  metrics: BrokerMetrics
  route: (target: string, pinned?: string) => ProfileMatch | undefined
  /** A request inside an intercepted CONNECT: routed by the host it was sent to, or by its broker token's profile. */
  routeTunnelled: (tunnel: Tunnel, target: string, pinned?: string) => ProfileMatch | undefined
  authorize: (client: Client | undefined, method: string, profile: Profile, upstreamTarget: string) => void
  /** Collapsing and the cache; absent, every read makes its own call. */
  reads?: SharedReads
}

/**
 * The catch-all handler: one request in, the same request out to the profile's upstream, with
 * what the Defender API needs around it. It reads as its steps: prepare (route, rules, origin,
 * endpoint, permission preflight, token), then for each attempt the budget and the exchange,
 * whose answer the policies (one replay after a 401 with a fresh token, waiting out a 429 for
 * reads) may send round again, then the answer passed on with paging kept on the broker.
 */
export function createForwarder (options: ForwarderOptions) {
  const { dispatcher, route, routeTunnelled, authorize, clock, metrics, reads } = options
  const responseTimeoutMs = options.config.upstreamTimeouts.responseSeconds * 1000
  const limits: RetryLimits = options.config.retry
  /** What may send a request round again, by the API's status. */
  const policies = new Map<number, ExchangePolicy>([[401, renewAfter401], [429, waitOut429(clock, limits)]])
  const guard = createGuardStep({ dispatcher, clock, metrics, responseTimeoutMs })

  /**
   * Route, rules, origin, endpoint, preflight and token, then for a state-changing call the guard
   * rails: everything decided before the budget. A dry run is answered here.
   */
  async function prepare (request: ForwardedRequest): Promise<Call> {
    const { req, facts } = request
    const target = req.url as string
    const tunnel = tunnelOf(req.socket)
    const match = tunnel === undefined ? route(target, request.caller?.profile) : routeTunnelled(tunnel, target, request.caller?.profile)
    if (match === undefined) throw new BrokerNotFound(pathOf(target))
    const { profile, upstreamTarget } = match
    const method = req.method as string
    facts.profile = profile.config.name
    const endpoint = findEndpoint(method, upstreamTarget)
    // What the audit records: a hunting query is a POST that changes nothing; an unknown POST may.
    facts.changesState = endpointChangesState(method, endpoint)
    authorize(request.caller, method, profile, upstreamTarget)
    assertSameOrigin(profile.config.upstream, upstreamTarget)
    // Most requests find the token held: no promise to wait on.
    const token = profile.tokens.usable() ?? await profile.tokens.get()
    assertPermitted(endpoint, token.roles)
    return { request, watch: request.client, profile, method, upstreamTarget, endpoint, token, body: undefined, renewed: false }
  }

  /** The budget's turn, then the body (read only once the request may go), then the API's head. */
  async function exchange (call: Call, attempt: number): Promise<Answer | undefined> {
    const { request, profile, method } = call
    const client = call.watch
    const wait = profile.budget.acquire(call.endpoint?.rateLimit, client)
    if (wait !== undefined) await wait
    if (client.gone) return undefined
    // One refused, or waiting its turn, holds no body. (Unread, Node discards it after the answer.)
    if (call.body === undefined) {
      const taken = takeRequestBody(request.req)
      call.body = taken instanceof Promise ? await taken : taken
      if (client.gone) return undefined
    }
    const origin = profile.config.upstream
    const started = performance.now()
    const exchange = client.watch(new UpstreamExchange()).start(dispatcher, {
      origin,
      path: call.upstreamTarget,
      method: method as Dispatcher.HttpMethod,
      headers: upstreamRequestHeaders(request.req.headers, `Bearer ${call.token.value}`),
      body: call.body.replayable ? call.body.bytes : call.body.stream,
      headersTimeout: responseTimeoutMs,
      bodyTimeout: responseTimeoutMs
    })
    let head
    try {
      head = await exchange.head
    } catch (err) {
      if (client.gone) return undefined
      throw upstreamError(err, origin)
    }
    metrics.upstreamResponse(profile.config.name, method, head.status, (performance.now() - started) / 1000)
    return { head, exchange, attempt }
  }

  /**
   * The API's answer to the client: rewritten where paging needs it, else piped as it comes.
   * `extra` are headers of the broker's own (`Age` on a kept answer).
   */
  async function deliver (call: Call, head: UpstreamHead, body: AnswerBody, extra?: Record<string, string>): Promise<void> {
    const { request, profile, method } = call
    const { req, res, facts } = request
    const origin = profile.config.upstream
    const status = head.status
    const requestId = head.headers['request-id'] ?? head.headers['x-ms-request-id']
    if (typeof requestId === 'string') facts.upstreamRequestId = requestId
    facts.upstreamStatus = status
    facts.upstream = origin
    // Through the egress proxy, the tool asked the API's own host: its pages stay on that host, and so on the proxy.
    const base = tunnelOf(req.socket as Socket | null) !== undefined
      ? `https://${req.headers.host}`
      : `http://${req.headers.host}${profile.config.basePath === '/' ? '' : profile.config.basePath}`
    try {
      const shaping = shapeResponse(method, status, head.headers, body, origin, base)
      const { headers, body: shaped } = shaping instanceof Promise ? await shaping : shaping
      if (extra !== undefined) Object.assign(headers, extra)
      const sent = facts.changesState === true && status >= 200 && status < 300
        ? watchMachineActionId(shaped ?? body.stream(), headers, (id) => { facts.machineActionId = id })
        : shaped
      if (Buffer.isBuffer(sent)) request.send(status, headers, sent)
      // The API's body through transforms, or as it comes, straight into the client's response.
      else if (sent !== undefined) await request.sendStream(status, headers, sent)
      else if (body.pipeTo !== undefined) await body.pipeTo(res, () => request.writeHead(status, headers))
      else await request.sendStream(status, headers, body.stream())
    } catch (err) {
      if (request.client.gone) return
      throw upstreamError(err, origin)
    }
  }

  /** The exchange, as often as the policies send it round: the answer to pass on, or undefined when the client went. */
  async function settle (call: Call): Promise<Answer | undefined> {
    for (let attempt = 1; ; attempt++) {
      const answer = await exchange(call, attempt)
      if (answer === undefined) return undefined
      const verdict = policies.get(answer.head.status)?.(call, answer)
      if (verdict === undefined) return answer
      if (!await verdict) return undefined
    }
  }

  /** One client's own call. */
  async function alone (call: Call): Promise<void> {
    const answer = await settle(call)
    if (answer !== undefined) await deliver(call, answer.head, answer.exchange)
  }

  /**
   * A read that may cost no call: a kept answer, else the identical read in flight, else a new
   * shared call (see `shared-reads.ts`). Each client was authorized on its own in `prepare`.
   */
  async function shared (call: Call, reads: SharedReads, key: string): Promise<void> {
    const { request, profile, method, upstreamTarget } = call
    const name = profile.config.name
    const keepFor = reads.keepFor(name, method, upstreamTarget)
    // Only a read a cache rule covers looks at Cache-Control: most reads have none.
    if (keepFor !== undefined && !wantsFresh(request.req.headers)) {
      const kept = reads.kept(key)
      if (kept !== undefined) {
        request.facts.saved = 'cached'
        metrics.callSaved(name, 'cached')
        return deliver(call, kept.answer, new StoredBody(kept.answer.body), { age: String(kept.age) })
      }
    }
    const { read, joined } = reads.flight(key, (watch) => share({ ...call, watch }, keepFor === undefined ? undefined : (answer) => reads.keep(key, answer, keepFor)))
    if (joined) {
      request.facts.saved = 'collapsed'
      metrics.callSaved(name, 'collapsed')
    }
    const outcome = await read.waitFor(request.client)
    if (outcome === undefined) return
    if (outcome.kind === 'failed') throw outcome.error
    if (outcome.kind === 'stored') return deliver(call, outcome.answer, new StoredBody(outcome.answer.body))
    if (outcome.kind === 'cut') return deliver(call, outcome.head, cutBody(outcome.bytes, outcome.error))
    const body = outcome.take(request.client)
    if (body !== undefined) return deliver(call, outcome.head, body)
    // Too long to share, and another client has it: this one makes its own call.
    delete request.facts.saved
    return alone(call)
  }

  /**
   * The shared call: its answer read whole for every client waiting (and kept when a rule says
   * so), or, when it is long or not a page (a download, an export), handed as it comes to the
   * first client that takes it, whose going away then stops it.
   */
  async function share (call: Call, keep: ((answer: StoredAnswer) => void) | undefined): Promise<ReadOutcome | undefined> {
    const answer = await settle(call)
    if (answer === undefined) return undefined
    const { head, exchange } = answer
    const length = Number(head.headers['content-length'] ?? Number.NaN)
    const type = head.headers['content-type']
    const holdable = call.method === 'HEAD' || length <= SHARED_BODY_LIMIT ||
      (Number.isNaN(length) && typeof type === 'string' && type.includes('json'))
    if (!holdable) return handOver(head, exchange, exchange)
    const stored = (body: Buffer): ReadOutcome => {
      const answer: StoredAnswer = { status: head.status, headers: head.headers, body, receivedAt: clock.now() }
      if (keep !== undefined && head.status === 200) keep(answer)
      return { kind: 'stored', answer }
    }
    // A small page has usually arrived whole with its head: no stream to read it through.
    const whole = exchange.takeIfComplete()
    if (whole !== undefined) return stored(whole)
    const held = await holdBody(exchange.stream(), SHARED_BODY_LIMIT)
    if (held.error !== undefined) return { kind: 'cut', head, bytes: Buffer.concat(held.chunks), error: held.error }
    if (held.ended) return stored(Buffer.concat(held.chunks))
    return handOver(head, streamedBody(rejoin(held)), exchange)
  }

  function handOver (head: UpstreamHead, body: AnswerBody, exchange: UpstreamExchange): ReadOutcome {
    let taken = false
    return {
      kind: 'streamed',
      head,
      take: (client) => {
        if (taken) return undefined
        taken = true
        client.watch(exchange)
        return body
      }
    }
  }

  /** What the API would have answered, with nothing sent: the audit records it as a dry run. */
  function answerDryRun (call: Call, answer: DryRunAnswer): void {
    const { request } = call
    if (answer.status === 201) request.facts.machineActionId = answer.id
    const headers = { 'x-broker-dry-run': 'true' }
    if (answer.body === undefined) return request.send(answer.status, headers, '')
    request.send(answer.status, { ...headers, 'content-type': DRY_RUN_TYPE }, JSON.stringify(answer.body))
  }

  return async function forward (request: ForwardedRequest): Promise<void> {
    const call = await prepare(request)
    if (request.facts.changesState === true) {
      const dryRun = await guard(call, call.profile)
      if (dryRun !== undefined) return answerDryRun(call, dryRun)
    }
    const name = call.profile.config.name
    const key = reads?.active(name) === true ? readKey(name, call.method, call.upstreamTarget, request.req.headers) : undefined
    return reads === undefined || key === undefined ? alone(call) : shared(call, reads, key)
  }
}

const DRY_RUN_TYPE = 'application/json; odata.metadata=minimal; charset=utf-8'

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
