import type { CertificateWatch } from './certificate-watch.js'

/** What one token call returns, before the token holder checks it. */
export interface AcquiredToken {
  accessToken: string
  /**
   * How long before expiry Entra ID asked for a refresh (`refresh_in`), in ms, when it did.
   * Relative to expiry, so it holds whatever clock the caller runs on.
   */
  refreshBeforeExpiryMs?: number
}

export interface Credential {
  readonly type: string
  /** One token request. The signal aborts it (the holder's timeout, shutdown). */
  acquire (signal: AbortSignal): Promise<AcquiredToken>
  /** Values that must never reach a log or a response: the secret, the key, the password. */
  secrets (): string[]
  /** The expiry of the certificate in use, for a certificate credential. */
  readonly certificate?: CertificateWatch
}
