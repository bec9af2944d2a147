/**
 * The OData subset the Defender API reads in `$filter`, `$orderby` and `$select`: comparisons,
 * `and`/`or`/`not`, `in (...)`, parentheses, string functions and `any`/`all` lambdas on
 * collections. Parsing checks property names against the entity's, as the API does.
 */

export class ODataError extends Error {
  readonly code = 'BadRequest'
}

type Literal = string | number | boolean | null | { datetime: number }

type Node =
  | { kind: 'literal', value: Literal }
  | { kind: 'path', variable: string | null, segments: string[] }
  | { kind: 'compare', op: 'eq' | 'ne' | 'gt' | 'ge' | 'lt' | 'le', left: Node, right: Node }
  | { kind: 'in', left: Node, list: Node[] }
  | { kind: 'and' | 'or', left: Node, right: Node }
  | { kind: 'not', operand: Node }
  | { kind: 'call', name: string, args: Node[] }
  | { kind: 'lambda', quantifier: 'any' | 'all', collection: Node, variable: string | null, body: Node | null }

type Token =
  | { type: 'punct', text: string, at: number }
  | { type: 'word', text: string, at: number }
  | { type: 'literal', value: Literal, at: number }

/** What a filter, an order or a selection may name: the entity's properties, case-insensitively. */
export interface EntityShape {
  /** Used in messages, e.g. `Machine`. */
  name: string
  properties: readonly string[]
}

export type Filter = (item: Record<string, unknown>) => boolean

const FUNCTIONS: Record<string, number> = { startswith: 2, endswith: 2, contains: 2, tolower: 1, toupper: 1, length: 1, indexof: 2 }
const COMPARISONS = new Set(['eq', 'ne', 'gt', 'ge', 'lt', 'le'])
const DATETIME = /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?)?(?:Z|[+-]\d{2}:\d{2})?/
const NUMBER = /^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/
const WORD = /^[A-Za-z_][A-Za-z0-9_]*/

function tokenize (text: string): Token[] {
  const tokens: Token[] = []
  let i = 0
  while (i < text.length) {
    const char = text[i] as string
    if (/\s/.test(char)) { i++; continue }
    if ('(),:/'.includes(char)) { tokens.push({ type: 'punct', text: char, at: i }); i++; continue }
    if (char === '\'') {
      let value = ''
      let j = i + 1
      for (;;) {
        if (j >= text.length) throw syntax(text, i, 'unterminated string literal')
        if (text[j] === '\'') {
          if (text[j + 1] === '\'') { value += '\''; j += 2; continue }
          break
        }
        value += text[j]
        j++
      }
      tokens.push({ type: 'literal', value, at: i })
      i = j + 1
      continue
    }
    const rest = text.slice(i)
    const date = DATETIME.exec(rest)
    if (date !== null && date[0].length > 4 && !/^[\d.]/.test(rest.slice(date[0].length))) {
      const ms = Date.parse(/T|Z$|[+-]\d\d:\d\d$/.test(date[0].slice(10)) ? date[0].replace(/^(\d{4}-\d{2}-\d{2})Z$/, '$1T00:00:00Z') : `${date[0]}T00:00:00Z`)
      if (Number.isNaN(ms)) throw syntax(text, i, `'${date[0]}' is not a valid datetime`)
      tokens.push({ type: 'literal', value: { datetime: ms }, at: i })
      i += date[0].length
      continue
    }
    const number = NUMBER.exec(rest)
    if (number !== null) { tokens.push({ type: 'literal', value: Number(number[0]), at: i }); i += number[0].length; continue }
    const word = WORD.exec(rest)
    if (word !== null) {
      const lower = word[0].toLowerCase()
      if (lower === 'true' || lower === 'false') tokens.push({ type: 'literal', value: lower === 'true', at: i })
      else if (lower === 'null') tokens.push({ type: 'literal', value: null, at: i })
      else tokens.push({ type: 'word', text: word[0], at: i })
      i += word[0].length
      continue
    }
    throw syntax(text, i, `unexpected character '${char}'`)
  }
  return tokens
}

function syntax (text: string, at: number, why: string): ODataError {
  return new ODataError(`Invalid ODataQuery: syntax error at position ${at} in '${text}': ${why}.`)
}

class Parser {
  #tokens: Token[]
  #text: string
  #shape: EntityShape
  #variables: string[] = []
  #i = 0

  constructor (text: string, shape: EntityShape) {
    this.#text = text
    this.#tokens = tokenize(text)
    this.#shape = shape
  }

  parse (): Node {
    const node = this.#or()
    const extra = this.#tokens[this.#i]
    if (extra !== undefined) throw syntax(this.#text, extra.at, `unexpected '${'text' in extra ? extra.text : String(extra.value)}'`)
    return node
  }

  #peekWord (word: string): boolean {
    const token = this.#tokens[this.#i]
    return token?.type === 'word' && token.text.toLowerCase() === word
  }

  #punct (text: string): boolean {
    const token = this.#tokens[this.#i]
    if (token?.type === 'punct' && token.text === text) { this.#i++; return true }
    return false
  }

