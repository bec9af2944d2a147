import { pipeline, type Readable } from 'node:stream'
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib'
import { clientResponseHeaders } from './headers.js'
import { createNextLinkRewriter, rewriteNextLink } from './next-link.js'
import type { UpstreamExchange } from './upstream-exchange.js'

const DECODERS: Record<string, () => NodeJS.ReadWriteStream> = {
  gzip: createGunzip,
  'x-gzip': createGunzip,
  deflate: createInflate,
  br: createBrotliDecompress
}

/** A JSON page up to this size with a known length is rewritten whole and keeps an exact content-length. */
export const SMALL_PAGE_BYTES = 256 * 1024

export interface ShapedResponse {
  headers: Record<string, string | string[]>
  /** A page rewritten whole, the body on its way through transforms, or undefined: the API's body as it comes. */
  body: Buffer | Readable | undefined
}

/**
 * What the client gets back: filtered headers, a `Location` on the upstream origin moved to the
 * broker, and, in a JSON page, `@odata.nextLink` rewritten to the broker's base URL as the
 * body streams (decompressed first when the API compressed it), so a tool that follows pages
 * stays on the broker.
 */
export function shapeResponse (
  method: string,
  status: number,
  upstreamHeaders: Record<string, string | string[] | undefined>,
  body: UpstreamExchange,
  upstreamOrigin: string,
  brokerBase: string
): ShapedResponse | Promise<ShapedResponse> {
  const headers = clientResponseHeaders(upstreamHeaders)
  const location = headers.location
  if (typeof location === 'string' && startsWithOrigin(location, upstreamOrigin)) {
    headers.location = brokerBase + location.slice(upstreamOrigin.length)
  }
  const type = headers['content-type']
  if (method !== 'GET' || status !== 200 || typeof type !== 'string' || !type.includes('json')) {
    return { headers, body: undefined }
  }
  const encoding = headers['content-encoding']
  const length = Number(headers['content-length'])
  if (encoding === undefined && length <= SMALL_PAGE_BYTES) {
    const rewrite = (whole: Buffer): ShapedResponse => {
      const page = rewriteNextLink(whole, upstreamOrigin, brokerBase)
      headers['content-length'] = String(page.length)
      return { headers, body: page }
    }
    // A small page has usually arrived whole with its head: no promise to wait on then.
    const whole = body.takeIfComplete()
    return whole !== undefined ? rewrite(whole) : body.readAll().then(rewrite)
  }
  const decode = typeof encoding === 'string' ? DECODERS[encoding.trim().toLowerCase()] : undefined
  if (encoding !== undefined && decode === undefined) return { headers, body: undefined }
  delete headers['content-length']
  delete headers['content-encoding']
  const rewriter = createNextLinkRewriter(upstreamOrigin, brokerBase)
  const noop = () => {}
  const out = decode === undefined
    ? pipeline(body.stream(), rewriter, noop)
    : pipeline(body.stream(), decode(), rewriter, noop)
  return { headers, body: out as Readable }
}

function startsWithOrigin (url: string, origin: string): boolean {
  if (url.length < origin.length || url.slice(0, origin.length).toLowerCase() !== origin) return false
  const next = url.charCodeAt(origin.length)
  return Number.isNaN(next) || next === 47 /* / */ || next === 63 /* ? */
}
