import { BrokerUpstreamTimeout, BrokerUpstreamUnreachable, type BrokerHttpError } from '../common/errors.js'

export interface NetworkFailure {
  /**
   * The transport's own code (`ECONNREFUSED`, `UNABLE_TO_VERIFY_LEAF_SIGNATURE`, …) or, when a
   * proxy refused the tunnel, `proxy_authentication_required` or `proxy_refused`.
   */
  code: string
  /** What happened, in a few words, for messages. */
  reason: string
}

/** OpenSSL's verification results as Node reports them: the peer's certificate is not trusted. */
const UNTRUSTED = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE'
])

const REASONS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  UND_ERR_SOCKET: 'connection reset',
  ENOTFOUND: 'name not resolved',
  EAI_AGAIN: 'name not resolved',
  ETIMEDOUT: 'connect timeout',
  UND_ERR_CONNECT_TIMEOUT: 'connect timeout',
  UND_ERR_HEADERS_TIMEOUT: 'no answer in time',
  UND_ERR_BODY_TIMEOUT: 'no answer in time',
  CERT_HAS_EXPIRED: 'its TLS certificate has expired',
  CERT_NOT_YET_VALID: 'its TLS certificate is not valid yet',
  ERR_TLS_CERT_ALTNAME_INVALID: 'its TLS certificate is for another host name'
}

/** undici's codes for an answer that did not come in time, where the API was reached. */
const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

const PROXY_STATUS = /Proxy response \((\d{3})\)|Proxy Authentication Required \((\d{3})\)/

/**
 * A code and a reason for an error of undici or Node's sockets, looking through the wrappers
 * (`cause`, the AggregateError of a dual-stack connect) for the error that says what went wrong.
 */
export function describeNetworkFailure (err: unknown): NetworkFailure {
  const proxyStatus = findProxyStatus(err)
  if (proxyStatus !== undefined) {
    // 407 is the proxy's status for credentials; some proxies (tinyproxy among them) send 401.
    return proxyStatus === 407 || proxyStatus === 401
      ? { code: 'proxy_authentication_required', reason: `the proxy refused the credentials (${proxyStatus}): check the user and password in the proxy URL` }
      : { code: 'proxy_refused', reason: `the proxy refused the tunnel (${proxyStatus})` }
  }
  const code = findCode(err) ?? 'network'
  if (UNTRUSTED.has(code)) return { code, reason: `its TLS certificate is not trusted (${code})` }
  const reason = REASONS[code]
  return { code, reason: reason === undefined ? code : `${reason} (${code})` }
}

/** The broker's answer to a failure to reach or read the API at `origin`: 504 when it did not answer in time, else 502. */
export function upstreamError (err: unknown, origin: string): BrokerHttpError {
  const failure = describeNetworkFailure(err)
  if (TIMEOUT_CODES.has(failure.code)) return new BrokerUpstreamTimeout(origin)
  return new BrokerUpstreamUnreachable(origin, failure.reason)
}

function findProxyStatus (err: unknown): number | undefined {
  for (const error of chain(err)) {
    const match = PROXY_STATUS.exec(String((error as { message?: unknown }).message ?? ''))
    if (match !== null) return Number(match[1] ?? match[2])
  }
  return undefined
}

function findCode (err: unknown): string | undefined {
  let found: string | undefined
  for (const error of chain(err)) {
    const code = (error as { code?: unknown }).code
    if (typeof code !== 'string') continue
    // The innermost specific code wins over undici's wrappers (UND_ERR_PRX_TLS, UND_ERR_CONNECT).
    if (found === undefined || (found.startsWith('UND_ERR_') && !code.startsWith('UND_ERR_'))) found = code
  }
  return found
}

function * chain (err: unknown): Generator<object> {
  const seen = new Set<unknown>()
  const queue: unknown[] = [err]
  while (queue.length > 0) {
    const error = queue.shift()
    if (typeof error !== 'object' || error === null || seen.has(error)) continue
    seen.add(error)
    yield error
    const { cause, errors } = error as { cause?: unknown, errors?: unknown }
    queue.push(cause)
    if (Array.isArray(errors)) queue.push(...errors)
  }
}
