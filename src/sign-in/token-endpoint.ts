import type { FastifyInstance, FastifyRequest } from 'fastify'
import { SIGN_IN_ROUTES } from '../common/paths.js'
import { markAuthenticated } from '../inbound/connections.js'
import { signInErrors } from './errors.js'
import { tenantOf } from './issuer.js'
import { acceptedResources, isAcceptedResource, readScope } from './resources.js'
import { originOf } from './request-origin.js'
import type { SignInOptions } from './routes.js'

const CLIENT_CREDENTIALS = 'client_credentials'
const ALL_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const

type Form = Record<string, string | undefined>
interface TenantParams { tenant: string }

/** The client secret of HTTP Basic's `client_id:client_secret`, each form-encoded (RFC 6749 2.3.1). */
function basicSecret (request: FastifyRequest): string | undefined {
  const header = request.headers.authorization
  if (typeof header !== 'string' || !/^basic /i.test(header)) return undefined
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8')
  const colon = decoded.indexOf(':')
  if (colon === -1) return undefined
  const secret = decoded.slice(colon + 1)
  try {
    return decodeURIComponent(secret.replace(/\+/g, ' '))
  } catch {
    return secret
  }
}

/** Entra ID's documents, with every URL at this broker. */
function openIdConfiguration (origin: string, tenant: string, version: 1 | 2): Record<string, unknown> {
  const base = `${origin}/${tenant}`
  const v2 = version === 2 ? '/v2.0' : ''
  return {
    token_endpoint: `${base}/oauth2${v2}/token`,
    token_endpoint_auth_methods_supported: ['client_secret_post', 'client_secret_basic'],
    jwks_uri: `${base}/discovery${v2}/keys`,
    response_modes_supported: ['query', 'fragment', 'form_post'],
    subject_types_supported: ['pairwise'],
    id_token_signing_alg_values_supported: ['RS256'],
    response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
    scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
    issuer: version === 2 ? `${base}/v2.0` : `${base}/`,
    request_uri_parameter_supported: false,
    authorization_endpoint: `${base}/oauth2${v2}/authorize`,
    device_authorization_endpoint: `${base}/oauth2${v2}/devicecode`,
    http_logout_supported: true,
    frontchannel_logout_supported: true,
    end_session_endpoint: `${base}/oauth2${v2}/logout`,
    claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'nbf', 'tid', 'roles'],
    tenant_region_scope: 'NA',
    cloud_instance_name: 'microsoftonline.com',
    cloud_graph_host_name: 'graph.windows.net',
    msgraph_host: 'graph.microsoft.com'
  }
}

/** The tenant an instance-discovery request's `authorization_endpoint` names, else `common`. */
function tenantOfAuthorizationEndpoint (value: unknown): string {
  if (typeof value !== 'string') return 'common'
  try {
    const first = new URL(value).pathname.split('/')[1]
    return first === undefined || first === '' ? 'common' : encodeURIComponent(decodeURIComponent(first))
  } catch {
    return 'common'
  }
}

/**
 * `POST /{tenant}/oauth2/v2.0/token` (`scope`) and `/{tenant}/oauth2/token` (v1, `resource`):
 * the client-credentials grant, the broker client key as the client secret, a broker token as
 * the answer; and the documents MSAL and azure-identity read first.
 */
export function tokenEndpointRoutes (app: FastifyInstance, { issuer }: SignInOptions): void {
  async function token (request: FastifyRequest<{ Params: TenantParams, Body: Form | undefined }>, version: 1 | 2) {
    if (request.method !== 'POST') throw signInErrors.postOnly(request.method)
    const form = request.body
    if (form === undefined || form === null || typeof form !== 'object') throw signInErrors.notForm()
    const grantType = form.grant_type
    if (grantType === undefined || grantType === '') throw signInErrors.missingParameter('grant_type')
    if (grantType !== CLIENT_CREDENTIALS) throw signInErrors.unsupportedGrantType(grantType)
    const client = issuer.authenticate(form.client_secret ?? basicSecret(request))
    markAuthenticated(request.raw.socket)
    request.broker.client = client.name
    const profile = issuer.byTenant(request.params.tenant, client)
    request.broker.profile = profile.config.name
    const resources = acceptedResources(profile.config)

    let resource: string
    if (version === 2) {
      if (form.scope === undefined || form.scope === '') throw signInErrors.missingParameter('scope')
      const reading = readScope(form.scope, resources)
      if ('resource' in reading) resource = reading.resource
      else if (reading.fault === 'foreign') throw signInErrors.foreignScope(reading.scope)
      else if (reading.fault === 'no-default') throw signInErrors.scopeWithoutDefault(reading.scope)
      else throw signInErrors.oneResource()
    } else {
      const asked = form.resource?.replace(/\/\.default$/, '')
      if (asked === undefined || asked === '') throw signInErrors.missingParameter('resource')
      if (!isAcceptedResource(resources, asked)) throw signInErrors.foreignResource(asked)
      resource = asked
    }

    const origin = originOf(request)
    const tenantId = tenantOf(profile)
    const { token, claims } = await issuer.issue({
      client, profile, audience: resource, issuer: version === 2 ? `${origin}/${tenantId}/v2.0` : `${origin}/${tenantId}/`
    })
    const expiresIn = claims.exp - claims.iat
    return version === 2
      ? { token_type: 'Bearer', expires_in: expiresIn, ext_expires_in: expiresIn, access_token: token }
      : {
          token_type: 'Bearer',
          expires_in: String(expiresIn),
          ext_expires_in: String(expiresIn),
          expires_on: String(claims.exp),
          not_before: String(claims.nbf),
          resource,
          access_token: token
        }
  }

  const noStore = { 'cache-control': 'no-store', pragma: 'no-cache' }
  app.route<{ Params: TenantParams, Body: Form | undefined }>({
    method: [...ALL_METHODS],
    url: SIGN_IN_ROUTES.tokenV2,
    handler: async (request, reply) => reply.headers(noStore).send(await token(request, 2))
  })
  app.route<{ Params: TenantParams, Body: Form | undefined }>({
    method: [...ALL_METHODS],
    url: SIGN_IN_ROUTES.tokenV1,
    handler: async (request, reply) => reply.headers(noStore).send(await token(request, 1))
  })
  app.get<{ Params: TenantParams }>(SIGN_IN_ROUTES.openIdV2, async (request) =>
    openIdConfiguration(originOf(request), encodeURIComponent(request.params.tenant), 2))
  app.get<{ Params: TenantParams }>(SIGN_IN_ROUTES.openIdV1, async (request) =>
    openIdConfiguration(originOf(request), encodeURIComponent(request.params.tenant), 1))
  // Broker tokens are checked by the broker alone: there is no public key to publish.
  app.get(SIGN_IN_ROUTES.keys, async () => ({ keys: [] }))
  app.get<{ Querystring: Record<string, unknown> }>(SIGN_IN_ROUTES.instanceDiscovery, async (request) => {
    const origin = originOf(request)
    const host = new URL(origin).host
    return {
      tenant_discovery_endpoint: `${origin}/${tenantOfAuthorizationEndpoint(request.query.authorization_endpoint)}/v2.0/.well-known/openid-configuration`,
      'api-version': '1.1',
      metadata: [{ preferred_network: host, preferred_cache: host, aliases: [host] }]
    }
  })
}
