import { KqlError } from './kql-lexer.js'
import type { KqlType, KqlValue } from './kql-lexer.js'
import type { Expr } from './kql-parser.js'

export type KqlRow = Record<string, KqlValue>

export interface Compiled {
  type: KqlType
  evaluate: (row: KqlRow) => KqlValue
}

export interface Scope {
  /** The operator being compiled, for messages: `'where' operator: ...`. */
  operator: string
  columns: ReadonlyMap<string, KqlType>
  now: number
}

export const AGGREGATIONS = new Set(['count', 'countif', 'dcount', 'min', 'max', 'sum', 'avg'])

const DAY_MS = 86_400_000
const NUMERIC = new Set<KqlType>(['Int32', 'Int64', 'Double'])
/** How Kusto names each type in its messages. */
const KUSTO_NAMES: Record<KqlType, string> = {
  String: 'string', DateTime: 'datetime', Int64: 'long', Int32: 'int', Double: 'real', Boolean: 'bool', TimeSpan: 'timespan'
}

export function compileExpr (expr: Expr, scope: Scope): Compiled {
  switch (expr.kind) {
    case 'literal': {
      const { value, type } = expr
      return { type, evaluate: () => value }
    }
    case 'column': {
      const type = scope.columns.get(expr.name)
      if (type === undefined) throw semanticError(scope, `Failed to resolve column or scalar expression named '${expr.name}'`)
      const { name } = expr
      return { type, evaluate: (row) => row[name] ?? null }
    }
    case 'negate': {
      const operand = compileExpr(expr.operand, scope)
      if (!NUMERIC.has(operand.type) && operand.type !== 'TimeSpan') throw semanticError(scope, `'-' cannot be applied to a ${KUSTO_NAMES[operand.type]}`)
      return { type: operand.type, evaluate: (row) => mapNumber(operand.evaluate(row), (n) => -n) }
    }
    case 'in': return compileIn(expr, scope)
    case 'binary': return compileBinary(expr.op, compileExpr(expr.left, scope), compileExpr(expr.right, scope), scope)
    case 'call': return compileCall(expr.name, expr.args.map((arg) => compileExpr(arg, scope)), scope)
  }
}

function compileIn (expr: Extract<Expr, { kind: 'in' }>, scope: Scope): Compiled {
  const left = compileExpr(expr.left, scope)
  const items = expr.items.map((item) => compileExpr(item, scope))
  const operator = `${expr.negated ? '!' : ''}in${expr.caseless ? '~' : ''}`
  for (const item of items) {
    if (!comparable(left.type, item.type) || (expr.caseless && left.type !== 'String')) throw typeMismatch(scope, operator, left.type, item.type)
  }
  const fold = expr.caseless ? (value: KqlValue) => typeof value === 'string' ? value.toLowerCase() : value : (value: KqlValue) => value
  return {
    type: 'Boolean',
    evaluate: (row) => {
      const value = left.evaluate(row)
      if (value === null) return null
      return items.some((item) => fold(item.evaluate(row)) === fold(value)) !== expr.negated
    }
  }
}

function compileBinary (op: string, left: Compiled, right: Compiled, scope: Scope): Compiled {
  if (op === 'and' || op === 'or') {
    if (left.type !== 'Boolean' || right.type !== 'Boolean') throw semanticError(scope, `'${op}' needs two boolean operands, not ${KUSTO_NAMES[left.type]} and ${KUSTO_NAMES[right.type]}`)
    return op === 'and'
      ? { type: 'Boolean', evaluate: (row) => left.evaluate(row) === true && right.evaluate(row) === true }
      : { type: 'Boolean', evaluate: (row) => left.evaluate(row) === true || right.evaluate(row) === true }
  }
  if (op === '==' || op === '!=') {
    if (!comparable(left.type, right.type)) throw typeMismatch(scope, op, left.type, right.type)
    return compare(left, right, (a, b) => (a === b) === (op === '=='))
  }
  if (op === '=~' || op === '!~') {
    if (left.type !== 'String' || right.type !== 'String') throw typeMismatch(scope, op, left.type, right.type)
    return compare(left, right, (a, b) => (String(a).toLowerCase() === String(b).toLowerCase()) === (op === '=~'))
  }
  if (op === '<' || op === '<=' || op === '>' || op === '>=') {
    if (!comparable(left.type, right.type) || left.type === 'String' || left.type === 'Boolean') throw typeMismatch(scope, op, left.type, right.type)
    const test = { '<': (c: number) => c < 0, '<=': (c: number) => c <= 0, '>': (c: number) => c > 0, '>=': (c: number) => c >= 0 }[op]
    return compare(left, right, (a, b) => test((a as number) - (b as number)))
  }
  const negated = op.startsWith('!')
  const test = stringTest(negated ? op.slice(1) : op)
  if (test !== undefined) {
    return {
      type: 'Boolean',
      evaluate: (row) => test(toText(left.evaluate(row), left.type), toText(right.evaluate(row), right.type)) !== negated
    }
  }
  const type = arithmeticType(op, left.type, right.type)
  if (type === undefined) throw semanticError(scope, `'${op}' cannot be applied to ${KUSTO_NAMES[left.type]} and ${KUSTO_NAMES[right.type]}`)
  const integer = type === 'Int64' || (type === 'TimeSpan' && op === '/')
  return {
    type,
    evaluate: (row) => {
      const a = left.evaluate(row)
      const b = right.evaluate(row)
      if (typeof a !== 'number' || typeof b !== 'number') return null
      if (op === '/' && b === 0) return null
      const result = op === '+' ? a + b : op === '-' ? a - b : op === '*' ? a * b : a / b
      return integer ? Math.trunc(result) : result
    }
  }
}

