import { createHash, randomUUID } from 'node:crypto'
import { createRandom } from './random.js'
import type { Random } from './random.js'
import { createSampleTvm } from './sample-tvm.js'
import type { Severity, Machine, Alert, Evidence, MachineActionType, MachineAction, Investigation, Indicator, SampleFile, LogonUser, SampleData } from './sample-types.js'

export const SAMPLE_TENANT_ID = '00000000-0000-4000-8000-000000000001'
export const SAMPLE_MACHINE_COUNT = 240
export const SAMPLE_ALERT_COUNT = 400
export const SAMPLE_INVESTIGATION_COUNT = 120
export const SAMPLE_INDICATOR_COUNT = 30

export type { Severity, Machine, Alert, Evidence, MachineActionType, MachineActionStatus, MachineAction, Investigation, Indicator, SampleFile, LogonUser, SampleData } from './sample-types.js'

type HostRow = [string, string, string | null, number | null, Machine['healthStatus'], Machine['riskScore']]

/** The first machines are named: the docs and the examples use them. */
const NAMED_HOSTS: HostRow[] = [
  ['fin-wks-014.contoso.local', 'Windows11', '23H2', 22631, 'Active', 'High'],
  ['hr-wks-102.contoso.local', 'Windows10', '22H2', 19045, 'Active', 'Medium'],
  ['dev-wks-007.contoso.local', 'Windows11', '23H2', 22631, 'Active', 'Low'],
  ['dc-01.contoso.local', 'WindowsServer2022', null, 20348, 'Active', 'Medium'],
  ['sql-prod-02.contoso.local', 'WindowsServer2019', null, 17763, 'ImpairedCommunication', 'High'],
  ['web-frontend-01', 'Linux', 'Ubuntu 22.04', null, 'Active', 'None'],
  ['design-mbp-03', 'macOS', '14.4', null, 'Inactive', 'Low'],
  ['kiosk-lobby-01.contoso.local', 'Windows10', '21H2', 19044, 'NoSensorData', 'None']
]

const PLATFORMS: Array<[string, string | null, number | null, string]> = [
  ['Windows11', '23H2', 22631, 'wks'],
  ['Windows11', '22H2', 22621, 'wks'],
  ['Windows10', '22H2', 19045, 'wks'],
  ['WindowsServer2022', null, 20348, 'srv'],
  ['WindowsServer2019', null, 17763, 'srv'],
  ['WindowsServer2016', null, 14393, 'srv'],
  ['Linux', 'Ubuntu 22.04', null, 'lnx'],
  ['Linux', 'RHEL 9.3', null, 'lnx'],
  ['macOS', '14.4', null, 'mbp']
]
const DEPARTMENTS = ['fin', 'hr', 'dev', 'ops', 'sales', 'legal', 'mkt', 'it']
const HEALTH: Array<Machine['healthStatus']> = ['Active', 'Active', 'Active', 'Active', 'Active', 'Active', 'Inactive', 'ImpairedCommunication', 'NoSensorData']
const RISK: Array<Machine['riskScore']> = ['None', 'Informational', 'Low', 'Low', 'Medium', 'Medium', 'High']
const TAGS = ['Tier0', 'Finance', 'VIP', 'Kiosk', 'PCI', 'Pilot']
const RBAC_GROUPS: Array<[number, string | null]> = [[0, null], [41, 'Workstations'], [42, 'Servers'], [43, 'Finance']]

const DETECTIONS: Array<[string, string, Severity, string, string | null, string[]]> = [
  ['Suspicious PowerShell command line', 'Execution', 'Medium', 'WindowsDefenderAtp', null, ['T1059.001']],
  ['\'Mimikatz\' credential theft tool', 'CredentialAccess', 'High', 'WindowsDefenderAv', 'Mimikatz', ['T1003']],
  ['Suspicious process injection observed', 'DefenseEvasion', 'Medium', 'WindowsDefenderAtp', null, ['T1055']],
  ['\'Emotet\' malware was detected', 'Malware', 'High', 'WindowsDefenderAv', 'Emotet', []],
  ['Anomalous scheduled task created', 'Persistence', 'Low', 'WindowsDefenderAtp', null, ['T1053.005']],
  ['Possible lateral movement via WMI', 'LateralMovement', 'Medium', 'WindowsDefenderAtp', null, ['T1047']],
  ['Connection to a custom network indicator', 'CommandAndControl', 'Informational', 'CustomerTI', null, ['T1071']],
  ['Ransomware behavior detected in the file system', 'Ransomware', 'High', 'WindowsDefenderAtp', null, ['T1486']],
  ['Suspicious LDAP query', 'Discovery', 'Low', 'WindowsDefenderAtp', null, ['T1087.002']]
]

