import type { Random } from './random.js'
import type { Machine } from './sample-types.js'

/** The vulnerability management side of the sample tenant: software, CVEs, and the per-device exports. */
export interface SampleTvm {
  software: Software[]
  vulnerabilities: Vulnerability[]
  /** The rows of GET /api/machines/SoftwareInventoryByMachine. */
  softwareInventory: SoftwareInventoryRow[]
  /** The rows of GET /api/machines/SoftwareVulnerabilitiesByMachine. */
  softwareVulnerabilities: SoftwareVulnerabilityRow[]
}

export interface Software {
  id: string
  name: string
  vendor: string
  weaknesses: number
  publicExploit: boolean
  activeAlert: boolean
  exposedMachines: number
  impactScore: number
}

export interface Vulnerability {
  id: string
  name: string
  description: string
  severity: 'Low' | 'Medium' | 'High' | 'Critical'
  cvssV3: number
  cvssVector: string
  exposedMachines: number
  publishedOn: string
  updatedOn: string
  firstDetected: string
  publicExploit: boolean
  exploitVerified: boolean
  exploitInKit: boolean
  exploitTypes: string[]
  exploitUris: string[]
  cveSupportability: 'Supported'
  epss: number
}

export interface SoftwareInventoryRow {
  id: string
  deviceId: string
  rbacGroupName: string | null
  deviceName: string
  osPlatform: string
  softwareVendor: string
  softwareName: string
  softwareVersion: string
  numberOfWeaknesses: number
  diskPaths: string[]
  registryPaths: string[]
  softwareFirstSeenTimestamp: string
  endOfSupportStatus: string
  endOfSupportDate: string | null
}

export interface SoftwareVulnerabilityRow {
  id: string
  deviceId: string
  rbacGroupName: string | null
  deviceName: string
  osPlatform: string
  osVersion: string | null
  osArchitecture: string
  softwareVendor: string
  softwareName: string
  softwareVersion: string
  cveId: string
  vulnerabilitySeverityLevel: Vulnerability['severity']
  recommendedSecurityUpdate: string | null
  recommendedSecurityUpdateId: string | null
  recommendedSecurityUpdateUrl: string | null
  diskPaths: string[]
  registryPaths: string[]
  lastSeenTimestamp: string
  firstSeenTimestamp: string
  exploitabilityLevel: 'NoExploit' | 'ExploitIsPublic' | 'ExploitIsVerified' | 'ExploitIsInKit'
  recommendationReference: string
  securityUpdateAvailable: boolean
}

/** vendor, name, versions, the platforms that run it. */
const CATALOGUE: Array<[string, string, string[], RegExp]> = [
  ['microsoft', 'windows_11', ['10.0.22631.3447', '10.0.22621.3296'], /^Windows11$/],
  ['microsoft', 'windows_10', ['10.0.19045.4291', '10.0.19044.3930'], /^Windows10$/],
  ['microsoft', 'windows_server_2022', ['10.0.20348.2402'], /^WindowsServer2022$/],
  ['microsoft', 'windows_server_2019', ['10.0.17763.5696'], /^WindowsServer2019$/],
  ['microsoft', 'windows_server_2016', ['10.0.14393.6897'], /^WindowsServer2016$/],
  ['microsoft', 'edge_chromium-based', ['123.0.2420.97', '122.0.2365.92'], /^Windows/],
  ['microsoft', 'office', ['16.0.17328.20282', '16.0.16731.20600'], /^Windows1|^macOS/],
  ['microsoft', '.net_framework', ['4.8.9037.0'], /^Windows/],
  ['microsoft', 'sql_server_2019', ['15.0.4355.3'], /^WindowsServer/],
  ['google', 'chrome', ['124.0.6367.61', '123.0.6312.106', '121.0.6167.185'], /^Windows1|^macOS|^Linux/],
  ['mozilla', 'firefox', ['125.0.1', '115.10.0'], /^Windows1|^macOS/],
  ['oracle', 'jre', ['8.0.401', '17.0.10'], /^Windows|^Linux/],
  ['adobe', 'acrobat_reader_dc', ['24.001.20643', '23.008.20470'], /^Windows1|^macOS/],
  ['7-zip', '7-zip', ['23.01', '19.00'], /^Windows/],
  ['notepad++', 'notepad++', ['8.6.5', '8.5.8'], /^Windows1/],
  ['openssl', 'openssl', ['3.0.2', '1.1.1w'], /^Linux|^macOS/],
  ['apache', 'http_server', ['2.4.58', '2.4.52'], /^Linux/],
  ['canonical', 'ubuntu_linux', ['22.04'], /^Linux/],
  ['apple', 'macos', ['14.4'], /^macOS$/],
  ['zoom', 'zoom', ['5.17.11', '5.16.10'], /^Windows1|^macOS/],
  ['vmware', 'tools', ['12.3.5'], /^WindowsServer|^Linux/],
  ['putty', 'putty', ['0.80', '0.76'], /^Windows/]
]

const SEVERITIES: Array<Vulnerability['severity']> = ['Low', 'Medium', 'Medium', 'High', 'High', 'Critical']
const DAY_MS = 24 * 60 * 60 * 1000

