import { scrub } from '../common/scrub.js'
import { BrokerError } from '../common/errors.js'
import { adminConsentUrl, type ConsentProfile } from '../defender/consent.js'

export interface TokenFailure {
  /** `AADSTS7000215`, or what went wrong on our side: `BrokerTokenTimeout`, `ECONNREFUSED`, `BrokerTokenInvalid`, … */
  code: string
  message: string
  at: number
}

const UNTRUSTED_HINT = 'the TLS certificate (of the token endpoint, or of a TLS-inspecting proxy) is not trusted: ' +
  'give the CA that issued it in BROKER_CA_FILE (PEM)'

const HINTS: Record<string, string> = {
  AADSTS7000215: 'the client secret is wrong: use the secret\'s Value, not its Secret ID',
  AADSTS7000222: 'the client secret has expired: create a new one and update the setting',
  AADSTS90002: 'the tenant does not exist: check the tenant id',
  AADSTS700027: 'the certificate was not accepted: upload this certificate to the app registration',
  AADSTS50049: 'the authority is not known: check the authority host',
  AADSTS1002012: 'the scope is malformed: it must end with /.default',
  AADSTS700024: 'the client assertion has expired or is not valid yet: check that the federated token file is being renewed (the projected service account token)',
  AADSTS70021: 'no federated credential of the app matches the assertion\'s issuer, subject and audience: check the federated credential on the app registration',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: UNTRUSTED_HINT,
  UNABLE_TO_GET_ISSUER_CERT: UNTRUSTED_HINT,
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: UNTRUSTED_HINT,
  SELF_SIGNED_CERT_IN_CHAIN: UNTRUSTED_HINT,
  DEPTH_ZERO_SELF_SIGNED_CERT: UNTRUSTED_HINT,
  proxy_authentication_required: 'the proxy refused the credentials: put them in the proxy URL, http://user:password@host:port',
  BrokerManagedIdentityFailed: 'check that the identity is assigned to this Azure resource (clientId, resourceId or objectId names a user-assigned one) ' +
    'and that it has the WindowsDefenderATP application permissions',
  proxy_refused: 'the proxy refused to open a tunnel: allow CONNECT to the token endpoint (and the API) on port 443, or list the host in NO_PROXY'
}

/**
 * Entra ID's answers for an app that is not (fully) set up in the tenant: each case in its own
 * words, given where an admin of the tenant consents.
 */
const CONSENT_HINTS: Record<string, (consent: string) => string> = {
  AADSTS700016: (consent) => `the app is not in this tenant: if it is a multi-tenant (partner) app, an admin of this tenant must consent to it: ${consent}; ` +
    'otherwise the client id or the tenant id is wrong',
  AADSTS7000229: (consent) => `the app has no service principal in this tenant (it is registered, but was never set up here): an admin of this tenant creates it by consenting: ${consent}`,
  AADSTS65001: (consent) => `consent was not given in this tenant: an admin of this tenant must grant the app's permissions: ${consent}`,
  AADSTS650051: (consent) => 'the tenant could not set up the app: the tenant is unmanaged (an admin must first take it over by verifying its domain), ' +
    `or a service principal left from an earlier consent conflicts (delete that enterprise application, then consent again): ${consent}`,
  AADSTS650052: (consent) => 'the app needs access to a service this tenant has not provisioned (it has no service principal for it): ' +
    `check that Defender for Endpoint is set up in this tenant, then have an admin consent: ${consent}`,
  AADSTS500011: (consent) => 'the Defender for Endpoint API (WindowsDefenderATP) is not in this tenant: Defender for Endpoint is not provisioned here, ' +
    `or consent is missing (an admin of this tenant: ${consent}); check too that the profile's cloud and scope are this tenant's`
}

/** What to do about a token failure's code, for check, /status and the log alike; the profile's consent link where consent is the cure. */
export function hintFor (code: string, profile?: ConsentProfile): string | undefined {
  const consentHint = CONSENT_HINTS[code]
  return consentHint === undefined ? HINTS[code] : consentHint(whereToConsent(profile))
}

function whereToConsent (profile: ConsentProfile | undefined): string {
  if (profile === undefined) return 'run defender-token-broker consent for the link'
  const url = adminConsentUrl(profile)
  if (url === undefined) return 'a managed identity gets its permissions by app role assignment, not consent (docs/credentials.md)'
  return `open ${url}`
}

/** Turns whatever a token call threw into a code and a message fit for logs and /status. */
export function describeTokenFailure (err: unknown, secrets: string[], now: number): TokenFailure {
  const error = err as { code?: unknown, errorCode?: unknown, errorNo?: unknown, message?: unknown, errorMessage?: unknown }
  const text = String(error?.errorMessage || error?.message || err)
  const aadsts = /AADSTS(\d+)/.exec(text)?.[0] ?? (error?.errorNo ? `AADSTS${String(error.errorNo)}` : undefined)
  let code: string
  if (aadsts !== undefined) code = aadsts
  else if (err instanceof BrokerError) code = err.code
  else if (typeof error?.errorCode === 'string' && error.errorCode !== '') code = error.errorCode
  else if (typeof error?.code === 'string') code = error.code
  else code = 'unknown'
  const firstLine = text.split(/\r?\n/)[0] ?? ''
  return { code, message: scrub(firstLine, secrets).slice(0, 500), at: now }
}
