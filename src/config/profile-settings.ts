import { resolve } from 'node:path'
import { BrokerConfigInvalid } from '../common/errors.js'
import { CLOUD_PRESETS, DEFAULT_CLOUD, isPresetAuthorityHost } from './clouds.js'
import { parseOrigin } from './origin.js'
import { checkRule, checkRules } from './rules.js'
import { RESERVED_PATHS } from '../common/paths.js'
import { resolveGuards } from './guards.js'
import { DEFAULT_RATE_LIMIT, type CredentialFile, type GuardsFile, type ProfileFile } from './schema.js'
import { checkCertificateFile, checkTokenFile, fileSecret, inlineSecret } from './secret-files.js'
import type { CredentialConfig, ProfileConfig, SecretSource } from './types.js'
import type { Environment } from './environment.js'
import { describeManagedIdentitySource } from './managed-identity-source.js'
import type { PathNamer } from './validate.js'

export interface ProfileSource {
  readonly profile: ProfileFile
  /** Names the profile's settings in messages: `profiles[2].upstream`, or `BROKER_UPSTREAM`. */
  readonly at: PathNamer
  /** Directory relative file paths are resolved against. */
  readonly baseDir: string
  /** Set when the environment chose a managed identity: which variable, and the endpoint. */
  readonly managedIdentitySource?: string
}

export interface ResolveOptions {
  /** AZURE_AUTHORITY_HOST as an origin: it overrides every profile's authority host. */
  readonly authorityOverride: string | undefined
  /** Where a managed identity's endpoint is announced (msal-node reads the same variables). */
  readonly env: Environment
  /** The broker-wide guard rails, which a profile's own replace key by key. */
  readonly guards?: GuardsFile | undefined
}

/**
 * Resolves schema-checked profiles into `ProfileConfig`s and checks what a schema cannot.
 * A lone profile may leave out basePath (it is then `/`); of several, each must give one, as
 * a path nobody wrote down would decide which tenant a request reaches.
 */
export function resolveProfiles (sources: readonly ProfileSource[], options: ResolveOptions): ProfileConfig[] {
  const profiles = sources.map(source => resolveProfile(source, options, sources.length === 1))
  const names = new Map<string, number>()
  const basePaths = new Map<string, number>()
  profiles.forEach((profile, index) => {
    const at = (sources[index] as ProfileSource).at
    const sameName = names.get(profile.name)
    if (sameName !== undefined) {
      throw new BrokerConfigInvalid(at(['name']), `the name ${profile.name} is also used by profiles[${sameName}]: give each profile its own name`)
    }
    names.set(profile.name, index)
    const samePath = basePaths.get(profile.basePath)
    if (samePath !== undefined) {
      throw new BrokerConfigInvalid(at(['basePath']), `${profile.basePath} is also the basePath of profiles[${samePath}]: give each profile its own basePath`)
    }
    basePaths.set(profile.basePath, index)
  })
  return profiles
}

function resolveProfile (source: ProfileSource, options: ResolveOptions, alone: boolean): ProfileConfig {
  const { profile, at, baseDir } = source
  const cloud = profile.cloud ?? DEFAULT_CLOUD
  const preset = CLOUD_PRESETS[cloud]
  const authorityHost = options.authorityOverride ??
    (profile.authorityHost === undefined
      ? preset.authorityHost
      : parseOrigin(profile.authorityHost, at(['authorityHost']), { allowLoopbackHttp: false }))
  if (profile.basePath === undefined && !alone) {
    throw new BrokerConfigInvalid(at(['basePath']),
      'is required when the file defines several profiles: give each its own path prefix, e.g. / for one and /fabrikam for another')
  }
  const credential = resolveCredential(profile.credential, at, baseDir)
  if (credential.type !== 'managedIdentity') {
    for (const [setting, what] of [['tenantId', 'directory (tenant) id'], ['clientId', 'application (client) id']] as const) {
      if (profile[setting] === undefined) {
        throw new BrokerConfigInvalid(at([setting]),
          `is required with a ${credential.type} credential: set it to the ${what} of the app registration (only a managedIdentity credential may leave it out)`)
      }
    }
  }
  return {
    name: profile.name,
    basePath: normaliseBasePath(profile.basePath ?? '/', at(['basePath'])),
    ...(profile.tenantId === undefined ? {} : { tenantId: profile.tenantId }),
    ...(profile.clientId === undefined ? {} : { clientId: profile.clientId }),
    credential,
    credentialSource: credentialSource(credential, source, options.env),
    cloud,
    authorityHost,
    customAuthority: !isPresetAuthorityHost(authorityHost),
    upstream: profile.upstream === undefined
      ? preset.upstream
      : parseOrigin(profile.upstream, at(['upstream']), { allowLoopbackHttp: true }),
    scope: profile.scope ?? preset.scope,
    allow: checkRules(profile.allow ?? [], at(['allow'])),
    rateLimit: { ...DEFAULT_RATE_LIMIT, ...profile.rateLimit },
    cache: (profile.cache ?? []).map((rule, index) => ({ allow: checkRule(rule.allow, at(['cache', String(index), 'allow'])), ttlSeconds: rule.ttlSeconds })),
    guards: resolveGuards(profile.guards, options.guards, at)
  }
}