function compare (left: Compiled, right: Compiled, test: (a: KqlValue, b: KqlValue) => boolean): Compiled {
  return {
    type: 'Boolean',
    evaluate: (row) => {
      const a = left.evaluate(row)
      const b = right.evaluate(row)
      return a === null || b === null ? null : test(a, b)
    }
  }
}

/** contains and startswith/endswith look at characters; has looks for a whole term (letters and digits). */
function stringTest (op: string): ((haystack: string, needle: string) => boolean) | undefined {
  const caseless = (test: (h: string, n: string) => boolean) => (h: string, n: string) => test(h.toLowerCase(), n.toLowerCase())
  const has = (h: string, n: string): boolean => {
    if (n === '') return true
    for (let at = h.indexOf(n); at !== -1; at = h.indexOf(n, at + 1)) {
      const startsTerm = !isTermChar(n[0]) || !isTermChar(h[at - 1])
      const endsTerm = !isTermChar(n.at(-1)) || !isTermChar(h[at + n.length])
      if (startsTerm && endsTerm) return true
    }
    return false
  }
  const tests: Record<string, (h: string, n: string) => boolean> = {
    contains_cs: (h, n) => h.includes(n),
    startswith_cs: (h, n) => h.startsWith(n),
    endswith_cs: (h, n) => h.endsWith(n),
    has_cs: has
  }
  const base = tests[op.replace(/_cs$/, '') + '_cs']
  if (base === undefined) return undefined
  return op.endsWith('_cs') ? base : caseless(base)
}

function isTermChar (char: string | undefined): boolean {
  return char !== undefined && /[A-Za-z0-9]/.test(char)
}

function arithmeticType (op: string, a: KqlType, b: KqlType): KqlType | undefined {
  if (NUMERIC.has(a) && NUMERIC.has(b)) return a === 'Double' || b === 'Double' ? 'Double' : 'Int64'
  const pair = `${a} ${op} ${b}`
  const rules: Record<string, KqlType> = {
    'DateTime + TimeSpan': 'DateTime',
    'TimeSpan + DateTime': 'DateTime',
    'DateTime - TimeSpan': 'DateTime',
    'DateTime - DateTime': 'TimeSpan',
    'TimeSpan + TimeSpan': 'TimeSpan',
    'TimeSpan - TimeSpan': 'TimeSpan'
  }
  if (rules[pair] !== undefined) return rules[pair]
  if (a === 'TimeSpan' && (op === '*' || op === '/') && NUMERIC.has(b)) return 'TimeSpan'
  return undefined
}

