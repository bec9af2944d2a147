import { createHash, createHmac, randomUUID, timingSafeEqual } from 'node:crypto'
import type { Clock } from '../common/clock.js'
import type { ClientConfig } from '../config/types.js'

/** How long a broker token is valid, as Entra ID's app tokens are by default. */
export const BROKER_TOKEN_LIFETIME_SECONDS = 3600
/** The name a broker token gives its client when the broker has no client keys. */
export const LOCAL_CLIENT = 'local'
/** What marks a JWT as the broker's own: its header's `kid`. */
const KEY_ID = 'defender-token-broker'
const HEADER = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: KEY_ID }))
/** Seconds of clock difference accepted between replicas for `nbf`. */
const SKEW_SECONDS = 60

export interface BrokerTokenClaims {
  iss: string
  aud: string
  sub: string
  azp: string
  tid: string
  roles: string[]
  broker_profile: string
  /** Binds the token to the client's key: rotating the key invalidates its tokens. */
  broker_kb: string
  iat: number
  nbf: number
  exp: number
  jti: string
}

export interface IssueRequest {
  issuer: string
  audience: string
  /** The client's name; `local` when the broker has no client keys. */
  client: string
  tenantId: string
  roles: readonly string[]
  profile: string
}

export interface IssuedToken {
  token: string
  claims: BrokerTokenClaims
}

export type Verification =
  | { ok: true, claims: BrokerTokenClaims }
  | { ok: false, reason: string }

export interface BrokerTokensOptions {
  key: () => Buffer
  clock: Clock
  clients: readonly ClientConfig[]
  /** Names of the configured profiles. */
  profiles: readonly string[]
}

function base64url (text: string | Buffer): string {
  return Buffer.from(text).toString('base64url')
}

function keyBinding (client: string, keySha256: string): string {
  return createHash('sha256').update(`broker-token-binding\n${client}\n${keySha256.toLowerCase()}`).digest('base64url').slice(0, 22)
}

/**
 * A JWT's first segment says it is a broker token (its `kid`): such a bearer is verified as
 * one, and refused when it does not verify, never taken for a client key.
 */
export function isBrokerTokenShaped (bearer: string): boolean {
  const dot = bearer.indexOf('.')
  if (dot <= 0 || bearer.indexOf('.', dot + 1) === -1) return false
  try {
    const header = JSON.parse(Buffer.from(bearer.slice(0, dot), 'base64url').toString('utf8')) as { kid?: unknown }
    return header.kid === KEY_ID
  } catch {
    return false
  }
}

/**
 * Broker tokens: HS256 JWTs signed with the broker's key, worth something only at a broker
 * holding that key, for a client still configured with the key it had when the token was
 * made, until `exp`.
 */
export class BrokerTokens {
  readonly #key: () => Buffer
  readonly #clock: Clock
  readonly #bindings: ReadonlyMap<string, string>
  readonly #profiles: ReadonlySet<string>

  constructor (options: BrokerTokensOptions) {
    this.#key = options.key
    this.#clock = options.clock
    this.#bindings = options.clients.length === 0
      ? new Map([[LOCAL_CLIENT, keyBinding(LOCAL_CLIENT, '')]])
      : new Map(options.clients.map((client) => [client.name, keyBinding(client.name, client.keySha256)]))
    this.#profiles = new Set(options.profiles)
  }

  issue (request: IssueRequest): IssuedToken {
    const binding = this.#bindings.get(request.client)
    if (binding === undefined) throw new TypeError(`no configured client ${request.client}`)
    const now = Math.floor(this.#clock.now() / 1000)
    const claims: BrokerTokenClaims = {
      iss: request.issuer,
      aud: request.audience,
      sub: request.client,
      azp: request.client,
      tid: request.tenantId,
      roles: [...request.roles],
      broker_profile: request.profile,
      broker_kb: binding,
      iat: now,
      nbf: now,
      exp: now + BROKER_TOKEN_LIFETIME_SECONDS,
      jti: randomUUID()
    }
    const unsigned = `${HEADER}.${base64url(JSON.stringify(claims))}`
    return { token: `${unsigned}.${this.#sign(unsigned)}`, claims }
  }

  verify (token: string): Verification {
    const parts = token.split('.')
    if (parts.length !== 3 || parts[0] !== HEADER) return { ok: false, reason: 'not a broker token' }
    const unsigned = `${parts[0]}.${parts[1] as string}`
    const given = Buffer.from(parts[2] as string, 'base64url')
    const expected = Buffer.from(this.#sign(unsigned), 'base64url')
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return { ok: false, reason: 'bad signature' }
    let claims: BrokerTokenClaims
    try {
      claims = JSON.parse(Buffer.from(parts[1] as string, 'base64url').toString('utf8')) as BrokerTokenClaims
    } catch {
      return { ok: false, reason: 'unreadable claims' }
    }
    const now = this.#clock.now() / 1000
    if (typeof claims.exp !== 'number' || claims.exp <= now) return { ok: false, reason: 'expired' }
    if (typeof claims.nbf !== 'number' || claims.nbf > now + SKEW_SECONDS) return { ok: false, reason: 'not yet valid' }
    const binding = this.#bindings.get(claims.sub)
    if (binding === undefined) return { ok: false, reason: 'client no longer configured' }
    if (claims.broker_kb !== binding) return { ok: false, reason: 'client key changed' }
    if (!this.#profiles.has(claims.broker_profile)) return { ok: false, reason: 'profile no longer configured' }
    return { ok: true, claims }
  }

  #sign (unsigned: string): string {
    return createHmac('sha256', this.#key()).update(unsigned).digest('base64url')
  }
}
