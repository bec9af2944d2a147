import { BrokerMissingPermission } from '../common/errors.js'
import { compareSpecificity, compilePattern, matchesPattern, segmentsOf, type PathPattern } from '../common/path-pattern.js'

/**
 * The Defender for Endpoint API's endpoints, from Microsoft's API reference
 * (learn.microsoft.com/defender-endpoint/api/<page>): the application permissions each page's
 * Permissions table lists, and every rate limit its Limitations section gives that differs from
 * the API's general one. Where a page states only one of the two limits, the other stays at the
 * general value, which still applies.
 */

export interface DefenderEndpoint {
  method: 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE'
  /** Lower-case path pattern (`common/path-pattern.ts`): `*` one segment, `**` the rest, `name(*)` an OData function call with any arguments */
  path: string
  /** Application permissions, any one of which allows the call (as the docs' Permissions table lists them), the one to grant first. */
  permissions: readonly string[]
  /** Plain words for what the call does, e.g. 'isolate machines'. */
  action: string
  /** The documented limit when it differs from the API's general 100 a minute / 1500 an hour. */
  rateLimit?: { perMinute: number, perHour: number }
  /**
   * Whether the call may change something in the tenant (an action on a machine, an indicator,
   * an alert's status, a tag): what the audit records. A GET never does; any other method does
   * unless its entry says `changesState: false` (a POST that only reads, such as a hunting query).
   */
  changesState: boolean
}

/** An entry as the table below writes it: `changesState` only where a POST, PATCH or DELETE only reads. */
type Entry = Omit<DefenderEndpoint, 'changesState'> & { changesState?: false }

export const GENERAL_RATE_LIMIT: Readonly<{ perMinute: number, perHour: number }> = Object.freeze({ perMinute: 100, perHour: 1500 })

/** The WindowsDefenderATP application permissions, in plain words. */
export const PERMISSION_WORDS: Readonly<Record<string, string>> = Object.freeze({
  'Alert.Read.All': 'read alerts',
  'Alert.ReadWrite.All': 'read and update alerts',
  'Machine.Read.All': 'read machines',
  'Machine.ReadWrite.All': 'read and update machines (tags, device value)',
  'Machine.Isolate': 'isolate and release machines',
  'Machine.RestrictExecution': 'restrict code execution on machines',
  'Machine.Scan': 'run antivirus scans',
  'Machine.CollectForensics': 'collect investigation packages',
  'Machine.LiveResponse': 'run live response',
  'Machine.StopAndQuarantine': 'stop and quarantine files',
  'Machine.Offboard': 'offboard machines',
  'AdvancedQuery.Read.All': 'run advanced hunting queries',
  'Ti.ReadWrite': 'manage its own indicators',
  'Ti.ReadWrite.All': 'manage all indicators',
  'Ti.Read.All': 'read indicators',
  'File.Read.All': 'read file information',
  'Ip.Read.All': 'read IP address information',
  'Url.Read.All': 'read URL and domain information',
  'User.Read.All': 'read user information',
  'Vulnerability.Read.All': 'read vulnerabilities',
  'Software.Read.All': 'read software inventory',
  'SecurityRecommendation.Read.All': 'read security recommendations',
  'Score.Read.All': 'read exposure and secure scores',
  'SecurityConfiguration.Read.All': 'read security configuration',
  'RemediationTasks.Read.All': 'read remediation tasks',
  'SecurityBaselinesAssessment.Read.All': 'read security baselines assessments',
  'Library.Manage': 'manage the live response library'
})

const ALERT_READ = ['Alert.Read.All', 'Alert.ReadWrite.All']
const ALERT_WRITE = ['Alert.ReadWrite.All']
const MACHINE_READ = ['Machine.Read.All', 'Machine.ReadWrite.All']
const MACHINE_WRITE = ['Machine.ReadWrite.All']
const INDICATORS = ['Ti.ReadWrite', 'Ti.ReadWrite.All']
const MACHINE_ACTIONS = [
  'Machine.CollectForensics', 'Machine.Isolate', 'Machine.RestrictExecution', 'Machine.Scan',
  'Machine.Offboard', 'Machine.StopAndQuarantine', 'Machine.LiveResponse'
]

