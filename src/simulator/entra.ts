import { EventEmitter } from 'node:events'
import { createServer } from 'node:https'
import type { Server } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createHash, generateKeyPair, randomUUID, timingSafeEqual } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { promisify } from 'node:util'
import type { Clock } from '../common/clock.js'
import type { TestPki } from './pki.js'
import { CLIENT_ASSERTION_TYPE, checkClientAssertion, registerCertificate } from './client-assertion.js'
import type { FederatedCredential, RegisteredCertificate } from './client-assertion.js'
import { ConsentGaps, checksCredentialFirst, gapError } from './entra-consent.js'
import type { ConsentGap, UnconsentedApp } from './entra-consent.js'
import { entraErrorBody, entraErrors } from './entra-errors.js'
import type { EntraError } from './entra-errors.js'
import { createOpenIdConfiguration } from './entra-metadata.js'
import { closeServer, listen, originFor, readBody, sendJson } from './http.js'
import { decodeJwt, signJwt, verifyJwtSignature } from './jwt.js'
import { stableGuid } from './sample-data.js'

export type { FederatedCredential } from './client-assertion.js'
export type { ConsentGap, UnconsentedApp } from './entra-consent.js'
export const DEFAULT_AUDIENCE = 'https://api.securitycenter.microsoft.com'
export const DEFAULT_TOKEN_LIFETIME_SECONDS = 3599

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const DOMAIN = /^[a-z0-9-]+(\.[a-z0-9-]+)+$/i
const ROUTE = /^\/([^/]+)\/(v2\.0\/\.well-known\/openid-configuration|discovery\/v2\.0\/keys|oauth2\/v2\.0\/token)$/

export interface EntraApp {
  tenantId: string
  clientId: string
  secret?: string
  /** Epoch milliseconds (on the simulator's clock) from which the secret is refused as expired. */
  secretExpiresAt?: number
  /** The registered certificate: client assertions must be signed with its key. */
  certificatePem?: string
  federatedCredentials?: FederatedCredential[]
  roles: string[]
  /** The name AADSTS65001 quotes; the client id when absent. */
  displayName?: string
}

/**
 * `ok` answers as Entra ID does; the others break the token endpoint in one way each:
 * `hang` never answers, `error500` is an outage, `garbage` a 200 that is not JSON, `empty`
 * a 200 `{}`, `notJwt` an access token of `abc`, `expired` a JWT whose `exp` has passed
 * (while `expires_in` still claims a full lifetime).
 */
export type EntraMode = 'ok' | 'hang' | 'error500' | 'garbage' | 'empty' | 'notJwt' | 'expired'

export interface EntraSimulatorOptions {
  pki: Pick<TestPki, 'caCertPem' | 'serverCertPem' | 'serverKeyPem'>
  host?: string
  port?: number
  clock?: Pick<Clock, 'now'>
  apps: EntraApp[]
  tokenLifetimeSeconds?: number
  refreshInSeconds?: number | undefined
  audience?: string
  /** Tenants where an app of `apps` (registered in another tenant) is not consented to. */
  unconsented?: UnconsentedApp[]
}

export interface TokenRequestEvent {
  tenantId: string
  clientId: string | undefined
  grantType: string | undefined
  scope: string | undefined
  credential: 'secret' | 'assertion' | 'none'
}

export interface AccessTokenClaims {
  aud: string
  iss: string
  iat: number
  nbf: number
  exp: number
  tid: string
  appid: string
  azp: string
  appidacr: '1' | '2'
  oid: string
  sub: string
  idtyp: 'app'
  roles?: string[]
  uti: string
  ver: '1.0'
}

export interface IssueAccessTokenOptions {
  tenantId: string
  /** The `appid` of the token: the app's or the managed identity's client id. */
  clientId: string
  objectId?: string
  roles: readonly string[]
  lifetimeSeconds?: number
}

interface AppRecord {
  app: EntraApp
  certificate: RegisteredCertificate | undefined
}

class EntraSimulator extends EventEmitter<{ 'token-request': [TokenRequestEvent] }> {
  readonly url: string
  readonly caCertPem: string
  readonly issuedTokens: string[] = []
  #tokenRequests = 0
  #mode: EntraMode = 'ok'
  #apps: AppRecord[]
  #gaps: ConsentGaps
  #server: Server
  #clock: Pick<Clock, 'now'>
  #audience: string
  #lifetime: number
  #refreshIn: number | undefined
  #signingKey: KeyObject
  #verifyingKey: KeyObject
  #kid: string

