import { pipeline, Readable } from 'node:stream'
import { promisify } from 'node:util'
import { brotliDecompress, createBrotliDecompress, createGunzip, createInflate, gunzip, inflate, type InputType, type ZlibOptions } from 'node:zlib'
import { clientResponseHeaders } from './headers.js'
import { createNextLinkRewriter, rewriteNextLink } from './next-link.js'
import { holdBody, rejoin, type AnswerBody } from './stored-answer.js'

interface Decoder {
  /** For a page decompressed as it streams. */
  stream: () => NodeJS.ReadWriteStream
  /** For a page held whole. */
  whole: (bytes: InputType, options: ZlibOptions) => Promise<Buffer>
}

const GZIP: Decoder = { stream: createGunzip, whole: promisify(gunzip) }
const DECODERS: Record<string, Decoder> = {
  gzip: GZIP,
  'x-gzip': GZIP,
  deflate: { stream: createInflate, whole: promisify(inflate) },
  br: { stream: createBrotliDecompress, whole: promisify(brotliDecompress) }
}

/**
 * A JSON page up to this size with a known length is rewritten whole and keeps an exact
 * content-length; a compressed page up to this size (known length or not) is held whole, so it
 * can go out byte for byte when it needs no rewrite.
 */
export const SMALL_PAGE_BYTES = 256 * 1024
/** What a held compressed page may decompress to; a page that would grow past it is passed on as it came. */
export const MAX_INFLATED_PAGE_BYTES = 64 * 1024 * 1024

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
  body: AnswerBody,
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
  const decoder = typeof encoding === 'string' ? DECODERS[encoding.trim().toLowerCase()] : undefined
  if (encoding !== undefined && decoder === undefined) return { headers, body: undefined }
  const rewriter = createNextLinkRewriter(upstreamOrigin, brokerBase)
  const streamed = (source: Readable): ShapedResponse => {
    delete headers['content-length']
    delete headers['content-encoding']
    const noop = () => {}
    const out = decoder === undefined ? pipeline(source, rewriter, noop) : pipeline(source, decoder.stream(), rewriter, noop)
    return { headers, body: out as Readable }
  }
  if (decoder === undefined || length > SMALL_PAGE_BYTES) return streamed(body.stream())
  return holdBody(body.stream(), SMALL_PAGE_BYTES).then(async (held) => {
    if (held.error !== undefined) throw held.error
    if (!held.ended) return streamed(rejoin(held))
    const compressed = Buffer.concat(held.chunks)
    const page = await decoder.whole(compressed, { maxOutputLength: MAX_INFLATED_PAGE_BYTES }).catch(() => undefined)
    const rewritten = page === undefined ? undefined : rewriteNextLink(page, upstreamOrigin, brokerBase)
    if (page === undefined || rewritten === undefined || rewritten.equals(page)) {
      // Nothing to change (or nothing readable): the client gets the API's bytes and encoding.
      headers['content-length'] = String(compressed.length)
      return { headers, body: compressed }
    }
    delete headers['content-encoding']
    headers['content-length'] = String(rewritten.length)
    return { headers, body: rewritten }
  })
}

function startsWithOrigin (url: string, origin: string): boolean {
  if (url.length < origin.length || url.slice(0, origin.length).toLowerCase() !== origin) return false
  const next = url.charCodeAt(origin.length)
  return Number.isNaN(next) || next === 47 /* / */ || next === 63 /* ? */
}
