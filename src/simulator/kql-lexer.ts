/** A query the simulator's KQL cannot read or run: the API answers it with 400 and this message. */
export class KqlError extends Error {
  readonly code = 'KQL_QUERY_INVALID'
}

/** Column types, named as the advanced hunting API names them in a result's `Schema`. */
export type KqlType = 'String' | 'DateTime' | 'Int64' | 'Int32' | 'Double' | 'Boolean' | 'TimeSpan'

/** A cell: DateTime and TimeSpan values are milliseconds (since the epoch, or long); strings are never null. */
export type KqlValue = string | number | boolean | null

export type TokenKind = 'name' | 'string' | 'number' | 'timespan' | 'datetime' | 'symbol' | 'end'

export interface Token {
  kind: TokenKind
  /** The name, the string's content, the symbol, or the number's text. */
  text: string
  /** A timespan literal's length, or a datetime literal's instant, in milliseconds. */
  ms?: number
  /** Where the token starts in the query, for messages. */
  offset: number
}

const SYMBOLS = ['==', '!=', '=~', '!~', '<=', '>=', '|', '(', ')', ',', '=', '<', '>', '+', '-', '*', '/', '!', '~', '.', ':', ';']
const TIMESPAN_UNITS: Record<string, number> = {
  d: 86_400_000,
  day: 86_400_000,
  days: 86_400_000,
  h: 3_600_000,
  hr: 3_600_000,
  hrs: 3_600_000,
  hour: 3_600_000,
  hours: 3_600_000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  minutes: 60_000,
  s: 1000,
  sec: 1000,
  second: 1000,
  seconds: 1000,
  ms: 1,
  milli: 1,
  millis: 1,
  millisecond: 1,
  milliseconds: 1
}
const ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', '\'': '\'', '"': '"' }

export function tokenize (query: string): Token[] {
  const tokens: Token[] = []
  let i = 0
  while (i < query.length) {
    const char = query[i] as string
    if (/\s/.test(char)) { i++; continue }
    if (query.startsWith('//', i)) {
      const end = query.indexOf('\n', i)
      i = end === -1 ? query.length : end
      continue
    }
    const start = i
    if (char === '\'' || char === '"' || ((char === '@' || char === 'h' || char === 'H') && /['"]/.test(query[i + 1] ?? ''))) {
      const { text, end } = readString(query, i)
      tokens.push({ kind: 'string', text, offset: start })
      i = end
      continue
    }
    if (/[0-9]/.test(char)) {
      const number = /^[0-9]+(\.[0-9]+)?/.exec(query.slice(i))?.[0] ?? ''
      const unit = /^[a-zA-Z]+/.exec(query.slice(i + number.length))?.[0]
      if (unit !== undefined) {
        const ms = TIMESPAN_UNITS[unit.toLowerCase()]
        if (ms === undefined) throw parseError(query, start, `'${number}${unit}' is not a number or a timespan (use d, h, m, s or ms)`)
        tokens.push({ kind: 'timespan', text: number + unit, ms: Number(number) * ms, offset: start })
        i += number.length + unit.length
      } else {
        tokens.push({ kind: 'number', text: number, offset: start })
        i += number.length
      }
      continue
    }
    if (/[A-Za-z_$]/.test(char)) {
      const name = /^[A-Za-z_$][A-Za-z0-9_$]*/.exec(query.slice(i))?.[0] ?? char
      const literal = name === 'datetime' ? /^\(\s*(['"]?)([^)'"]*)\1\s*\)/.exec(query.slice(i + name.length)) : null
      if (literal !== null) {
        const ms = parseDatetime(literal[2] ?? '')
        if (ms === null) throw parseError(query, start, `'${literal[2] ?? ''}' is not a datetime (write datetime(2024-05-01) or datetime(2024-05-01T10:30:00Z))`)
        tokens.push({ kind: 'datetime', text: literal[0], ms, offset: start })
        i += name.length + literal[0].length
        continue
      }
      tokens.push({ kind: 'name', text: name, offset: start })
      i += name.length
      continue
    }
    if (char === '[' && /^\[\s*['"]/.test(query.slice(i))) {
      // A bracketed name, ['Column'], as KQL quotes names that are keywords.
      const opening = i + 1 + (/^\s*/.exec(query.slice(i + 1))?.[0].length ?? 0)
      const { text, end } = readString(query, opening)
      const close = /^\s*\]/.exec(query.slice(end))
      if (close === null) throw parseError(query, start, 'a bracketed name is not closed with \']\'')
      tokens.push({ kind: 'name', text, offset: start })
      i = end + close[0].length
      continue
    }
    const symbol = SYMBOLS.find((candidate) => query.startsWith(candidate, i))
    if (symbol === undefined) throw parseError(query, start, `unexpected character '${char}'`)
    tokens.push({ kind: 'symbol', text: symbol, offset: start })
    i += symbol.length
  }
  tokens.push({ kind: 'end', text: '', offset: query.length })
  return tokens
}

/** Reads a string literal at `start`: 'x', "x" (with backslash escapes), @'x' (verbatim), h'x' (hidden). */
function readString (query: string, start: number): { text: string, end: number } {
  let i = start
  let verbatim = false
  if (query[i] === '@') { verbatim = true; i++ } else if (query[i] === 'h' || query[i] === 'H') i++
  const quote = query[i]
  i++
  let text = ''
  while (i < query.length) {
    const char = query[i] as string
    if (char === quote) {
      if (verbatim && query[i + 1] === quote) { text += char; i += 2; continue }
      return { text, end: i + 1 }
    }
    if (char === '\\' && !verbatim) {
      const escaped = ESCAPES[query[i + 1] ?? '']
      if (escaped === undefined) throw parseError(query, i, `unknown escape '\\${query[i + 1] ?? ''}' in a string`)
      text += escaped
      i += 2
      continue
    }
    if (char === '\n') break
    text += char
    i++
  }
  throw parseError(query, start, 'a string literal is not closed')
}

/** A datetime literal's instant; times without a zone are UTC, as in Kusto. */
function parseDatetime (text: string): number | null {
  const match = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?))?(Z|[+-]\d{2}:\d{2})?$/.exec(text.trim())
  if (match === null) return null
  const ms = Date.parse(`${match[1] ?? ''}T${match[2] ?? '00:00'}${match[3] ?? 'Z'}`)
  return Number.isNaN(ms) ? null : ms
}

/** The position of a character as Kusto reports it: [line,column], both from 1. */
export function positionOf (query: string, offset: number): string {
  const before = query.slice(0, offset).split('\n')
  return `[${before.length},${(before.at(-1)?.length ?? 0) + 1}]`
}

export function parseError (query: string, offset: number, reason: string): KqlError {
  const at = query.slice(offset).match(/^\S{0,40}/)?.[0] ?? ''
  return new KqlError(`Syntax error: Query could not be parsed at '${at === '' ? '<end of query>' : at}' on line ${positionOf(query, offset)}: ${reason}.`)
}
