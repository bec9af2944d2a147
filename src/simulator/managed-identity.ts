import { EventEmitter } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { randomUUID, timingSafeEqual } from 'node:crypto'
import type { EntraSimulator } from './entra.js'
import { DEFAULT_AUDIENCE } from './entra.js'
import { closeServer, listen, originFor, sendJson } from './http.js'
import { decodeJwt } from './jwt.js'

export const APP_SERVICE_TOKEN_PATH = '/msi/token'
export const IMDS_TOKEN_PATH = '/metadata/identity/oauth2/token'
const APP_SERVICE_API_VERSION = '2019-08-01'
const IMDS_API_VERSION = '2018-02-01'
/** Managed identity tokens live about a day. */
const DEFAULT_LIFETIME_SECONDS = 86_399

/** An identity the machine holds: the system-assigned one, or a user-assigned one. */
export interface ManagedIdentity {
  tenantId: string
  clientId: string
  objectId: string
  /** Azure resource id; a user-assigned identity has one. */
  resourceId?: string
  systemAssigned?: boolean
  roles: string[]
}

export interface ManagedIdentityEndpointOptions {
  /** Signs the tokens, so the Defender simulator accepts them. */
  entra: Pick<EntraSimulator, 'issueAccessToken'>
  identities: ManagedIdentity[]
  /** The value App Service puts in IDENTITY_HEADER; requests must send it as X-IDENTITY-HEADER. */
  identityHeader: string
  audience?: string
  lifetimeSeconds?: number
  host?: string
}

export interface ManagedIdentityRequest {
  source: 'appService' | 'imds'
  method: string
  path: string
  query: Record<string, string>
  headers: IncomingMessage['headers']
}

/** What msal-node's ManagedIdentityApplication talks to, on one port, as App Service and IMDS answer. */
export interface ManagedIdentityEndpoint extends EventEmitter<{ request: [ManagedIdentityRequest] }> {
  /** `http://127.0.0.1:PORT`: the value of AZURE_POD_IDENTITY_AUTHORITY_HOST for the IMDS source. */
  readonly url: string
  /** The value of IDENTITY_ENDPOINT for the App Service source. */
  readonly appServiceEndpoint: string
  readonly requests: ManagedIdentityRequest[]
  readonly issuedTokens: string[]
  close (): Promise<void>
}

class Endpoint extends EventEmitter<{ request: [ManagedIdentityRequest] }> implements ManagedIdentityEndpoint {
  readonly url: string
  readonly appServiceEndpoint: string
  readonly requests: ManagedIdentityRequest[] = []
  readonly issuedTokens: string[] = []
  readonly #server: Server
  readonly #options: ManagedIdentityEndpointOptions

