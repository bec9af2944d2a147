import { BrokerConfigInvalid } from '../common/errors.js'
import { patternProblem } from '../common/path-pattern.js'

/**
 * Checks the paths of rules the schema let through ("METHOD /path") against the path-pattern
 * grammar (`common/path-pattern.ts`). `path` names the list, e.g. `clients[0].allow`.
 */
export function checkRules (rules: readonly string[], path: string): readonly string[] {
  rules.forEach((rule, index) => checkRule(rule, `${path}[${index}]`))
  return rules
}

/** One rule; `path` names it, e.g. `profiles[0].cache[1].allow`. */
export function checkRule (rule: string, path: string): string {
  const problem = patternProblem(rule.slice(rule.indexOf(' ') + 1))
  if (problem !== undefined) throw new BrokerConfigInvalid(path, problem)
  return rule
}
