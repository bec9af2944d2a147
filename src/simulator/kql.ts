import { KqlError } from './kql-lexer.js'
import type { KqlType, KqlValue } from './kql-lexer.js'
import { AGGREGATIONS, compileExpr, formatTimespan, kustoName, semanticError } from './kql-expressions.js'
import type { Compiled, KqlRow, Scope } from './kql-expressions.js'
import { parseQuery } from './kql-parser.js'
import type { Expr, NamedExpr, Operator, SortKey } from './kql-parser.js'

export { KqlError } from './kql-lexer.js'
export type { KqlType, KqlValue } from './kql-lexer.js'
export type { KqlRow } from './kql-expressions.js'

/** The advanced hunting API returns at most this many rows. */
export const MAX_RESULT_ROWS = 100_000

export interface KqlColumn { name: string, type: KqlType }
export interface KqlTable { columns: readonly KqlColumn[], rows: readonly KqlRow[] }

export interface KqlOptions {
  /** The instant `now()` and `ago()` count from, in milliseconds. */
  now: number
  maxRows?: number
}

export interface HuntingResult {
  Schema: Array<{ Name: string, Type: KqlType }>
  Results: Array<Record<string, KqlValue>>
}

/**
 * Runs a query of the KQL subset the simulator reads over `tables`; throws KqlError, whose
 * message says what is wrong, for a query it cannot read.
 */
export function runKql (query: string, tables: ReadonlyMap<string, KqlTable>, options: KqlOptions): HuntingResult {
  const parsed = parseQuery(query)
  const table = tables.get(parsed.table)
  if (table === undefined) {
    throw new KqlError(`Failed to resolve table or column expression named '${parsed.table}'. The simulator has the tables ${[...tables.keys()].join(', ')}.`)
  }
  let columns = table.columns
  const steps: Array<(rows: readonly KqlRow[]) => readonly KqlRow[]> = []
  for (const operator of parsed.operators) {
    const step = compileOperator(operator, columns, options.now)
    columns = step.columns
    steps.push(step.run)
  }
  const rows = steps.reduce((current, run) => run(current), table.rows).slice(0, options.maxRows ?? MAX_RESULT_ROWS)
  return {
    Schema: columns.map((column) => ({ Name: column.name, Type: column.type })),
    Results: rows.map((row) => Object.fromEntries(columns.map((column) => [column.name, formatValue(row[column.name] ?? null, column.type)])))
  }
}

interface Step { columns: readonly KqlColumn[], run: (rows: readonly KqlRow[]) => readonly KqlRow[] }

function compileOperator (operator: Operator, columns: readonly KqlColumn[], now: number): Step {
  const scope = (name: string): Scope => ({ operator: name, columns: new Map(columns.map((column) => [column.name, column.type])), now })
  switch (operator.op) {
    case 'where': {
      const predicate = compileExpr(operator.expr, scope('where'))
      if (predicate.type !== 'Boolean') throw semanticError(scope('where'), `the predicate is a ${kustoName(predicate.type)}, not a bool`)
      return { columns, run: (rows) => rows.filter((row) => predicate.evaluate(row) === true) }
    }
    case 'project':
    case 'extend': {
      const items = compileNamed(operator.items, scope(operator.op), 'Column')
      const added = new Set(items.map((item) => item.name))
      const output = operator.op === 'project'
        ? items.map(({ name, compiled }) => ({ name, type: compiled.type }))
        : [...columns.filter((column) => !added.has(column.name)), ...items.map(({ name, compiled }) => ({ name, type: compiled.type }))]
      const keep = operator.op === 'extend' ? columns.filter((column) => !added.has(column.name)).map((column) => column.name) : []
      return {
        columns: output,
        run: (rows) => rows.map((row) => {
          const next: KqlRow = {}
          for (const name of keep) next[name] = row[name] ?? null
          for (const { name, compiled } of items) next[name] = compiled.evaluate(row)
          return next
        })
      }
    }
    case 'take':
      return { columns, run: (rows) => rows.slice(0, operator.count) }
    case 'top': {
      const sort = compileSort([operator.key], scope('top'))
      return { columns, run: (rows) => sort(rows).slice(0, operator.count) }
    }
    case 'sort': {
      const sort = compileSort(operator.keys, scope('order by'))
      return { columns, run: sort }
    }
    case 'summarize':
      return compileSummarize(operator.aggregates, operator.by, scope('summarize'))
    case 'distinct':
      return compileSummarize([], operator.items, scope('distinct'))
    case 'count':
      return { columns: [{ name: 'Count', type: 'Int64' }], run: (rows) => [{ Count: rows.length }] }
  }
}

interface NamedCompiled { name: string, compiled: Compiled }

/** Names each expression: its own name, a bare column's name, or `<prefix><n>` as Kusto does. */
function compileNamed (items: readonly NamedExpr[], scope: Scope, prefix: string): NamedCompiled[] {
  const seen = new Set<string>()
  return items.map(({ name, expr }, i) => {
    const column = name ?? columnOf(expr) ?? `${prefix}${i + 1}`
    if (seen.has(column)) throw semanticError(scope, `the column '${column}' is named more than once`)
    seen.add(column)
    return { name: column, compiled: compileExpr(expr, scope) }
  })
}

/** The column an expression is named after: `X` and `bin(X, 1h)` are both named X. */
function columnOf (expr: Expr): string | undefined {
  if (expr.kind === 'column') return expr.name
  if (expr.kind === 'call' && (expr.name === 'bin' || expr.name === 'floor') && expr.args[0]?.kind === 'column') return expr.args[0].name
  return undefined
}

