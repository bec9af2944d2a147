import { Transform, type TransformCallback } from 'node:stream'

/** Whitespace allowed between the key, the colon and the value before the match is given up. */
const MAX_GAP = 32

function escapeRegExp (text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')
}

/**
 * `@odata.nextLink` values that start with the upstream origin, as a pattern over a latin1
 * string (one char per byte, so a UTF-8 sequence split across chunks passes through intact).
 * JSON may escape `/` as `\/`; both spellings are matched.
 */
function nextLinkPattern (origin: string): RegExp {
  const [scheme, rest] = origin.split('://') as [string, string]
  const slash = '(?:\\/|\\\\\\/)'
  return new RegExp(`("@odata\\.nextLink"\\s{0,${MAX_GAP}}:\\s{0,${MAX_GAP}}")${escapeRegExp(scheme)}:${slash}${slash}${escapeRegExp(rest)}(?=[\\\\/?"])`, 'gi')
}

const patterns = new Map<string, RegExp>()

/** The same rewrite on a whole page held in memory. */
export function rewriteNextLink (page: Buffer, upstreamOrigin: string, brokerBase: string): Buffer {
  // Cheap check first: most pages of a list end without one, and most bodies are not lists.
  if (page.indexOf('@odata.nextLink') === -1) return page
  let pattern = patterns.get(upstreamOrigin)
  if (pattern === undefined) {
    pattern = nextLinkPattern(upstreamOrigin)
    patterns.set(upstreamOrigin, pattern)
  }
  pattern.lastIndex = 0
  return Buffer.from(page.toString('latin1').replace(pattern, `$1${brokerBase.replaceAll('$', '$$$$')}`), 'latin1')
}

/**
 * Rewrites `@odata.nextLink` from the upstream origin to the broker's own base URL while the
 * body streams: only a look-behind of one match's length is held back between chunks.
 */
export function createNextLinkRewriter (upstreamOrigin: string, brokerBase: string): Transform {
  const pattern = nextLinkPattern(upstreamOrigin)
  // Longer than any match with the character its look-ahead needs: a match that starts before
  // the held-back tail lies whole in the text at hand.
  const holdBack = 2 * MAX_GAP + 20 + upstreamOrigin.length * 2
  let carry = ''

  function rewrite (text: string, final: boolean): string {
    const limit = final ? text.length : Math.max(0, text.length - holdBack)
    let out = ''
    let done = 0
    pattern.lastIndex = 0
    for (let match = pattern.exec(text); match !== null && match.index < limit; match = pattern.exec(text)) {
      out += text.slice(done, match.index) + (match[1] as string) + brokerBase
      done = match.index + match[0].length
    }
    const cut = Math.max(limit, done)
    carry = text.slice(cut)
    return out + text.slice(done, cut)
  }

  return new Transform({
    transform (chunk: Buffer, _encoding, callback: TransformCallback) {
      const out = rewrite(carry + chunk.toString('latin1'), false)
      callback(null, out.length > 0 ? Buffer.from(out, 'latin1') : undefined)
    },
    flush (callback: TransformCallback) {
      const out = rewrite(carry, true)
      callback(null, out.length > 0 ? Buffer.from(out, 'latin1') : undefined)
    }
  })
}
