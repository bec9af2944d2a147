import { createHash, randomUUID } from 'node:crypto'

export const SAMPLE_TENANT_ID = '00000000-0000-4000-8000-000000000001'
export const SAMPLE_ALERT_COUNT = 25
export const SAMPLE_MACHINE_COUNT = 8

export type Severity = 'Informational' | 'Low' | 'Medium' | 'High'

export interface Machine {
  id: string
  computerDnsName: string
  firstSeen: string
  lastSeen: string
  osPlatform: string
  osVersion: string | null
  osProcessor: string
  version: string
  lastIpAddress: string
  lastExternalIpAddress: string
  agentVersion: string
  osBuild: number | null
  healthStatus: 'Active' | 'Inactive' | 'ImpairedCommunication' | 'NoSensorData'
  deviceValue: 'Normal' | 'High'
  rbacGroupId: number
  rbacGroupName: string | null
  riskScore: 'None' | 'Low' | 'Medium' | 'High'
  exposureLevel: 'None' | 'Low' | 'Medium' | 'High'
  isAadJoined: boolean
  aadDeviceId: string | null
  machineTags: string[]
  onboardingStatus: 'Onboarded'
  osArchitecture: '64-bit'
  managedBy: string
  managedByStatus: string
  ipAddresses: Array<{ ipAddress: string, macAddress: string, type: string, operationalStatus: string }>
  vmMetadata: null
}

export interface Alert {
  id: string
  incidentId: number
  investigationId: number | null
  assignedTo: string | null
  severity: Severity
  status: 'New' | 'InProgress' | 'Resolved'
  classification: 'TruePositive' | 'FalsePositive' | 'InformationalExpectedActivity' | null
  determination: string | null
  investigationState: string
  detectionSource: string
  detectorId: string
  category: string
  threatFamilyName: string | null
  title: string
  description: string
  alertCreationTime: string
  firstEventTime: string
  lastEventTime: string
  lastUpdateTime: string
  resolvedTime: string | null
  machineId: string
  computerDnsName: string
  rbacGroupName: string | null
  aadTenantId: string
  threatName: string | null
  mitreTechniques: string[]
  relatedUser: { userName: string, domainName: string } | null
  loggedOnUsers: Array<{ accountName: string, domainName: string }>
  comments: Array<{ comment: string, createdBy: string, createdTime: string }>
  evidence: unknown[]
}

export interface MachineAction {
  id: string
  type: 'Isolate'
  title: null
  requestor: string
  requestorComment: string
  status: 'Pending'
  machineId: string
  computerDnsName: string
  creationDateTimeUtc: string
  lastUpdateDateTimeUtc: string
  cancellationRequestor: null
  cancellationComment: null
  cancellationDateTimeUtc: null
  errorHResult: 0
  scope: string
  externalId: null
  requestSource: 'PublicApi'
  relatedFileInfo: null
  commands: []
  troubleshootInfo: null
}

export interface SampleData {
  alerts: Alert[]
  machines: Machine[]
}

const HOSTS: Array<[string, string, string | null, number | null, Machine['healthStatus'], Machine['riskScore']]> = [
  ['fin-wks-014.contoso.local', 'Windows11', '23H2', 22631, 'Active', 'High'],
  ['hr-wks-102.contoso.local', 'Windows10', '22H2', 19045, 'Active', 'Medium'],
  ['dev-wks-007.contoso.local', 'Windows11', '23H2', 22631, 'Active', 'Low'],
  ['dc-01.contoso.local', 'WindowsServer2022', null, 20348, 'Active', 'Medium'],
  ['sql-prod-02.contoso.local', 'WindowsServer2019', null, 17763, 'ImpairedCommunication', 'High'],
  ['web-frontend-01', 'Linux', 'Ubuntu 22.04', null, 'Active', 'None'],
  ['design-mbp-03', 'macOS', '14.4', null, 'Inactive', 'Low'],
  ['kiosk-lobby-01.contoso.local', 'Windows10', '21H2', 19044, 'NoSensorData', 'None']
]

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

const USERS = ['adele.vance', 'megan.bowen', 'lee.gu', 'svc-backup', 'alex.wilber']
const HOUR_MS = 60 * 60 * 1000

