import type { CloudName } from './types.js'

export interface CloudPreset {
  /** Origin of the Entra ID sign-in host. */
  readonly authorityHost: string
  /** Origin of the Defender for Endpoint API. */
  readonly upstream: string
  /** The `.default` scope of the Defender for Endpoint API (WindowsDefenderATP) in that cloud. */
  readonly scope: string
}

export const CLOUD_NAMES: readonly CloudName[] = Object.freeze(['public', 'gcc', 'gcc-high', 'dod'])

export const DEFAULT_CLOUD: CloudName = 'public'

/*
 * Sign-in and API hosts: Microsoft Learn, "Microsoft Defender for Endpoint for US Government
 * customers", section API. GCC signs in on the commercial host but calls its own API host.
 * The government scopes are the API host's `/.default`, as the token audience there is the
 * API host itself.
 */
export const CLOUD_PRESETS: Readonly<Record<CloudName, CloudPreset>> = Object.freeze({
  public: Object.freeze({
    authorityHost: 'https://login.microsoftonline.com',
    upstream: 'https://api.securitycenter.microsoft.com',
    scope: 'https://api.securitycenter.microsoft.com/.default'
  }),
  gcc: Object.freeze({
    authorityHost: 'https://login.microsoftonline.com',
    upstream: 'https://api-gcc.securitycenter.microsoft.us',
    scope: 'https://api-gcc.securitycenter.microsoft.us/.default'
  }),
  'gcc-high': Object.freeze({
    authorityHost: 'https://login.microsoftonline.us',
    upstream: 'https://api-gov.securitycenter.microsoft.us',
    scope: 'https://api-gov.securitycenter.microsoft.us/.default'
  }),
  dod: Object.freeze({
    authorityHost: 'https://login.microsoftonline.us',
    upstream: 'https://api-gov.securitycenter.microsoft.us',
    scope: 'https://api-gov.securitycenter.microsoft.us/.default'
  })
})

/** Host names of the Defender for Endpoint API that Microsoft documents, all served over https. */
export const KNOWN_UPSTREAM_HOSTS: readonly string[] = Object.freeze([
  'api.securitycenter.microsoft.com',
  'api.security.microsoft.com',
  // the host of Microsoft's older setup guides, still answering
  'api.securitycenter.windows.com',
  'us.api.security.microsoft.com',
  'eu.api.security.microsoft.com',
  'uk.api.security.microsoft.com',
  'au.api.security.microsoft.com',
  'swa.api.security.microsoft.com',
  'ina.api.security.microsoft.com',
  'aea.api.security.microsoft.com',
  'api-us.securitycenter.microsoft.com',
  'api-eu.securitycenter.microsoft.com',
  'api-uk.securitycenter.microsoft.com',
  'api-gcc.securitycenter.microsoft.us',
  'api-gov.securitycenter.microsoft.us'
])

export const PRESET_AUTHORITY_HOSTS: readonly string[] = Object.freeze(
  [...new Set(Object.values(CLOUD_PRESETS).map(preset => preset.authorityHost))]
)

/** True for an origin (as `URL#origin` gives it) on a documented Defender API host over https. */
export function isKnownUpstream (origin: string): boolean {
  let url: URL
  try {
    url = new URL(origin)
  } catch {
    return false
  }
  return url.protocol === 'https:' && url.port === '' && url.pathname === '/' &&
    KNOWN_UPSTREAM_HOSTS.includes(url.hostname)
}

/** True for an origin that one of the cloud presets uses, so msal-node knows it already. */
export function isPresetAuthorityHost (origin: string): boolean {
  return PRESET_AUTHORITY_HOSTS.includes(origin)
}
