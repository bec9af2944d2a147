import type { SampleTvm } from './sample-tvm.js'

/** The shapes of the sample tenant's entities, as the API's reference documents their properties. */

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
  deviceValue: 'Normal' | 'High' | 'Low'
  rbacGroupId: number
  rbacGroupName: string | null
  riskScore: 'None' | 'Informational' | 'Low' | 'Medium' | 'High'
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
  comments: Array<{ comment: string | null, createdBy: string | null, createdTime: string | null }>
}

/** One piece of an alert's evidence, as `$expand=evidence` lists it. */
export interface Evidence {
  entityType: 'File' | 'Process' | 'User' | 'Ip' | 'Url'
  evidenceCreationTime: string
  sha1: string | null
  sha256: string | null
  fileName: string | null
  filePath: string | null
  processId: number | null
  processCommandLine: string | null
  processCreationTime: string | null
  parentProcessId: number | null
  parentProcessCreationTime: string | null
  parentProcessFileName: string | null
  parentProcessFilePath: string | null
  ipAddress: string | null
  url: string | null
  registryKey: null
  registryHive: null
  registryValueType: null
  registryValue: null
  accountName: string | null
  domainName: string | null
  userSid: string | null
  aadUserId: string | null
  userPrincipalName: string | null
  detectionStatus: string | null
}

export type MachineActionType = 'Isolate' | 'Unisolate' | 'RestrictCodeExecution' | 'UnrestrictCodeExecution' |
  'RunAntiVirusScan' | 'CollectInvestigationPackage' | 'Offboard' | 'StopAndQuarantineFile'
export type MachineActionStatus = 'Pending' | 'InProgress' | 'Succeeded' | 'Failed' | 'TimeOut' | 'Cancelled'

export interface MachineAction {
  id: string
  type: MachineActionType
  title: string | null
  requestor: string
  requestorComment: string
  status: MachineActionStatus
  machineId: string
  computerDnsName: string
  creationDateTimeUtc: string
  lastUpdateDateTimeUtc: string
  cancellationRequestor: string | null
  cancellationComment: string | null
  cancellationDateTimeUtc: string | null
  errorHResult: number
  scope: string | null
  externalId: string | null
  requestSource: 'PublicApi' | 'Portal'
  relatedFileInfo: { fileIdentifier: string, fileIdentifierType: 'Sha1' } | null
  commands: []
  troubleshootInfo: null
}

export interface Investigation {
  id: string
  startTime: string
  endTime: string | null
  state: 'Running' | 'SuccessfullyRemediated' | 'Benign' | 'Failed' | 'PendingApproval' | 'Terminated'
  cancelledBy: string | null
  statusDetails: string | null
  machineId: string
  computerDnsName: string
  triggeringAlertId: string
}

export interface Indicator {
  id: string
  indicatorValue: string
  indicatorType: 'FileSha1' | 'FileSha256' | 'FileMd5' | 'IpAddress' | 'DomainName' | 'Url' | 'CertificateThumbprint'
  action: 'Alert' | 'AlertAndBlock' | 'Allowed' | 'Audit' | 'Block' | 'BlockAndRemediate' | 'Warn'
  application: string | null
  source: string
  sourceType: 'User' | 'AadApp'
  title: string
  description: string
  recommendedActions: string | null
  creationTimeDateTimeUtc: string
  createdBy: string
  createdBySource: string
  createdByDisplayName: string
  expirationTime: string | null
  lastUpdateTime: string
  lastUpdatedBy: string
  severity: 'Informational' | 'Low' | 'Medium' | 'High'
  generateAlert: boolean
  rbacGroupNames: string[]
  rbacGroupIds: number[]
  mitreTechniques: string[]
  category: number
  externalId: string | null
}

export interface SampleFile {
  sha1: string
  sha256: string
  md5: string
  globalPrevalence: number
  globalFirstObserved: string
  globalLastObserved: string
  size: number
  fileType: string | null
  isPeFile: boolean
  filePublisher: string | null
  fileProductName: string | null
  signer: string | null
  issuer: string | null
  signerHash: string | null
  isValidCertificate: boolean | null
  determinationType: 'Unknown' | 'Malware' | 'Clean' | 'Pua'
  determinationValue: string
  /** The name it goes by in evidence; not a property of the API's File entity. */
  fileName: string
}

export interface LogonUser {
  id: string
  accountName: string
  accountDomain: string
  accountSid: string
  firstSeen: string
  lastSeen: string
  logonTypes: string
  isDomainAdmin: boolean
  isOnlyNetworkUser: boolean
}

export interface SampleData extends SampleTvm {
  machines: Machine[]
  alerts: Alert[]
  /** By alert id. */
  evidence: Map<string, Evidence[]>
  machineActions: MachineAction[]
  investigations: Investigation[]
  indicators: Indicator[]
  files: SampleFile[]
  /** By machine id. */
  logonUsers: Map<string, LogonUser[]>
}
