import { EventEmitter } from 'node:events'
import type { Clock } from '../common/clock.js'
import type { AcquiredToken, Credential } from '../credentials/index.js'
import { BrokerTokenUnavailable, withRetryAfter } from '../common/errors.js'
import { readClaims } from './jwt.js'
import { BrokerTokenInvalid, BrokerTokenTimeout } from '../common/errors.js'
import { describeTokenFailure, type TokenFailure } from './token-error.js'

/** Requests stop using a token this long before its expiry, for clock skew. */
export const CLOCK_SKEW_MS = 60_000
export const DEFAULT_BACKOFF_MIN_MS = 1_000
export const DEFAULT_BACKOFF_MAX_MS = 300_000
const MAX_JITTER_MS = 30_000

export interface HeldToken {
  readonly value: string
  readonly expiresAt: number
  readonly refreshAt: number
  readonly roles: readonly string[]
  readonly acquiredAt: number
}

export interface TokenHolderOptions {
  profile: string
  credential: Credential
  clock: Clock
  refreshBeforeMs: number
  timeoutMs: number
  /** Shortest time between two token requests set off by upstream 401s (refresh.after401Seconds). */
  after401Ms?: number
  random?: () => number
}

export const DEFAULT_AFTER_401_MS = 30_000

export interface TokenHolderEvents {
  acquired: [token: HeldToken, refreshed: boolean]
  failed: [failure: TokenFailure, retryAt: number]
}

export interface TokenStatus {
  state: 'valid' | 'expired' | 'none'
  expiresAt?: number
  refreshAt?: number
  roles: readonly string[]
  retryAt?: number
  lastError?: TokenFailure
}

/**
 * Holds one profile's token: gets it at start-up, refreshes it in the background before it
 * expires, and makes sure at most one token request is in flight however many requests wait.
 */
export class TokenHolder extends EventEmitter<TokenHolderEvents> {
  readonly #options: Required<TokenHolderOptions>
  #current: HeldToken | undefined
  #inflight: Promise<HeldToken> | undefined
  #abort: AbortController | undefined
  #timer: unknown
  #failures = 0
  /** Tokens acquired so far: every one after the first is a refresh. */
  #acquisitions = 0
  #retryAt: number | undefined
  #lastError: TokenFailure | undefined
  /** When an upstream 401 last set off a token request. */
  #last401Request: number | undefined
  #closed = false

  constructor (options: TokenHolderOptions) {
    super()
    this.#options = { random: Math.random, after401Ms: DEFAULT_AFTER_401_MS, ...options }
  }

  get profile (): string {
    return this.#options.profile
  }

  /** Starts the first token request; failures are retried in the background. */
  start (): Promise<HeldToken> {
    return this.#acquire()
  }

  /** The held token when it may be sent now; undefined when a request has to wait for one (get). */
  usable (): HeldToken | undefined {
    return this.#usable()
  }

  /** The token to send now, waiting only when none is held and one is on its way. */
  async get (): Promise<HeldToken> {
    const usable = this.#usable()
    if (usable !== undefined) return usable
    const now = this.#options.clock.now()
    if (this.#inflight === undefined && !this.#closed && (this.#retryAt === undefined || this.#retryAt <= now)) {
      this.#acquire().catch(() => {})
    }
    if (this.#inflight !== undefined) {
      try {
        const token = await this.#inflight
        if (this.#isUsable(token)) return token
      } catch {}
    }
    throw this.#unavailable()
  }

  /** The held token while it may still be sent, without waiting. */
  #usable (): HeldToken | undefined {
    const token = this.#current
    return token !== undefined && this.#isUsable(token) ? token : undefined
  }

