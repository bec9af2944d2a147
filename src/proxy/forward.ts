import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import type { Config } from '../config/types.js'
import { BrokerBadRequestTarget, BrokerNotFound, BrokerUpstreamTimeout, BrokerUpstreamUnreachable } from '../errors.js'
import type { Profile, ProfileMatch } from '../profiles.js'
import { clientResponseHeaders, upstreamRequestHeaders } from './headers.js'

export interface ForwarderOptions {
  dispatcher: Dispatcher
  config: Config
  route: (target: string) => ProfileMatch | undefined
  authorize: (request: FastifyRequest, profile: Profile, upstreamTarget: string) => void
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

/** The catch-all handler: one request in, the same request out to the profile's upstream. */
export function createForwarder (options: ForwarderOptions) {
  const { dispatcher, route, authorize } = options
  const responseTimeoutMs = options.config.upstreamTimeouts.responseSeconds * 1000

  return async function forward (request: FastifyRequest, reply: FastifyReply) {
    const target = request.raw.url as string
    const match = route(target)
    if (match === undefined) throw new BrokerNotFound(target.split('?', 1)[0] as string)
    const { profile, upstreamTarget } = match
    const origin = profile.config.upstream
    request.broker.profile = profile.config.name
    authorize(request, profile, upstreamTarget)

    const token = await profile.tokens.get()
    assertSameOrigin(origin, upstreamTarget)

    const abort = new AbortController()
    const onClose = () => {
      if (!reply.raw.writableFinished) abort.abort()
    }
    reply.raw.once('close', onClose)

    const headers = request.headers
    const hasBody = headers['transfer-encoding'] !== undefined ||
      (headers['content-length'] !== undefined && headers['content-length'] !== '0')
    let response: Dispatcher.ResponseData
    try {
      response = await dispatcher.request({
        origin,
        path: upstreamTarget,
        method: request.raw.method as Dispatcher.HttpMethod,
        headers: upstreamRequestHeaders(headers, `Bearer ${token.value}`),
        body: hasBody ? request.raw : null,
        signal: abort.signal,
        headersTimeout: responseTimeoutMs,
        bodyTimeout: responseTimeoutMs
      })
    } catch (err) {
      if (abort.signal.aborted) return reply
      throw upstreamError(err, origin)
    }
    const requestId = response.headers['request-id'] ?? response.headers['x-ms-request-id']
    if (typeof requestId === 'string') request.broker.upstreamRequestId = requestId
    reply.code(response.statusCode)
    reply.headers(clientResponseHeaders(response.headers))
    return reply.send(response.body)
  }
}

/** The URL sent upstream is built from the profile's origin and must still have it. */
function assertSameOrigin (origin: string, path: string): void {
  if (new URL(path, origin).origin !== origin) {
    throw new BrokerBadRequestTarget('a target that leaves the upstream origin')
  }
}

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