function compileCall (name: string, args: Compiled[], scope: Scope): Compiled {
  if (AGGREGATIONS.has(name)) throw semanticError(scope, `Function '${name}' cannot be invoked in current context: aggregations belong in summarize`)
  const arity = (count: number, ...types: Array<KqlType | 'any'>): Compiled[] => {
    if (args.length !== count) throw semanticError(scope, `The function '${name}' expects ${count} argument${count === 1 ? '' : 's'}, got ${args.length}`)
    args.forEach((arg, i) => {
      const expected = types[i] ?? 'any'
      if (expected !== 'any' && arg.type !== expected && !(expected === 'Double' && NUMERIC.has(arg.type))) {
        throw semanticError(scope, `The function '${name}' expects a ${KUSTO_NAMES[expected]} as argument ${i + 1}, got ${KUSTO_NAMES[arg.type]}`)
      }
    })
    return args
  }
  const { now } = scope
  switch (name) {
    case 'ago': {
      const [span] = arity(1, 'TimeSpan') as [Compiled]
      return { type: 'DateTime', evaluate: (row) => mapNumber(span.evaluate(row), (ms) => now - ms) }
    }
    case 'now': {
      const [offset] = args.length === 0 ? [] : arity(1, 'TimeSpan')
      return { type: 'DateTime', evaluate: (row) => offset === undefined ? now : mapNumber(offset.evaluate(row), (ms) => now + ms) }
    }
    case 'not': {
      const [value] = arity(1, 'Boolean') as [Compiled]
      return { type: 'Boolean', evaluate: (row) => { const v = value.evaluate(row); return v === null ? null : v !== true } }
    }
    case 'tolower':
    case 'toupper': {
      const [value] = arity(1, 'any') as [Compiled]
      const upper = name === 'toupper'
      return { type: 'String', evaluate: (row) => { const text = toText(value.evaluate(row), value.type); return upper ? text.toUpperCase() : text.toLowerCase() } }
    }
    case 'tostring': {
      const [value] = arity(1, 'any') as [Compiled]
      return { type: 'String', evaluate: (row) => toText(value.evaluate(row), value.type) }
    }
    case 'strlen': {
      const [value] = arity(1, 'String') as [Compiled]
      return { type: 'Int64', evaluate: (row) => String(value.evaluate(row) ?? '').length }
    }
    case 'isempty':
    case 'isnotempty':
    case 'isnull':
    case 'isnotnull': {
      const [value] = arity(1, 'any') as [Compiled]
      const empty = name.endsWith('empty') ? (v: KqlValue) => v === null || v === '' : (v: KqlValue) => v === null
      const negated = name.startsWith('isnot')
      return { type: 'Boolean', evaluate: (row) => empty(value.evaluate(row)) !== negated }
    }
    case 'bin':
    case 'floor': {
      const [value, size] = arity(2, 'any', 'any') as [Compiled, Compiled]
      const ok = (NUMERIC.has(value.type) && NUMERIC.has(size.type)) || ((value.type === 'DateTime' || value.type === 'TimeSpan') && size.type === 'TimeSpan')
      if (!ok) throw semanticError(scope, `The function '${name}' cannot round a ${KUSTO_NAMES[value.type]} by a ${KUSTO_NAMES[size.type]}`)
      return {
        type: value.type,
        evaluate: (row) => {
          const v = value.evaluate(row)
          const s = size.evaluate(row)
          return typeof v === 'number' && typeof s === 'number' && s > 0 ? Math.floor(v / s) * s : null
        }
      }
    }
    case 'startofday': {
      const [value] = arity(1, 'DateTime') as [Compiled]
      return { type: 'DateTime', evaluate: (row) => mapNumber(value.evaluate(row), (ms) => Math.floor(ms / DAY_MS) * DAY_MS) }
    }
    default:
      throw semanticError(scope, `Unknown function: '${name}'`)
  }
}

function comparable (a: KqlType, b: KqlType): boolean {
  return a === b || (NUMERIC.has(a) && NUMERIC.has(b))
}

function mapNumber (value: KqlValue, fn: (n: number) => number): KqlValue {
  return typeof value === 'number' ? fn(value) : null
}

/** A value as text, as string operators and tostring() see it. */
export function toText (value: KqlValue, type: KqlType): string {
  if (value === null) return ''
  if (type === 'DateTime') return new Date(value as number).toISOString()
  if (type === 'TimeSpan') return formatTimespan(value as number)
  return String(value)
}

/** Kusto's timespan text: [-][d.]hh:mm:ss[.fffffff]. */
export function formatTimespan (ms: number): string {
  const sign = ms < 0 ? '-' : ''
  let rest = Math.abs(ms)
  const days = Math.floor(rest / DAY_MS)
  rest -= days * DAY_MS
  const pad = (n: number) => String(n).padStart(2, '0')
  const clock = `${pad(Math.floor(rest / 3_600_000))}:${pad(Math.floor(rest / 60_000) % 60)}:${pad(Math.floor(rest / 1000) % 60)}`
  const fraction = rest % 1000 === 0 ? '' : `.${String(rest % 1000).padStart(3, '0')}0000`
  return `${sign}${days > 0 ? `${days}.` : ''}${clock}${fraction}`
}

export function kustoName (type: KqlType): string {
  return KUSTO_NAMES[type]
}

export function semanticError (scope: Pick<Scope, 'operator'>, message: string): KqlError {
  return new KqlError(`'${scope.operator}' operator: ${message}.`)
}

function typeMismatch (scope: Scope, op: string, a: KqlType, b: KqlType): KqlError {
  return semanticError(scope, `Cannot compare values of types ${KUSTO_NAMES[a]} and ${KUSTO_NAMES[b]} with '${op}'. Try adding explicit casts`)
}
