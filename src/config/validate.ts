import type { Static, TSchema } from '@sinclair/typebox'
import { Value, ValueErrorType, type ValueError } from '@sinclair/typebox/value'
import { BrokerConfigInvalid } from '../common/errors.js'
import { PATTERN_HINTS } from './schema.js'

/** Names a setting for messages, from the JSON-pointer segments of its place in the checked value. */
export type PathNamer = (segments: readonly string[]) => string

export interface SchemaProblem {
  readonly segments: readonly string[]
  readonly problem: string
}

const MAX_REPORTED = 5

/** Only names that look like setting names are repeated: a pasted secret can end up as a key. */
const SHOWABLE_KEY = /^[A-Za-z$_][A-Za-z0-9$_-]{0,31}$/
const HIDDEN_KEY = '<unknown setting>'

/** `profiles/0/credential/secretFile` as `profiles[0].credential.secretFile`; the root is `root`. */
export function dottedPath (root: string): PathNamer {
  return segments => {
    let path = ''
    for (const segment of segments) {
      path += /^\d+$/.test(segment) ? `[${segment}]` : path === '' ? segment : `.${segment}`
    }
    return path === '' ? root : path
  }
}

/**
 * Throws `BrokerConfigInvalid` naming the first problems of `value` against `schema`.
 * Messages are built from the schema alone: TypeBox's errors carry the offending value,
 * which may be a secret, and it is never printed.
 */
export function assertMatchesSchema<T extends TSchema> (schema: T, value: unknown, namePath: PathNamer): asserts value is Static<T> {
  const seen = new Set<string>()
  const problems: Array<{ path: string, problem: string }> = []
  for (const { segments, problem } of schemaProblems(schema, value, [])) {
    const path = namePath(segments)
    if (seen.has(path)) continue
    seen.add(path)
    problems.push({ path, problem })
    if (problems.length === MAX_REPORTED) break
  }
  const [first, ...rest] = problems
  if (first === undefined) return
  const more = rest.map(({ path, problem }) => `; also ${path}: ${problem}`).join('')
  throw new BrokerConfigInvalid(first.path, first.problem + more)
}

function * schemaProblems (schema: TSchema, value: unknown, prefix: readonly string[]): Generator<SchemaProblem> {
  for (const error of Value.Errors(schema, value)) {
    const segments = [...prefix, ...pointerSegments(error.path)]
    if (error.type === ValueErrorType.Union) {
      yield * unionProblems(error.schema, error.value, segments)
    } else if (error.type === ValueErrorType.ObjectAdditionalProperties) {
      const key = segments.at(-1) ?? ''
      const shown = SHOWABLE_KEY.test(key) ? segments : [...segments.slice(0, -1), HIDDEN_KEY]
      yield { segments: shown, problem: 'is not a known setting: check its spelling and place against config/schema.json' }
    } else {
      yield { segments, problem: describe(error) }
    }
  }
}

function * unionProblems (schema: TSchema, value: unknown, segments: string[]): Generator<SchemaProblem> {
  const variants: TSchema[] = Array.isArray(schema.anyOf) ? schema.anyOf : []
  if (variants.length > 0 && variants.every(variant => typeof variant.const === 'string')) {
    yield { segments, problem: `must be one of ${variants.map(variant => variant.const).join(', ')}` }
    return
  }
  const kinds: unknown[] = variants.map(variant => variant.properties?.type?.const)
  if (variants.length > 0 && kinds.every(kind => typeof kind === 'string')) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      yield { segments, problem: 'must be a mapping with a "type"' }
      return
    }
    const type = (value as { type?: unknown }).type
    const variant = typeof type === 'string' ? variants[kinds.indexOf(type)] : undefined
    if (variant === undefined) {
      const problem = type === undefined ? 'is required' : 'is not a known type'
      yield { segments: [...segments, 'type'], problem: `${problem}: use one of ${kinds.join(', ')}` }
      return
    }
    yield * schemaProblems(variant, value, segments)
    return
  }
  yield { segments, problem: 'does not have any of the allowed forms' }
}

function pointerSegments (pointer: string): string[] {
  if (pointer === '') return []
  return pointer.slice(1).split('/').map(segment => segment.replaceAll('~1', '/').replaceAll('~0', '~'))
}

function describe (error: ValueError): string {
  const schema = error.schema
  switch (error.type) {
    case ValueErrorType.ObjectRequiredProperty: return 'is required'
    case ValueErrorType.Object: return 'must be a mapping of settings'
    case ValueErrorType.Array: return 'must be a list'
    case ValueErrorType.String: return 'must be a string'
    case ValueErrorType.Boolean: return 'must be true or false'
    case ValueErrorType.Integer: return 'must be an integer'
    case ValueErrorType.Number: return 'must be a number'
    case ValueErrorType.Literal: return `must be ${JSON.stringify(schema.const)}`
    case ValueErrorType.StringMinLength:
      return schema.minLength === 1 ? 'must not be empty' : `must be at least ${schema.minLength} characters long`
    case ValueErrorType.StringMaxLength: return `must be at most ${schema.maxLength} characters long`
    case ValueErrorType.StringPattern:
      return PATTERN_HINTS[schema.pattern] ?? `must match ${schema.pattern}`
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum: return `must be at least ${schema.minimum}`
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMaximum: return `must be at most ${schema.maximum}`
    case ValueErrorType.IntegerExclusiveMinimum:
    case ValueErrorType.NumberExclusiveMinimum: return `must be greater than ${schema.exclusiveMinimum}`
    case ValueErrorType.ArrayUniqueItems: return 'must not list the same item twice'
    // TypeBox's default messages are built from the schema only, never from the value
    default: return error.message
  }
}
