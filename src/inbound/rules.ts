/**
 * Rules are `"METHOD /path"`: `*` stands for one path segment, `**` for the rest of the path,
 * a method of `*` for any; `GET` also allows `HEAD`. Paths match case-insensitively, as the API
 * routes them, after unreserved characters are decoded, so no spelling of a path slips past.
 */
export type RuleSet = (method: string, path: string) => boolean

interface Rule {
  method: string
  segments: string[]
}

function parseRule (rule: string): Rule {
  const space = rule.indexOf(' ')
  const method = rule.slice(0, space).toUpperCase()
  const path = normalizePath(rule.slice(space + 1))
  return { method, segments: path.split('/').slice(1) }
}

const UNRESERVED = /%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])/g

/** Lower-case, with percent-encoded unreserved characters decoded and the query dropped. */
export function normalizePath (target: string): string {
  const queryAt = target.indexOf('?')
  const path = queryAt === -1 ? target : target.slice(0, queryAt)
  return path.replace(UNRESERVED, (_, hex: string) => String.fromCharCode(parseInt(hex, 16))).toLowerCase()
}

function matchSegments (rule: string[], path: string[]): boolean {
  for (let i = 0; i < rule.length; i++) {
    const part = rule[i]
    if (part === '**') return true
    if (i >= path.length) return false
    if (part !== '*' && part !== path[i]) return false
  }
  return rule.length === path.length
}

/** An empty list allows everything: no rules means no restriction at that level. */
export function compileRules (rules: readonly string[]): RuleSet {
  if (rules.length === 0) return () => true
  const parsed = rules.map(parseRule)
  return (method, path) => {
    const upper = method.toUpperCase()
    const segments = normalizePath(path).split('/').slice(1)
    return parsed.some((rule) =>
      (rule.method === '*' || rule.method === upper || (rule.method === 'GET' && upper === 'HEAD')) &&
      matchSegments(rule.segments, segments))
  }
}
