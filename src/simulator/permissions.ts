/**
 * The application permissions each simulated route requires, any one of which allows the call:
 * what the API's reference pages list, and what the broker's catalogue
 * (src/defender/endpoints.ts) expects; test/simulator-routes.test.ts holds the two together.
 */

const ALERT_READ = ['Alert.Read.All', 'Alert.ReadWrite.All']
const ALERT_WRITE = ['Alert.ReadWrite.All']
const MACHINE_READ = ['Machine.Read.All', 'Machine.ReadWrite.All']
const INDICATORS = ['Ti.ReadWrite', 'Ti.ReadWrite.All']
const VULNERABILITY = ['Vulnerability.Read.All']
const SOFTWARE = ['Software.Read.All']
const MACHINE_ACTIONS = [
  'Machine.CollectForensics', 'Machine.Isolate', 'Machine.RestrictExecution', 'Machine.Scan',
  'Machine.Offboard', 'Machine.StopAndQuarantine', 'Machine.LiveResponse'
]

export const ROUTE_PERMISSIONS: Readonly<Record<string, readonly string[]>> = Object.freeze({
  'GET /api/alerts': ALERT_READ,
  'GET /api/alerts/{id}': ALERT_READ,
  'PATCH /api/alerts/{id}': ALERT_WRITE,
  'GET /api/alerts/{id}/machine': MACHINE_READ,
  'GET /api/alerts/{id}/files': ['File.Read.All'],
  'GET /api/alerts/{id}/ips': ['Ip.Read.All'],
  'GET /api/alerts/{id}/domains': ['Url.Read.All'],
  'GET /api/alerts/{id}/user': ['User.Read.All'],

  'GET /api/machines': MACHINE_READ,
  'GET /api/machines/{id}': MACHINE_READ,
  'GET /api/machines/{id}/alerts': ALERT_READ,
  'GET /api/machines/{id}/software': SOFTWARE,
  'GET /api/machines/{id}/vulnerabilities': VULNERABILITY,
  'GET /api/machines/{id}/logonusers': ['User.Read.All'],
  'GET /api/machines/findbyip(*)': MACHINE_READ,
  'GET /api/machines/findbytag': MACHINE_READ,
  'GET /api/machines/softwarevulnerabilitiesbymachine': VULNERABILITY,
  'GET /api/machines/softwareinventorybymachine': SOFTWARE,

  'POST /api/machines/{id}/isolate': ['Machine.Isolate'],
  'POST /api/machines/{id}/unisolate': ['Machine.Isolate'],
  'POST /api/machines/{id}/restrictcodeexecution': ['Machine.RestrictExecution'],
  'POST /api/machines/{id}/unrestrictcodeexecution': ['Machine.RestrictExecution'],
  'POST /api/machines/{id}/runantivirusscan': ['Machine.Scan'],
  'POST /api/machines/{id}/collectinvestigationpackage': ['Machine.CollectForensics'],
  'POST /api/machines/{id}/offboard': ['Machine.Offboard'],
  'POST /api/machines/{id}/stopandquarantinefile': ['Machine.StopAndQuarantine', ...MACHINE_READ],
  'GET /api/machineactions': MACHINE_READ,
  'GET /api/machineactions/{id}': MACHINE_READ,
  'POST /api/machineactions/{id}/cancel': MACHINE_ACTIONS,

  'POST /api/advancedqueries/run': ['AdvancedQuery.Read.All'],

  'GET /api/indicators': INDICATORS,
  'POST /api/indicators': INDICATORS,
  'DELETE /api/indicators/{id}': INDICATORS,

  'GET /api/investigations': ALERT_READ,
  'GET /api/investigations/{id}': ALERT_READ,

  'GET /api/files/{id}': ['File.Read.All'],
  'GET /api/files/{id}/alerts': ALERT_READ,
  'GET /api/files/{id}/machines': MACHINE_READ,
  'GET /api/files/{id}/stats': ['File.Read.All'],
  'GET /api/ips/{id}/alerts': ALERT_READ,
  'GET /api/ips/{id}/stats': ['Ip.Read.All'],
  'GET /api/users/{id}/alerts': ALERT_READ,
  'GET /api/users/{id}/machines': MACHINE_READ,

  'GET /api/vulnerabilities': VULNERABILITY,
  'GET /api/vulnerabilities/{id}': VULNERABILITY,
  'GET /api/vulnerabilities/{id}/machinereferences': VULNERABILITY,
  'GET /api/vulnerabilities/machinesvulnerabilities': VULNERABILITY,
  'GET /api/software': SOFTWARE,
  'GET /api/software/{id}': SOFTWARE,
  'GET /api/software/{id}/machinereferences': SOFTWARE,
  'GET /api/software/{id}/vulnerabilities': VULNERABILITY
})

/** The 403 message the API gives a token holding none of `permissions`. */
export function forbiddenMessage (permissions: readonly string[]): string {
  return `The application does not have any of the required application permissions (${permissions.join(', ')}) to access the resource.`
}

/** Whether `roles` (a token's roles claim) hold one of `permissions`. */
export function allows (permissions: readonly string[], roles: readonly string[]): boolean {
  return permissions.some((permission) => roles.includes(permission))
}
