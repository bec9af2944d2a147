import { pathOf } from '../common/paths.js'

/**
 * The request target must be origin-form, and its path must mean the same to the broker, to
 * its rules and to the API: anything that a server could decode into another path, or that
 * could make the outgoing URL point elsewhere, is refused before anything else runs.
 * Returns why the target is refused, or undefined when it is fine.
 */
export function checkRequestTarget (target: string | undefined): string | undefined {
  if (target === undefined || target === '') return 'an empty request target'
  if (target.charCodeAt(0) !== 47 /* / */) return 'not origin-form (it must start with /)'
  if (target.length > 1 && (target.charCodeAt(1) === 47 || target.charCodeAt(1) === 92)) {
    return 'a network-path reference (// or /\\)'
  }
  const path = pathOf(target)
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i)
    if (c <= 0x20 || c === 0x7f || c > 0x7e) return 'a control, space or non-ASCII character'
    if (c === 92 /* \ */) return 'a backslash'
    if (c === 35 /* # */) return 'a fragment'
    if (c === 37 /* % */) {
      const pair = target.slice(i + 1, i + 3)
      if (!/^[0-9A-Fa-f]{2}$/.test(pair)) return 'a malformed percent-encoding'
      if (i < path.length) {
        const byte = parseInt(pair, 16)
        if (byte === 0x2f || byte === 0x5c) return 'an encoded / or \\ in the path'
        if (byte < 0x20 || byte === 0x7f) return 'an encoded control character in the path'
      }
    }
  }
  for (const segment of path.split('/')) {
    const name = decodeDots(segment.split(';', 1)[0] as string)
    if (name === '.' || name === '..') return 'a dot-segment in the path'
  }
  if (path.includes('%') && !decodesToUtf8(path)) return 'a percent-encoding that does not decode to UTF-8'
  return undefined
}

function decodesToUtf8 (path: string): boolean {
  try {
    decodeURIComponent(path)
    return true
  } catch {
    return false
  }
}

function decodeDots (segment: string): string {
  return segment.length <= 8 ? segment.replace(/%2e/gi, '.') : segment
}