const USERS = ['adele.vance', 'megan.bowen', 'lee.gu', 'svc-backup', 'alex.wilber', 'nestor.wilke', 'pradeep.gupta', 'isaiah.langer']
const FILE_NAMES = ['invoice.docm', 'mimikatz.exe', 'update.ps1', 'svchost32.exe', 'payload.dll', 'setup.msi', 'tool.bat', 'report.xlsm', 'agent.exe', 'loader.js']
/** Evidence properties are all present, null where they do not apply. */
const NO_EVIDENCE = Object.fromEntries([
  'sha1', 'sha256', 'fileName', 'filePath', 'processId', 'processCommandLine', 'processCreationTime', 'parentProcessId',
  'parentProcessCreationTime', 'parentProcessFileName', 'parentProcessFilePath', 'ipAddress', 'url', 'registryKey',
  'registryHive', 'registryValueType', 'registryValue', 'accountName', 'domainName', 'userSid', 'aadUserId',
  'userPrincipalName', 'detectionStatus'
].map((key) => [key, null])) as Omit<Evidence, 'entityType' | 'evidenceCreationTime'>
const MINUTE_MS = 60 * 1000
const HOUR_MS = 60 * MINUTE_MS
const DAY_MS = 24 * HOUR_MS

/** Deterministic sample data (from a fixed seed), dated relative to `nowMs`. */
export function createSampleData (nowMs: number, tenantId = SAMPLE_TENANT_ID): SampleData {
  const random = createRandom()
  const at = (msAgo: number): string => new Date(nowMs - msAgo).toISOString()
  const machines = createMachines(random, at)
  const files = createFiles(random, at)
  const logonUsers = new Map(machines.map((machine) => [machine.id, createLogonUsers(random, at, machine)]))
  const evidence = new Map<string, Evidence[]>()
  const alerts = Array.from({ length: SAMPLE_ALERT_COUNT }, (_, i) => {
    const alert = createAlert(random, at, i, random.pick(machines), tenantId)
    evidence.set(alert.id, createEvidence(random, alert, files))
    return alert
  })
  const investigations = alerts.filter((alert) => alert.investigationId !== null).slice(0, SAMPLE_INVESTIGATION_COUNT)
    .map((alert): Investigation => {
      const state = random.pick<Investigation['state']>(['Running', 'SuccessfullyRemediated', 'Benign', 'Benign', 'Failed', 'PendingApproval'])
      return {
        id: String(alert.investigationId),
        startTime: alert.alertCreationTime,
        endTime: state === 'Running' || state === 'PendingApproval' ? null : new Date(Date.parse(alert.alertCreationTime) + random.int(10, 300) * MINUTE_MS).toISOString(),
        state,
        cancelledBy: null,
        statusDetails: null,
        machineId: alert.machineId,
        computerDnsName: alert.computerDnsName,
        triggeringAlertId: alert.id
      }
    })
  const ids = new Set(investigations.map((investigation) => Number(investigation.id)))
  for (const alert of alerts) {
    if (alert.investigationId !== null && !ids.has(alert.investigationId)) alert.investigationId = null
  }
  const machineActions = Array.from({ length: 20 }, (_, i) => {
    const machine = random.pick(machines)
    const type = random.pick<MachineActionType>(['Isolate', 'Unisolate', 'RunAntiVirusScan', 'CollectInvestigationPackage', 'RestrictCodeExecution'])
    const action = createMachineAction({ machine, type, requestor: 'secops@contoso.com', comment: 'Routine response', scope: scopeOf(type), nowMs: nowMs - (20 - i) * 6 * HOUR_MS, id: random.guid() })
    return { ...action, status: 'Succeeded' as const, requestSource: 'Portal' as const, lastUpdateDateTimeUtc: new Date(nowMs - (20 - i) * 6 * HOUR_MS + 3 * MINUTE_MS).toISOString() }
  })
  const indicators = createIndicators(random, at, files)
  return { machines, alerts, evidence, machineActions, investigations, indicators, files, logonUsers, ...createSampleTvm(random, machines, at) }
}