  #isUsable (token: HeldToken): boolean {
    return this.#options.clock.now() < token.expiresAt - CLOCK_SKEW_MS
  }

  isReady (): boolean {
    return this.#usable() !== undefined
  }

  /**
   * A fresh token in place of `rejected` (the API refused it); concurrent callers share the one
   * request, and a newer token already held is the answer. The held token keeps serving until
   * the replacement exists: when the request fails, it is kept, until its own expiry margin.
   */
  renew (rejected: string): Promise<HeldToken> {
    const current = this.#usable()
    if (current !== undefined && current.value !== rejected) return Promise.resolve(current)
    return this.#acquire()
  }

  /**
   * `renew` for an upstream 401, at most one token request per `after401Ms`: undefined when one
   * was made less than that ago and no newer token is held (the 401 is then passed back). Rejects
   * with BrokerTokenUnavailable when no fresh token comes; the held one goes on serving.
   */
  renewAfter401 (rejected: string): Promise<HeldToken> | undefined {
    const current = this.#usable()
    if (current !== undefined && current.value !== rejected) return Promise.resolve(current)
    if (this.#inflight === undefined) {
      const now = this.#options.clock.now()
      if (this.#last401Request !== undefined && now - this.#last401Request < this.#options.after401Ms) return undefined
      this.#last401Request = now
    }
    return this.#acquire().catch(() => { throw this.#unavailable() })
  }

  status (): TokenStatus {
    const token = this.#current
    const state = token === undefined ? 'none' : this.#isUsable(token) ? 'valid' : 'expired'
    return {
      state,
      expiresAt: token?.expiresAt,
      refreshAt: token?.refreshAt,
      roles: token?.roles ?? [],
      retryAt: this.#retryAt,
      lastError: this.#lastError
    }
  }

  /** Seconds until a request may succeed, for Retry-After. */
  #unavailable () {
    const now = this.#options.clock.now()
    const wait = this.#retryAt !== undefined && this.#retryAt > now ? (this.#retryAt - now) / 1000 : 1
    return withRetryAfter(new BrokerTokenUnavailable(this.#options.profile, Math.max(1, Math.ceil(wait))), wait)
  }

  close (): void {
    this.#closed = true
    this.#clearTimer()
    this.#abort?.abort(new BrokerTokenTimeout('the broker is shutting down'))
  }

  #acquire (): Promise<HeldToken> {
    if (this.#inflight !== undefined) return this.#inflight
    const { clock, credential, timeoutMs } = this.#options
    this.#clearTimer()
    const abort = new AbortController()
    this.#abort = abort
    const timeout = clock.setTimeout(() => {
      abort.abort(new BrokerTokenTimeout(`the token request took longer than ${timeoutMs / 1000} s`))
    }, timeoutMs)
    const refreshed = this.#acquisitions > 0
    const attempt = (async () => {
      try {
        const acquired = await raceAbort(callCredential(credential, abort.signal), abort.signal)
        const token = this.#check(acquired.accessToken, acquired.refreshBeforeExpiryMs)
        this.#current = token
        this.#acquisitions += 1
        this.#failures = 0
        this.#retryAt = undefined
        this.#lastError = undefined
        this.#schedule(token.refreshAt)
        this.emit('acquired', token, refreshed)
        return token
      } catch (err) {
        this.#failures += 1
        const failure = describeTokenFailure(abort.signal.aborted ? abort.signal.reason : err, credential.secrets(), clock.now())
        this.#lastError = failure
        const retryAt = clock.now() + this.#backoff()
        this.#retryAt = retryAt
        this.#schedule(retryAt)
        this.emit('failed', failure, retryAt)
        throw err
      } finally {
        clock.clearTimeout(timeout)
        this.#inflight = undefined
        this.#abort = undefined
      }
    })()
    this.#inflight = attempt
    return attempt
  }

  #check (value: string, refreshBeforeExpiryMs: number | undefined): HeldToken {
    if (typeof value !== 'string' || value === '') throw new BrokerTokenInvalid('the token endpoint returned no access token')
    const claims = readClaims(value)
    if (claims === undefined) throw new BrokerTokenInvalid('the token endpoint returned an access token that is not a JWT with an expiry')
    const now = this.#options.clock.now()
    const expiresAt = claims.exp * 1000
    if (expiresAt - CLOCK_SKEW_MS <= now) throw new BrokerTokenInvalid('the token endpoint returned a token that has already expired')
    return { value, expiresAt, refreshAt: this.#refreshTime(now, expiresAt, refreshBeforeExpiryMs), roles: claims.roles, acquiredAt: now }
  }

  /**
   * The earlier of expiry minus `refresh.beforeSeconds` and Entra's `refresh_in`; half the life
   * of a token that lives shorter than that. Jitter spreads the refreshes of many brokers.
   */
  #refreshTime (now: number, expiresAt: number, refreshBeforeExpiryMs: number | undefined): number {
    const life = expiresAt - now
    const before = this.#options.refreshBeforeMs
    let lead = life > before ? life - before : life / 2
    if (refreshBeforeExpiryMs !== undefined) lead = Math.min(lead, Math.max(0, life - refreshBeforeExpiryMs))
    const latest = expiresAt - CLOCK_SKEW_MS - now
    const delay = Math.min(lead, latest)
    const jitter = this.#options.random() * Math.min(MAX_JITTER_MS, delay * 0.1)
    return now + Math.max(0, delay - jitter)
  }

  /** Exponential from 1 s to 5 min, with jitter in the upper half of each step. */
  #backoff (): number {
    const step = Math.min(DEFAULT_BACKOFF_MAX_MS, DEFAULT_BACKOFF_MIN_MS * 2 ** (this.#failures - 1))
    return step / 2 + this.#options.random() * step / 2
  }

  #schedule (at: number): void {
    if (this.#closed) return
    this.#clearTimer()
    const { clock } = this.#options
    this.#timer = clock.setTimeout(() => {
      this.#timer = undefined
      this.#acquire().catch(() => {})
    }, Math.max(0, at - clock.now()))
  }

  #clearTimer (): void {
    if (this.#timer !== undefined) {
      this.#options.clock.clearTimeout(this.#timer)
      this.#timer = undefined
    }
  }
}

/**
 * A credential that throws at once (a secret file unreadable mid-rotation) fails like one that
 * rejects: a synchronous throw would run the attempt's `finally` before `#inflight` is set, and
 * leave that failed attempt in place for every later call.
 */
function callCredential (credential: Credential, signal: AbortSignal): Promise<AcquiredToken> {
  try {
    return credential.acquire(signal)
  } catch (err) {
    return Promise.reject(err)
  }
}

function raceAbort<T> (promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason)
    if (signal.aborted) return onAbort()
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort))
  })
}