  constructor (server: Server, url: string, options: EntraSimulatorOptions, keys: { privateKey: KeyObject, publicKey: KeyObject }) {
    super()
    this.#server = server
    this.url = url
    this.caCertPem = options.pki.caCertPem
    this.#clock = options.clock ?? { now: () => Date.now() }
    this.#audience = options.audience ?? DEFAULT_AUDIENCE
    this.#lifetime = options.tokenLifetimeSeconds ?? DEFAULT_TOKEN_LIFETIME_SECONDS
    this.#refreshIn = options.refreshInSeconds
    this.#apps = options.apps.map(toRecord)
    this.#gaps = new ConsentGaps(options.unconsented)
    this.#signingKey = keys.privateKey
    this.#verifyingKey = keys.publicKey
    this.#kid = createHash('sha1').update(keys.publicKey.export({ type: 'spki', format: 'der' })).digest('base64url')
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      try {
        this.#handle(req, res)
      } catch {
        if (!res.headersSent) this.#sendError(res, entraErrors.serviceError(), undefined)
      }
    })
  }

  /** Token POSTs received, whatever became of them. */
  get tokenRequests (): number { return this.#tokenRequests }
  get mode (): EntraMode { return this.#mode }

  setMode (mode: EntraMode): void { this.#mode = mode }

  addApp (app: EntraApp): void { this.#apps.push(toRecord(app)) }

  setSecret (clientId: string, secret: string | undefined, expiresAt?: number): void {
    for (const record of this.#recordsOf(clientId)) {
      record.app.secret = secret
      record.app.secretExpiresAt = expiresAt
    }
  }

  setCertificate (clientId: string, certificatePem: string | undefined): void {
    for (const record of this.#recordsOf(clientId)) {
      record.app.certificatePem = certificatePem
      record.certificate = certificatePem === undefined ? undefined : registerCertificate(certificatePem)
    }
  }

  /** From now on the tenant answers for the app as one whose admin has not consented (see ConsentGap). */
  withholdConsent (app: UnconsentedApp): void {
    this.#gaps.add(app)
    this.#apps = this.#apps.filter((r) => !(sameId(r.app.tenantId, app.tenantId) && sameId(r.app.clientId, app.clientId)))
  }

  /** What the admin-consent link does: the app, with its credentials and roles, now exists in the tenant. */
  grantConsent (tenantId: string, clientId: string): void {
    const [home] = this.#recordsOf(clientId)
    this.#gaps.remove(tenantId, clientId)
    if (home === undefined || this.#apps.some((r) => sameId(r.app.tenantId, tenantId) && sameId(r.app.clientId, clientId))) return
    this.#apps.push({ app: { ...home.app, tenantId }, certificate: home.certificate })
  }

  setFederatedCredentials (clientId: string, credentials: FederatedCredential[]): void {
    for (const record of this.#recordsOf(clientId)) record.app.federatedCredentials = credentials
  }

  setRoles (clientId: string, roles: string[]): void {
    for (const record of this.#recordsOf(clientId)) record.app.roles = roles
  }

  tokenEndpoint (tenantId: string): string { return `${this.url}/${tenantId}/oauth2/v2.0/token` }

  /**
   * An access token for the API, signed with this simulator's key, as Entra ID would issue it to
   * the given app or identity: for stand-ins of other token sources (managed identity endpoints).
   */
  issueAccessToken (options: IssueAccessTokenOptions): string {
    return this.#mint(options, '2', Math.floor(this.#clock.now() / 1000))
  }

  #mint (options: IssueAccessTokenOptions, appidacr: '1' | '2', iat: number): string {
    // Stands in for the object id of the app's service principal.
    const oid = options.objectId ?? stableGuid(`${options.tenantId}/${options.clientId}`)
    const claims: AccessTokenClaims = {
      aud: this.#audience,
      iss: `https://sts.windows.net/${options.tenantId}/`,
      iat,
      nbf: iat,
      exp: iat + (options.lifetimeSeconds ?? this.#lifetime),
      tid: options.tenantId,
      appid: options.clientId,
      azp: options.clientId,
      appidacr,
      oid,
      sub: oid,
      idtyp: 'app',
      ...(options.roles.length > 0 ? { roles: [...options.roles] } : {}),
      uti: randomUUID().replaceAll('-', '').slice(0, 22),
      ver: '1.0'
    }
    return signJwt({ ...claims }, this.#signingKey, { kid: this.#kid, x5t: this.#kid })
  }

  /** The claims of an access token this simulator issued that is valid now, or null. */
  verifyAccessToken (token: string): AccessTokenClaims | null {
    const jwt = decodeJwt(token)
    if (jwt === null || jwt.header['alg'] !== 'RS256' || jwt.header['kid'] !== this.#kid) return null
    if (!verifyJwtSignature(jwt, this.#verifyingKey)) return null
    const claims = jwt.payload as unknown as AccessTokenClaims
    const now = Math.floor(this.#clock.now() / 1000)
    if (claims.aud !== this.#audience || claims.iss !== `https://sts.windows.net/${claims.tid}/`) return null
    if (typeof claims.nbf !== 'number' || typeof claims.exp !== 'number' || claims.nbf > now || claims.exp <= now) return null
    return claims
  }

  async close (): Promise<void> { await closeServer(this.#server) }

  #handle (req: IncomingMessage, res: ServerResponse): void {
    const target = new URL(req.url ?? '/', this.url)
    const path = target.pathname
    const route = ROUTE.exec(path)
    const tenant = route?.[1]
    if (route === null || tenant === undefined) {
      sendJson(res, 404, { error: 'not_found', error_description: `No route for ${req.method ?? ''} ${path}.` })
      return
    }
    const correlationId = headerValue(req, 'client-request-id') ?? target.searchParams.get('client-request-id') ?? undefined
    const fail = (error: EntraError): void => this.#sendError(res, error, correlationId)
    if (route[2] === 'oauth2/v2.0/token') {
      if (req.method !== 'POST') {
        fail(entraErrors.postOnly(req.method ?? ''))
        return
      }
      this.#token(req, res, tenant, correlationId).catch(() => {
        if (!res.headersSent) fail(entraErrors.serviceError())
      })
      return
    }
    // Any well-formed tenant gets metadata, as msal-node's built-in metadata for the public cloud
    // does, so an unknown tenant fails at the token endpoint with AADSTS90002 as it would there.
    if (!isTenantShaped(tenant)) fail(entraErrors.tenantInvalid(tenant, 'invalid_tenant'))
    else if (route[2] === 'discovery/v2.0/keys') sendJson(res, 200, { keys: [this.#jwk()] })
    else sendJson(res, 200, createOpenIdConfiguration(this.url, tenant))
  }

  async #token (req: IncomingMessage, res: ServerResponse, tenant: string, correlationId: string | undefined): Promise<void> {
    const form = new URLSearchParams(await readBody(req))
    const clientId = form.get('client_id') ?? undefined
    this.#tokenRequests++
    this.emit('token-request', {
      tenantId: tenant,
      clientId,
      grantType: form.get('grant_type') ?? undefined,
      scope: form.get('scope') ?? undefined,
      credential: form.has('client_secret') ? 'secret' : form.has('client_assertion') ? 'assertion' : 'none'
    })
    const fail = (error: EntraError): void => this.#sendError(res, error, correlationId)
    switch (this.#mode) {
      case 'hang': return
      case 'error500': return fail(entraErrors.serviceError())
      case 'garbage':
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
        res.end('<html><body><h1>Sign in to continue</h1></body></html>')
        return
      case 'empty': return sendJson(res, 200, {})
      default: break
    }

    const tenantError = this.#checkTenant(tenant)
    if (tenantError !== null) return fail(tenantError)
    const grantType = form.get('grant_type')
    if (grantType === null) return fail(entraErrors.missingParameter('grant_type'))
    if (grantType !== 'client_credentials') return fail(entraErrors.unsupportedGrantType(grantType))
    if (clientId === undefined) return fail(entraErrors.missingParameter('client_id'))
    const gap = this.#gaps.find(tenant, clientId)
    if (gap !== undefined) return fail(this.#unconsented(gap, form, tenant, clientId))
    const record = this.#apps.find((r) => sameId(r.app.tenantId, tenant) && sameId(r.app.clientId, clientId))
    if (record === undefined) return fail(entraErrors.appNotFound(clientId, tenant))

    const authenticated = this.#authenticate(form, record, tenant)
    if ('code' in authenticated) return fail(authenticated)

    const scope = form.get('scope')
    if (scope === null) return fail(entraErrors.missingParameter('scope'))
    if (!scope.endsWith('/.default') || scope.includes(' ')) return fail(entraErrors.invalidScope(scope))
    const resource = scope.slice(0, -'/.default'.length)
    if (resource.replace(/\/$/, '') !== this.#audience) return fail(entraErrors.resourceNotFound(resource, tenant))

    const accessToken = this.#mode === 'notJwt' ? 'abc' : this.#issue(record.app, authenticated.appidacr)
    this.issuedTokens.push(accessToken)
    sendJson(res, 200, {
      token_type: 'Bearer',
      expires_in: this.#lifetime,
      ext_expires_in: this.#lifetime,
      ...(this.#refreshIn === undefined ? {} : { refresh_in: this.#refreshIn }),
      access_token: accessToken
    }, { 'cache-control': 'no-store, no-cache', pragma: 'no-cache', 'x-ms-request-id': randomUUID() })
  }

  #unconsented (gap: ConsentGap, form: URLSearchParams, tenant: string, clientId: string): EntraError {
    const home = this.#apps.find((r) => sameId(r.app.clientId, clientId))
    if (home !== undefined && checksCredentialFirst(gap)) {
      const authenticated = this.#authenticate(form, home, tenant)
      if ('code' in authenticated) return authenticated
    }
    const resource = (form.get('scope') ?? '').replace(/\/\.default$/, '')
    return gapError(gap, { tenant, clientId, resource, appName: home?.app.displayName ?? clientId })
  }

  #authenticate (form: URLSearchParams, record: AppRecord, tenant: string): EntraError | { appidacr: '1' | '2' } {
    const { app } = record
    const secret = form.get('client_secret')
    if (secret !== null) {
      if (app.secret === undefined || !sameSecret(secret, app.secret)) return entraErrors.invalidSecret(app.clientId)
      if (app.secretExpiresAt !== undefined && this.#clock.now() >= app.secretExpiresAt) return entraErrors.secretExpired(app.clientId)
      return { appidacr: '1' }
    }
    const assertion = form.get('client_assertion')
    if (assertion === null) return entraErrors.missingCredential()
    if (form.get('client_assertion_type') !== CLIENT_ASSERTION_TYPE) return entraErrors.missingParameter('client_assertion_type')
    const error = checkClientAssertion(assertion, {
      clientId: app.clientId,
      tokenEndpoint: this.tokenEndpoint(tenant),
      certificate: record.certificate,
      federated: app.federatedCredentials ?? [],
      nowMs: this.#clock.now(),
      wallClockMs: Date.now()
    })
    return error ?? { appidacr: '2' }
  }

  #issue (app: EntraApp, appidacr: '1' | '2'): string {
    let iat = Math.floor(this.#clock.now() / 1000)
    if (this.#mode === 'expired') iat -= this.#lifetime + 300
    return this.#mint(app, appidacr, iat)
  }

  #checkTenant (tenant: string): EntraError | null {
    if (this.#apps.some((r) => sameId(r.app.tenantId, tenant)) || this.#gaps.hasTenant(tenant)) return null
    return isTenantShaped(tenant) ? entraErrors.tenantNotFound(tenant) : entraErrors.tenantInvalid(tenant)
  }

  #sendError (res: ServerResponse, error: EntraError, correlationId: string | undefined): void {
    const body = entraErrorBody(error, { nowMs: this.#clock.now(), correlationId })
    sendJson(res, error.status, body, { 'cache-control': 'no-store, no-cache', 'x-ms-request-id': String(body['trace_id']) })
  }

  #recordsOf (clientId: string): AppRecord[] {
    const records = this.#apps.filter((r) => sameId(r.app.clientId, clientId))
    if (records.length === 0) throw new RangeError(`The simulator has no app ${clientId}.`)
    return records
  }

  #jwk (): Record<string, unknown> {
    return { ...this.#verifyingKey.export({ format: 'jwk' }), kty: 'RSA', use: 'sig', kid: this.#kid, x5t: this.#kid }
  }
}

export type { EntraSimulator }

/** Starts the Entra ID token endpoint over HTTPS with the PKI's loopback certificate. */
export async function startEntraSimulator (options: EntraSimulatorOptions): Promise<EntraSimulator> {
  const keys = await promisify(generateKeyPair)('rsa', { modulusLength: 2048 })
  const server = createServer({ key: options.pki.serverKeyPem, cert: options.pki.serverCertPem })
  const host = options.host ?? '127.0.0.1'
  const port = await listen(server, host, options.port ?? 0)
  return new EntraSimulator(server, originFor('https', host, port), options, keys)
}

function toRecord (app: EntraApp): AppRecord {
  const copy = { ...app, roles: [...app.roles] }
  return { app: copy, certificate: copy.certificatePem === undefined ? undefined : registerCertificate(copy.certificatePem) }
}

function isTenantShaped (tenant: string): boolean {
  return GUID.test(tenant) || DOMAIN.test(tenant)
}

function sameId (a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase()
}

function sameSecret (given: string, expected: string): boolean {
  const digest = (value: string): Buffer => createHash('sha256').update(value).digest()
  return timingSafeEqual(digest(given), digest(expected))
}

function headerValue (req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name]
  return Array.isArray(value) ? value[0] : value
}
