import type { IncomingMessage } from 'node:http'
import { isLoopbackHost } from '../config/origin.js'

/**
 * Host names this broker answers to, besides every loopback name. The Host header has been
 * checked to be one plain host (protocol.ts) before this runs.
 */
export function createHostCheck (listenHost: string, allowedHosts: readonly string[]) {
  const allowed = new Set([listenHost, ...allowedHosts].map((host) => host.toLowerCase()))
  return function hostAllowed (req: IncomingMessage): string | undefined {
    const host = req.headers.host
    if (host === undefined) return 'no Host header'
    const lower = host.toLowerCase()
    if (allowed.has(lower)) return undefined
    const name = stripPort(lower)
    if (allowed.has(name) || isLoopbackHost(name)) return undefined
    return lower
  }
}

function stripPort (host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']')
    return end === -1 ? host : host.slice(0, end + 1)
  }
  const colon = host.lastIndexOf(':')
  return colon === -1 ? host : host.slice(0, colon)
}

/** A request a web page made: the browser says so with Origin or Sec-Fetch-Site. */
export function fromBrowserPage (req: IncomingMessage): string | undefined {
  if (req.headers.origin !== undefined) return 'requests from web pages (an Origin header) are refused'
  const site = req.headers['sec-fetch-site']?.trim().toLowerCase()
  if (site === 'cross-site' || site === 'same-site') return 'cross-site requests from a browser are refused'
  return undefined
}
