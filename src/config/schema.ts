import { Type, type Static, type TNumber, type TOptional, type TString } from '@sinclair/typebox'
import { CLOUD_NAMES, DEFAULT_CLOUD } from './clouds.js'

/**
 * The schema of the config file as users write it (YAML or JSON). `load.ts` checks a file
 * against it, then fills in defaults, resolves cloud presets and reads secret files.
 * `scripts/write-schema.ts` ships it as `config/schema.json`; the descriptions are the
 * settings' documentation.
 */

export const DEFAULT_HOST = '127.0.0.1'
export const DEFAULT_PORT = 8080
export const DEFAULT_LOG_LEVEL = 'info'
export const DEFAULT_REFRESH = Object.freeze({ beforeSeconds: 600, timeoutSeconds: 10, after401Seconds: 30 })
export const DEFAULT_RETRY = Object.freeze({ maxWaitSeconds: 30, maxAttempts: 3, maxPauseSeconds: 300 })
export const DEFAULT_UPSTREAM_TIMEOUTS = Object.freeze({ connectSeconds: 10, responseSeconds: 60 })
/** The Defender for Endpoint API's documented limits per app. */
export const DEFAULT_RATE_LIMIT = Object.freeze({ perMinute: 100, perHour: 1500, maxQueueSeconds: 30 })
export const DEFAULT_READS = Object.freeze({ collapse: true, cacheMaxMiB: 32 })
export const DEFAULT_EXPECTED_REPLICAS = 1
export const DEFAULT_REDIS_STORE = Object.freeze({ keyPrefix: 'defender-broker:', timeoutMs: 50 })

export const LOG_LEVELS = Object.freeze(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const)

export const NAME_PATTERN = '^[a-z0-9][a-z0-9-]*$'
export const GUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
export const TENANT_PATTERN = '^(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}' +
  '|(?=.{4,253}$)(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\\.)+[a-zA-Z]{2,63})$'
export const SHA256_PATTERN = '^[0-9a-fA-F]{64}$'
export const RULE_PATTERN = '^(?:GET|HEAD|POST|PUT|PATCH|DELETE|\\*) /\\S*$'
export const BASE_PATH_PATTERN = '^/[A-Za-z0-9._~/-]*$'
export const SCOPE_PATTERN = '^\\S+/\\.default$'
export const HOST_PATTERN = '^[^\\s/?#@]+$'
export const TUNNEL_HOST_PATTERN = '^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?::[0-9]{1,5})?$'

/** What a failed `pattern` means, in words: TypeBox's own message only quotes the expression. */
export const PATTERN_HINTS: Readonly<Record<string, string>> = Object.freeze({
  [NAME_PATTERN]: 'must be lower-case letters, digits and "-", starting with a letter or digit',
  [GUID_PATTERN]: 'must be a GUID such as 11111111-1111-1111-1111-111111111111',
  [TENANT_PATTERN]: 'must be a tenant GUID or a verified domain such as contoso.onmicrosoft.com',
  [SHA256_PATTERN]: 'must be 64 hex digits, the SHA-256 of the key (e.g. printf %s "$KEY" | sha256sum)',
  [RULE_PATTERN]: 'must be "METHOD /path" with METHOD one of GET, HEAD, POST, PUT, PATCH, DELETE or *, e.g. "GET /api/**"',
  [BASE_PATH_PATTERN]: 'must be a path such as /fabrikam: "/" followed by letters, digits, ".", "_", "~", "-" and "/"',
  [SCOPE_PATTERN]: 'must be an app-only scope ending in /.default, e.g. https://api.securitycenter.microsoft.com/.default',
  [HOST_PATTERN]: 'must be a host name or an IP address',
  [TUNNEL_HOST_PATTERN]: 'must be a host name with an optional :port, e.g. graph.microsoft.com or proxy.example.com:8443'
})

const strict = { additionalProperties: false } as const

