import { rootCertificates } from 'node:tls'
import { Agent, EnvHttpProxyAgent, type Dispatcher } from 'undici'

export interface OutboundOptions {
  /** PEM text of CAs trusted beside the system's. */
  extraCaPem?: string
  connectTimeoutMs: number
  env: NodeJS.ProcessEnv | Record<string, string | undefined>
}

const PROXY_VARIABLES = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy']

export function usesProxy (env: OutboundOptions['env']): boolean {
  return PROXY_VARIABLES.some((name) => Boolean(env[name]))
}

/**
 * The one dispatcher for every outbound call, the Defender API's and Entra ID's alike, so the
 * proxy and CA settings apply to both. undici keeps one keep-alive pool per origin inside it.
 */
export function createOutboundDispatcher (options: OutboundOptions): Dispatcher {
  // `ca` replaces Node's trusted roots rather than adding to them, so the roots come along.
  const tls = options.extraCaPem === undefined
    ? {}
    : { ca: [...rootCertificates, options.extraCaPem] }
  const common = {
    connect: { ...tls, timeout: options.connectTimeoutMs },
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 600_000,
    pipelining: 1
  }
  if (usesProxy(options.env)) {
    return new EnvHttpProxyAgent({
      ...common,
      httpProxy: options.env.HTTP_PROXY ?? options.env.http_proxy,
      httpsProxy: options.env.HTTPS_PROXY ?? options.env.https_proxy,
      noProxy: options.env.NO_PROXY ?? options.env.no_proxy,
      requestTls: tls,
      proxyTls: tls
    })
  }
  return new Agent(common)
}