export function createSampleTvm (random: Random, machines: readonly Machine[], at: (msAgo: number) => string): SampleTvm {
  // Each software has a few CVEs; older versions carry them all, the newest only some.
  const cves = new Map<string, Vulnerability[]>()
  const vulnerabilities: Vulnerability[] = []
  let serial = 20_000
  for (const [vendor, name] of CATALOGUE) {
    const list = Array.from({ length: random.int(2, 7) }, (): Vulnerability => {
      const severity = random.pick(SEVERITIES)
      const publicExploit = random.chance(0.3)
      const published = random.int(20, 700)
      serial += random.int(1, 400)
      return {
        id: `CVE-${2022 + (serial % 3)}-${serial}`,
        name: `CVE-${2022 + (serial % 3)}-${serial}`,
        description: `A ${severity.toLowerCase()} severity flaw in ${vendor} ${name.replaceAll('_', ' ')}.`,
        severity,
        cvssV3: { Low: 3.1, Medium: 5.5, High: 7.8, Critical: 9.8 }[severity],
        cvssVector: 'CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H',
        exposedMachines: 0,
        publishedOn: at(published * DAY_MS),
        updatedOn: at(random.int(1, published) * DAY_MS),
        firstDetected: at(random.int(1, published) * DAY_MS),
        publicExploit,
        exploitVerified: publicExploit && random.chance(0.5),
        exploitInKit: publicExploit && random.chance(0.2),
        exploitTypes: publicExploit ? ['RemoteCodeExecution'] : [],
        exploitUris: [],
        cveSupportability: 'Supported',
        epss: Math.round(random.next() * 1000) / 1000
      }
    })
    cves.set(`${vendor}-_-${name}`, list)
    vulnerabilities.push(...list)
  }

  const softwareInventory: SoftwareInventoryRow[] = []
  const softwareVulnerabilities: SoftwareVulnerabilityRow[] = []
  const installs = new Map<string, Set<string>>()
  for (const machine of machines) {
    for (const [vendor, name, versions, platforms] of CATALOGUE) {
      if (!platforms.test(machine.osPlatform) || (!name.includes('windows') && random.chance(0.25))) continue
      const version = random.pick(versions)
      const softwareId = `${vendor}-_-${name}`
      const known = cves.get(softwareId) ?? []
      const open = version === versions[0] ? known.filter(() => random.chance(0.5)) : known
      const path = machine.osPlatform.startsWith('Windows') ? [`C:\\Program Files\\${vendor}\\${name}`] : [`/opt/${vendor}/${name}`]
      const seen = machine.firstSeen
      softwareInventory.push({
        id: `${machine.id}_${vendor}_${name}_${version}`,
        deviceId: machine.id,
        rbacGroupName: machine.rbacGroupName,
        deviceName: machine.computerDnsName,
        osPlatform: machine.osPlatform,
        softwareVendor: vendor,
        softwareName: name,
        softwareVersion: version,
        numberOfWeaknesses: open.length,
        diskPaths: path,
        registryPaths: [],
        softwareFirstSeenTimestamp: seen,
        endOfSupportStatus: version === versions.at(-1) && versions.length > 2 ? 'EOS Version' : 'None',
        endOfSupportDate: null
      })
      const users = installs.get(softwareId) ?? new Set()
      users.add(machine.id)
      installs.set(softwareId, users)
      for (const cve of open) {
        cve.exposedMachines++
        const kb = vendor === 'microsoft' ? String(5_030_000 + random.int(0, 9999)) : null
        softwareVulnerabilities.push({
          id: `${machine.id}_${vendor}_${name}_${version}_${cve.id}`,
          deviceId: machine.id,
          rbacGroupName: machine.rbacGroupName,
          deviceName: machine.computerDnsName,
          osPlatform: machine.osPlatform,
          osVersion: machine.osVersion,
          osArchitecture: 'x64',
          softwareVendor: vendor,
          softwareName: name,
          softwareVersion: version,
          cveId: cve.id,
          vulnerabilitySeverityLevel: cve.severity,
          recommendedSecurityUpdate: kb === null ? null : `April 2024 Security Updates (KB${kb})`,
          recommendedSecurityUpdateId: kb,
          recommendedSecurityUpdateUrl: kb === null ? null : `https://support.microsoft.com/help/${kb}`,
          diskPaths: path,
          registryPaths: [],
          lastSeenTimestamp: machine.lastSeen,
          firstSeenTimestamp: seen,
          exploitabilityLevel: cve.exploitInKit ? 'ExploitIsInKit' : cve.exploitVerified ? 'ExploitIsVerified' : cve.publicExploit ? 'ExploitIsPublic' : 'NoExploit',
          recommendationReference: `va-_-${vendor}-_-${name}`,
          securityUpdateAvailable: kb !== null
        })
      }
    }
  }

  const software = CATALOGUE.map(([vendor, name]): Software => {
    const id = `${vendor}-_-${name}`
    const list = cves.get(id) ?? []
    return {
      id,
      name,
      vendor,
      weaknesses: list.length,
      publicExploit: list.some((cve) => cve.publicExploit),
      activeAlert: false,
      exposedMachines: installs.get(id)?.size ?? 0,
      impactScore: Math.round(list.reduce((sum, cve) => sum + cve.cvssV3, 0) * 10) / 100
    }
  })
  return { software, vulnerabilities, softwareInventory, softwareVulnerabilities }
}