/** The documented limits of the per-device export APIs: the JSON pages, and the "via files" download links. */
const EXPORT_PAGES = { perMinute: 30, perHour: 1000 }
const EXPORT_FILES = { perMinute: 5, perHour: 20 }

const TABLE: Entry[] = [
  // learn: get-alerts, get-alert-info-by-id
  { method: 'GET', path: '/api/alerts', permissions: ALERT_READ, action: 'list alerts' },
  { method: 'GET', path: '/api/alerts/*', permissions: ALERT_READ, action: 'read an alert' },
  // learn: update-alert (the page misspells the permission as Alerts.ReadWrite.All)
  { method: 'PATCH', path: '/api/alerts/*', permissions: ALERT_WRITE, action: 'update an alert' },
  // learn: batch-update-alerts
  { method: 'POST', path: '/api/alerts/batchupdate', permissions: ALERT_WRITE, action: 'update alerts in a batch', rateLimit: { perMinute: 10, perHour: 500 } },
  // learn: create-alert-by-reference (15 a minute; no hourly figure)
  { method: 'POST', path: '/api/alerts/createalertbyreference', permissions: ALERT_WRITE, action: 'create an alert from an event', rateLimit: { perMinute: 15, perHour: 1500 } },
  // learn: get-alert-related-files-info, -ip-info, -domain-info, -machine-info, -user-info
  { method: 'GET', path: '/api/alerts/*/files', permissions: ['File.Read.All'], action: "read an alert's files" },
  { method: 'GET', path: '/api/alerts/*/ips', permissions: ['Ip.Read.All'], action: "read an alert's IP addresses" },
  { method: 'GET', path: '/api/alerts/*/domains', permissions: ['Url.Read.All'], action: "read an alert's domains" },
  { method: 'GET', path: '/api/alerts/*/machine', permissions: MACHINE_READ, action: "read an alert's machine" },
  { method: 'GET', path: '/api/alerts/*/user', permissions: ['User.Read.All'], action: "read an alert's user" },

  // learn: get-machines, get-machine-by-id, update-machine-method
  { method: 'GET', path: '/api/machines', permissions: MACHINE_READ, action: 'list machines' },
  { method: 'GET', path: '/api/machines/*', permissions: MACHINE_READ, action: 'read a machine' },
  { method: 'PATCH', path: '/api/machines/*', permissions: MACHINE_WRITE, action: "update a machine's tags and device value" },
  // learn: get-machine-log-on-users, get-machine-related-alerts
  { method: 'GET', path: '/api/machines/*/logonusers', permissions: ['User.Read.All'], action: "read a machine's logged-on users" },
  { method: 'GET', path: '/api/machines/*/alerts', permissions: ALERT_READ, action: "read a machine's alerts" },
  // learn: get-installed-software, get-discovered-vulnerabilities, get-security-recommendations, get-missing-kbs-machine
  { method: 'GET', path: '/api/machines/*/software', permissions: ['Software.Read.All'], action: "read a machine's installed software" },
  { method: 'GET', path: '/api/machines/*/vulnerabilities', permissions: ['Vulnerability.Read.All'], action: "read a machine's vulnerabilities", rateLimit: { perMinute: 50, perHour: 1500 } },
  { method: 'GET', path: '/api/machines/*/recommendations', permissions: ['SecurityRecommendation.Read.All'], action: "read a machine's security recommendations" },
  { method: 'GET', path: '/api/machines/*/getmissingkbs', permissions: ['Software.Read.All'], action: "read a machine's missing updates" },
  // learn: add-or-remove-machine-tags, add-or-remove-multiple-machine-tags
  { method: 'POST', path: '/api/machines/*/tags', permissions: MACHINE_WRITE, action: "add or remove a machine's tag" },
  { method: 'POST', path: '/api/machines/addorremovetagformultiplemachines', permissions: MACHINE_WRITE, action: 'add or remove a tag on many machines' },
  // learn: find-machines-by-ip, find-machine-info-by-ip, find-machines-by-tag
  { method: 'GET', path: '/api/machines/findbyip(*)', permissions: MACHINE_READ, action: 'find machines by internal IP' },
  { method: 'GET', path: '/api/machines/find(*)', permissions: MACHINE_READ, action: 'find machines by internal IP' },
  { method: 'GET', path: '/api/machines/findbytag', permissions: MACHINE_READ, action: 'find machines by tag' },
  // learn: set-device-value
  { method: 'POST', path: '/api/machines/*/setdevicevalue', permissions: MACHINE_WRITE, action: "set a machine's device value" },

  // The per-device exports are literal segments under /api/machines/, where GET /api/machines/*
  // (a machine by id) would match too: the literal entries win (see lookUp). Each has its own limit.
  // learn: get-assessment-software-vulnerabilities (the JSON pages, the files, the delta pages)
  { method: 'GET', path: '/api/machines/softwarevulnerabilitiesbymachine', permissions: ['Vulnerability.Read.All'], action: 'export software vulnerabilities by device', rateLimit: EXPORT_PAGES },
  { method: 'GET', path: '/api/machines/softwarevulnerabilitiesexport', permissions: ['Vulnerability.Read.All'], action: 'export software vulnerabilities by device to files', rateLimit: EXPORT_FILES },
  { method: 'GET', path: '/api/machines/softwarevulnerabilitychangesbymachine', permissions: ['Vulnerability.Read.All'], action: 'export software vulnerability changes by device', rateLimit: EXPORT_PAGES },
  // learn: get-assessment-software-inventory
  { method: 'GET', path: '/api/machines/softwareinventorybymachine', permissions: ['Software.Read.All'], action: 'export software inventory by device', rateLimit: EXPORT_PAGES },
  { method: 'GET', path: '/api/machines/softwareinventoryexport', permissions: ['Software.Read.All'], action: 'export software inventory by device to files', rateLimit: EXPORT_FILES },
  // learn: get-assessment-non-cpe-software-inventory
  { method: 'GET', path: '/api/machines/softwareinventorynoproductcodebymachine', permissions: ['Software.Read.All'], action: 'export software without a CPE by device', rateLimit: EXPORT_PAGES },
  { method: 'GET', path: '/api/machines/softwareinventorynoncpeexport', permissions: ['Software.Read.All'], action: 'export software without a CPE by device to files', rateLimit: EXPORT_FILES },
  // learn: get-assessment-secure-config (the page lists Vulnerability.Read.All; SecurityConfiguration.Read.All,
  // "read all security configurations", is allowed too rather than refused on the broker's side)
  { method: 'GET', path: '/api/machines/secureconfigurationsassessmentbymachine', permissions: ['Vulnerability.Read.All', 'SecurityConfiguration.Read.All'], action: 'export secure configuration assessments by device', rateLimit: EXPORT_PAGES },
  { method: 'GET', path: '/api/machines/secureconfigurationsassessmentexport', permissions: ['Vulnerability.Read.All', 'SecurityConfiguration.Read.All'], action: 'export secure configuration assessments by device to files', rateLimit: EXPORT_FILES },
  // learn: export-security-baseline-assessment (the files' section names no permission: the pages' one)
  { method: 'GET', path: '/api/machines/baselinecomplianceassessmentbymachine', permissions: ['SecurityBaselinesAssessment.Read.All'], action: 'export security baseline assessments by device', rateLimit: EXPORT_PAGES },
  { method: 'GET', path: '/api/machines/baselinecomplianceassessmentexport', permissions: ['SecurityBaselinesAssessment.Read.All'], action: 'export security baseline assessments by device to files', rateLimit: EXPORT_FILES },
  // learn: get-assessment-browser-extensions
  { method: 'GET', path: '/api/machines/browserextensionsinventorybymachine', permissions: ['Software.Read.All'], action: 'export browser extensions by device', rateLimit: EXPORT_PAGES },
  { method: 'GET', path: '/api/machines/browserextensionsinventoryexport', permissions: ['Software.Read.All'], action: 'export browser extensions by device to files', rateLimit: EXPORT_FILES },
  // learn: export-certificate-inventory-assessment
  { method: 'GET', path: '/api/machines/certificateassessmentbymachine', permissions: ['Vulnerability.Read.All'], action: 'export certificates by device', rateLimit: EXPORT_PAGES },
  { method: 'GET', path: '/api/machines/certificateassessmentexport', permissions: ['Vulnerability.Read.All'], action: 'export certificates by device to files', rateLimit: EXPORT_FILES },
  // learn: export-firmware-hardware-assessment
  { method: 'GET', path: '/api/machines/hardwarefirmwareinventorybymachine', permissions: ['Software.Read.All'], action: 'export hardware and firmware by device', rateLimit: EXPORT_PAGES },
  { method: 'GET', path: '/api/machines/hardwarefirmwareinventoryexport', permissions: ['Software.Read.All'], action: 'export hardware and firmware by device to files', rateLimit: EXPORT_FILES },
  // learn: get-assessment-information-gathering (5 a minute, 20 an hour; the device health page
  // shows the same URL with 30 and 1,000: the stricter figure of the page about it is kept)
  { method: 'GET', path: '/api/machines/infogatheringexport', permissions: ['Vulnerability.Read.All'], action: 'export information gathering by device to files', rateLimit: EXPORT_FILES },

  // learn: isolate-machine, unisolate-machine
  { method: 'POST', path: '/api/machines/*/isolate', permissions: ['Machine.Isolate'], action: 'isolate machines' },
  { method: 'POST', path: '/api/machines/*/unisolate', permissions: ['Machine.Isolate'], action: 'release machines from isolation' },
  // learn: restrict-code-execution, unrestrict-code-execution
  { method: 'POST', path: '/api/machines/*/restrictcodeexecution', permissions: ['Machine.RestrictExecution'], action: 'restrict code execution on machines' },
  { method: 'POST', path: '/api/machines/*/unrestrictcodeexecution', permissions: ['Machine.RestrictExecution'], action: 'lift code execution restrictions' },
  // learn: run-av-scan, collect-investigation-package, offboard-machine-api
  { method: 'POST', path: '/api/machines/*/runantivirusscan', permissions: ['Machine.Scan'], action: 'run antivirus scans' },
  { method: 'POST', path: '/api/machines/*/collectinvestigationpackage', permissions: ['Machine.CollectForensics'], action: 'collect investigation packages' },
  { method: 'POST', path: '/api/machines/*/offboard', permissions: ['Machine.Offboard'], action: 'offboard machines' },
  // learn: stop-and-quarantine-file (the page also lists the two machine read permissions)
  { method: 'POST', path: '/api/machines/*/stopandquarantinefile', permissions: ['Machine.StopAndQuarantine', ...MACHINE_READ], action: 'stop and quarantine files' },
  // learn: run-live-response (10 a minute; no hourly figure)
  { method: 'POST', path: '/api/machines/*/runliveresponse', permissions: ['Machine.LiveResponse'], action: 'run live response', rateLimit: { perMinute: 10, perHour: 1500 } },
  // learn: initiate-autoir-investigation (50 an hour; no per-minute figure)
  { method: 'POST', path: '/api/machines/*/startinvestigation', permissions: ALERT_WRITE, action: 'start automated investigations', rateLimit: { perMinute: 100, perHour: 50 } },
  // learn: get-machineactions-collection, get-machineaction-object
  { method: 'GET', path: '/api/machineactions', permissions: MACHINE_READ, action: 'list machine actions' },
  { method: 'GET', path: '/api/machineactions/*', permissions: MACHINE_READ, action: 'read a machine action' },
  // learn: get-package-sas-uri
  { method: 'GET', path: '/api/machineactions/*/getpackageuri', permissions: MACHINE_READ, action: 'download investigation packages', rateLimit: { perMinute: 2, perHour: 120 } },
  // learn: get-live-response-result
  { method: 'GET', path: '/api/machineactions/*/getliveresponseresultdownloadlink(*)', permissions: MACHINE_READ, action: 'download live response results' },
  // learn: cancel-machine-action
  { method: 'POST', path: '/api/machineactions/*/cancel', permissions: MACHINE_ACTIONS, action: 'cancel machine actions' },

  // learn: run-advanced-query-api (a POST that only reads)
  { method: 'POST', path: '/api/advancedqueries/run', permissions: ['AdvancedQuery.Read.All'], action: 'run advanced hunting queries', rateLimit: { perMinute: 45, perHour: 1500 }, changesState: false },

  // learn: get-ti-indicators-collection, post-ti-indicator, delete-ti-indicator-by-id
  { method: 'GET', path: '/api/indicators', permissions: INDICATORS, action: 'list indicators' },
  { method: 'POST', path: '/api/indicators', permissions: INDICATORS, action: 'submit or update indicators' },
  { method: 'DELETE', path: '/api/indicators/*', permissions: INDICATORS, action: 'delete indicators' },
  // learn: import-ti-indicators (30 a minute; no hourly figure)
  { method: 'POST', path: '/api/indicators/import', permissions: INDICATORS, action: 'import indicators in a batch', rateLimit: { perMinute: 30, perHour: 1500 } },
  // learn: batch-delete-ti-indicators
  { method: 'POST', path: '/api/indicators/batchdelete', permissions: INDICATORS, action: 'delete indicators in a batch', rateLimit: { perMinute: 30, perHour: 1500 } },

  // learn: get-file-information, get-file-related-alerts, get-file-related-machines, get-file-statistics
  { method: 'GET', path: '/api/files/*', permissions: ['File.Read.All'], action: 'read file information' },
  { method: 'GET', path: '/api/files/*/alerts', permissions: ALERT_READ, action: "read a file's alerts" },
  { method: 'GET', path: '/api/files/*/machines', permissions: MACHINE_READ, action: "read a file's machines" },
  { method: 'GET', path: '/api/files/*/stats', permissions: ['File.Read.All'], action: "read a file's statistics" },

  // learn: get-ip-related-alerts, get-ip-statistics
  { method: 'GET', path: '/api/ips/*/alerts', permissions: ALERT_READ, action: "read an IP address's alerts" },
  { method: 'GET', path: '/api/ips/*/stats', permissions: ['Ip.Read.All'], action: "read an IP address's statistics" },

  // learn: get-domain-related-alerts, get-domain-related-machines, get-domain-statistics
  { method: 'GET', path: '/api/domains/*/alerts', permissions: ALERT_READ, action: "read a domain's alerts" },
  { method: 'GET', path: '/api/domains/*/machines', permissions: MACHINE_READ, action: "read a domain's machines" },
  { method: 'GET', path: '/api/domains/*/stats', permissions: ['Url.Read.All'], action: "read a domain's statistics" },

  // learn: get-user-related-alerts, get-user-related-machines
  { method: 'GET', path: '/api/users/*/alerts', permissions: ALERT_READ, action: "read a user's alerts" },
  { method: 'GET', path: '/api/users/*/machines', permissions: MACHINE_READ, action: "read a user's machines" },

  // learn: get-all-vulnerabilities, get-vulnerability-by-id, get-machines-by-vulnerability, get-all-vulnerabilities-by-machines
  { method: 'GET', path: '/api/vulnerabilities', permissions: ['Vulnerability.Read.All'], action: 'list vulnerabilities' },
  { method: 'GET', path: '/api/vulnerabilities/*', permissions: ['Vulnerability.Read.All'], action: 'read a vulnerability' },
  { method: 'GET', path: '/api/vulnerabilities/*/machinereferences', permissions: ['Vulnerability.Read.All'], action: "read a vulnerability's machines" },
  { method: 'GET', path: '/api/vulnerabilities/machinesvulnerabilities', permissions: ['Vulnerability.Read.All'], action: 'list vulnerabilities by machine and software' },

  // learn: get-software, get-software-by-id, get-software-ver-distribution, get-machines-by-software, get-vuln-by-software, get-missing-kbs-software
  { method: 'GET', path: '/api/software', permissions: ['Software.Read.All'], action: 'list software' },
  { method: 'GET', path: '/api/software/*', permissions: ['Software.Read.All'], action: 'read software' },
  { method: 'GET', path: '/api/software/*/distributions', permissions: ['Software.Read.All'], action: "read software's version distribution" },
  { method: 'GET', path: '/api/software/*/machinereferences', permissions: ['Software.Read.All'], action: "read software's machines" },
  { method: 'GET', path: '/api/software/*/vulnerabilities', permissions: ['Vulnerability.Read.All'], action: "read software's vulnerabilities" },
  { method: 'GET', path: '/api/software/*/getmissingkbs', permissions: ['Software.Read.All'], action: "read software's missing updates" },

  // learn: get-all-recommendations, get-recommendation-by-id, list-recommendation-software, get-recommendation-machines, get-recommendation-vulnerabilities
  { method: 'GET', path: '/api/recommendations', permissions: ['SecurityRecommendation.Read.All'], action: 'list security recommendations' },
  { method: 'GET', path: '/api/recommendations/*', permissions: ['SecurityRecommendation.Read.All'], action: 'read a security recommendation' },
  { method: 'GET', path: '/api/recommendations/*/software', permissions: ['Software.Read.All'], action: "read a recommendation's software" },
  { method: 'GET', path: '/api/recommendations/*/machinereferences', permissions: ['SecurityRecommendation.Read.All'], action: "read a recommendation's machines" },
  { method: 'GET', path: '/api/recommendations/*/vulnerabilities', permissions: ['Vulnerability.Read.All'], action: "read a recommendation's vulnerabilities" },

  // learn: get-exposure-score, get-machine-group-exposure-score, get-device-secure-score
  { method: 'GET', path: '/api/exposurescore', permissions: ['Score.Read.All'], action: 'read the exposure score' },
  { method: 'GET', path: '/api/exposurescore/bymachinegroups', permissions: ['Score.Read.All'], action: 'read exposure scores by device group' },
  { method: 'GET', path: '/api/configurationscore', permissions: ['Score.Read.All'], action: 'read the device secure score' },

  // learn: get-investigation-collection, get-investigation-object
  { method: 'GET', path: '/api/investigations', permissions: ALERT_READ, action: 'list automated investigations' },
  { method: 'GET', path: '/api/investigations/*', permissions: ALERT_READ, action: 'read an automated investigation' },

  // learn: get-remediation-all-activities, get-remediation-one-activity, get-remediation-exposed-devices-activities
  { method: 'GET', path: '/api/remediationtasks', permissions: ['RemediationTasks.Read.All'], action: 'list remediation activities' },
  { method: 'GET', path: '/api/remediationtasks/*', permissions: ['RemediationTasks.Read.All'], action: 'read a remediation activity' },
  { method: 'GET', path: '/api/remediationtasks/*/machinereferences', permissions: ['RemediationTasks.Read.All'], action: "read a remediation activity's machines" },

  // learn: device-health-export-antivirus-health-report-api (30 a minute, 1,000 an hour)
  { method: 'GET', path: '/api/deviceavinfo', permissions: ['Machine.Read.All'], action: "read devices' antivirus health", rateLimit: EXPORT_PAGES },
  // learn: get-browser-extensions-permission-info
  { method: 'GET', path: '/api/browserextensions/permissionsinfo', permissions: ['Software.Read.All'], action: "read browser extensions' permissions" },

  // learn: get-all-scan-agents, get-agent-details, get-all-scan-definitions, add-a-new-scan-definition,
  // get-scan-history-by-definition, get-scan-history-by-session (the two history calls are POSTs that only read)
  { method: 'GET', path: '/api/deviceauthenticatedscanagents', permissions: ['Machine.Read.All'], action: 'list authenticated scan agents' },
  { method: 'GET', path: '/api/deviceauthenticatedscanagents/*', permissions: ['Machine.Read.All'], action: 'read an authenticated scan agent' },
  { method: 'GET', path: '/api/deviceauthenticatedscandefinitions', permissions: ['Machine.Read.All'], action: 'list authenticated scan definitions' },
  { method: 'POST', path: '/api/deviceauthenticatedscandefinitions', permissions: MACHINE_WRITE, action: 'add authenticated scan definitions' },
  { method: 'PATCH', path: '/api/deviceauthenticatedscandefinitions/*', permissions: MACHINE_WRITE, action: 'update authenticated scan definitions' },
  { method: 'POST', path: '/api/deviceauthenticatedscandefinitions/batchdelete', permissions: MACHINE_WRITE, action: 'delete authenticated scan definitions' },
  { method: 'POST', path: '/api/deviceauthenticatedscandefinitions/getscanhistorybyscandefinitionid', permissions: ['Machine.Read.All'], action: 'read the scan history of scan definitions', changesState: false },
  { method: 'POST', path: '/api/deviceauthenticatedscandefinitions/getscanhistorybysessionid', permissions: ['Machine.Read.All'], action: 'read the scan history of scan sessions', changesState: false },

  // learn: list-library-files, upload-library, delete-library
  { method: 'GET', path: '/api/libraryfiles', permissions: ['Library.Manage'], action: 'list live response library files' },
  { method: 'POST', path: '/api/libraryfiles', permissions: ['Library.Manage'], action: 'upload live response library files' },
  { method: 'DELETE', path: '/api/libraryfiles/*', permissions: ['Library.Manage'], action: 'delete live response library files' }
]

