import { BrokerConfigInvalid } from '../errors.js'

/**
 * Checks the wildcards of rules the schema let through ("METHOD /path"): `*` stands for one
 * whole segment and `**` for the rest of the path, so either must fill a segment, and `**`
 * must be the last one. `path` names the list, e.g. `clients[0].allow`.
 */
export function checkRules (rules: readonly string[], path: string): readonly string[] {
  rules.forEach((rule, index) => {
    const target = rule.slice(rule.indexOf(' ') + 1)
    if (/[?#]/.test(target)) {
      throw new BrokerConfigInvalid(`${path}[${index}]`, 'rules match the path only: remove the query or fragment')
    }
    const segments = target.split('/')
    segments.forEach((segment, position) => {
      if (segment.includes('*') && segment !== '*' && segment !== '**') {
        throw new BrokerConfigInvalid(`${path}[${index}]`,
          'a * or ** must be a whole path segment, e.g. "GET /api/machines/*/software"')
      }
      if (segment === '**' && position !== segments.length - 1) {
        throw new BrokerConfigInvalid(`${path}[${index}]`, '** matches the rest of the path, so it must be the last segment')
      }
    })
  })
  return rules
}
