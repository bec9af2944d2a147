import type { IncomingHttpHeaders } from 'node:http'

/**
 * Never sent upstream: hop-by-hop, the inbound key, what would let a client speak for the
 * broker, and what would make a server behind act on another method or path than the one the
 * rules allowed (method overrides, IIS's and others' URL rewrites).
 */
const REQUEST_DROPPED = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'host', 'authorization', 'x-broker-key', 'x-broker-dry-run', 'forwarded', 'cookie', 'expect', 'http2-settings',
  'x-request-id',
  'x-http-method-override', 'x-http-method', 'x-method-override', 'x-original-url', 'x-rewrite-url'
])

/**
 * Never passed back: hop-by-hop, cookies of the API's that a tool has no use for, and an
 * `x-request-id` that would hide the broker's own (the one its log and error bodies name).
 */
const RESPONSE_DROPPED = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-authenticate', 'set-cookie', 'x-request-id'
])

/** The header names a `Connection` header adds to the hop-by-hop ones. */
function connectionTokens (value: string | string[] | undefined): Set<string> | undefined {
  // What nearly every client sends names nothing that is not dropped already.
  if (value === undefined || value === 'keep-alive' || value === 'close') return undefined
  const tokens = new Set<string>()
  for (const part of (Array.isArray(value) ? value.join(',') : value).split(',')) {
    const token = part.trim().toLowerCase()
    if (token !== '') tokens.add(token)
  }
  return tokens
}

/** Headers for the upstream request, from Node's parsed (lower-case) request headers. */
export function upstreamRequestHeaders (headers: IncomingHttpHeaders, authorization: string): Record<string, string | string[]> {
  const named = connectionTokens(headers.connection)
  const out: Record<string, string | string[]> = {}
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined || REQUEST_DROPPED.has(name) || named?.has(name) === true) continue
    if (name.startsWith('proxy-') || name.startsWith('x-forwarded-')) continue
    out[name] = value
  }
  out.authorization = authorization
  return out
}

/** Headers for the client, from undici's (lower-case) response headers. */
export function clientResponseHeaders (headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const named = connectionTokens(headers.connection)
  const out: Record<string, string | string[]> = {}
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined || RESPONSE_DROPPED.has(name) || named?.has(name) === true) continue
    out[name] = value
  }
  return out
}
