import { compilePattern, matchesPattern, segmentsOf, type PathPattern } from '../common/path-pattern.js'

/**
 * Rules are `"METHOD /path"` with a path pattern (`common/path-pattern.ts`), a method of `*`
 * for any; `GET` also allows `HEAD`. Paths match case-insensitively, as the API routes them,
 * after unreserved characters are decoded, so no spelling of a path slips past.
 */
export type RuleSet = (method: string, path: string) => boolean

interface Rule {
  method: string
  pattern: PathPattern
}

function parseRule (rule: string): Rule {
  const space = rule.indexOf(' ')
  return { method: rule.slice(0, space).toUpperCase(), pattern: compilePattern(rule.slice(space + 1)) }
}

/** An empty list allows everything: no rules means no restriction at that level. */
export function compileRules (rules: readonly string[]): RuleSet {
  if (rules.length === 0) return () => true
  const parsed = rules.map(parseRule)
  return (method, path) => {
    const upper = method.toUpperCase()
    const segments = segmentsOf(path)
    return parsed.some((rule) =>
      (rule.method === '*' || rule.method === upper || (rule.method === 'GET' && upper === 'HEAD')) &&
      matchesPattern(rule.pattern, segments))
  }
}