function seconds (description: string, maximum: number, defaultValue: number): TOptional<TNumber> {
  return Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum, default: defaultValue, description }))
}

function filePath (description: string): TString {
  return Type.String({ minLength: 1, description })
}

function oneOfLiterals<T extends string> (values: readonly T[], description: string, defaultValue?: T) {
  return Type.Union(values.map(value => Type.Literal(value)), {
    description,
    ...(defaultValue === undefined ? {} : { default: defaultValue })
  })
}

const rules = (description: string) => Type.Array(
  Type.String({ pattern: RULE_PATTERN, description: 'A rule: "METHOD /path", where * matches one path segment and ** the rest.' }),
  { default: [], description }
)

const SecretCredential = Type.Object({
  type: Type.Literal('secret', { description: 'A client secret of the app registration.' }),
  secret: Type.Optional(Type.String({
    minLength: 1,
    description: 'The client secret itself. Prefer secretFile; set exactly one of the two.'
  })),
  secretFile: Type.Optional(filePath(
    'File holding the client secret (e.g. a docker secret), read again on every token request; it must not be readable by group or others.'
  ))
}, { ...strict, description: 'Client secret credential.' })

const CertificateCredential = Type.Object({
  type: Type.Literal('certificate', { description: 'A certificate uploaded to the app registration.' }),
  certificateFile: filePath(
    'PEM file holding the certificate and its private key, read again on every token request; it must not be readable by group or others. The SHA-256 thumbprint is computed from it.'
  ),
  password: Type.Optional(Type.String({
    minLength: 1,
    description: 'Password of an encrypted private key. Prefer passwordFile; set at most one of the two.'
  })),
  passwordFile: Type.Optional(filePath(
    'File holding the password of an encrypted private key; it must not be readable by group or others.'
  ))
}, { ...strict, description: 'Certificate credential.' })

const FederatedCredential = Type.Object({
  type: Type.Literal('federated', { description: 'A federated identity credential (e.g. Kubernetes workload identity).' }),
  tokenFile: filePath('File holding the client assertion (a JWT), read again on every token request.')
}, { ...strict, description: 'Federated credential: a client assertion from a file.' })

const ManagedIdentityCredential = Type.Object({
  type: Type.Literal('managedIdentity', { description: 'The managed identity of the Azure resource the broker runs on.' }),
  clientId: Type.Optional(Type.String({ pattern: GUID_PATTERN, description: 'Client id of a user-assigned managed identity.' })),
  resourceId: Type.Optional(Type.String({ minLength: 1, description: 'Azure resource id of a user-assigned managed identity.' })),
  objectId: Type.Optional(Type.String({ pattern: GUID_PATTERN, description: 'Object id of a user-assigned managed identity.' }))
}, {
  ...strict,
  description: 'Managed identity credential. With none of clientId, resourceId and objectId, the system-assigned identity; with one of them, that user-assigned identity.'
})

const Credential = Type.Union(
  [SecretCredential, CertificateCredential, FederatedCredential, ManagedIdentityCredential],
  { description: 'How the broker proves the app\'s identity to Entra ID; "type" picks the kind.' }
)

const RateLimit = Type.Object({
  perMinute: Type.Optional(Type.Integer({ minimum: 1, maximum: 100000, default: DEFAULT_RATE_LIMIT.perMinute, description: 'Requests allowed per minute.' })),
  perHour: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000000, default: DEFAULT_RATE_LIMIT.perHour, description: 'Requests allowed per hour.' })),
  maxQueueSeconds: Type.Optional(Type.Number({
    minimum: 0,
    maximum: 3600,
    default: DEFAULT_RATE_LIMIT.maxQueueSeconds,
    description: 'Longest a request over budget waits in the queue; when the wait would be longer it gets 429 with Retry-After at once. 0 never queues.'
  }))
}, { ...strict, description: 'Local request budget of the profile, kept below the API\'s own limits.' })

