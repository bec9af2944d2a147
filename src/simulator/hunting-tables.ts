import type { KqlColumn, KqlRow, KqlTable, KqlType } from './kql.js'
import { SAMPLE_SEED, createRandom } from './random.js'
import type { Random } from './random.js'
import type { Alert, Machine, SampleData } from './sample-types.js'

/** The advanced hunting tables the simulator has, in the order the docs list them. */
export const HUNTING_TABLE_NAMES = ['DeviceInfo', 'DeviceProcessEvents', 'DeviceNetworkEvents', 'AlertInfo'] as const

export type HuntingTables = ReadonlyMap<string, KqlTable>

const MINUTE_MS = 60_000
const DAY_MS = 24 * 60 * MINUTE_MS
/** The background events are drawn from a seed of their own: adding one leaves the sample entities as they are. */
const EVENT_SEED = SAMPLE_SEED ^ 0x4a17

const DETECTION_SOURCES: Record<string, string> = {
  WindowsDefenderAtp: 'EDR',
  WindowsDefenderAv: 'Antivirus',
  CustomerTI: 'Custom TI'
}

type Process = [fileName: string, folder: string, commandLine: string, parent: string]
const WINDOWS_PROCESSES: Process[] = [
  ['svchost.exe', 'C:\\Windows\\System32', 'svchost.exe -k netsvcs -p', 'services.exe'],
  ['powershell.exe', 'C:\\Windows\\System32\\WindowsPowerShell\\v1.0', 'powershell.exe -NoProfile -File C:\\Scripts\\inventory.ps1', 'svchost.exe'],
  ['cmd.exe', 'C:\\Windows\\System32', 'cmd.exe /c ipconfig /all', 'explorer.exe'],
  ['msedge.exe', 'C:\\Program Files (x86)\\Microsoft\\Edge\\Application', 'msedge.exe --single-argument https://portal.contoso.com', 'explorer.exe'],
  ['OUTLOOK.EXE', 'C:\\Program Files\\Microsoft Office\\root\\Office16', 'OUTLOOK.EXE /recycle', 'explorer.exe'],
  ['MsMpEng.exe', 'C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.24020.7-0', 'MsMpEng.exe', 'services.exe']
]
const UNIX_PROCESSES: Process[] = [
  ['bash', '/usr/bin', 'bash -c "df -h"', 'sshd'],
  ['python3', '/usr/bin', 'python3 /opt/app/worker.py --queue jobs', 'systemd'],
  ['curl', '/usr/bin', 'curl -s https://packages.contoso.com/health', 'bash'],
  ['sshd', '/usr/sbin', 'sshd: admin [priv]', 'systemd']
]
type Connection = [url: string, ip: string, port: number, process: string]
const CONNECTIONS: Connection[] = [
  ['login.microsoftonline.com', '20.190.151.7', 443, 'msedge.exe'],
  ['winatp-gw-weu.microsoft.com', '20.50.201.200', 443, 'MsSense.exe'],
  ['packages.contoso.com', '10.20.1.40', 443, 'curl'],
  ['', '10.20.1.19', 445, 'svchost.exe'],
  ['', '10.20.1.19', 389, 'lsass.exe'],
  ['outlook.office365.com', '52.97.146.162', 443, 'OUTLOOK.EXE']
]

const cache = new WeakMap<SampleData, HuntingTables>()

/**
 * The hunting tables of a sample tenant: one DeviceInfo row per machine, an AlertInfo row per
 * alert, and the process and network events of each alert's evidence among a few ordinary ones
 * per machine. Built once per sample data, from a fixed seed.
 */
export function huntingTables (data: SampleData): HuntingTables {
  let tables = cache.get(data)
  if (tables === undefined) {
    tables = buildTables(data)
    cache.set(data, tables)
  }
  return tables
}

