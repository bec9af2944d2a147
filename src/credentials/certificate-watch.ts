import { EventEmitter } from 'node:events'
import type { Clock } from '../common/clock.js'

/** From this long before `notAfter` the certificate is reported as expiring. */
export const CERTIFICATE_WARNING_DAYS = 30
const DAY_MS = 24 * 60 * 60 * 1000

export type CertificateState = 'valid' | 'expiring' | 'expired'

export interface HeldCertificate {
  readonly thumbprintSha256: string
  readonly notAfter: Date
}

export interface CertificateStatus {
  thumbprintSha256: string
  notAfter: string
  /** Whole days until `notAfter`; once it has passed, whole days since, negative. */
  daysLeft: number
  state: CertificateState
  /** What to do, while the certificate is expiring or expired. */
  warning?: string
}

export interface CertificateWatchEvents {
  /** A new certificate, or the one held entered another state. */
  change: [status: CertificateStatus]
}

/**
 * Watches the expiry of the certificate a profile authenticates with. The certificate is read
 * at every token request, so it is checked as often (and at start-up, with the first token).
 */
export class CertificateWatch extends EventEmitter<CertificateWatchEvents> {
  readonly #clock: Pick<Clock, 'now'>
  #held: HeldCertificate | undefined
  #reported: string | undefined

  constructor (clock: Pick<Clock, 'now'>, held?: HeldCertificate) {
    super()
    this.#clock = clock
    this.#held = held
  }

  /** The certificate read for a token request; reports a change of certificate or of state. */
  update (held: HeldCertificate): void {
    this.#held = held
    const status = this.status()
    if (status === undefined) return
    const key = `${status.thumbprintSha256}/${status.state}`
    if (key === this.#reported) return
    this.#reported = key
    this.emit('change', status)
  }

  status (): CertificateStatus | undefined {
    const held = this.#held
    if (held === undefined) return undefined
    return describeCertificate(held, this.#clock.now())
  }
}

export function describeCertificate (held: HeldCertificate, now: number): CertificateStatus {
  const notAfter = held.notAfter.getTime()
  const left = notAfter - now
  const daysLeft = Math.trunc(left / DAY_MS) || 0
  const status: CertificateStatus = {
    thumbprintSha256: held.thumbprintSha256,
    notAfter: held.notAfter.toISOString(),
    daysLeft,
    state: left <= 0 ? 'expired' : left <= CERTIFICATE_WARNING_DAYS * DAY_MS ? 'expiring' : 'valid'
  }
  if (status.state === 'expired') {
    status.warning = `the certificate expired on ${status.notAfter}: Entra ID refuses it. ` +
      'Create a new one, upload it to the app registration and replace the certificate file (no restart needed)'
  } else if (status.state === 'expiring') {
    status.warning = `the certificate expires on ${status.notAfter}, in ${daysLeft === 0 ? 'less than a day' : `${daysLeft} day(s)`}: ` +
      'create a new one, upload it to the app registration and replace the certificate file (no restart needed)'
  }
  return status
}