const LocalStore = Type.Object({
  type: Type.Literal('local', { description: 'Each broker keeps its own budgets (the default).' })
}, { ...strict, description: 'Budgets kept in the broker\'s memory.' })

const RedisStore = Type.Object({
  type: Type.Literal('redis', { description: 'Brokers on the same Redis share each app\'s budgets.' }),
  url: Type.Optional(Type.String({
    minLength: 1,
    description: 'redis:// or rediss:// URL of the Redis, e.g. redis://redis:6379/0. A password in it makes it a secret: prefer urlFile. BROKER_REDIS_URL overrides it.'
  })),
  urlFile: Type.Optional(filePath(
    'File holding the Redis URL (e.g. a docker secret, when it holds a password); it must not be readable by group or others. BROKER_REDIS_URL_FILE overrides it. Set exactly one of url, urlFile, sentinels and nodes.'
  )),
  sentinels: Type.Optional(Type.Array(Type.String({ minLength: 1 }), {
    description: 'Redis Sentinel group: its sentinels as host:port (or redis://host:port, rediss://host:port for TLS), e.g. ["sentinel-0:26379", "sentinel-1:26379", "sentinel-2:26379"]. The budgets live on the primary the sentinels name; after a failover the broker follows the new one. Needs name. Set exactly one of url, urlFile, sentinels and nodes.'
  })),
  name: Type.Optional(Type.String({
    minLength: 1,
    description: 'With sentinels: the name of the Redis primary group the sentinels watch (their "sentinel monitor" name, e.g. mymaster).'
  })),
  nodes: Type.Optional(Type.Array(Type.String({ minLength: 1 }), {
    description: 'Redis Cluster: some of its nodes as host:port (or redis://host:port, rediss://host:port for TLS), e.g. ["redis-0:6379", "redis-1:6379"]; the broker learns the others from them. A managed cluster\'s configuration endpoint is one node. Set exactly one of url, urlFile, sentinels and nodes.'
  })),
  username: Type.Optional(Type.String({
    minLength: 1,
    description: 'With sentinels or nodes: the Redis ACL user of the data nodes, when not "default".'
  })),
  passwordFile: Type.Optional(filePath(
    'With sentinels or nodes: file holding the password of the Redis data nodes (the primary and its replicas, or the cluster\'s nodes); it must not be readable by group or others.'
  )),
  sentinelPasswordFile: Type.Optional(filePath(
    'With sentinels: file holding the sentinels\' own password, when they have one (requirepass in sentinel.conf); it must not be readable by group or others.'
  )),
  tls: Type.Optional(Type.Boolean({
    description: 'With sentinels or nodes: connect with TLS (as a rediss:// entry does), trusting Node\'s CAs and caFile (BROKER_CA_FILE).'
  })),
  keyPrefix: Type.Optional(Type.String({
    maxLength: 200,
    default: DEFAULT_REDIS_STORE.keyPrefix,
    description: 'Prefix of the broker\'s Redis keys; brokers share a budget only with the same prefix.'
  })),
  timeoutMs: Type.Optional(Type.Integer({
    minimum: 1,
    maximum: 10000,
    default: DEFAULT_REDIS_STORE.timeoutMs,
    description: 'Longest a budget decision may take in Redis, in milliseconds; past it, or when Redis is unreachable, the broker decides alone (see expectedReplicas) until Redis answers again.'
  }))
}, { ...strict, description: 'Budgets shared through Redis.' })

const RateLimitSettings = Type.Object({
  store: Type.Optional(Type.Union([LocalStore, RedisStore], {
    description: 'Where the profiles\' budgets are kept: "local" to each broker, or "redis", shared by every broker on that Redis serving the same app (tenant id and client id). BROKER_REDIS_URL sets type redis.'
  })),
  expectedReplicas: Type.Optional(Type.Integer({
    minimum: 1,
    maximum: 1000,
    default: DEFAULT_EXPECTED_REPLICAS,
    description: 'Brokers expected to serve the same apps. When no shared store decides (store local, or Redis unreachable), each broker keeps to every limit divided by this.'
  }))
}, { ...strict, description: 'Budgets across several brokers; each profile\'s limits are set in its own rateLimit.' })