function buildTables (data: SampleData): HuntingTables {
  const random = createRandom(EVENT_SEED)
  const machines = new Map(data.machines.map((machine) => [machine.id, machine]))
  return new Map([
    ['DeviceInfo', table(DEVICE_INFO, data.machines.map(deviceInfo))],
    ['DeviceProcessEvents', table(PROCESS_EVENTS, processEvents(random, data, machines))],
    ['DeviceNetworkEvents', table(NETWORK_EVENTS, networkEvents(random, data, machines))],
    ['AlertInfo', table(ALERT_INFO, data.alerts.map(alertInfo))]
  ])
}

function table (columns: Record<string, KqlType>, rows: KqlRow[]): KqlTable {
  return {
    columns: Object.entries(columns).map(([name, type]): KqlColumn => ({ name, type })),
    rows
  }
}

const DEVICE_INFO: Record<string, KqlType> = {
  Timestamp: 'DateTime',
  DeviceId: 'String',
  DeviceName: 'String',
  OSPlatform: 'String',
  OSVersion: 'String',
  OSBuild: 'Int64',
  OSArchitecture: 'String',
  PublicIP: 'String',
  MachineGroup: 'String',
  IsAzureADJoined: 'Boolean',
  OnboardingStatus: 'String',
  ExposureLevel: 'String'
}

function deviceInfo (machine: Machine): KqlRow {
  return {
    Timestamp: Date.parse(machine.lastSeen),
    DeviceId: machine.id,
    DeviceName: machine.computerDnsName,
    OSPlatform: machine.osPlatform,
    OSVersion: machine.version,
    OSBuild: machine.osBuild,
    OSArchitecture: machine.osArchitecture,
    PublicIP: machine.lastExternalIpAddress,
    MachineGroup: machine.rbacGroupName ?? 'UnassignedGroup',
    IsAzureADJoined: machine.isAadJoined,
    OnboardingStatus: machine.onboardingStatus,
    ExposureLevel: machine.exposureLevel
  }
}

const PROCESS_EVENTS: Record<string, KqlType> = {
  Timestamp: 'DateTime',
  DeviceId: 'String',
  DeviceName: 'String',
  ActionType: 'String',
  FileName: 'String',
  FolderPath: 'String',
  SHA1: 'String',
  ProcessId: 'Int64',
  ProcessCommandLine: 'String',
  AccountDomain: 'String',
  AccountName: 'String',
  InitiatingProcessFileName: 'String',
  InitiatingProcessId: 'Int64'
}

function processEvents (random: Random, data: SampleData, machines: ReadonlyMap<string, Machine>): KqlRow[] {
  const rows: KqlRow[] = []
  for (const alert of data.alerts) {
    const process = data.evidence.get(alert.id)?.find((item) => item.entityType === 'Process')
    const machine = machines.get(alert.machineId)
    if (process === undefined || machine === undefined) continue
    rows.push({
      ...device(machine, Date.parse(process.processCreationTime ?? alert.firstEventTime)),
      ActionType: 'ProcessCreated',
      FileName: process.fileName ?? '',
      FolderPath: `${process.filePath ?? ''}\\${process.fileName ?? ''}`,
      SHA1: process.sha1 ?? '',
      ProcessId: process.processId,
      ProcessCommandLine: process.processCommandLine ?? '',
      AccountDomain: 'contoso',
      AccountName: alert.relatedUser?.userName ?? '',
      InitiatingProcessFileName: process.parentProcessFileName ?? '',
      InitiatingProcessId: process.parentProcessId
    })
  }
  for (const machine of data.machines) {
    const windows = machine.osPlatform.startsWith('Windows')
    const users = data.logonUsers.get(machine.id) ?? []
    for (let i = random.int(1, 4); i > 0; i--) {
      const [fileName, folder, commandLine, parent] = random.pick(windows ? WINDOWS_PROCESSES : UNIX_PROCESSES)
      rows.push({
        ...device(machine, eventTime(random, machine)),
        ActionType: 'ProcessCreated',
        FileName: fileName,
        FolderPath: `${folder}${windows ? '\\' : '/'}${fileName}`,
        SHA1: random.hex(40),
        ProcessId: random.int(1000, 30_000),
        ProcessCommandLine: commandLine,
        AccountDomain: windows ? 'contoso' : '',
        AccountName: users.length === 0 || !windows ? (windows ? 'system' : 'root') : random.pick(users).accountName,
        InitiatingProcessFileName: parent,
        InitiatingProcessId: random.int(500, 9000)
      })
    }
  }
  return rows
}