export const DEFENDER_ENDPOINTS: readonly DefenderEndpoint[] = Object.freeze(TABLE.map((endpoint) => Object.freeze({
  ...endpoint,
  changesState: endpoint.method !== 'GET' && endpoint.changesState !== false,
  permissions: Object.freeze([...endpoint.permissions]),
  ...(endpoint.rateLimit === undefined ? {} : { rateLimit: Object.freeze({ ...endpoint.rateLimit }) })
})))

interface Compiled {
  endpoint: DefenderEndpoint
  pattern: PathPattern
}

const BY_METHOD = new Map<string, Compiled[]>()
for (const endpoint of DEFENDER_ENDPOINTS) {
  const list = BY_METHOD.get(endpoint.method) ?? []
  list.push({ endpoint, pattern: compilePattern(endpoint.path) })
  BY_METHOD.set(endpoint.method, list)
}

const VERSION = /^v\d+(\.\d+)?$/

/** Path segments as the API routes them: an explicit `/api/v1.0/` version and a trailing `/` make no difference. */
export function apiPathSegments (target: string): string[] {
  const segments = segmentsOf(target)
  if (segments[0] === 'api' && VERSION.test(segments[1] ?? '')) segments.splice(1, 1)
  if (segments.length > 1 && segments.at(-1) === '') segments.pop()
  return segments
}

