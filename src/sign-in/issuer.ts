import type { BrokerTokens, IssuedToken } from '../broker-tokens/broker-token.js'
import { LOCAL_CLIENT } from '../broker-tokens/broker-token.js'
import { BrokerTokenUnavailable } from '../common/errors.js'
import type { Client, createClientRegistry } from '../inbound/client-keys.js'
import type { Profile } from '../runtime/profiles.js'
import { readClaims } from '../tokens/jwt.js'
import { signInErrors } from './errors.js'

export interface IssuerOptions {
  profiles: readonly Profile[]
  clients: ReturnType<typeof createClientRegistry>
  keysRequired: boolean
  brokerTokens: BrokerTokens
}

/** Who signs in: a configured client, or `local` when the broker has no client keys. */
export interface SignInClient {
  readonly name: string
  /** Profiles the client may use; undefined means all. */
  readonly profiles: ReadonlySet<string> | undefined
}

const LOCAL: SignInClient = { name: LOCAL_CLIENT, profiles: undefined }
const ANY_TENANT = new Set(['common', 'organizations'])

export interface IssueRequest {
  client: SignInClient
  profile: Profile
  /** The resource as the tool named it: the token's `aud`. */
  audience: string
  /** The issuer URL the tool's authority has at this broker. */
  issuer: string
}

/**
 * What the token endpoint and the managed-identity endpoints share: the client a secret
 * names, the profile a tenant (or an identity) picks, and the broker token, carrying the
 * roles of the profile's real token, which it waits for as a forwarded request does.
 */
export function createIssuer ({ profiles, clients, keysRequired, brokerTokens }: IssuerOptions) {
  function mayUse (client: SignInClient, profile: Profile): boolean {
    return client.profiles === undefined || client.profiles.has(profile.config.name)
  }

  return {
    /** The client whose key is `secret`; any secret when the broker has no client keys. */
    authenticate (secret: string | undefined): SignInClient {
      if (secret === undefined || secret === '') throw signInErrors.missingSecret()
      if (!keysRequired) return LOCAL
      const client: Client | undefined = clients.verify(secret)
      if (client === undefined) throw signInErrors.invalidSecret()
      return client
    },

    /** The managed-identity endpoints' client: a key in the identity header, or none at a broker without keys. */
    identityClient (key: string | undefined): SignInClient {
      if (!keysRequired) return LOCAL
      const client = clients.verify(key)
      if (client === undefined) throw signInErrors.invalidIdentityHeader()
      return client
    },

    /** The IMDS endpoint's client: it carries no secret, so only a broker without client keys serves it. */
    imdsClient (): SignInClient {
      if (keysRequired) throw signInErrors.imdsNeedsNoKeys()
      return LOCAL
    },

    /**
     * The profile a tenant picks: the one with that tenantId (or name); with a single profile,
     * any tenant. Of several with the tenantId, the first the client may use.
     */
    byTenant (tenant: string, client: SignInClient): Profile {
      const wanted = tenant.toLowerCase()
      const matching = profiles.length === 1
        ? profiles
        : profiles.filter(({ config }) => config.name === tenant || config.tenantId?.toLowerCase() === wanted)
      if (matching.length === 0) {
        throw ANY_TENANT.has(wanted) ? signInErrors.identityAmbiguous() : signInErrors.tenantNotFound(tenant)
      }
      const usable = matching.find((profile) => mayUse(client, profile))
      if (usable === undefined) throw signInErrors.profileNotAllowed(client.name, tenant)
      return usable
    },

    /**
     * The profile of a managed-identity request: named by `client_id` (a profile's name or
     * clientId), else the one profile the client may use.
     */
    byIdentity (id: string | undefined, client: SignInClient): Profile {
      const candidates = profiles.filter((profile) => mayUse(client, profile))
      if (id === undefined || id === '') {
        if (candidates.length === 1) return candidates[0] as Profile
        throw signInErrors.identityAmbiguous()
      }
      const named = profiles.find(({ config }) => config.name === id || config.clientId?.toLowerCase() === id.toLowerCase())
      if (named === undefined) throw signInErrors.identityNotFound(id)
      if (!mayUse(client, named)) throw signInErrors.profileNotAllowed(client.name, id)
      return named
    },

    async issue ({ client, profile, audience, issuer }: IssueRequest): Promise<IssuedToken> {
      let held
      try {
        held = profile.tokens.usable() ?? await profile.tokens.get()
      } catch (err) {
        if (err instanceof BrokerTokenUnavailable) throw signInErrors.unavailable(profile.config.name, err.retryAfter ?? 1)
        throw err
      }
      return brokerTokens.issue({
        issuer, audience, client: client.name, tenantId: tenantOf(profile), roles: held.roles, profile: profile.config.name
      })
    }
  }
}

export type Issuer = ReturnType<typeof createIssuer>

/**
 * The tenant a profile's broker tokens name: its tenantId, else (a managed identity given
 * without one) the tenant of the token it holds, else its name.
 */
export function tenantOf (profile: Profile): string {
  return profile.config.tenantId ?? heldClaims(profile)?.tid ?? profile.config.name
}

/** The client id a profile answers with: its clientId, else its held token's (`appid`), else its name. */
export function clientOf (profile: Profile): string {
  const claims = heldClaims(profile)
  return profile.config.clientId ?? claims?.appid ?? claims?.azp ?? profile.config.name
}

function heldClaims (profile: Profile) {
  const held = profile.tokens.usable()
  return held === undefined ? undefined : readClaims(held.value)
}