  #expect (text: string): void {
    if (!this.#punct(text)) throw syntax(this.#text, this.#tokens[this.#i]?.at ?? this.#text.length, `'${text}' expected`)
  }

  #or (): Node {
    let left = this.#and()
    while (this.#peekWord('or')) { this.#i++; left = { kind: 'or', left, right: this.#and() } }
    return left
  }

  #and (): Node {
    let left = this.#not()
    while (this.#peekWord('and')) { this.#i++; left = { kind: 'and', left, right: this.#not() } }
    return left
  }

  #not (): Node {
    if (this.#peekWord('not')) { this.#i++; return { kind: 'not', operand: this.#not() } }
    return this.#comparison()
  }

  #comparison (): Node {
    const left = this.#primary()
    const token = this.#tokens[this.#i]
    if (token?.type !== 'word') return left
    const op = token.text.toLowerCase()
    if (COMPARISONS.has(op)) {
      this.#i++
      return { kind: 'compare', op: op as 'eq', left, right: this.#primary() }
    }
    if (op === 'in') {
      this.#i++
      this.#expect('(')
      const list = [this.#primary()]
      while (this.#punct(',')) list.push(this.#primary())
      this.#expect(')')
      return { kind: 'in', left, list }
    }
    return left
  }

  #primary (): Node {
    const token = this.#tokens[this.#i]
    if (token === undefined) throw syntax(this.#text, this.#text.length, 'the expression ends too early')
    if (token.type === 'literal') { this.#i++; return { kind: 'literal', value: token.value } }
    if (token.type === 'punct') {
      if (token.text !== '(') throw syntax(this.#text, token.at, `unexpected '${token.text}'`)
      this.#i++
      const inner = this.#or()
      this.#expect(')')
      return inner
    }
    this.#i++
    const name = token.text
    const lower = name.toLowerCase()
    if (this.#tokens[this.#i]?.type === 'punct' && (this.#tokens[this.#i] as { text: string }).text === '(' && lower in FUNCTIONS) {
      this.#i++
      const args = [this.#or()]
      while (this.#punct(',')) args.push(this.#or())
      this.#expect(')')
      if (args.length !== FUNCTIONS[lower]) throw syntax(this.#text, token.at, `${lower} takes ${FUNCTIONS[lower]} arguments`)
      return { kind: 'call', name: lower, args }
    }
    return this.#path(name, token.at)
  }

  #path (first: string, at: number): Node {
    const variable = this.#variables.includes(first) ? first : null
    const segments: string[] = variable === null ? [this.#property(first, at)] : []
    while (this.#punct('/')) {
      const next = this.#tokens[this.#i]
      if (next?.type !== 'word') throw syntax(this.#text, next?.at ?? this.#text.length, 'a property name expected after \'/\'')
      this.#i++
      const quantifier = next.text.toLowerCase()
      if ((quantifier === 'any' || quantifier === 'all') && this.#punct('(')) {
        return this.#lambda(quantifier, { kind: 'path', variable, segments }, next.at)
      }
      segments.push(next.text)
    }
    return { kind: 'path', variable, segments }
  }

  #lambda (quantifier: 'any' | 'all', collection: Node, at: number): Node {
    if (this.#punct(')')) {
      if (quantifier === 'all') throw syntax(this.#text, at, 'all() needs a lambda')
      return { kind: 'lambda', quantifier, collection, variable: null, body: null }
    }
    const name = this.#tokens[this.#i]
    if (name?.type !== 'word') throw syntax(this.#text, name?.at ?? at, 'a lambda variable expected')
    this.#i++
    this.#expect(':')
    this.#variables.push(name.text)
    const body = this.#or()
    this.#variables.pop()
    this.#expect(')')
    return { kind: 'lambda', quantifier, collection, variable: name.text, body }
  }

  #property (name: string, at: number): string {
    return resolveProperty(this.#shape, name) ?? (() => {
      throw new ODataError(`Invalid ODataQuery: could not find a property named '${name}' on type '${this.#shape.name}' (position ${at}).`)
    })()
  }
}

function resolveProperty (shape: EntityShape, name: string): string | undefined {
  const lower = name.toLowerCase()
  return shape.properties.find((property) => property.toLowerCase() === lower)
}

type Scope = Record<string, unknown>

function valueOf (node: Node, item: Record<string, unknown>, scope: Scope): unknown {
  switch (node.kind) {
    case 'literal': return node.value
    case 'path': {
      let value: unknown = node.variable === null ? item : scope[node.variable]
      for (const segment of node.segments) {
        if (typeof value !== 'object' || value === null) return null
        const record = value as Record<string, unknown>
        const key = Object.keys(record).find((k) => k.toLowerCase() === segment.toLowerCase())
        value = key === undefined ? null : record[key]
      }
      return value
    }
    case 'call': return call(node.name, node.args.map((arg) => valueOf(arg, item, scope)))
    default: return test(node, item, scope)
  }
}

function call (name: string, args: unknown[]): unknown {
  const [a, b] = args
  if (name === 'tolower') return typeof a === 'string' ? a.toLowerCase() : null
  if (name === 'toupper') return typeof a === 'string' ? a.toUpperCase() : null
  if (name === 'length') return typeof a === 'string' ? a.length : null
  if (typeof a !== 'string' || typeof b !== 'string') return name === 'indexof' ? -1 : false
  if (name === 'startswith') return a.startsWith(b)
  if (name === 'endswith') return a.endsWith(b)
  if (name === 'indexof') return a.indexOf(b)
  return a.includes(b)
}

function isDatetime (value: unknown): value is { datetime: number } {
  return typeof value === 'object' && value !== null && 'datetime' in value
}

/** A datetime literal against an ISO string (or null) compares as times. */
function comparable (left: unknown, right: unknown): [unknown, unknown] {
  if (!isDatetime(left) && !isDatetime(right)) return [left, right]
  const ms = (value: unknown): unknown => isDatetime(value) ? value.datetime : typeof value === 'string' ? Date.parse(value) : value
  return [ms(left), ms(right)]
}

function compare (op: string, left: unknown, right: unknown): boolean {
  const [l, r] = comparable(left, right)
  if (op === 'eq') return l === r
  if (op === 'ne') return l !== r
  if (l === null || r === null || l === undefined || r === undefined) return false
  if (typeof l !== typeof r) throw new ODataError(`Invalid ODataQuery: cannot compare ${typeof l} with ${typeof r} using '${op}'.`)
  const order = (l as number | string) < (r as number | string) ? -1 : (l as number | string) > (r as number | string) ? 1 : 0
  return op === 'gt' ? order > 0 : op === 'ge' ? order >= 0 : op === 'lt' ? order < 0 : order <= 0
}

function test (node: Node, item: Record<string, unknown>, scope: Scope): boolean {
  switch (node.kind) {
    case 'and': return test(node.left, item, scope) && test(node.right, item, scope)
    case 'or': return test(node.left, item, scope) || test(node.right, item, scope)
    case 'not': return !test(node.operand, item, scope)
    case 'compare': return compare(node.op, valueOf(node.left, item, scope), valueOf(node.right, item, scope))
    case 'in': {
      const left = valueOf(node.left, item, scope)
      return node.list.some((entry) => compare('eq', left, valueOf(entry, item, scope)))
    }
    case 'lambda': {
      const collection = valueOf(node.collection, item, scope)
      if (!Array.isArray(collection)) return false
      const body = node.body
      const variable = node.variable
      if (body === null || variable === null) return collection.length > 0
      const check = (element: unknown): boolean => test(body, item, { ...scope, [variable]: element })
      return node.quantifier === 'any' ? collection.some(check) : collection.every(check)
    }
    default: return valueOf(node, item, scope) === true
  }
}

/** A predicate for `$filter`; throws ODataError for what the API would refuse. */
export function parseFilter (text: string, shape: EntityShape): Filter {
  if (text.trim() === '') throw new ODataError('Invalid ODataQuery: $filter is empty.')
  const node = new Parser(text, shape).parse()
  if (node.kind === 'literal' || node.kind === 'path') throw new ODataError(`Invalid ODataQuery: '${text}' is not a boolean expression.`)
  return (item) => test(node, item, {})
}

export interface OrderKey {
  property: string
  descending: boolean
}

/** `$orderby=severity desc, alertCreationTime` */
export function parseOrderBy (text: string, shape: EntityShape): OrderKey[] {
  return text.split(',').map((part) => {
    const match = /^\s*([A-Za-z_][A-Za-z0-9_]*)(?:\s+(asc|desc))?\s*$/i.exec(part)
    if (match === null) throw new ODataError(`Invalid ODataQuery: '${part.trim()}' in $orderby is not a property optionally followed by asc or desc.`)
    const property = resolveProperty(shape, match[1] as string)
    if (property === undefined) throw new ODataError(`Invalid ODataQuery: could not find a property named '${match[1] as string}' on type '${shape.name}'.`)
    return { property, descending: match[2]?.toLowerCase() === 'desc' }
  })
}

export function compareBy (keys: readonly OrderKey[]): (a: Record<string, unknown>, b: Record<string, unknown>) => number {
  return (a, b) => {
    for (const { property, descending } of keys) {
      const x = a[property] as string | number | boolean | null | undefined
      const y = b[property] as string | number | boolean | null | undefined
      if (x === y) continue
      // Nulls sort first ascending, as the API's SQL store puts them.
      const order = x === null || x === undefined ? -1 : y === null || y === undefined ? 1 : x < y ? -1 : x > y ? 1 : 0
      if (order !== 0) return descending ? -order : order
    }
    return 0
  }
}

/** `$select=id,computerDnsName`: the real property names, in the order given. */
export function parseSelect (text: string, shape: EntityShape): string[] {
  return text.split(',').map((part) => {
    const name = part.trim()
    const property = resolveProperty(shape, name)
    if (property === undefined) throw new ODataError(`Invalid ODataQuery: could not find a property named '${name}' on type '${shape.name}' in $select.`)
    return property
  })
}
