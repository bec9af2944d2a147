import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import {
  BrokerBadRequest, BrokerBadRequestTarget, BrokerExpectationFailed, BrokerHeadersTooLarge, BrokerMethodNotAllowed, BrokerRequestTimeout,
  type BrokerHttpError
} from '../common/errors.js'

/** A host name (docker service names included) or an IP literal, and an optional port: nothing else. */
const HOST_VALUE = /^(?:[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$/
/** `Connection: upgrade` makes an `Upgrade` header a request to switch; without it, it is ignored (RFC 9110 7.8). */
const UPGRADE_OPTION = /(?:^|,)[ \t]*upgrade[ \t]*(?:,|$)/i
const UPGRADE_REFUSED = 'it asks to switch protocols (Upgrade), which the broker does not do'
/** The last coding is chunked: the body's end is known (RFC 9112 6.3). */
const CHUNKED_LAST = /(?:^|,)[ \t]*chunked[ \t]*$/i

/** What a 405 names in `Allow`: the methods the Defender API takes, which the broker forwards. */
export const FORWARDED_METHODS = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'

/**
 * Never forwarded, nor served on the own endpoints: TRACE and TRACK echo the request back, the
 * bearer the broker adds included, to whoever reads the answer; CONNECT asks for a tunnel, which
 * the broker does not make (Node hands it over as a 'connect' event).
 */
const REFUSED_METHODS = new Set(['TRACE', 'TRACK', 'CONNECT'])

/** The 405 for a method the broker never forwards, or undefined for any other. */
export function refusedMethod (method: string | undefined): BrokerHttpError | undefined {
  return method !== undefined && REFUSED_METHODS.has(method) ? new BrokerMethodNotAllowed(method, FORWARDED_METHODS) : undefined
}

/**
 * Node's parser knows no TRACK and fails on its `K` (`bytesParsed` points there): the bytes
 * before it say whether the refused request was a TRACK, which gets its 405 like a TRACE.
 */
export function isTrack (err: Error & { rawPacket?: Buffer, bytesParsed?: number }): boolean {
  const at = err.bytesParsed
  return err.rawPacket !== undefined && at !== undefined && at >= 4 && err.rawPacket.toString('latin1', at - 4, at + 2) === 'TRACK '
}

/**
 * What Node's parser lets through but the broker does not accept, checked before any routing
 * (RFC 9112): exactly one Host header with a plain host in it (3.2); a body framed by an
 * HTTP/1.1 Transfer-Encoding that ends in chunked, or by Content-Length alone (6.1, 6.3); no
 * protocol switch, since the broker forwards HTTP requests and nothing else.
 * Returns why the request is refused, or undefined when it is fine.
 */
export function protocolViolation (req: IncomingMessage): string | undefined {
  let hosts = 0
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i] as string
    if (name.length === 4 && name.toLowerCase() === 'host') hosts++
  }
  if (hosts !== 1) return hosts === 0 ? 'it has no Host header' : 'it has more than one Host header'
  if (!HOST_VALUE.test(req.headers.host ?? '')) return 'its Host header is not a host name or address with an optional port'
  if (req.headers.upgrade !== undefined && UPGRADE_OPTION.test(req.headers.connection ?? '')) return UPGRADE_REFUSED
  const coding = req.headers['transfer-encoding']
  if (coding !== undefined) {
    // HTTP/1.0 has no chunked coding: Node's parser reads no body, and the bytes that follow would be another request.
    if (req.httpVersionMinor === 0) return 'it is HTTP/1.0 with a Transfer-Encoding'
    if (!CHUNKED_LAST.test(coding)) return 'its Transfer-Encoding does not end in chunked'
    if (req.headers['content-length'] !== undefined) return 'it has both Content-Length and Transfer-Encoding'
  }
  return undefined
}

/** Node answers `Expect: 100-continue` itself; any other expectation is one the broker cannot meet (RFC 9110 10.1.1). */
export function unmetExpectation (): BrokerHttpError {
  return new BrokerExpectationFailed()
}

/**
 * Whether the connection owes an answer to an earlier, complete request: an error answer now
 * would be read as that request's answer (which may well have reached the API).
 */
export function responseOutstanding (socket: Duplex): boolean {
  const res = (socket as Duplex & { _httpMessage?: ServerResponse | null })._httpMessage
  return res != null && (res.headersSent || res.req.complete)
}

/**
 * The server's 'upgrade' event: Node hands over the socket of a request that asked to switch
 * protocols (`Connection: upgrade`). It gets a 400; nothing is forwarded.
 */
export function upgradeRefusal (): BrokerHttpError {
  return new BrokerBadRequest(UPGRADE_REFUSED)
}

/** What the broker answers for bytes Node's parser refused, by the parser's error code. */
export function parserRefusal (err: Error & { code?: string }): BrokerHttpError {
  switch (err.code) {
    // Node's parser knows no TRACK: it gets the 405 a TRACE gets.
    case 'HPE_INVALID_METHOD': return isTrack(err) ? refusedMethod('TRACK') as BrokerHttpError : new BrokerBadRequest('it is not valid HTTP/1.1')
    case 'HPE_INVALID_URL': return new BrokerBadRequestTarget('a control, space or non-ASCII character')
    case 'HPE_HEADER_OVERFLOW': return new BrokerHeadersTooLarge()
    case 'ERR_HTTP_REQUEST_TIMEOUT': return new BrokerRequestTimeout()
    default: return new BrokerBadRequest('it is not valid HTTP/1.1')
  }
}
