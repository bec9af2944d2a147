import { BrokerConfigInvalid } from '../common/errors.js'
import { patternProblem } from '../common/path-pattern.js'

/**
 * Checks the paths of rules the schema let through ("METHOD /path") against the path-pattern
 * grammar (`common/path-pattern.ts`). `path` names the list, e.g. `clients[0].allow`.
 */
export function checkRules (rules: readonly string[], path: string): readonly string[] {
  rules.forEach((rule, index) => {
    const problem = patternProblem(rule.slice(rule.indexOf(' ') + 1))
    if (problem !== undefined) throw new BrokerConfigInvalid(`${path}[${index}]`, problem)
  })
  return rules
}
