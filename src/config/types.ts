/**
 * The resolved, validated and frozen configuration the rest of the broker runs on.
 * `load.ts` turns defaults, the config file and the environment into this shape;
 * nothing else reads files or `process.env` for settings.
 */

export type CloudName = 'public' | 'gcc' | 'gcc-high' | 'dod'

/** A secret read from the config, the environment or a file; files are re-read on every use. */
export interface SecretSource {
  /** Where it came from, for messages: a setting path or a file name, never the value. */
  readonly origin: string
  read (): string
}

export type CredentialConfig =
  | { readonly type: 'secret', readonly secret: SecretSource }
  | {
    readonly type: 'certificate'
    /** PEM file holding the certificate and its private key. */
    readonly certificateFile: string
    readonly password?: SecretSource
  }
  | { readonly type: 'federated', readonly tokenFile: string }
  | {
    readonly type: 'managedIdentity'
    readonly clientId?: string
    readonly resourceId?: string
    readonly objectId?: string
  }

export interface RateLimitConfig {
  readonly perMinute: number
  readonly perHour: number
  readonly maxQueueSeconds: number
}

export type RateLimitStoreConfig =
  | { readonly type: 'local' }
  | {
    readonly type: 'redis'
    readonly target: RedisTarget
    readonly keyPrefix: string
    readonly timeoutMs: number
  }

export interface RedisNode {
  readonly host: string
  readonly port: number
}

/** Where the shared budgets live: one Redis, a Sentinel group's primary, or a Redis Cluster. */
export type RedisTarget =
  | {
    readonly mode: 'single'
    /** The Redis URL; it may hold a password. */
    readonly url: SecretSource
  }
  | {
    readonly mode: 'sentinel'
    readonly sentinels: readonly RedisNode[]
    /** The primary group's name. */
    readonly name: string
    readonly username?: string
    readonly password?: SecretSource
    readonly sentinelPassword?: SecretSource
    readonly tls: boolean
  }
  | {
    readonly mode: 'cluster'
    readonly nodes: readonly RedisNode[]
    readonly username?: string
    readonly password?: SecretSource
    readonly tls: boolean
  }

export interface SharedRateLimitConfig {
  readonly store: RateLimitStoreConfig
  readonly expectedReplicas: number
  /**
   * Lengths of the budgets' minute and hour. Not a setting (the schema has no such key):
   * tests shorten them; absent, they are the API's.
   */
  readonly windows?: { readonly minuteMs: number, readonly hourMs: number }
}

export interface CacheRuleConfig {
  /** `"GET /path-pattern"`. */
  readonly allow: string
  readonly ttlSeconds: number
}

export interface ReadsConfig {
  readonly collapse: boolean
  readonly cacheMaxBytes: number
}

/** A cap on state-changing calls; the limits absent are not counted. */
export interface ActionCapConfig {
  /** `"METHOD /path-pattern"`, never GET or HEAD. */
  readonly allow: string
  readonly perHour?: number
  readonly perDay?: number
  readonly perClientPerHour?: number
  readonly perClientPerDay?: number
}

export interface ProtectConfig {
  /** Lower-cased. */
  readonly tags: readonly string[]
  /** computerDnsName patterns, lower-cased. */
  readonly names: readonly string[]
  /** Lower-cased. */
  readonly ids: readonly string[]
  readonly lookupCacheSeconds: number
}

/** A profile's guard rails (its own, else the broker-wide ones, key by key); all off when empty. */
export interface GuardsConfig {
  readonly actions: readonly ActionCapConfig[]
  readonly protect?: ProtectConfig
  readonly indicators?: { readonly allowlist: readonly string[] }
}

export interface ProfileConfig {
  readonly name: string
  /** Always starts and, unless it is `/`, does not end with `/`. */
  readonly basePath: string
  /** Absent only with a managed identity, whose token names its tenant (`tid`). */
  readonly tenantId?: string
  /** Absent only with a managed identity, whose token names its client (`appid`). */
  readonly clientId?: string
  readonly credential: CredentialConfig
  /**
   * Where the credential is found, for the start-up log and `check`: a file path, a setting or
   * variable name (`AZURE_CLIENT_SECRET`), or a managed identity's endpoint variable; never a value.
   */
  readonly credentialSource: string
  readonly cloud: CloudName
  /** Origin of the authority host, e.g. `https://login.microsoftonline.com`. */
  readonly authorityHost: string
  /** True when the authority host is not one of the cloud presets': msal-node gets it as a known authority. */
  readonly customAuthority: boolean
  /** Origin of the Defender API, e.g. `https://api.securitycenter.microsoft.com`. */
  readonly upstream: string
  readonly scope: string
  /** Profile-wide rules, `"METHOD /path"`; empty means everything is allowed. */
  readonly allow: readonly string[]
  readonly rateLimit: RateLimitConfig
  /** Reads kept in memory for a while, by the first rule that matches. */
  readonly cache: readonly CacheRuleConfig[]
  readonly guards: GuardsConfig
}

export interface ClientConfig {
  readonly name: string
  /** Lower-case hex SHA-256 of the key. */
  readonly keySha256: string
  /** Profile names this client may use; empty means all. */
  readonly profiles: readonly string[]
  readonly allow: readonly string[]
  /** Its state-changing calls are answered in the API's shape without being made. */
  readonly dryRun?: boolean
}

export interface TunnelTarget {
  /** Lower-case host name. */
  readonly host: string
  readonly port: number
}

export interface EgressProxyConfig {
  readonly enabled: boolean
  /** Hosts a CONNECT may reach blind, without interception. */
  readonly tunnelAllow: readonly TunnelTarget[]
  /** A CA given as files (absolute paths); absent, the broker's own in the state directory. */
  readonly ca?: { readonly certFile: string, readonly keyFile: string }
}

export interface Config {
  readonly listen: {
    readonly host: string
    readonly port: number
    readonly allowedHosts: readonly string[]
  }
  readonly profiles: readonly ProfileConfig[]
  readonly refresh: {
    readonly beforeSeconds: number
    readonly timeoutSeconds: number
    /** Shortest time between two token requests set off by upstream 401s. */
    readonly after401Seconds: number
  }
  readonly retry: {
    readonly maxWaitSeconds: number
    readonly maxAttempts: number
    /** Longest pause a 429's Retry-After puts on a budget. */
    readonly maxPauseSeconds: number
  }
  readonly upstreamTimeouts: {
    readonly connectSeconds: number
    /** Time allowed for the upstream's response headers and between body chunks. */
    readonly responseSeconds: number
  }
  readonly clients: readonly ClientConfig[]
  readonly rateLimit: SharedRateLimitConfig
  readonly logLevel: string
  readonly audit: {
    /** Absolute path of the audit file; absent: audit events go to the main log. */
    readonly file?: string
  }
  readonly brokerTokens: {
    /** Absolute path of the signing key file; absent: the state directory's `broker-token.key`. */
    readonly signingKeyFile?: string
  }
  /** PEM text of extra CAs trusted for outbound TLS (BROKER_CA_FILE). */
  readonly extraCaPem?: string
  /** The file extraCaPem was read from (absolute), for the start-up log. */
  readonly caFile?: string
  readonly allowUnauthenticated: boolean
  readonly egressProxy: EgressProxyConfig
  readonly reads: ReadsConfig
  /** Where what the broker makes once is kept (see `state-dir.ts`); absolute. */
  readonly stateDir: string
  /** Where the config came from, for the start-up log: a file name or `environment`. */
  readonly source: string
}