function createMachines (random: Random, at: (msAgo: number) => string): Machine[] {
  const rows: HostRow[] = [...NAMED_HOSTS]
  for (let i = rows.length; i < SAMPLE_MACHINE_COUNT; i++) {
    const [platform, osVersion, osBuild, kind] = random.pick(PLATFORMS)
    const prefix = kind === 'srv' ? random.pick(['sql', 'app', 'file', 'print', 'exch', 'web']) : random.pick(DEPARTMENTS)
    const domain = kind === 'lnx' || kind === 'mbp' ? '' : '.contoso.local'
    rows.push([`${prefix}-${kind}-${String(100 + i).padStart(3, '0')}${domain}`, platform, osVersion, osBuild, random.pick(HEALTH), random.pick(RISK)])
  }
  return rows.map(([name, platform, osVersion, osBuild, healthStatus, riskScore], i): Machine => {
    const server = platform.startsWith('WindowsServer') || platform === 'Linux'
    const ip = `10.${server ? 20 : 10}.${1 + (i >> 6)}.${10 + (i % 64) * 3}`
    const [rbacGroupId, rbacGroupName] = i < NAMED_HOSTS.length ? RBAC_GROUPS[0] as [number, null] : random.pick(RBAC_GROUPS)
    const tags = i < NAMED_HOSTS.length ? (i % 3 === 0 ? ['Tier0'] : []) : random.some(TAGS, 0.15)
    if (name.startsWith('dc-') && !tags.includes('Tier0')) tags.push('Tier0')
    return {
      id: random.hex(40),
      computerDnsName: name,
      firstSeen: at(random.int(90, 900) * DAY_MS),
      lastSeen: at(healthStatus === 'Inactive' ? random.int(8, 40) * DAY_MS : random.int(1, 600) * MINUTE_MS),
      osPlatform: platform,
      osVersion,
      osProcessor: 'x64',
      version: osVersion ?? (platform === 'WindowsServer2022' ? '21H2' : '1809'),
      lastIpAddress: ip,
      lastExternalIpAddress: `203.0.113.${1 + (i % 250)}`,
      agentVersion: osBuild === null ? '101.24022.0004' : `10.8760.${osBuild}.1023`,
      osBuild,
      healthStatus,
      deviceValue: name.startsWith('dc-') || name.startsWith('sql-') ? 'High' : random.chance(0.05) ? 'Low' : 'Normal',
      rbacGroupId,
      rbacGroupName,
      riskScore,
      exposureLevel: riskScore === 'High' ? 'High' : riskScore === 'None' ? 'Low' : riskScore === 'Informational' ? 'None' : 'Medium',
      isAadJoined: platform.startsWith('Windows1'),
      aadDeviceId: platform.startsWith('Windows1') ? random.guid() : null,
      machineTags: tags,
      onboardingStatus: 'Onboarded',
      osArchitecture: '64-bit',
      managedBy: platform.startsWith('Windows') ? 'Intune' : 'MDE',
      managedByStatus: 'Success',
      ipAddresses: [{ ipAddress: ip, macAddress: random.hex(12).toUpperCase(), type: 'Ethernet', operationalStatus: 'Up' }],
      vmMetadata: null
    }
  })
}

