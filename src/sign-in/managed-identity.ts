import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { SIGN_IN_ROUTES } from '../common/paths.js'
import { markAuthenticated } from '../inbound/connections.js'
import { signInErrors } from './errors.js'
import { clientOf, tenantOf, type SignInClient } from './issuer.js'
import { acceptedResources, isAcceptedResource } from './resources.js'
import { originOf } from './request-origin.js'
import type { SignInOptions } from './routes.js'

type Query = Record<string, string | undefined>

function header (request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name]
  return typeof value === 'string' ? value : undefined
}

/**
 * The managed-identity protocols tools on DefaultAzureCredential / ManagedIdentityCredential
 * speak: App Service's (`IDENTITY_ENDPOINT`, the client key as `IDENTITY_HEADER`) and IMDS's
 * (`Metadata: true`; it carries no secret, so it is served only by a broker without client
 * keys). The answer is a broker token.
 */
export function managedIdentityRoutes (app: FastifyInstance, { issuer }: SignInOptions, protocol: 'appService' | 'imds'): void {
  async function token (request: FastifyRequest<{ Querystring: Query }>, client: SignInClient) {
    const query = request.query
    if (query['api-version'] === undefined || query['api-version'] === '') throw signInErrors.missingQueryParameter('api-version')
    const resource = query.resource?.replace(/\/\.default$/, '')
    if (resource === undefined || resource === '') throw signInErrors.missingQueryParameter('resource')
    request.broker.client = client.name
    const profile = issuer.byIdentity(query.client_id, client)
    request.broker.profile = profile.config.name
    if (!isAcceptedResource(acceptedResources(profile.config), resource)) throw signInErrors.foreignResource(resource)
    const { token, claims } = await issuer.issue({
      client, profile, audience: resource, issuer: `${originOf(request)}/${tenantOf(profile)}/`
    })
    return { token, claims, resource, clientId: clientOf(profile) }
  }

  if (protocol === 'appService') {
    app.get<{ Querystring: Query }>(SIGN_IN_ROUTES.appService, appServiceToken)
    app.get<{ Querystring: Query }>(`${SIGN_IN_ROUTES.appService}/`, appServiceToken)
    return
  }
  app.get<{ Querystring: Query }>(SIGN_IN_ROUTES.imds, imdsToken)
  app.get<{ Querystring: Query }>(`${SIGN_IN_ROUTES.imds}/`, imdsToken)

  async function appServiceToken (request: FastifyRequest<{ Querystring: Query }>, reply: FastifyReply) {
    const client = issuer.identityClient(header(request, 'x-identity-header'))
    markAuthenticated(request.raw.socket)
    const { token: accessToken, claims, resource, clientId } = await token(request, client)
    reply.header('cache-control', 'no-store')
    return { access_token: accessToken, expires_on: String(claims.exp), resource, token_type: 'Bearer', client_id: clientId }
  }

  async function imdsToken (request: FastifyRequest<{ Querystring: Query }>, reply: FastifyReply) {
    if (header(request, 'metadata')?.toLowerCase() !== 'true') throw signInErrors.missingMetadataHeader()
    const client = issuer.imdsClient()
    const { token: accessToken, claims, resource, clientId } = await token(request, client)
    const expiresIn = String(claims.exp - claims.iat)
    reply.header('cache-control', 'no-store')
    return {
      access_token: accessToken,
      client_id: clientId,
      expires_in: expiresIn,
      expires_on: String(claims.exp),
      ext_expires_in: expiresIn,
      not_before: String(claims.nbf),
      resource,
      token_type: 'Bearer'
    }
  }
}