const NETWORK_EVENTS: Record<string, KqlType> = {
  Timestamp: 'DateTime',
  DeviceId: 'String',
  DeviceName: 'String',
  ActionType: 'String',
  RemoteIP: 'String',
  RemotePort: 'Int32',
  RemoteUrl: 'String',
  LocalIP: 'String',
  LocalPort: 'Int32',
  Protocol: 'String',
  InitiatingProcessFileName: 'String'
}

function networkEvents (random: Random, data: SampleData, machines: ReadonlyMap<string, Machine>): KqlRow[] {
  const rows: KqlRow[] = []
  for (const alert of data.alerts) {
    const machine = machines.get(alert.machineId)
    if (machine === undefined) continue
    const evidence = data.evidence.get(alert.id) ?? []
    const process = evidence.find((item) => item.entityType === 'Process')?.fileName ?? ''
    const time = Date.parse(alert.firstEventTime)
    for (const item of evidence) {
      if (item.entityType !== 'Ip' && item.entityType !== 'Url') continue
      const url = item.url === null ? '' : new URL(item.url).hostname
      rows.push(connection(random, machine, time, {
        ActionType: alert.category === 'CommandAndControl' ? 'ConnectionSuccess' : random.pick(['ConnectionSuccess', 'ConnectionFailed']),
        RemoteIP: item.ipAddress ?? `198.51.100.${random.int(1, 254)}`,
        RemotePort: item.url?.startsWith('https:') === true ? 443 : random.pick([80, 443, 8080]),
        RemoteUrl: url,
        InitiatingProcessFileName: process
      }))
    }
  }
  for (const machine of data.machines) {
    for (let i = random.int(1, 4); i > 0; i--) {
      const [url, ip, port, process] = random.pick(CONNECTIONS)
      rows.push(connection(random, machine, eventTime(random, machine), {
        ActionType: 'ConnectionSuccess',
        RemoteIP: ip,
        RemotePort: port,
        RemoteUrl: url,
        InitiatingProcessFileName: process
      }))
    }
  }
  return rows
}

interface Remote {
  ActionType: string
  RemoteIP: string
  RemotePort: number
  RemoteUrl: string
  InitiatingProcessFileName: string
}

function connection (random: Random, machine: Machine, time: number, remote: Remote): KqlRow {
  return { ...device(machine, time), ...remote, LocalIP: machine.lastIpAddress, LocalPort: random.int(49_152, 65_535), Protocol: 'Tcp' }
}

const ALERT_INFO: Record<string, KqlType> = {
  Timestamp: 'DateTime',
  AlertId: 'String',
  Title: 'String',
  Category: 'String',
  Severity: 'String',
  ServiceSource: 'String',
  DetectionSource: 'String',
  AttackTechniques: 'String'
}

function alertInfo (alert: Alert): KqlRow {
  return {
    Timestamp: Date.parse(alert.alertCreationTime),
    AlertId: alert.id,
    Title: alert.title,
    Category: alert.category,
    Severity: alert.severity,
    ServiceSource: 'Microsoft Defender for Endpoint',
    DetectionSource: DETECTION_SOURCES[alert.detectionSource] ?? alert.detectionSource,
    AttackTechniques: alert.mitreTechniques.length === 0 ? '' : JSON.stringify(alert.mitreTechniques)
  }
}

function device (machine: Machine, time: number): KqlRow {
  return { Timestamp: time, DeviceId: machine.id, DeviceName: machine.computerDnsName }
}

/** Some time in the 20 days before the machine was last seen. */
function eventTime (random: Random, machine: Machine): number {
  return Date.parse(machine.lastSeen) - random.int(0, 20 * DAY_MS / MINUTE_MS) * MINUTE_MS
}
