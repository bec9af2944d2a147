import { PERMISSION_WORDS as ROLE_WORDS } from '../defender/catalogue.js'

/** Powers worth saying out loud when the app does not have them. */
const NOTABLE = ['Machine.Isolate', 'Machine.LiveResponse']

export function describeRoles (roles: readonly string[]): string[] {
  const held = new Set(roles)
  const lines = roles.map((role) => `can ${ROLE_WORDS[role] ?? `use ${role}`}`)
  for (const role of NOTABLE) {
    if (!held.has(role)) lines.push(`cannot ${ROLE_WORDS[role]}`)
  }
  return lines
}