const CacheRule = Type.Object({
  allow: Type.String({
    pattern: '^(?:GET|HEAD) /',
    description: 'The reads the rule covers, "GET /path" with the rules\' path patterns, e.g. "GET /api/machines/**".'
  }),
  ttlSeconds: Type.Integer({ minimum: 1, maximum: 3600, description: 'How long an answer is kept, in seconds; the answer says its age in an Age header.' })
}, { ...strict, description: 'A cache rule: which reads, and for how long.' })

const ReadSettings = Type.Object({
  collapse: Type.Optional(Type.Boolean({
    default: DEFAULT_READS.collapse,
    description: 'Identical GET and HEAD requests of a profile that are in flight at once share one call to the API (same path and query, and the same headers that change the answer); each client is authorized on its own and gets the answer it would have got alone.'
  })),
  cacheMaxMiB: Type.Optional(Type.Integer({
    minimum: 1,
    maximum: 4096,
    default: DEFAULT_READS.cacheMaxMiB,
    description: 'Memory the answers kept by the profiles\' cache rules may take, in MiB, all profiles together; the least recently used go first.'
  }))
}, { ...strict, description: 'Reads that cost no call: collapsing and the cache.' })

const capLimit = (description: string) => Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000, description }))

const ActionCap = Type.Object({
  allow: Type.String({
    pattern: '^(?:POST|PUT|PATCH|DELETE|\\*) /',
    description: 'The state-changing calls the cap counts, "METHOD /path" with the rules\' path patterns, e.g. "POST /api/machines/*/isolate"; "*" counts every method but GET and HEAD.'
  }),
  perHour: capLimit('Calls the app may make in any hour (sliding), all clients together; counted per app like the budgets (through Redis when the store is Redis).'),
  perDay: capLimit('Calls the app may make in any 24 hours (sliding), all clients together.'),
  perClientPerHour: capLimit('Calls each client may make in any hour (sliding).'),
  perClientPerDay: capLimit('Calls each client may make in any 24 hours (sliding).')
}, { ...strict, description: 'A cap on state-changing calls: set at least one limit. A call over it gets 403 BrokerGuardrail naming the cap and when it frees.' })

export const DEFAULT_LOOKUP_CACHE_SECONDS = 60

const GuardSettings = Type.Object({
  actions: Type.Optional(Type.Array(ActionCap, {
    description: 'Caps on state-changing calls (machine actions, indicators, alert changes); a call counts in every cap whose allow matches it. Absent: no caps.'
  })),
  protect: Type.Optional(Type.Object({
    tags: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 200, description: 'A machine tag (machineTags), compared case-insensitively.' }), { default: [], description: 'Machine tags that protect a machine, e.g. Tier0.' })),
    names: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 255, description: 'A computerDnsName pattern, case-insensitive: "*" any run of characters, "?" one, e.g. "dc-*.contoso.local".' }), { default: [], description: 'computerDnsName patterns that protect a machine.' })),
    ids: Type.Optional(Type.Array(Type.String({ pattern: '^[A-Za-z0-9._-]{1,128}$', description: 'A machine id.' }), { default: [], description: 'Ids of machines that are protected.' })),
    lookupCacheSeconds: Type.Optional(Type.Integer({
      minimum: 0,
      maximum: 3600,
      default: DEFAULT_LOOKUP_CACHE_SECONDS,
      description: 'How long a machine read for the check is kept (0: read before every action).'
    }))
  }, {
    ...strict,
    description: 'Machines no state-changing call may touch: before a call that names a machine (in its path or body) goes, the broker reads the machine (GET /api/machines/{id}, counted in the budget) and refuses the call when a tag, name or id matches, or when the read fails.'
  })),
  indicators: Type.Optional(Type.Object({
    allowlist: Type.Array(Type.String({ minLength: 1, maxLength: 2048 }), {
      description: 'Values no Block, AlertAndBlock or BlockAndRemediate indicator may name: a domain (covers its subdomains and URLs on them), a "*" pattern, an IP address or CIDR range, a URL, or a file hash.'
    })
  }, { ...strict, description: 'Indicators the broker refuses to submit.' }))
}, {
  ...strict,
  description: 'Guard rails for state-changing calls, off unless configured. A profile\'s guards replace these key by key (actions, protect, indicators).'
})