/**
 * The endpoint a request is for (method + request target incl. query, matched on normalizePath's
 * output: lower-case, unreserved chars decoded, query dropped), or undefined for an unknown one.
 * Most specific wins when several match (literal segments over `*`). HEAD matches GET entries.
 */
export function findEndpoint (method: string, target: string): DefenderEndpoint | undefined {
  // The answer depends on the method and the path alone: tools ask for the same few paths
  // again and again, with other queries.
  const queryAt = target.indexOf('?')
  const key = `${method} ${queryAt === -1 ? target : target.slice(0, queryAt)}`
  const known = FOUND.get(key)
  if (known !== undefined) return known === NONE ? undefined : known
  const found = lookUp(method, target)
  if (FOUND.size >= FOUND_LIMIT) FOUND.clear()
  FOUND.set(key, found ?? NONE)
  return found
}

/**
 * Whether a request may change something in the tenant: never for GET and HEAD; for a known
 * endpoint, what its entry says (a hunting query is a POST that only reads); for any other call,
 * yes: a path the table does not know is taken to be a state change (fail safe).
 */
export function changesState (method: string, target: string): boolean {
  return method !== 'GET' && method !== 'HEAD' && endpointChangesState(method, findEndpoint(method, target))
}

/** changesState for an endpoint already looked up (undefined: a call the table does not know). */
export function endpointChangesState (method: string, endpoint: DefenderEndpoint | undefined): boolean {
  return method !== 'GET' && method !== 'HEAD' && (endpoint?.changesState ?? true)
}

