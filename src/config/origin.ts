import { isIP } from 'node:net'
import { BrokerConfigInvalid } from '../common/errors.js'

const LOOPBACK_RULE = 'a loopback address (127.0.0.0/8, ::1 or localhost)'

/** True for a host name or address that never leaves the machine: 127.0.0.0/8, ::1, localhost. */
export function isLoopbackHost (host: string): boolean {
  const name = host.toLowerCase().replace(/^\[(.*)\]$/, '$1').replace(/\.$/, '')
  if (name === 'localhost' || name === '::1') return true
  return isIP(name) === 4 && name.startsWith('127.')
}

/**
 * Checks that `value` is a bare origin and returns it normalised (`URL#origin`: lower-case
 * host, default port dropped). Messages never repeat the value: it may hold credentials.
 */
export function parseOrigin (value: string, path: string, options: { allowLoopbackHttp: boolean }): string {
  const example = 'such as https://api.securitycenter.microsoft.com'
  let url: URL
  try {
    url = new URL(value)
  } catch {
    throw new BrokerConfigInvalid(path, `must be an origin (scheme, host and optional port) ${example}`)
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new BrokerConfigInvalid(path, `must be an https origin ${example}`)
  }
  if (url.username !== '' || url.password !== '') {
    throw new BrokerConfigInvalid(path, 'must not hold a user name or password: remove them from the URL')
  }
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '' || /[?#]/.test(value)) {
    throw new BrokerConfigInvalid(path, `must be an origin without a path, query or fragment, ${example}`)
  }
  if (url.protocol === 'http:') {
    if (!options.allowLoopbackHttp) {
      throw new BrokerConfigInvalid(path, 'must use https (Entra ID and msal-node accept no other scheme)')
    }
    if (!isLoopbackHost(url.hostname)) {
      throw new BrokerConfigInvalid(path, `may use http only on ${LOOPBACK_RULE}: use https`)
    }
  }
  return url.origin
}