  constructor (server: Server, url: string, options: ManagedIdentityEndpointOptions) {
    super()
    this.#server = server
    this.url = url
    this.appServiceEndpoint = `${url}${APP_SERVICE_TOKEN_PATH}`
    this.#options = options
    server.on('request', (req: IncomingMessage, res: ServerResponse) => this.#handle(req, res))
  }

  async close (): Promise<void> { await closeServer(this.#server) }

  #handle (req: IncomingMessage, res: ServerResponse): void {
    const target = new URL(req.url ?? '/', this.url)
    // msal-node sends IMDS's path with a trailing slash, which IMDS accepts.
    const path = target.pathname.length > 1 ? target.pathname.replace(/\/$/, '') : target.pathname
    const source = path === APP_SERVICE_TOKEN_PATH ? 'appService' : path === IMDS_TOKEN_PATH ? 'imds' : undefined
    if (source === undefined) return sendJson(res, 404, { error: 'not_found', error_description: `No route for ${target.pathname}.` })
    const request: ManagedIdentityRequest = {
      source,
      method: req.method ?? '',
      path: target.pathname,
      query: Object.fromEntries(target.searchParams),
      headers: req.headers
    }
    this.requests.push(request)
    this.emit('request', request)
    if (source === 'appService') this.#appService(request, res)
    else this.#imds(request, res)
  }

  /** App Service's local endpoint: the secret header, `client_id`, `mi_res_id` or `object_id`. */
  #appService (request: ManagedIdentityRequest, res: ServerResponse): void {
    const fail = (status: number, message: string): void =>
      sendJson(res, status, { statusCode: status, message, correlationId: randomUUID() })
    const header = request.headers['x-identity-header']
    if (typeof header !== 'string' || !sameSecret(header, this.#options.identityHeader)) {
      return fail(401, 'The X-IDENTITY-HEADER header is missing or wrong.')
    }
    if (request.method !== 'GET') return fail(405, `The method ${request.method} is not allowed.`)
    if (request.query['api-version'] !== APP_SERVICE_API_VERSION) return fail(400, 'The api-version is not supported.')
    const identity = this.#find(request.query['client_id'], request.query['mi_res_id'], request.query['object_id'])
    if (identity === undefined) return fail(400, 'Unable to load the proper Managed Identity.')
    const resourceError = this.#checkResource(request.query['resource'])
    if (resourceError !== undefined) return fail(400, resourceError)
    const { accessToken, expiresOn } = this.#issue(identity)
    sendJson(res, 200, {
      access_token: accessToken,
      expires_on: String(expiresOn),
      resource: request.query['resource'],
      token_type: 'Bearer',
      client_id: identity.clientId
    })
  }

  /** The Instance Metadata Service: `Metadata: true`, `client_id`, `msi_res_id` or `object_id`. */
  #imds (request: ManagedIdentityRequest, res: ServerResponse): void {
    const fail = (status: number, description: string): void =>
      sendJson(res, status, { error: 'invalid_request', error_description: description })
    if (request.headers['metadata'] !== 'true') return fail(400, 'Required metadata header not specified')
    if (request.headers['x-forwarded-for'] !== undefined) return fail(400, 'Request cannot contain X-Forwarded-For header')
    if (request.method !== 'GET') return fail(405, `The method ${request.method} is not allowed.`)
    if (request.query['api-version'] !== IMDS_API_VERSION) return fail(400, 'Invalid version')
    const identity = this.#find(request.query['client_id'], request.query['msi_res_id'], request.query['object_id'])
    if (identity === undefined) return fail(400, 'Identity not found')
    const resourceError = this.#checkResource(request.query['resource'])
    if (resourceError !== undefined) return fail(400, resourceError)
    const { accessToken, expiresOn, lifetime } = this.#issue(identity)
    sendJson(res, 200, {
      access_token: accessToken,
      client_id: identity.clientId,
      expires_in: String(lifetime),
      expires_on: String(expiresOn),
      ext_expires_in: String(lifetime),
      not_before: String(expiresOn - lifetime),
      resource: request.query['resource'],
      token_type: 'Bearer'
    })
  }

  #find (clientId: string | undefined, resourceId: string | undefined, objectId: string | undefined): ManagedIdentity | undefined {
    const { identities } = this.#options
    if (clientId !== undefined) return identities.find((i) => !i.systemAssigned && sameId(i.clientId, clientId))
    if (resourceId !== undefined) return identities.find((i) => i.resourceId !== undefined && sameId(i.resourceId, resourceId))
    if (objectId !== undefined) return identities.find((i) => !i.systemAssigned && sameId(i.objectId, objectId))
    return identities.find((i) => i.systemAssigned === true)
  }

  #checkResource (resource: string | undefined): string | undefined {
    const audience = this.#options.audience ?? DEFAULT_AUDIENCE
    if (resource === undefined || resource === '') return 'The resource parameter is missing.'
    if (resource.replace(/\/$/, '') !== audience) return `The resource '${resource}' is not known.`
    return undefined
  }

  #issue (identity: ManagedIdentity): { accessToken: string, expiresOn: number, lifetime: number } {
    const lifetime = this.#options.lifetimeSeconds ?? DEFAULT_LIFETIME_SECONDS
    const accessToken = this.#options.entra.issueAccessToken({
      tenantId: identity.tenantId,
      clientId: identity.clientId,
      objectId: identity.objectId,
      roles: identity.roles,
      lifetimeSeconds: lifetime
    })
    this.issuedTokens.push(accessToken)
    const exp = decodeJwt(accessToken)?.payload['exp']
    return { accessToken, expiresOn: typeof exp === 'number' ? exp : 0, lifetime }
  }
}

/** Starts the stand-in on plain HTTP, as both endpoints are on the machine itself. */
export async function startManagedIdentityEndpoint (options: ManagedIdentityEndpointOptions): Promise<ManagedIdentityEndpoint> {
  const server = createServer()
  const host = options.host ?? '127.0.0.1'
  const port = await listen(server, host, 0)
  return new Endpoint(server, originFor('http', host, port), options)
}

function sameId (a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase()
}

function sameSecret (given: string, expected: string): boolean {
  const a = Buffer.from(given)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}
