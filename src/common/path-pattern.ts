import { normalizePath } from './paths.js'

/**
 * The one grammar of path patterns, for the rules of clients and profiles and for the API's
 * endpoint catalogue: segments separated by `/`, where `*` stands for one whole segment, `**`
 * for the rest of the path (so it comes last), and `name(*)` for an OData function call with
 * any arguments (`getliveresponseresultdownloadlink(*)`). Anything else is a literal, matched
 * case-insensitively against the path as `normalizePath` spells it.
 */
export type PathPattern = readonly Segment[]

/** Segment kinds, ranked: a literal is more specific than a function call, which is more than `*`, then `**`. */
const LITERAL = 3
const CALL = 2
const ONE = 1
const REST = 0

interface Segment {
  rank: number
  text: string
}

/** Why `path` is not a pattern of this grammar, or undefined when it is one. */
export function patternProblem (path: string): string | undefined {
  if (/[?#]/.test(path)) return 'rules match the path only: remove the query or fragment'
  const segments = path.split('/')
  for (const [position, segment] of segments.entries()) {
    if (segment.includes('*') && segment !== '*' && segment !== '**' && !/^[^*()]+\(\*\)$/.test(segment)) {
      return 'a * or ** must be a whole path segment, e.g. "GET /api/machines/*/software"'
    }
    if (segment === '**' && position !== segments.length - 1) {
      return '** matches the rest of the path, so it must be the last segment'
    }
  }
  return undefined
}

export function compilePattern (path: string): PathPattern {
  return normalizePath(path).split('/').slice(1).map(compileSegment)
}

function compileSegment (part: string): Segment {
  if (part === '**') return { rank: REST, text: '' }
  if (part === '*') return { rank: ONE, text: '' }
  if (part.endsWith('(*)')) return { rank: CALL, text: part.slice(0, -2) }
  return { rank: LITERAL, text: part }
}

/** The segments of a request target's path as patterns are matched against them. */
export function segmentsOf (target: string): string[] {
  return normalizePath(target).split('/').slice(1)
}

/** Whether the path's segments (from `segmentsOf`) match the pattern. */
export function matchesPattern (pattern: PathPattern, path: readonly string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const part = pattern[i] as Segment
    if (part.rank === REST) return true
    const segment = path[i]
    if (segment === undefined) return false
    if (part.rank === LITERAL && segment !== part.text) return false
    if (part.rank === CALL) {
      const call = decodeParentheses(segment)
      if (!call.startsWith(part.text) || !call.endsWith(')')) return false
    }
  }
  return pattern.length === path.length
}

// An OData function's parentheses may arrive percent-encoded; they are not unreserved, so
// normalizePath leaves them as they came.
function decodeParentheses (segment: string): string {
  return segment.replaceAll('%28', '(').replaceAll('%29', ')')
}

/** Positive when `a` is more specific than `b`: the first segment where they differ decides. */
export function compareSpecificity (a: PathPattern, b: PathPattern): number {
  const length = Math.max(a.length, b.length)
  for (let i = 0; i < length; i++) {
    const difference = (a[i]?.rank ?? -1) - (b[i]?.rank ?? -1)
    if (difference !== 0) return difference
  }
  return 0
}

/**
 * Whether some path matches both patterns: a rule and a catalogue entry overlap when a request
 * the rule lets through can reach the entry's endpoint.
 */
export function patternsOverlap (a: PathPattern, b: PathPattern): boolean {
  const length = Math.max(a.length, b.length)
  for (let i = 0; i < length; i++) {
    const x = a[i]
    const y = b[i]
    if (x?.rank === REST || y?.rank === REST) return true
    if (x === undefined || y === undefined) return false
    if (!segmentsOverlap(x, y)) return false
  }
  return true
}

function segmentsOverlap (x: Segment, y: Segment): boolean {
  if (x.rank === ONE || y.rank === ONE) return true
  if (x.rank === LITERAL && y.rank === LITERAL) return x.text === y.text
  if (x.rank === CALL && y.rank === CALL) return x.text.startsWith(y.text) || y.text.startsWith(x.text)
  const [call, literal] = x.rank === CALL ? [x, y] : [y, x]
  const text = decodeParentheses(literal.text)
  return text.startsWith(call.text) && text.endsWith(')')
}