export const ProfileSchema = Type.Object({
  name: Type.String({ pattern: NAME_PATTERN, maxLength: 63, description: 'Name of the profile, used in logs, metrics, /status and clients[].profiles.' }),
  basePath: Type.Optional(Type.String({
    pattern: BASE_PATH_PATTERN,
    description: 'Path prefix the profile is served at; the longest matching prefix picks the profile. Must not start with /healthz, /readyz, /metrics or /status. Defaults to / when the file defines one profile; with several, each must set its own.'
  })),
  tenantId: Type.Optional(Type.String({
    pattern: TENANT_PATTERN,
    description: 'Directory (tenant) id, a GUID, or a verified domain of the tenant. Required, except with a managedIdentity credential, whose token names its tenant.'
  })),
  clientId: Type.Optional(Type.String({
    pattern: GUID_PATTERN,
    description: 'Application (client) id of the app registration. Required, except with a managedIdentity credential (a user-assigned identity is named in the credential itself).'
  })),
  credential: Credential,
  cloud: Type.Optional(oneOfLiterals(
    CLOUD_NAMES,
    'Microsoft cloud of the tenant; picks the default authorityHost, upstream and scope.',
    DEFAULT_CLOUD
  )),
  authorityHost: Type.Optional(Type.String({
    minLength: 1,
    description: 'Origin of the Entra ID sign-in host (https only); defaults to the cloud\'s. A host that is not a cloud\'s is used as a known authority, without instance discovery. AZURE_AUTHORITY_HOST overrides it.'
  })),
  upstream: Type.Optional(Type.String({
    minLength: 1,
    description: 'Origin of the Defender for Endpoint API; defaults to the cloud\'s. Any https origin, or http on a loopback address (for local testing).'
  })),
  scope: Type.Optional(Type.String({ pattern: SCOPE_PATTERN, description: 'Scope of the tokens; defaults to the cloud\'s.' })),
  allow: Type.Optional(rules('Profile-wide rules every request must match, e.g. ["GET /api/**"] for read-only; empty allows every request.')),
  rateLimit: Type.Optional(RateLimit),
  cache: Type.Optional(Type.Array(CacheRule, {
    description: 'Reads answered from memory for a while: the first rule whose allow matches a GET or HEAD gives the answer\'s lifetime. Only 200 answers are kept, never for a request with Cache-Control: no-cache, and a kept answer costs no budget. Absent: nothing is cached.'
  })),
  guards: Type.Optional(GuardSettings)
}, { ...strict, description: 'One app registration in one tenant, served under basePath.' })

export const ClientSchema = Type.Object({
  name: Type.String({ pattern: NAME_PATTERN, maxLength: 63, description: 'Name of the client, used in logs and metrics.' }),
  keySha256: Type.Optional(Type.String({ pattern: SHA256_PATTERN, description: 'Hex SHA-256 of the client\'s key. Set exactly one of keySha256 and keyFile.' })),
  keyFile: Type.Optional(filePath('File holding the client\'s key (its SHA-256 is kept, not the key); it must not be readable by group or others.')),
  profiles: Type.Optional(Type.Array(
    Type.String({ pattern: NAME_PATTERN, description: 'Name of a profile.' }),
    { default: [], description: 'Profiles the client may use, and the only ones it sees in /status and /metrics; empty or absent means all.' }
  )),
  allow: Type.Optional(rules('Rules the client\'s requests must match, on top of the profile\'s; empty or absent allows what the profile allows. "GET /status" and "GET /metrics" let it read those two of the broker\'s own endpoints.')),
  dryRun: Type.Optional(Type.Boolean({
    default: false,
    description: 'Every state-changing call of this client is a dry run: the guards decide as usual, and the client gets the answer in the API\'s shape (a machine action Pending, its id marked dry run) without any call.'
  }))
}, { ...strict, description: 'A tool allowed to use the broker, known by its key.' })