/** Answers of findEndpoint by method and path; cleared when full (paths with ids are many). */
const FOUND = new Map<string, DefenderEndpoint | typeof NONE>()
const FOUND_LIMIT = 4096
const NONE = Symbol('no endpoint')

function lookUp (method: string, target: string): DefenderEndpoint | undefined {
  const upper = method.toUpperCase()
  const candidates = BY_METHOD.get(upper === 'HEAD' ? 'GET' : upper)
  if (candidates === undefined) return undefined
  const path = apiPathSegments(target)
  let best: Compiled | undefined
  for (const candidate of candidates) {
    if (!matchesPattern(candidate.pattern, path)) continue
    if (best === undefined || compareSpecificity(candidate.pattern, best.pattern) > 0) best = candidate
  }
  return best?.endpoint
}

/** Refuses, before the API is called, what a token with these `roles` cannot do. */
export function assertPermitted (endpoint: DefenderEndpoint | undefined, roles: readonly string[]): void {
  if (endpoint === undefined) return
  const missing = missingPermission(endpoint, roles)
  if (missing !== undefined) throw new BrokerMissingPermission(endpoint.action, missing)
}

/**
 * Undefined when `roles` (a token's `roles` claim) hold any of the endpoint's permissions;
 * otherwise the permission to grant, the first (least-privileged) one listed. Names compare
 * case-insensitively: the docs spell some of them differently (`URL.Read.All`).
 */
export function missingPermission (endpoint: DefenderEndpoint, roles: readonly string[]): string | undefined {
  const held = heldPermissions(roles)
  if (lowerCased(endpoint.permissions).some((permission) => held.has(permission))) return undefined
  return endpoint.permissions[0]
}

// Asked on every request: a token's roles, and an endpoint's permissions, are lower-cased once.
const HELD = new WeakMap<readonly string[], ReadonlySet<string>>()
const LOWER = new WeakMap<readonly string[], readonly string[]>()

function heldPermissions (roles: readonly string[]): ReadonlySet<string> {
  let held = HELD.get(roles)
  if (held === undefined) {
    held = new Set(roles.map((role) => role.toLowerCase()))
    HELD.set(roles, held)
  }
  return held
}

function lowerCased (permissions: readonly string[]): readonly string[] {
  let lower = LOWER.get(permissions)
  if (lower === undefined) {
    lower = permissions.map((permission) => permission.toLowerCase())
    LOWER.set(permissions, lower)
  }
  return lower
}
