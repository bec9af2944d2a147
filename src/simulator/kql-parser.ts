import { KqlError, parseError, tokenize } from './kql-lexer.js'
import type { KqlType, KqlValue, Token } from './kql-lexer.js'

export type Expr =
  | { kind: 'literal', value: KqlValue, type: KqlType, offset: number }
  | { kind: 'column', name: string, offset: number }
  | { kind: 'call', name: string, args: Expr[], offset: number }
  | { kind: 'binary', op: string, left: Expr, right: Expr, offset: number }
  | { kind: 'in', negated: boolean, caseless: boolean, left: Expr, items: Expr[], offset: number }
  | { kind: 'negate', operand: Expr, offset: number }

/** `name = expr`, or an expression whose column name follows from it. */
export interface NamedExpr { name?: string, expr: Expr }
export interface SortKey { expr: Expr, descending: boolean, nullsFirst: boolean }

export type Operator =
  | { op: 'where', expr: Expr }
  | { op: 'project' | 'extend', items: NamedExpr[] }
  | { op: 'take', count: number }
  | { op: 'top', count: number, key: SortKey }
  | { op: 'sort', keys: SortKey[] }
  | { op: 'summarize', aggregates: NamedExpr[], by: NamedExpr[] }
  | { op: 'distinct', items: NamedExpr[] }
  | { op: 'count' }

export interface ParsedQuery { table: string, tableOffset: number, operators: Operator[] }

export const OPERATOR_NAMES = ['where', 'filter', 'project', 'extend', 'take', 'limit', 'top', 'summarize', 'count', 'distinct', 'order by', 'sort by']

/** String operators: each also comes negated (`!contains`), and the case-sensitive ones as `_cs`. */
const STRING_OPERATORS = new Set(['contains', 'has', 'startswith', 'endswith', 'contains_cs', 'has_cs', 'startswith_cs', 'endswith_cs'])
const COMPARISONS = new Set(['==', '!=', '=~', '!~', '<', '<=', '>', '>='])

export function parseQuery (query: string): ParsedQuery {
  return new Parser(query).parse()
}

class Parser {
  #query: string
  #tokens: Token[]
  #at = 0

  constructor (query: string) {
    this.#query = query
    this.#tokens = tokenize(query)
  }

