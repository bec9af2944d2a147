import * as tls from 'node:tls'
import { Agent, buildConnector, EnvHttpProxyAgent, type Dispatcher } from 'undici'

export interface OutboundOptions {
  /** PEM text of CAs trusted beside the system's. */
  extraCaPem?: string
  connectTimeoutMs: number
  /** The environment the proxy variables are read from; `process.env` is never read behind its back. */
  env: NodeJS.ProcessEnv | Record<string, string | undefined>
}

type Environment = OutboundOptions['env']

const PROXY_VARIABLES = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy']

/**
 * Managed identity endpoints are on the machine or its link-local network: through a proxy
 * they would be unreachable, or worse, answer with the proxy host's own identity.
 */
const IMDS_HOST = '169.254.169.254'
const MANAGED_IDENTITY_ENDPOINT_VARIABLES = ['IDENTITY_ENDPOINT', 'MSI_ENDPOINT', 'IMDS_ENDPOINT', 'AZURE_POD_IDENTITY_AUTHORITY_HOST']

export function usesProxy (env: Environment): boolean {
  return PROXY_VARIABLES.some((name) => Boolean(env[name]))
}

function variable (env: Environment, name: string): string | undefined {
  return env[name] ?? env[name.toLowerCase()]
}

/**
 * The proxies outbound calls go through, for the start-up log: each variable set, with the
 * proxy's scheme, host and port only (a user name and password in the URL are left out).
 */
export function describeProxies (env: Environment): Record<string, string> | undefined {
  const described: Record<string, string> = {}
  for (const name of ['HTTPS_PROXY', 'HTTP_PROXY']) {
    const value = variable(env, name)
    if (!value) continue
    described[name] = proxyAddress(value)
  }
  return Object.keys(described).length === 0 ? undefined : described
}

const DEFAULT_PORTS: Readonly<Record<string, string>> = { 'http:': '80', 'https:': '443' }

function proxyAddress (value: string): string {
  let url: URL
  try {
    // undici takes `host:port` without a scheme as http.
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(value) ? value : `http://${value}`)
  } catch {
    return '(not a URL)'
  }
  return `${url.protocol}//${url.hostname}:${url.port || (DEFAULT_PORTS[url.protocol] ?? '?')}`
}

/** NO_PROXY with the managed identity endpoints added; `*` stays `*`. */
export function noProxyList (env: Environment): string {
  const given = (variable(env, 'NO_PROXY') ?? '').trim()
  if (given === '*') return given
  const endpoints = MANAGED_IDENTITY_ENDPOINT_VARIABLES.flatMap((name) => {
    const value = env[name]
    if (!value) return []
    try {
      return [new URL(value).host]
    } catch {
      return []
    }
  })
  return [...new Set([...given.split(/[,\s]+/).filter(Boolean), IMDS_HOST, ...endpoints])].join(',')
}

/** The CAs trusted by default: Node's, with NODE_EXTRA_CA_CERTS and the system store where Node can give them. */
function defaultCertificates (): readonly string[] {
  const getCACertificates = (tls as { getCACertificates?: (type?: string) => string[] }).getCACertificates
  return getCACertificates?.('default') ?? tls.rootCertificates
}

/**
 * The one dispatcher for every outbound call, the Defender API's and Entra ID's alike, so the
 * proxy and CA settings apply to both. undici keeps one keep-alive pool per origin inside it.
 */
export function createOutboundDispatcher (options: OutboundOptions): Dispatcher {
  // `ca` replaces the trusted roots rather than adding to them, so the defaults come along.
  const ca = options.extraCaPem === undefined ? undefined : [...defaultCertificates(), options.extraCaPem]
  const timeout = options.connectTimeoutMs
  const common = {
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 600_000,
    pipelining: 1
  }
  const { env } = options
  if (usesProxy(env)) {
    const connect = ca === undefined ? { timeout } : { timeout, secureContext: tls.createSecureContext({ ca }) }
    return new EnvHttpProxyAgent({
      ...common,
      connect,
      // Empty rather than undefined: undici would read process.env in place of a missing value.
      httpProxy: variable(env, 'HTTP_PROXY') ?? '',
      httpsProxy: variable(env, 'HTTPS_PROXY') ?? '',
      noProxy: noProxyList(env),
      // Through the proxy, `connect` is not used: the tunnelled TLS (to Entra ID, to the API)
      // and the TLS to an https proxy take the CAs and the timeout from these.
      requestTls: connect,
      proxyTls: connect
    })
  }
  return new Agent({ ...common, connect: ca === undefined ? { timeout } : sharedContextConnector(ca, timeout) })
}

/**
 * `ca` given to tls.connect is made into a TLS context of its own for every connection: with
 * Node's 140-odd roots that is 30 ms of blocked event loop each time the broker opens a
 * connection to the API or to Entra ID. One context, made at the first TLS connection (not on
 * the way to listening), serves them all.
 */
function sharedContextConnector (ca: string[], timeout: number): buildConnector.connector {
  let connector: buildConnector.connector | undefined
  return (options, callback) => {
    connector ??= buildConnector({ timeout, secureContext: tls.createSecureContext({ ca }) })
    connector(options, callback)
  }
}
