import type { TLSSocket } from 'node:tls'
import type { FastifyRequest } from 'fastify'

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** The caller's correlation id (`client-request-id`, as MSAL sends it) when it is a GUID. */
export function correlationIdOf (request: FastifyRequest): string | undefined {
  const given = request.headers['client-request-id']
  return typeof given === 'string' && GUID.test(given) ? given : undefined
}

/**
 * The origin the tool reached the broker at, for the URLs of the discovery documents and the
 * issuer: the Host header (which the inbound gate has checked) and the connection's scheme.
 */
export function originOf (request: FastifyRequest): string {
  const encrypted = (request.raw.socket as Partial<TLSSocket>).encrypted === true
  return `${encrypted ? 'https' : 'http'}://${request.headers.host as string}`
}
