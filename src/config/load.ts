import { readFileSync, statSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, extname, resolve } from 'node:path'
import { BrokerConfigInvalid } from '../common/errors.js'
import { resolveClients } from './clients.js'
import {
  assertNoSingleProfileVariables,
  envValue,
  environmentPath,
  noCredentialsError,
  profileFromEnvironment,
  readBrokerEnvironment,
  type Environment
} from './environment.js'
import { resolveProfiles, type ProfileSource } from './profile-settings.js'
import { resolveRateLimit } from './rate-limit-store.js'
import {
  ConfigFileSchema,
  DEFAULT_HOST,
  DEFAULT_LOG_LEVEL,
  DEFAULT_READS,
  DEFAULT_PORT,
  DEFAULT_REFRESH,
  DEFAULT_RETRY,
  DEFAULT_UPSTREAM_TIMEOUTS,
  ProfileSchema,
  type ConfigFile
} from './schema.js'
import { readCaFile, readPrivateKeyFile, readSigningKeyFile } from './secret-files.js'
import { defaultStateDir } from './state-dir.js'
import type { Config, EgressProxyConfig } from './types.js'
import { assertMatchesSchema, dottedPath } from './validate.js'

export { isNoCredentialsError, type Environment } from './environment.js'

export interface LoadConfigOptions {
  /** The `--config` argument; wins over BROKER_CONFIG. */
  readonly argvConfigPath?: string
  readonly env: Environment
  /** Directory relative paths given on the command line or in the environment are resolved against. */
  readonly cwd?: string
}

/**
 * Builds the broker's configuration from defaults < config file < environment, checks it
 * and returns it deep-frozen. Throws `BrokerConfigInvalid` ("<setting>: <problem and fix>")
 * at the first problem found, without a secret in the message; when there is nothing to
 * serve at all, the error is the one `isNoCredentialsError` recognises.
 */
export function loadConfig (options: LoadConfigOptions): Config {
  const { env } = options
  const cwd = options.cwd ?? process.cwd()
  const file = readConfigFile(options, cwd)
  const settings: ConfigFile = file?.settings ?? {}
  // Paths inside the file are relative to the file, as in docker-compose files.
  const fileDir = file === undefined ? cwd : dirname(file.path)
  const broker = readBrokerEnvironment(env, cwd)

  const sources: ProfileSource[] = []
  if (settings.profiles !== undefined && settings.profiles.length > 0) {
    // AZURE_* credential variables are left alone here: AKS workload identity sets them in every pod.
    assertNoSingleProfileVariables(env)
    const dotted = dottedPath('profiles')
    settings.profiles.forEach((profile, index) => {
      sources.push({ profile, at: segments => dotted(['profiles', String(index), ...segments]), baseDir: fileDir })
    })
  } else {
    const fromEnv = profileFromEnvironment(env, cwd)
    if (fromEnv === undefined) throw noCredentialsError()
    const { profile, managedIdentitySource } = fromEnv
    assertMatchesSchema(ProfileSchema, profile, environmentPath)
    sources.push({ profile, at: environmentPath, baseDir: cwd, ...(managedIdentitySource === undefined ? {} : { managedIdentitySource }) })
  }
  const profiles = resolveProfiles(sources, { authorityOverride: broker.authorityHost, env, guards: settings.guards })
  const clients = resolveClients(settings.clients ?? [], profiles, fileDir)

  const caFile = broker.caFile === undefined
    ? settings.caFile === undefined ? undefined : { file: resolve(fileDir, settings.caFile), path: 'caFile' }
    : { file: broker.caFile, path: 'BROKER_CA_FILE' }
  const extraCaPem = caFile === undefined ? undefined : readCaFile(caFile.file, caFile.path)

  const config: Config = {
    listen: {
      host: broker.host ?? settings.listen?.host ?? DEFAULT_HOST,
      port: broker.port ?? settings.listen?.port ?? DEFAULT_PORT,
      allowedHosts: [...new Set((settings.listen?.allowedHosts ?? []).map(host => host.toLowerCase()))]
    },
    profiles,
    refresh: { ...DEFAULT_REFRESH, ...settings.refresh },
    retry: { ...DEFAULT_RETRY, ...settings.retry },
    upstreamTimeouts: { ...DEFAULT_UPSTREAM_TIMEOUTS, ...settings.upstreamTimeouts },
    clients,
    rateLimit: resolveRateLimit(settings.rateLimit, broker, fileDir),
    logLevel: broker.logLevel ?? settings.logLevel ?? DEFAULT_LOG_LEVEL,
    reads: {
      collapse: settings.reads?.collapse ?? DEFAULT_READS.collapse,
      cacheMaxBytes: (settings.reads?.cacheMaxMiB ?? DEFAULT_READS.cacheMaxMiB) * 1024 * 1024
    },
    audit: settings.audit?.file === undefined ? {} : { file: checkAuditFile(resolve(fileDir, settings.audit.file)) },
    brokerTokens: resolveBrokerTokens(broker.tokenKeyFile, settings.brokerTokens?.signingKeyFile, fileDir),
    ...(extraCaPem === undefined || caFile === undefined ? {} : { extraCaPem, caFile: caFile.file }),
    allowUnauthenticated: broker.allowUnauthenticated ?? settings.allowUnauthenticated ?? false,
    egressProxy: resolveEgressProxy(settings.egressProxy, broker.egressProxy, fileDir),
    stateDir: broker.stateDir ?? (settings.stateDir === undefined ? defaultStateDir(env) : resolve(fileDir, settings.stateDir)),
    source: file?.path ?? 'environment'
  }
  return deepFreeze(config)
}