/**
 * `/fabrikam/` becomes `/fabrikam`; segments that a URL parser would rewrite (`.`, `..`,
 * empty ones) are refused, so the prefix matched is the prefix configured.
 */
export function normaliseBasePath (basePath: string, path: string): string {
  const trimmed = basePath.length > 1 && basePath.endsWith('/') ? basePath.slice(0, -1) : basePath
  if (trimmed === '/') return trimmed
  const segments = trimmed.slice(1).split('/')
  if (segments.some(segment => segment === '')) {
    throw new BrokerConfigInvalid(path, 'must not hold an empty segment ("//"): write it as /name or /name/sub')
  }
  if (segments.some(segment => segment === '.' || segment === '..')) {
    throw new BrokerConfigInvalid(path, 'must not hold "." or ".." segments')
  }
  const reserved = RESERVED_PATHS.find(name => trimmed === name || trimmed.startsWith(`${name}/`))
  if (reserved !== undefined) {
    throw new BrokerConfigInvalid(path, `must not start with ${reserved}: ${RESERVED_PATHS.join(', ')} are the broker's own endpoints`)
  }
  return trimmed
}

function resolveCredential (credential: CredentialFile, at: PathNamer, baseDir: string): CredentialConfig {
  const setting = (name: string): string => at(['credential', name])
  switch (credential.type) {
    case 'secret': {
      const secret = secretSource(credential.secret, credential.secretFile, setting('secret'), setting('secretFile'), baseDir)
      if (secret === undefined) {
        throw new BrokerConfigInvalid(at(['credential']), 'needs the client secret: set secretFile (or secret)')
      }
      return { type: 'secret', secret }
    }
    case 'certificate': {
      const password = secretSource(credential.password, credential.passwordFile, setting('password'), setting('passwordFile'), baseDir)
      const certificateFile = resolve(baseDir, credential.certificateFile)
      checkCertificateFile(certificateFile, setting('certificateFile'), password !== undefined)
      return password === undefined
        ? { type: 'certificate', certificateFile }
        : { type: 'certificate', certificateFile, password }
    }
    case 'federated': {
      const tokenFile = resolve(baseDir, credential.tokenFile)
      checkTokenFile(tokenFile, setting('tokenFile'))
      return { type: 'federated', tokenFile }
    }
    case 'managedIdentity': {
      const { type, ...ids } = credential
      if (Object.keys(ids).length > 1) {
        throw new BrokerConfigInvalid(at(['credential']),
          'names more than one user-assigned identity: set only one of clientId, resourceId and objectId')
      }
      return { type, ...ids }
    }
  }
}

/** Where the credential is found, never its value: the file, the setting or variable, the endpoint. */
function credentialSource (credential: CredentialConfig, source: ProfileSource, env: Environment): string {
  switch (credential.type) {
    case 'secret': return credential.secret.origin
    case 'certificate': return credential.certificateFile
    case 'federated': return credential.tokenFile
    case 'managedIdentity': return source.managedIdentitySource ?? describeManagedIdentitySource(env)
  }
}

function secretSource (
  value: string | undefined,
  file: string | undefined,
  valuePath: string,
  filePath: string,
  baseDir: string
): SecretSource | undefined {
  if (value !== undefined && file !== undefined) {
    throw new BrokerConfigInvalid(valuePath, `and ${filePath} are both set: set only one of them (the file is the safer)`)
  }
  if (file !== undefined) return fileSecret(resolve(baseDir, file), filePath)
  if (value !== undefined) return inlineSecret(value, valuePath)
  return undefined
}