/** Deterministic sample alerts and machines, dated relative to `nowMs`. */
export function createSampleData (nowMs: number, tenantId = SAMPLE_TENANT_ID): SampleData {
  const at = (msAgo: number): string => new Date(nowMs - msAgo).toISOString()
  const machines = HOSTS.map(([name, platform, osVersion, osBuild, healthStatus, riskScore], i): Machine => ({
    id: digest(`machine/${name}`, 40),
    computerDnsName: name,
    firstSeen: at((400 + 37 * i) * 24 * HOUR_MS),
    lastSeen: at(healthStatus === 'Inactive' ? 9 * 24 * HOUR_MS : (i + 1) * 7 * 60 * 1000),
    osPlatform: platform,
    osVersion,
    osProcessor: 'x64',
    version: osVersion ?? (platform === 'WindowsServer2022' ? '21H2' : '1809'),
    lastIpAddress: `10.0.${1 + (i % 3)}.${20 + i}`,
    lastExternalIpAddress: `203.0.113.${10 + i}`,
    agentVersion: osBuild === null ? '101.24022.0004' : `10.8760.${osBuild}.1023`,
    osBuild,
    healthStatus,
    deviceValue: name.startsWith('dc-') || name.startsWith('sql-') ? 'High' : 'Normal',
    rbacGroupId: 0,
    rbacGroupName: null,
    riskScore,
    exposureLevel: riskScore === 'High' ? 'High' : riskScore === 'None' ? 'Low' : 'Medium',
    isAadJoined: platform.startsWith('Windows1'),
    aadDeviceId: platform.startsWith('Windows1') ? stableGuid(`aad/${name}`) : null,
    machineTags: i % 3 === 0 ? ['Tier0'] : [],
    onboardingStatus: 'Onboarded',
    osArchitecture: '64-bit',
    managedBy: platform.startsWith('Windows') ? 'Intune' : 'MDE',
    managedByStatus: 'Success',
    ipAddresses: [{
      ipAddress: `10.0.${1 + (i % 3)}.${20 + i}`,
      macAddress: digest(`mac/${name}`, 12).toUpperCase(),
      type: 'Ethernet',
      operationalStatus: 'Up'
    }],
    vmMetadata: null
  }))

  const alerts = Array.from({ length: SAMPLE_ALERT_COUNT }, (_, i): Alert => {
    const [title, category, severity, detectionSource, threatFamilyName, mitreTechniques] = DETECTIONS[i % DETECTIONS.length] as typeof DETECTIONS[number]
    const machine = machines[(i * 5) % machines.length] as Machine
    const created = (i + 1) * 3 * HOUR_MS
    const status = i % 4 === 0 ? 'Resolved' : i % 4 === 1 ? 'InProgress' : 'New'
    const user = USERS[i % USERS.length] as string
    return {
      id: `da${digest(`alert-id/${i}`, 18).replace(/[a-f]/g, (c) => String(c.charCodeAt(0) % 10))}_${-(1_000_000_000 + i * 7_919_113)}`,
      incidentId: 1200 + Math.floor(i / 2),
      investigationId: detectionSource === 'CustomerTI' ? null : 500 + i,
      assignedTo: status === 'New' ? null : 'secops@contoso.com',
      severity,
      status,
      classification: status === 'Resolved' ? (i % 8 === 0 ? 'TruePositive' : 'FalsePositive') : null,
      determination: status === 'Resolved' ? (i % 8 === 0 ? 'Malware' : 'Other') : null,
      investigationState: status === 'Resolved' ? 'Benign' : 'Running',
      detectionSource,
      detectorId: stableGuid(`detector/${title}`),
      category,
      threatFamilyName,
      title,
      description: `${title} on ${machine.computerDnsName}. Review the process tree and the user's recent sign-ins.`,
      alertCreationTime: at(created),
      firstEventTime: at(created + 20 * 60 * 1000),
      lastEventTime: at(created + 5 * 60 * 1000),
      lastUpdateTime: at(created - HOUR_MS),
      resolvedTime: status === 'Resolved' ? at(created - 2 * HOUR_MS) : null,
      machineId: machine.id,
      computerDnsName: machine.computerDnsName,
      rbacGroupName: null,
      aadTenantId: tenantId,
      threatName: threatFamilyName === null ? null : `Trojan:Win32/${threatFamilyName}.A`,
      mitreTechniques,
      relatedUser: { userName: user, domainName: 'CONTOSO' },
      loggedOnUsers: [{ accountName: user, domainName: 'CONTOSO' }],
      comments: [],
      evidence: []
    }
  })
  return { alerts, machines }
}

export function createIsolateAction (machine: Machine, requestor: string, comment: string, scope: string, nowMs: number): MachineAction {
  const now = new Date(nowMs).toISOString()
  return {
    id: randomUUID(),
    type: 'Isolate',
    title: null,
    requestor,
    requestorComment: comment,
    status: 'Pending',
    machineId: machine.id,
    computerDnsName: machine.computerDnsName,
    creationDateTimeUtc: now,
    lastUpdateDateTimeUtc: now,
    cancellationRequestor: null,
    cancellationComment: null,
    cancellationDateTimeUtc: null,
    errorHResult: 0,
    scope,
    externalId: null,
    requestSource: 'PublicApi',
    relatedFileInfo: null,
    commands: [],
    troubleshootInfo: null
  }
}

/** A canned advanced hunting answer: one DeviceInfo-like row per machine, honouring `take`/`limit`. */
export function runAdvancedQuery (machines: readonly Machine[], query: string): Record<string, unknown> {
  const take = /\|\s*(?:take|limit)\s+(\d+)/i.exec(query)?.[1]
  const rows = machines.slice(0, take === undefined ? undefined : Number(take)).map((machine) => ({
    Timestamp: machine.lastSeen,
    DeviceId: machine.id,
    DeviceName: machine.computerDnsName,
    OSPlatform: machine.osPlatform,
    PublicIP: machine.lastExternalIpAddress
  }))
  return {
    Stats: {
      ExecutionTime: 0.0156,
      resource_usage: { cache: { memory: { hits: 12, misses: 0, total: 12 } } },
      dataset_statistics: [{ table_row_count: rows.length, table_size: rows.length * 180 }]
    },
    Schema: [
      { Name: 'Timestamp', Type: 'DateTime' },
      { Name: 'DeviceId', Type: 'String' },
      { Name: 'DeviceName', Type: 'String' },
      { Name: 'OSPlatform', Type: 'String' },
      { Name: 'PublicIP', Type: 'String' }
    ],
    Results: rows
  }
}

function digest (seed: string, length: number): string {
  return createHash('sha256').update(seed).digest('hex').slice(0, length)
}

/** A GUID that is the same for the same seed, so sample ids survive restarts. */
export function stableGuid (seed: string): string {
  const hex = digest(seed, 32)
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-8${hex.slice(17, 20)}-${hex.slice(20, 32)}`
}