const HTTPS_PORT = 443

/** The egress proxy's settings; a CA given as files is checked now, and read when the broker starts. */
function resolveEgressProxy (settings: ConfigFile['egressProxy'], enabledByEnv: boolean | undefined, fileDir: string): EgressProxyConfig {
  const tunnelAllow = (settings?.tunnelAllow ?? []).map((entry, index) => {
    const colon = entry.lastIndexOf(':')
    const port = colon === -1 ? HTTPS_PORT : Number(entry.slice(colon + 1))
    if (port < 1 || port > 65535) throw new BrokerConfigInvalid(`egressProxy.tunnelAllow[${index}]`, 'has a port outside 1 to 65535')
    return { host: (colon === -1 ? entry : entry.slice(0, colon)).toLowerCase(), port }
  })
  const { caCertFile, caKeyFile } = settings ?? {}
  if ((caCertFile === undefined) !== (caKeyFile === undefined)) {
    throw new BrokerConfigInvalid(caCertFile === undefined ? 'egressProxy.caKeyFile' : 'egressProxy.caCertFile',
      'is set without its pair: set both caCertFile and caKeyFile, or neither (the broker then makes its own CA in stateDir)')
  }
  let ca: EgressProxyConfig['ca']
  if (caCertFile !== undefined && caKeyFile !== undefined) {
    ca = { certFile: resolve(fileDir, caCertFile), keyFile: resolve(fileDir, caKeyFile) }
    readCaFile(ca.certFile, 'egressProxy.caCertFile')
    readPrivateKeyFile(ca.keyFile, 'egressProxy.caKeyFile')
  }
  return { enabled: enabledByEnv ?? settings?.enabled ?? false, tunnelAllow, ...(ca === undefined ? {} : { ca }) }
}

/** The signing key file, checked now (read once, when the first broker token is made or checked). */
function resolveBrokerTokens (fromEnv: string | undefined, fromFile: string | undefined, fileDir: string): Config['brokerTokens'] {
  const key = fromEnv === undefined
    ? fromFile === undefined ? undefined : { file: resolve(fileDir, fromFile), path: 'brokerTokens.signingKeyFile' }
    : { file: fromEnv, path: 'BROKER_TOKEN_KEY_FILE' }
  if (key === undefined) return {}
  readSigningKeyFile(key.file, key.path)
  return { signingKeyFile: key.file }
}