function compileSort (keys: readonly SortKey[], scope: Scope): (rows: readonly KqlRow[]) => KqlRow[] {
  const compiled = keys.map((key) => ({ ...key, value: compileExpr(key.expr, scope) }))
  return (rows) => {
    const decorated = rows.map((row) => ({ row, values: compiled.map((key) => key.value.evaluate(row)) }))
    decorated.sort((a, b) => {
      for (const [i, key] of compiled.entries()) {
        const x = a.values[i] ?? null
        const y = b.values[i] ?? null
        if (x === y) continue
        if (x === null || y === null) return (x === null) === key.nullsFirst ? -1 : 1
        const order = x < y ? -1 : 1
        return key.descending ? -order : order
      }
      return 0
    })
    return decorated.map((entry) => entry.row)
  }
}

interface Aggregation {
  name: string
  type: KqlType
  start: () => { add: (row: KqlRow) => void, result: () => KqlValue }
}

function compileSummarize (aggregates: readonly NamedExpr[], by: readonly NamedExpr[], scope: Scope): Step {
  const keys = compileNamed(by, scope, 'Column')
  const aggregations = aggregates.map((aggregate) => compileAggregation(aggregate, scope))
  const names = new Set(keys.map((key) => key.name))
  for (const aggregation of aggregations) {
    if (names.has(aggregation.name)) throw semanticError(scope, `the column '${aggregation.name}' is named more than once`)
    names.add(aggregation.name)
  }
  return {
    columns: [...keys.map(({ name, compiled }) => ({ name, type: compiled.type })), ...aggregations.map(({ name, type }) => ({ name, type }))],
    run: (rows) => {
      const groups = new Map<string, { key: KqlValue[], states: Array<ReturnType<Aggregation['start']>> }>()
      for (const row of rows) {
        const key = keys.map(({ compiled }) => compiled.evaluate(row))
        const id = JSON.stringify(key)
        let group = groups.get(id)
        if (group === undefined) {
          group = { key, states: aggregations.map((aggregation) => aggregation.start()) }
          groups.set(id, group)
        }
        for (const state of group.states) state.add(row)
      }
      // Without a by clause, summarize answers one row even for no input (count() is 0).
      if (keys.length === 0 && groups.size === 0) groups.set('[]', { key: [], states: aggregations.map((aggregation) => aggregation.start()) })
      return [...groups.values()].map(({ key, states }) => {
        const row: KqlRow = {}
        keys.forEach(({ name }, i) => { row[name] = key[i] ?? null })
        aggregations.forEach(({ name }, i) => { row[name] = states[i]?.result() ?? null })
        return row
      })
    }
  }
}

function compileAggregation ({ name, expr }: NamedExpr, scope: Scope): Aggregation {
  if (expr.kind !== 'call' || !AGGREGATIONS.has(expr.name)) {
    throw semanticError(scope, `expected an aggregation (${[...AGGREGATIONS].map((fn) => `${fn}()`).join(', ')}), or 'by'`)
  }
  const fn = expr.name
  const args = expr.args.map((arg) => compileExpr(arg, scope))
  const expected = fn === 'count' ? 0 : 1
  if (args.length !== expected) throw semanticError(scope, `The function '${fn}' expects ${expected} argument${expected === 1 ? '' : 's'}, got ${args.length}`)
  const arg = args[0] as Compiled
  const column = name ?? (fn === 'count' || fn === 'countif' ? `${fn}_` : `${fn}_${columnOf(expr.args[0] as Expr) ?? ''}`)
  switch (fn) {
    case 'count':
      return counter(column, () => true)
    case 'countif':
      if (arg.type !== 'Boolean') throw semanticError(scope, `The function 'countif' expects a bool, got ${kustoName(arg.type)}`)
      return counter(column, (row) => arg.evaluate(row) === true)
    case 'dcount':
      return {
        name: column,
        type: 'Int64',
        start: () => {
          const seen = new Set<KqlValue>()
          return { add: (row) => { const value = arg.evaluate(row); if (value !== null) seen.add(value) }, result: () => seen.size }
        }
      }
    case 'min':
    case 'max':
      return {
        name: column,
        type: arg.type,
        start: () => {
          let best: KqlValue = null
          return {
            add: (row) => {
              const value = arg.evaluate(row)
              if (value !== null && (best === null || (fn === 'min' ? value < best : value > best))) best = value
            },
            result: () => best
          }
        }
      }
    default: {
      if (arg.type !== 'Int32' && arg.type !== 'Int64' && arg.type !== 'Double') throw semanticError(scope, `The function '${fn}' expects a number, got ${kustoName(arg.type)}`)
      return {
        name: column,
        type: fn === 'avg' ? 'Double' : arg.type === 'Double' ? 'Double' : 'Int64',
        start: () => {
          let sum = 0
          let count = 0
          return {
            add: (row) => { const value = arg.evaluate(row); if (typeof value === 'number') { sum += value; count++ } },
            result: () => fn === 'sum' ? sum : count === 0 ? null : sum / count
          }
        }
      }
    }
  }
}

function counter (name: string, test: (row: KqlRow) => boolean): Aggregation {
  return {
    name,
    type: 'Int64',
    start: () => {
      let count = 0
      return { add: (row) => { if (test(row)) count++ }, result: () => count }
    }
  }
}

function formatValue (value: KqlValue, type: KqlType): KqlValue {
  if (value === null) return null
  if (type === 'DateTime') return new Date(value as number).toISOString()
  if (type === 'TimeSpan') return formatTimespan(value as number)
  return value
}
