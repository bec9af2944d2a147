import { systemClock } from '../common/clock.js'
import type { CertificateStatus } from '../credentials/index.js'
import type { ClientConfig } from '../config/types.js'
import { describeGuards, dryRunClientsOf } from '../guards/guards.js'
import { createOutboundDispatcher } from '../outbound/dispatcher.js'
import { createProfiles, type Profile } from '../runtime/profiles.js'
import { readClaims } from '../tokens/jwt.js'
import { describeRoles } from '../tokens/roles.js'
import { hintFor } from '../tokens/token-error.js'
import { loadForCommand, type CommandOptions } from './options.js'

interface CheckResult {
  profile: string
  /** A managed identity's are read from its token (`tid`, `appid` or `azp`): absent until it has one. */
  tenantId?: string
  clientId?: string
  credential: string
  /** Where the credential is found: a file, a variable, a managed identity's endpoint; never a value. */
  source: string
  /** Absent for a managed identity: its endpoint, not an authority, hands out the tokens. */
  authority?: string
  scope: string
  upstream: string
  ok: boolean
  expiresAt?: string
  roles?: readonly string[]
  allows?: string[]
  /** The certificate's expiry, for a certificate credential. */
  certificate?: CertificateStatus
  /** The guard rails that apply to the profile's state-changing calls, in words. */
  guards: string[]
  error?: { code: string, message: string, hint?: string }
}

async function checkProfile (profile: Profile, clients: readonly ClientConfig[]): Promise<CheckResult> {
  const { config, tokens, credential } = profile
  const managedIdentity = config.credential.type === 'managedIdentity'
  const base = {
    profile: config.name,
    ...ids(config.tenantId, config.clientId),
    credential: config.credential.type,
    source: config.credentialSource,
    ...(managedIdentity ? {} : { authority: `${config.authorityHost}/${config.tenantId}` }),
    scope: config.scope,
    upstream: config.upstream,
    guards: describeGuards(config.guards, dryRunClientsOf(clients, config.name))
  }
  // Read after the token request, which reads the certificate file again.
  const certificate = () => {
    const status = credential.certificate?.status()
    return status === undefined ? {} : { certificate: status }
  }
  try {
    const token = await tokens.start()
    const claims = managedIdentity ? readClaims(token.value) : undefined
    return {
      ...base,
      ...(claims === undefined ? {} : ids(claims.tid, claims.appid ?? claims.azp)),
      ok: true,
      expiresAt: new Date(token.expiresAt).toISOString(),
      roles: token.roles,
      allows: describeRoles(token.roles),
      ...certificate()
    }
  } catch {
    const failure = tokens.status().lastError
    const code = failure?.code ?? 'unknown'
    return { ...base, ok: false, ...certificate(), error: { code, message: failure?.message ?? 'the token request failed', hint: hintFor(code, config) } }
  } finally {
    tokens.close()
  }
}

function ids (tenantId: string | undefined, clientId: string | undefined): Pick<CheckResult, 'tenantId' | 'clientId'> {
  return { ...(tenantId === undefined ? {} : { tenantId }), ...(clientId === undefined ? {} : { clientId }) }
}

function printHuman (result: CheckResult): string {
  const unknown = '(not known: the token names it)'
  const lines = [
    `profile ${result.profile}: ${result.ok ? 'OK' : 'FAILED'}`,
    `  tenant      ${result.tenantId ?? unknown}`,
    `  client id   ${result.clientId ?? unknown} (${result.credential})`,
    `  source      ${result.source}`,
    ...(result.authority === undefined ? [] : [`  authority   ${result.authority}`]),
    `  scope       ${result.scope}`,
    `  upstream    ${result.upstream}`
  ]
  if (result.certificate) lines.push(`  certificate ${describeExpiry(result.certificate)}`)
  result.guards.forEach((line, index) => lines.push(`  ${index === 0 ? 'guards     ' : '           '} ${line}`))
  if (result.ok) {
    lines.push(`  expires     ${result.expiresAt}`)
    lines.push(`  roles       ${result.roles?.length ? result.roles.join(', ') : '(none: grant WindowsDefenderATP application permissions and admin consent)'}`)
    for (const line of result.allows ?? []) lines.push(`              ${line}`)
  } else if (result.error) {
    lines.push(`  error       ${result.error.code}: ${result.error.message}`)
    if (result.error.hint) lines.push(`  hint        ${result.error.hint}`)
  }
  return lines.join('\n') + '\n'
}

function describeExpiry (certificate: CertificateStatus): string {
  const when = certificate.state === 'expired'
    ? `EXPIRED on ${certificate.notAfter}`
    : `expires ${certificate.notAfter} (in ${certificate.daysLeft} day(s))`
  const warning = certificate.warning === undefined ? '' : `\n  warning     ${certificate.warning}`
  return `sha256 ${certificate.thumbprintSha256}, ${when}${warning}`
}

/** The "validate the token" step of the app registration, automated: one token per profile. */
export async function runCheck (options: CommandOptions): Promise<number> {
  const config = loadForCommand(options)
  if (config === undefined) return 1
  const dispatcher = createOutboundDispatcher({
    extraCaPem: config.extraCaPem,
    connectTimeoutMs: config.upstreamTimeouts.connectSeconds * 1000,
    env: options.env
  })
  try {
    const profiles = createProfiles(config, { dispatcher, clock: systemClock })
    const results = await Promise.all(profiles.map((profile) => checkProfile(profile, config.clients)))
    if (options.json) process.stdout.write(JSON.stringify({ ok: results.every((r) => r.ok), profiles: results }, null, 2) + '\n')
    else process.stdout.write(results.map(printHuman).join('\n'))
    return results.every((r) => r.ok) ? 0 : 1
  } finally {
    await dispatcher.close()
  }
}