/** The broker creates the audit file when it starts: here, what can be told without creating it. */
function checkAuditFile (file: string): string {
  const dir = dirname(file)
  let isDirectory
  try {
    isDirectory = statSync(dir).isDirectory()
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error'
    throw new BrokerConfigInvalid('audit.file', code === 'ENOENT'
      ? `the directory ${dir} does not exist: create it, or mount a writable volume there`
      : `the directory ${dir} cannot be read (${code}): give the broker's user access to it`)
  }
  if (!isDirectory) throw new BrokerConfigInvalid('audit.file', `${dir} is not a directory: give the path of a file in a writable directory`)
  let stats
  try {
    stats = statSync(file)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error'
    if (code === 'ENOENT') return file
    throw new BrokerConfigInvalid('audit.file', `the file ${file} cannot be read (${code}): give the broker's user access to it`)
  }
  if (!stats.isFile()) {
    throw new BrokerConfigInvalid('audit.file', `${file} is not a regular file: give the path of a file (unset audit.file to send audit events to stdout)`)
  }
  return file
}

function readConfigFile (options: LoadConfigOptions, cwd: string): { path: string, settings: ConfigFile } | undefined {
  const [setting, name] = options.argvConfigPath === undefined
    ? ['BROKER_CONFIG', envValue(options.env, 'BROKER_CONFIG')]
    : ['--config', options.argvConfigPath]
  if (name === undefined) return undefined
  if (name === '') throw new BrokerConfigInvalid(setting, 'names no file: give the path of a YAML or JSON config file')
  const path = resolve(cwd, name)
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error'
    throw new BrokerConfigInvalid(setting, code === 'ENOENT'
      ? `the config file ${path} does not exist`
      : `the config file ${path} cannot be read (${code}): check the path and the broker user's access`)
  }
  const settings = parseConfigText(text, path)
  assertMatchesSchema(ConfigFileSchema, settings, dottedPath(path))
  return { path, settings }
}

/** Parse errors give a position and never the parser's message: that quotes the file, secrets included. */
function parseConfigText (text: string, path: string): unknown {
  const extension = extname(path).toLowerCase()
  if (extension === '.json') return parseJson(text, path)
  if (extension === '.yaml' || extension === '.yml') return parseYaml(text, path)
  try {
    return JSON.parse(text)
  } catch {
    return parseYaml(text, path)
  }
}

function parseJson (text: string, path: string): unknown {
  try {
    return JSON.parse(text)
  } catch (err) {
    const offset = /position (\d+)/.exec((err as Error).message)?.[1]
    throw new BrokerConfigInvalid(path, `is not valid JSON${offset === undefined ? '' : lineAndColumn(text, Number(offset))}: fix the syntax`)
  }
}

const require = createRequire(import.meta.url)

function parseYaml (text: string, path: string): unknown {
  // Loaded only when there is a YAML file to read.
  const { parseDocument } = require('yaml') as typeof import('yaml')
  const document = parseDocument(text)
  const error = document.errors[0]
  if (error !== undefined) {
    const position = error.linePos?.[0]
    const where = position === undefined ? '' : ` at line ${position.line}, column ${position.col}`
    throw new BrokerConfigInvalid(path, `is not valid YAML${where} (${error.code}): fix the syntax`)
  }
  let value: unknown
  try {
    value = document.toJS()
  } catch {
    throw new BrokerConfigInvalid(path, 'uses too many YAML aliases: write the settings out')
  }
  // An empty file holds no settings rather than a null one.
  return value ?? {}
}

function lineAndColumn (text: string, offset: number): string {
  const before = text.slice(0, offset).split('\n')
  return ` at line ${before.length}, column ${(before.at(-1)?.length ?? 0) + 1}`
}

function deepFreeze<T> (value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const child of Object.values(value)) deepFreeze(child)
  }
  return value
}