function createAlert (random: Random, at: (msAgo: number) => string, i: number, machine: Machine, tenantId: string): Alert {
  const [title, category, severity, detectionSource, threatFamilyName, mitreTechniques] = random.pick(DETECTIONS)
  // Newest first, as the API lists them: about 30 days of alerts.
  const created = (i + 1) * 107 * MINUTE_MS + random.int(0, 60) * 1000
  const status = random.pick<Alert['status']>(['New', 'New', 'InProgress', 'Resolved'])
  const user = random.pick(USERS)
  const digits = String(random.int(100_000_000, 999_999_999)) + String(random.int(100_000_000, 999_999_999))
  return {
    id: `da${digits}_${random.chance(0.5) ? '-' : ''}${random.int(100_000_000, 2_147_483_647)}`,
    incidentId: 1200 + Math.floor(i / 2),
    investigationId: detectionSource === 'CustomerTI' ? null : 5000 + i,
    assignedTo: status === 'New' ? null : 'secops@contoso.com',
    severity,
    status,
    classification: status === 'Resolved' ? random.pick(['TruePositive', 'FalsePositive', 'InformationalExpectedActivity'] as const) : null,
    determination: status === 'Resolved' ? random.pick(['Malware', 'SecurityTesting', 'NotMalicious', 'Other']) : null,
    investigationState: status === 'Resolved' ? 'Benign' : random.pick(['Running', 'Queued', 'PendingApproval']),
    detectionSource,
    detectorId: stableGuid(`detector/${title}`),
    category,
    threatFamilyName,
    title,
    description: `${title} on ${machine.computerDnsName}. Review the process tree and the user's recent sign-ins.`,
    alertCreationTime: at(created),
    firstEventTime: at(created + 20 * MINUTE_MS),
    lastEventTime: at(created + 5 * MINUTE_MS),
    lastUpdateTime: at(created - HOUR_MS),
    resolvedTime: status === 'Resolved' ? at(created - 2 * HOUR_MS) : null,
    machineId: machine.id,
    computerDnsName: machine.computerDnsName,
    rbacGroupName: machine.rbacGroupName,
    aadTenantId: tenantId,
    threatName: threatFamilyName === null ? null : `Trojan:Win32/${threatFamilyName}.A`,
    mitreTechniques,
    relatedUser: { userName: user, domainName: 'CONTOSO' },
    loggedOnUsers: [{ accountName: user, domainName: 'CONTOSO' }],
    comments: []
  }
}

function createEvidence (random: Random, alert: Alert, files: readonly SampleFile[]): Evidence[] {
  const file = random.pick(files)
  const time = alert.firstEventTime
  const empty: Evidence = { entityType: 'File', evidenceCreationTime: time, ...NO_EVIDENCE }
  const user = alert.relatedUser?.userName ?? 'adele.vance'
  const items: Evidence[] = [
    { ...empty, entityType: 'File', sha1: file.sha1, sha256: file.sha256, fileName: file.fileName, filePath: `C:\\Users\\${user}\\Downloads`, detectionStatus: random.pick(['Detected', 'Blocked', 'Prevented']) },
    { ...empty, entityType: 'Process', sha1: file.sha1, sha256: file.sha256, fileName: file.fileName, filePath: `C:\\Users\\${user}\\Downloads`, processId: random.int(1000, 30000), processCommandLine: `"${file.fileName}" /silent`, processCreationTime: time, parentProcessId: random.int(500, 9000), parentProcessCreationTime: time, parentProcessFileName: 'explorer.exe', parentProcessFilePath: 'C:\\Windows' },
    { ...empty, entityType: 'User', accountName: user, domainName: 'CONTOSO', userSid: `S-1-5-21-1004336348-1177238915-682003330-${1100 + USERS.indexOf(user)}`, aadUserId: stableGuid(`user/${user}`), userPrincipalName: `${user}@contoso.com` }
  ]
  if (alert.category === 'CommandAndControl' || random.chance(0.3)) {
    items.push({ ...empty, entityType: 'Ip', ipAddress: `198.51.100.${random.int(1, 254)}` })
  }
  if (random.chance(0.2)) items.push({ ...empty, entityType: 'Url', url: `http://${random.pick(['update-cdn', 'files-share', 'login-portal'])}.example.net/${random.hex(6)}` })
  return items
}

function createFiles (random: Random, at: (msAgo: number) => string): SampleFile[] {
  return Array.from({ length: 30 }, (_, i): SampleFile => {
    const fileName = FILE_NAMES[i % FILE_NAMES.length] as string
    const malware = i % 3 !== 2
    const pe = fileName.endsWith('.exe') || fileName.endsWith('.dll')
    return {
      sha1: random.hex(40),
      sha256: random.hex(64),
      md5: random.hex(32),
      globalPrevalence: random.int(1, 250_000),
      globalFirstObserved: at(random.int(30, 900) * DAY_MS),
      globalLastObserved: at(random.int(0, 29) * DAY_MS),
      size: random.int(2_000, 8_000_000),
      fileType: pe ? 'PortableExecutable' : null,
      isPeFile: pe,
      filePublisher: malware ? null : 'Contoso Ltd.',
      fileProductName: malware ? null : 'Contoso Tools',
      signer: malware ? null : 'Contoso Ltd.',
      issuer: malware ? null : 'Contoso Code Signing CA',
      signerHash: malware ? null : random.hex(40),
      isValidCertificate: malware ? null : true,
      determinationType: malware ? 'Malware' : 'Clean',
      determinationValue: malware ? `Trojan:Win32/Sample${i}.A` : '',
      fileName
    }
  })
}

