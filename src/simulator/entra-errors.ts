import { randomUUID } from 'node:crypto'

export interface EntraError {
  status: number
  error: string
  code: number
  message: string
}

const CERT_DOCS = 'Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .'

/** The AADSTS errors the simulator answers with, worded as Entra ID words them. */
export const entraErrors = {
  tenantNotFound: (tenant: string): EntraError => ({
    status: 400,
    error: 'invalid_request',
    code: 90002,
    message: `Tenant '${tenant}' not found. Check to make sure you have the correct tenant ID and are signing in to the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.`
  }),
  tenantInvalid: (tenant: string, error = 'invalid_request'): EntraError => ({
    status: 400,
    error,
    code: 900023,
    message: `Specified tenant identifier '${tenant}' is neither a valid DNS name, nor a valid external domain.`
  }),
  missingParameter: (name: string): EntraError => ({
    status: 400,
    error: 'invalid_request',
    code: 900144,
    message: `The request body must contain the following parameter: '${name}'.`
  }),
  postOnly: (method: string): EntraError => ({
    status: 400,
    error: 'invalid_request',
    code: 900561,
    message: `The endpoint only accepts POST, OPTIONS requests. Received a ${method} request.`
  }),
  unsupportedGrantType: (grantType: string): EntraError => ({
    status: 400,
    error: 'unsupported_grant_type',
    code: 70003,
    message: `The app requested an unsupported grant type '${grantType}'.`
  }),
  appNotFound: (clientId: string, tenant: string): EntraError => ({
    status: 400,
    error: 'unauthorized_client',
    code: 700016,
    message: `Application with identifier '${clientId}' was not found in the directory '${tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`
  }),
  servicePrincipalMissing: (clientId: string, tenant: string): EntraError => ({
    status: 401,
    error: 'invalid_client',
    code: 7000229,
    message: `The client application ${clientId} is missing service principal in the tenant ${tenant}. See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119`
  }),
  consentMissing: (clientId: string, appName: string): EntraError => ({
    status: 400,
    error: 'invalid_grant',
    code: 65001,
    message: `The user or administrator has not consented to use the application with ID '${clientId}' named '${appName}'. Send an interactive authorization request for this user and resource.`
  }),
  serviceNotProvisioned: (serviceAppId: string, serviceName: string, tenant: string): EntraError => ({
    status: 401,
    error: 'invalid_client',
    code: 650052,
    message: `The app is trying to access a service '${serviceAppId}'(${serviceName}) that your organization '${tenant}' lacks a service principal for. Contact your IT Admin to review the configuration of your service subscriptions or consent to the application in order to create the required service principal.`
  }),
  missingCredential: (): EntraError => ({
    status: 401,
    error: 'invalid_client',
    code: 7000218,
    message: 'The request body must contain the following parameter: \'client_assertion\' or \'client_secret\'.'
  }),
  invalidSecret: (clientId: string): EntraError => ({
    status: 401,
    error: 'invalid_client',
    code: 7000215,
    message: `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${clientId}'.`
  }),
  secretExpired: (clientId: string): EntraError => ({
    status: 401,
    error: 'invalid_client',
    code: 7000222,
    message: `The provided client secret keys for app '${clientId}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.`
  }),
  invalidAssertion: (reason: string): EntraError => ({
    status: 401,
    error: 'invalid_client',
    code: 700027,
    message: `Client assertion failed signature validation. [Reason - ${reason}] ${CERT_DOCS}`
  }),
  assertionAppMismatch: (): EntraError => ({
    status: 401,
    error: 'invalid_client',
    code: 700021,
    message: `Client assertion application identifier doesn't match 'client_id' parameter. ${CERT_DOCS}`
  }),
  assertionOutOfTime: (nowSeconds: number, nbf: unknown, exp: unknown): EntraError => ({
    status: 401,
    error: 'invalid_client',
    code: 700024,
    message: `Client assertion is not within its valid time range. Current time: ${isoSeconds(nowSeconds)}, assertion valid from ${isoSeconds(nbf)}, expiry time of assertion ${isoSeconds(exp)}. ${CERT_DOCS}`
  }),
  noFederatedMatch: (issuer: unknown, subject: unknown, audience: unknown): EntraError => ({
    status: 400,
    error: 'invalid_request',
    code: 70021,
    message: `No matching federated identity record found for presented assertion. Assertion Issuer: '${String(issuer)}'. Assertion Subject: '${String(subject)}'. Assertion Audience: '${String(audience)}'. https://learn.microsoft.com/entra/workload-id/workload-identity-federation`
  }),
  invalidScope: (scope: string): EntraError => ({
    status: 400,
    error: 'invalid_scope',
    code: 1002012,
    message: `The provided value for scope ${scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`
  }),
  resourceNotFound: (resource: string, tenant: string): EntraError => ({
    status: 400,
    error: 'invalid_resource',
    code: 500011,
    message: `The resource principal named ${resource} was not found in the tenant named ${tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.`
  }),
  serviceError: (): EntraError => ({
    status: 500,
    error: 'temporarily_unavailable',
    code: 50000,
    message: 'There was an error issuing a token or an issue with our sign-in service.'
  })
} as const

export interface EntraErrorContext {
  nowMs: number
  correlationId?: string | undefined
}

/** The JSON body Entra ID sends with an error, trace and correlation ids included. */
export function entraErrorBody (error: EntraError, context: EntraErrorContext): Record<string, unknown> {
  const timestamp = new Date(context.nowMs).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z')
  const traceId = randomUUID()
  const correlationId = context.correlationId ?? randomUUID()
  return {
    error: error.error,
    error_description: `AADSTS${error.code}: ${error.message} Trace ID: ${traceId} Correlation ID: ${correlationId} Timestamp: ${timestamp}`,
    error_codes: [error.code],
    timestamp,
    trace_id: traceId,
    correlation_id: correlationId,
    error_uri: `https://login.microsoftonline.com/error?code=${error.code}`
  }
}

function isoSeconds (value: unknown): string {
  return typeof value === 'number' && Number.isFinite(value) ? new Date(value * 1000).toISOString() : 'unknown'
}
