import type { ClientConfig, ProfileConfig } from '../config/types.js'
import { adminConsentUrl, neededPermissions, type NeededPermission } from '../defender/consent.js'
import { loadForCommand, type CommandOptions } from './options.js'

export interface ConsentOptions extends CommandOptions {
  /** Only this profile; all of them when absent. */
  profile?: string | undefined
}

interface ConsentResult {
  profile: string
  /** Null for a managed identity configured without it: the identity's own. */
  tenantId: string | null
  clientId: string | null
  credential: string
  cloud: string
  authorityHost: string
  /** Null for a managed identity, which `note` explains. */
  consentUrl: string | null
  note?: string
  basis: 'rules' | 'catalogue'
  permissions: NeededPermission[]
}

const MANAGED_IDENTITY_NOTE = 'a managed identity has no consent link: an admin assigns it the WindowsDefenderATP app roles ' +
  '(see docs/credentials.md, Managed identity)'

function describe (profile: ProfileConfig, clients: readonly ClientConfig[]): ConsentResult {
  const consentUrl = adminConsentUrl(profile) ?? null
  const needs = neededPermissions(profile, clients)
  return {
    profile: profile.name,
    tenantId: profile.tenantId ?? null,
    clientId: profile.clientId ?? null,
    credential: profile.credential.type,
    cloud: profile.cloud,
    authorityHost: profile.authorityHost,
    consentUrl,
    ...(consentUrl === null ? { note: MANAGED_IDENTITY_NOTE } : {}),
    basis: needs.basis,
    permissions: needs.permissions
  }
}

function printHuman (result: ConsentResult): string {
  const lines = [
    `profile ${result.profile}: tenant ${result.tenantId ?? '(the identity\'s own)'}`,
    `  client id   ${result.clientId ?? '(the identity\'s own)'} (${result.credential})`,
    `  cloud       ${result.cloud}, signs in at ${result.authorityHost}`,
    `  consent     ${result.consentUrl ?? result.note}`
  ]
  const asks = result.consentUrl === null ? 'needs' : 'asks for'
  if (result.permissions.length === 0) {
    lines.push(`  ${asks.padEnd(11)} nothing: no rule of the profile, or of a client that may use it, lets a call reach the API`)
  } else {
    const why = result.basis === 'catalogue'
      ? 'every WindowsDefenderATP application permission the broker knows (no rule limits this profile)'
      : 'the WindowsDefenderATP application permissions its rules let tools use'
    lines.push(`  ${asks.padEnd(11)} ${why}:`)
    const width = Math.max(...result.permissions.map(({ permission }) => permission.length))
    for (const { permission, words, calls } of result.permissions) {
      const what = calls.length === 1 ? (calls[0] === words ? '' : ` (${calls[0]})`) : ` (${calls.length} calls)`
      lines.push(`                ${permission.padEnd(width)}  ${words}${what}`)
    }
  }
  return lines.join('\n') + '\n'
}

const AFTERWORD = `
The admin is asked for the application permissions the app registration lists (API permissions,
WindowsDefenderATP): list these there first. An admin of each tenant opens its link, signs in and
accepts; then run: defender-token-broker check
`

/** Each profile's admin-consent link and what it asks for: no token, no network. */
export async function runConsent (options: ConsentOptions): Promise<number> {
  const config = loadForCommand(options)
  if (config === undefined) return 1
  const profiles = options.profile === undefined
    ? config.profiles
    : config.profiles.filter((profile) => profile.name === options.profile)
  if (profiles.length === 0) {
    const names = config.profiles.map((profile) => profile.name).join(', ')
    process.stderr.write(`defender-token-broker: no profile named ${options.profile}: the profiles are ${names}\n`)
    return 2
  }
  const results = profiles.map((profile) => describe(profile, config.clients))
  if (options.json) process.stdout.write(JSON.stringify({ profiles: results }, null, 2) + '\n')
  else process.stdout.write(results.map(printHuman).join('\n') + AFTERWORD)
  return 0
}
