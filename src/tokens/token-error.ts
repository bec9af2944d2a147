import { scrub } from '../observability/scrub.js'

export interface TokenFailure {
  /** `AADSTS7000215`, or what went wrong on our side: `timeout`, `network`, `invalid_token`, … */
  code: string
  message: string
  at: number
}

const HINTS: Record<string, string> = {
  AADSTS7000215: 'the client secret is wrong: use the secret\'s Value, not its Secret ID',
  AADSTS7000222: 'the client secret has expired: create a new one and update the setting',
  AADSTS700016: 'no app with this client id exists in this tenant: check the client id and tenant id',
  AADSTS90002: 'the tenant does not exist: check the tenant id',
  AADSTS700027: 'the certificate was not accepted: upload this certificate to the app registration',
  AADSTS500011: 'the resource is not known in this tenant: check the scope and that the Defender service is provisioned',
  AADSTS50049: 'the authority is not known: check the authority host',
  AADSTS1002012: 'the scope is malformed: it must end with /.default'
}

export function hintFor (code: string): string | undefined {
  return HINTS[code]
}

export class TokenInvalid extends Error {
  readonly code = 'invalid_token'
}

export class TokenTimeout extends Error {
  readonly code = 'timeout'
}

/** Turns whatever a token call threw into a code and a message fit for logs and /status. */
export function describeTokenFailure (err: unknown, secrets: string[], now: number): TokenFailure {
  const error = err as { code?: unknown, errorCode?: unknown, errorNo?: unknown, message?: unknown, errorMessage?: unknown }
  const text = String(error?.errorMessage || error?.message || err)
  const aadsts = /AADSTS(\d+)/.exec(text)?.[0] ?? (error?.errorNo ? `AADSTS${String(error.errorNo)}` : undefined)
  let code: string
  if (aadsts !== undefined) code = aadsts
  else if (err instanceof TokenTimeout || err instanceof TokenInvalid) code = err.code
  else if (typeof error?.errorCode === 'string' && error.errorCode !== '') code = error.errorCode
  else if (typeof error?.code === 'string') code = error.code
  else code = 'unknown'
  const firstLine = text.split(/\r?\n/)[0] ?? ''
  return { code, message: scrub(firstLine, secrets).slice(0, 500), at: now }
}