export const HostSchema = Type.String({ pattern: HOST_PATTERN, default: DEFAULT_HOST, description: 'Address to listen on. BROKER_HOST overrides it.' })
export const PortSchema = Type.Integer({ minimum: 0, maximum: 65535, default: DEFAULT_PORT, description: 'TCP port to listen on; 0 picks a free one. BROKER_PORT overrides it.' })
export const LogLevelSchema = oneOfLiterals(LOG_LEVELS, 'pino log level. BROKER_LOG_LEVEL overrides it.', DEFAULT_LOG_LEVEL)

export const ConfigFileSchema = Type.Object({
  $schema: Type.Optional(Type.String({ description: 'Where editors find this schema; ignored by the broker.' })),
  listen: Type.Optional(Type.Object({
    host: Type.Optional(HostSchema),
    port: Type.Optional(PortSchema),
    allowedHosts: Type.Optional(Type.Array(
      Type.String({ pattern: HOST_PATTERN, description: 'A host name, optionally with :port.' }),
      { default: [], description: 'Host header values answered besides loopback names and the listen address, e.g. the compose service name.' }
    ))
  }, { ...strict, description: 'Where the broker listens.' })),
  profiles: Type.Optional(Type.Array(ProfileSchema, {
    description: 'App registrations the broker serves. Absent or empty: one profile, "default" at /, from the AZURE_* and BROKER_* environment variables.'
  })),
  refresh: Type.Optional(Type.Object({
    beforeSeconds: seconds('Refresh a token when less than this many seconds of its life are left.', 3600, DEFAULT_REFRESH.beforeSeconds),
    timeoutSeconds: seconds('Time allowed for one token request to Entra ID.', 300, DEFAULT_REFRESH.timeoutSeconds),
    after401Seconds: seconds(
      'Shortest time between two token requests an upstream 401 sets off, per profile; a 401 within it is passed back, and the held token keeps serving until a replacement exists.',
      3600,
      DEFAULT_REFRESH.after401Seconds
    )
  }, { ...strict, description: 'Background token refresh.' })),
  retry: Type.Optional(Type.Object({
    maxWaitSeconds: seconds('Longest Retry-After of a 429 the broker waits out before retrying a GET or HEAD; a longer one is passed back.', 600, DEFAULT_RETRY.maxWaitSeconds),
    maxAttempts: Type.Optional(Type.Integer({
      minimum: 1,
      maximum: 10,
      default: DEFAULT_RETRY.maxAttempts,
      description: 'Times a GET or HEAD is sent in all when the API answers 429; 1 never retries.'
    })),
    maxPauseSeconds: seconds(
      'Longest pause a 429\'s Retry-After puts on the budget the request was counted against; a longer one, or a date further off, pauses this long.',
      3600,
      DEFAULT_RETRY.maxPauseSeconds
    )
  }, { ...strict, description: 'Retrying requests the Defender API throttled.' })),
  upstreamTimeouts: Type.Optional(Type.Object({
    connectSeconds: seconds('Time allowed to connect to the Defender API.', 300, DEFAULT_UPSTREAM_TIMEOUTS.connectSeconds),
    responseSeconds: seconds('Time allowed for the response headers and between body chunks.', 3600, DEFAULT_UPSTREAM_TIMEOUTS.responseSeconds)
  }, { ...strict, description: 'Timeouts of requests to the Defender API.' })),
  clients: Type.Optional(Type.Array(ClientSchema, {
    description: 'Keys the broker accepts. Absent or empty: any local process may use the broker, which then listens only on loopback unless allowUnauthenticated is true.'
  })),
  rateLimit: Type.Optional(RateLimitSettings),
  reads: Type.Optional(ReadSettings),
  guards: Type.Optional(GuardSettings),
  logLevel: Type.Optional(LogLevelSchema),
  audit: Type.Optional(Type.Object({
    file: Type.Optional(filePath(
      'File the audit events are appended to: one JSON line per request that changes state (every method but GET and HEAD), refused ones included, each fsync\'d as its request ends; created with mode 0600. Absent: audit events are lines of the main log on stdout (msg "audit").'
    ))
  }, { ...strict, description: 'Audit trail of the requests that change state.' })),
  brokerTokens: Type.Optional(Type.Object({
    signingKeyFile: Type.Optional(filePath(
      'File holding the key that signs broker tokens (at least 32 bytes, mode 0600): replicas that share it accept each other\'s tokens. BROKER_TOKEN_KEY_FILE overrides it. Absent: 32 random bytes made once in the state directory (broker-token.key).'
    ))
  }, { ...strict, description: 'Broker tokens: what the token endpoint and the managed-identity endpoint hand out, valid only at this broker.' })),
  caFile: Type.Optional(filePath('PEM file of extra CA certificates trusted for outbound TLS (e.g. a TLS-inspecting proxy). BROKER_CA_FILE overrides it.')),
  stateDir: Type.Optional(filePath('Directory where the broker keeps what it makes once and must find again after a restart: the egress proxy\'s CA and the key that signs broker tokens (mode 0700, files 0600). BROKER_STATE_DIR overrides it. Default: $XDG_STATE_HOME/defender-token-broker, else ~/.local/state/defender-token-broker.')),
  egressProxy: Type.Optional(Type.Object({
    enabled: Type.Optional(Type.Boolean({
      default: false,
      description: 'Answer CONNECT as an HTTPS proxy for tools whose URLs are fixed: the Entra sign-in and Defender API hosts are intercepted with certificates from the broker\'s CA and served like any request; every other host is refused. BROKER_EGRESS_PROXY=1 overrides it.'
    })),
    tunnelAllow: Type.Optional(Type.Array(
      Type.String({ pattern: TUNNEL_HOST_PATTERN, maxLength: 260, description: 'A host name, with :port when it is not 443.' }),
      { default: [], description: 'Hosts a CONNECT may reach through a blind tunnel (no interception, no token): what else the tools need to reach through the same proxy setting.' }
    )),
    caCertFile: Type.Optional(filePath('PEM file of the CA certificate that signs the intercepted hosts\' certificates. Absent: the broker makes one on first use and keeps it in stateDir (egress-ca.pem). Set with caKeyFile.')),
    caKeyFile: Type.Optional(filePath('PEM file of the private key of caCertFile; it must not be readable by group or others.'))
  }, { ...strict, description: 'The HTTPS egress proxy (off by default): tools set HTTPS_PROXY to the broker and trust its CA (`defender-token-broker ca`).' })),
  allowUnauthenticated: Type.Optional(Type.Boolean({
    default: false,
    description: 'Accept listening on a non-loopback address with no clients. BROKER_ALLOW_UNAUTHENTICATED overrides it.'
  }))
}, { ...strict, description: 'defender-token-broker configuration file (YAML or JSON).' })

export type ConfigFile = Static<typeof ConfigFileSchema>
export type ProfileFile = Static<typeof ProfileSchema>
export type ClientFile = Static<typeof ClientSchema>
export type CredentialFile = ProfileFile['credential']
export type GuardsFile = Static<typeof GuardSettings>
export type LogLevel = Static<typeof LogLevelSchema>