function createLogonUsers (random: Random, at: (msAgo: number) => string, machine: Machine): LogonUser[] {
  return random.some(USERS, 0.3).map((user) => ({
    id: `contoso\\${user}`,
    accountName: user,
    accountDomain: 'contoso',
    accountSid: `S-1-5-21-1004336348-1177238915-682003330-${1100 + USERS.indexOf(user)}`,
    firstSeen: machine.firstSeen,
    lastSeen: at(random.int(1, 200) * HOUR_MS),
    logonTypes: random.pick(['Interactive', 'Network', 'RemoteInteractive', 'Interactive, Network']),
    isDomainAdmin: user === 'svc-backup',
    isOnlyNetworkUser: false
  }))
}

function createIndicators (random: Random, at: (msAgo: number) => string, files: readonly SampleFile[]): Indicator[] {
  return Array.from({ length: SAMPLE_INDICATOR_COUNT }, (_, i): Indicator => {
    const type = random.pick<Indicator['indicatorType']>(['FileSha1', 'FileSha256', 'IpAddress', 'DomainName', 'Url'])
    const file = files[i % files.length] as SampleFile
    const value = type === 'FileSha1'
      ? file.sha1
      : type === 'FileSha256'
        ? file.sha256
        : type === 'IpAddress' ? `198.51.100.${10 + i}` : type === 'DomainName' ? `bad-${random.hex(4)}.example.net` : `https://bad-${random.hex(4)}.example.net/x`
    const created = at(random.int(1, 90) * DAY_MS)
    return {
      id: String(9000 + i),
      indicatorValue: value,
      indicatorType: type,
      action: random.pick<Indicator['action']>(['Alert', 'AlertAndBlock', 'Block', 'Allowed', 'Audit', 'Warn']),
      application: null,
      source: 'SOC automation',
      sourceType: 'AadApp',
      title: `Sample indicator ${i + 1}`,
      description: 'Imported from the threat intelligence feed.',
      recommendedActions: null,
      creationTimeDateTimeUtc: created,
      createdBy: stableGuid('indicator-app'),
      createdBySource: 'PublicApi',
      createdByDisplayName: 'SOC automation',
      expirationTime: random.chance(0.5) ? null : new Date(Date.parse(created) + 180 * DAY_MS).toISOString(),
      lastUpdateTime: created,
      lastUpdatedBy: stableGuid('indicator-app'),
      severity: random.pick<Indicator['severity']>(['Informational', 'Low', 'Medium', 'High']),
      generateAlert: random.chance(0.5),
      rbacGroupNames: [],
      rbacGroupIds: [],
      mitreTechniques: [],
      category: 1,
      externalId: null
    }
  })
}

export interface MachineActionRequest {
  machine: Pick<Machine, 'id' | 'computerDnsName'>
  type: MachineActionType
  requestor: string
  comment: string
  scope: string | null
  nowMs: number
  relatedFileSha1?: string
  id?: string
}

/** A new machine action, Pending, as the API answers the POST that asks for it. */
export function createMachineAction (request: MachineActionRequest): MachineAction {
  const now = new Date(request.nowMs).toISOString()
  return {
    id: request.id ?? randomUUID(),
    type: request.type,
    title: null,
    requestor: request.requestor,
    requestorComment: request.comment,
    status: 'Pending',
    machineId: request.machine.id,
    computerDnsName: request.machine.computerDnsName,
    creationDateTimeUtc: now,
    lastUpdateDateTimeUtc: now,
    cancellationRequestor: null,
    cancellationComment: null,
    cancellationDateTimeUtc: null,
    errorHResult: 0,
    scope: request.scope,
    externalId: null,
    requestSource: 'PublicApi',
    relatedFileInfo: request.relatedFileSha1 === undefined ? null : { fileIdentifier: request.relatedFileSha1, fileIdentifierType: 'Sha1' },
    commands: [],
    troubleshootInfo: null
  }
}

function scopeOf (type: MachineActionType): string | null {
  if (type === 'Isolate') return 'Full'
  if (type === 'RunAntiVirusScan') return 'Quick'
  return null
}

function digest (seed: string, length: number): string {
  return createHash('sha256').update(seed).digest('hex').slice(0, length)
}

/** A GUID that is the same for the same seed, so sample ids survive restarts. */
export function stableGuid (seed: string): string {
  const hex = digest(seed, 32)
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`
}