  parse (): ParsedQuery {
    const first = this.#peek()
    if (first.kind === 'end') throw new KqlError('The query is empty: write a table name, then operators, e.g. DeviceInfo | take 10.')
    if (first.kind !== 'name') throw this.#error(first, 'a query starts with a table name')
    this.#at++
    const operators: Operator[] = []
    while (this.#acceptSymbol('|')) operators.push(this.#operator())
    this.#acceptSymbol(';')
    const rest = this.#peek()
    if (rest.kind !== 'end') throw this.#error(rest, rest.text === '|' ? 'expected an operator' : 'expected \'|\' or the end of the query')
    return { table: first.text, tableOffset: first.offset, operators }
  }

  #operator (): Operator {
    const token = this.#next()
    switch (token.kind === 'name' ? token.text : '') {
      case 'where':
      case 'filter':
        return { op: 'where', expr: this.#expr() }
      case 'project':
      case 'extend':
        return { op: token.text as 'project' | 'extend', items: this.#list(() => this.#namedExpr()) }
      case 'take':
      case 'limit':
        return { op: 'take', count: this.#count() }
      case 'top': {
        const count = this.#count()
        this.#expectName('by')
        return { op: 'top', count, key: this.#sortKey() }
      }
      case 'order':
      case 'sort':
        this.#expectName('by')
        return { op: 'sort', keys: this.#list(() => this.#sortKey()) }
      case 'summarize': {
        const aggregates = this.#peekName('by') ? [] : this.#list(() => this.#namedExpr())
        const by = this.#acceptName('by') ? this.#list(() => this.#namedExpr()) : []
        if (aggregates.length === 0 && by.length === 0) throw this.#error(this.#peek(), 'summarize needs an aggregation such as count(), or a by clause')
        return { op: 'summarize', aggregates, by }
      }
      case 'distinct':
        return { op: 'distinct', items: this.#list(() => this.#namedExpr()) }
      case 'count':
        return { op: 'count' }
      default:
        throw this.#error(token, token.kind === 'name'
          ? `the simulator's KQL has no '${token.text}' operator (it reads ${OPERATOR_NAMES.join(', ')})`
          : 'expected an operator')
    }
  }

  #count (): number {
    const token = this.#next()
    if (token.kind !== 'number' || token.text.includes('.')) throw this.#error(token, 'expected a whole number of rows')
    return Number(token.text)
  }

  #sortKey (): SortKey {
    const expr = this.#expr()
    let descending = true
    if (this.#acceptName('asc')) descending = false
    else this.#acceptName('desc')
    let nullsFirst = !descending
    if (this.#acceptName('nulls')) {
      if (this.#acceptName('first')) nullsFirst = true
      else if (this.#acceptName('last')) nullsFirst = false
      else throw this.#error(this.#peek(), 'expected \'first\' or \'last\' after \'nulls\'')
    }
    return { expr, descending, nullsFirst }
  }

  #namedExpr (): NamedExpr {
    const token = this.#peek()
    const after = this.#tokens[this.#at + 1]
    if (token.kind === 'name' && after?.kind === 'symbol' && after.text === '=') {
      this.#at += 2
      return { name: token.text, expr: this.#expr() }
    }
    return { expr: this.#expr() }
  }

  #list<T> (item: () => T): T[] {
    const items = [item()]
    while (this.#acceptSymbol(',')) items.push(item())
    return items
  }

  #expr (): Expr { return this.#or() }

  #or (): Expr {
    let left = this.#and()
    for (let token = this.#peek(); this.#acceptName('or'); token = this.#peek()) left = { kind: 'binary', op: 'or', left, right: this.#and(), offset: token.offset }
    return left
  }

  #and (): Expr {
    let left = this.#comparison()
    for (let token = this.#peek(); this.#acceptName('and'); token = this.#peek()) left = { kind: 'binary', op: 'and', left, right: this.#comparison(), offset: token.offset }
    return left
  }

  #comparison (): Expr {
    const left = this.#additive()
    const token = this.#peek()
    if (token.kind === 'symbol' && COMPARISONS.has(token.text)) {
      this.#at++
      return { kind: 'binary', op: token.text, left, right: this.#additive(), offset: token.offset }
    }
    const negated = token.kind === 'symbol' && token.text === '!' && this.#tokens[this.#at + 1]?.kind === 'name'
    const word = negated ? this.#tokens[this.#at + 1] as Token : token
    if (word.kind !== 'name') return left
    if (STRING_OPERATORS.has(word.text)) {
      this.#at += negated ? 2 : 1
      return { kind: 'binary', op: (negated ? '!' : '') + word.text, left, right: this.#additive(), offset: token.offset }
    }
    if (word.text === 'in') {
      this.#at += negated ? 2 : 1
      const caseless = this.#acceptSymbol('~')
      this.#expectSymbol('(')
      const items = this.#list(() => this.#additive())
      this.#expectSymbol(')')
      return { kind: 'in', negated, caseless, left, items, offset: token.offset }
    }
    if (negated) throw this.#error(word, `'!${word.text}' is not an operator the simulator's KQL reads`)
    return left
  }

  #additive (): Expr {
    let left = this.#multiplicative()
    for (let token = this.#peek(); token.kind === 'symbol' && (token.text === '+' || token.text === '-'); token = this.#peek()) {
      this.#at++
      left = { kind: 'binary', op: token.text, left, right: this.#multiplicative(), offset: token.offset }
    }
    return left
  }

  #multiplicative (): Expr {
    let left = this.#unary()
    for (let token = this.#peek(); token.kind === 'symbol' && (token.text === '*' || token.text === '/'); token = this.#peek()) {
      this.#at++
      left = { kind: 'binary', op: token.text, left, right: this.#unary(), offset: token.offset }
    }
    return left
  }

  #unary (): Expr {
    const token = this.#peek()
    if (token.kind === 'symbol' && token.text === '-') {
      this.#at++
      return { kind: 'negate', operand: this.#unary(), offset: token.offset }
    }
    return this.#primary()
  }

  #primary (): Expr {
    const token = this.#next()
    const { offset } = token
    switch (token.kind) {
      case 'string': return { kind: 'literal', value: token.text, type: 'String', offset }
      case 'number': return { kind: 'literal', value: Number(token.text), type: token.text.includes('.') ? 'Double' : 'Int64', offset }
      case 'timespan': return { kind: 'literal', value: token.ms ?? 0, type: 'TimeSpan', offset }
      case 'datetime': return { kind: 'literal', value: token.ms ?? 0, type: 'DateTime', offset }
      case 'symbol':
        if (token.text === '(') {
          const inner = this.#expr()
          this.#expectSymbol(')')
          return inner
        }
        break
      case 'name': {
        if (token.text === 'true' || token.text === 'false') return { kind: 'literal', value: token.text === 'true', type: 'Boolean', offset }
        if (!this.#acceptSymbol('(')) return { kind: 'column', name: token.text, offset }
        const args = this.#peekSymbol(')') ? [] : this.#list(() => this.#expr())
        this.#expectSymbol(')')
        return { kind: 'call', name: token.text, args, offset }
      }
    }
    throw this.#error(token, 'expected a column, a literal or a function call')
  }

  #peek (): Token { return this.#tokens[this.#at] as Token }
  #next (): Token { return this.#tokens[this.#at === this.#tokens.length - 1 ? this.#at : this.#at++] as Token }
  #peekSymbol (text: string): boolean { const token = this.#peek(); return token.kind === 'symbol' && token.text === text }
  #peekName (text: string): boolean { const token = this.#peek(); return token.kind === 'name' && token.text === text }

  #acceptSymbol (text: string): boolean {
    if (!this.#peekSymbol(text)) return false
    this.#at++
    return true
  }

  #acceptName (text: string): boolean {
    if (!this.#peekName(text)) return false
    this.#at++
    return true
  }

  #expectSymbol (text: string): void {
    if (!this.#acceptSymbol(text)) throw this.#error(this.#peek(), `expected '${text}'`)
  }

  #expectName (text: string): void {
    if (!this.#acceptName(text)) throw this.#error(this.#peek(), `expected '${text}'`)
  }

  #error (token: Token, reason: string): KqlError {
    return parseError(this.#query, token.offset, reason)
  }
}
