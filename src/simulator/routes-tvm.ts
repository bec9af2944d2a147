import { byId, entity, exportList, list, shapeOf } from './router.js'
import type { RouteContext, RouteDefinition } from './router.js'
import type { Vulnerability } from './sample-tvm.js'

export function softwareOf (ctx: RouteContext, machineId: string) {
  const { software, softwareInventory } = ctx.state.data
  const installed = new Set(softwareInventory.filter((row) => row.deviceId === machineId).map((row) => `${row.softwareVendor}-_-${row.softwareName}`))
  return list(ctx, { shape: shapeOf('Software', software[0]), context: 'Software', items: software.filter((item) => installed.has(item.id)) })
}

function vulnerabilityList (ctx: RouteContext, items: readonly Vulnerability[]) {
  return list(ctx, { shape: shapeOf('Vulnerability', ctx.state.data.vulnerabilities[0]), context: 'Vulnerabilities', items }, VULNERABILITY_PAGE_SIZE)
}

/** The API's largest page of `GET /api/vulnerabilities` (`$top` up to 8,000). */
const VULNERABILITY_PAGE_SIZE = 8000

export function vulnerabilitiesOf (ctx: RouteContext, machineId: string) {
  const open = new Set(ctx.state.data.softwareVulnerabilities.filter((row) => row.deviceId === machineId).map((row) => row.cveId))
  return vulnerabilityList(ctx, ctx.state.data.vulnerabilities.filter((cve) => open.has(cve.id)))
}

function machineReferences (ctx: RouteContext, keep: (row: { deviceId: string, cveId?: string, softwareVendor: string, softwareName: string }) => boolean) {
  const ids = new Set(ctx.state.data.softwareInventory.filter(keep).map((row) => row.deviceId))
  for (const row of ctx.state.data.softwareVulnerabilities) if (keep(row)) ids.add(row.deviceId)
  const items = ctx.state.data.machines.filter((machine) => ids.has(machine.id)).map((machine) => ({
    id: machine.id,
    computerDnsName: machine.computerDnsName,
    osPlatform: machine.osPlatform,
    rbacGroupName: machine.rbacGroupName,
    rbacGroupId: machine.rbacGroupId
  }))
  return list(ctx, { shape: shapeOf('MachineReference', items[0] ?? { id: '', computerDnsName: '', osPlatform: '', rbacGroupName: '', rbacGroupId: 0 }), context: 'MachineReferences', items })
}

export const TVM_ROUTES: RouteDefinition[] = [
  { method: 'GET', path: '/api/vulnerabilities', handle: (ctx) => vulnerabilityList(ctx, ctx.state.data.vulnerabilities) },
  { method: 'GET', path: '/api/vulnerabilities/{id}', handle: (ctx) => entity(ctx.state, 'Vulnerabilities', byId(ctx.state.data.vulnerabilities, ctx.params[0] ?? '', 'Vulnerability')) },
  {
    method: 'GET',
    path: '/api/vulnerabilities/{id}/machinereferences',
    handle: (ctx) => {
      const cve = byId(ctx.state.data.vulnerabilities, ctx.params[0] ?? '', 'Vulnerability')
      return machineReferences(ctx, (row) => row.cveId === cve.id)
    }
  },
  {
    method: 'GET',
    path: '/api/vulnerabilities/machinesvulnerabilities',
    handle: (ctx) => {
      const items = ctx.state.data.softwareVulnerabilities.map((row) => ({
        id: `${row.deviceId}-_-${row.cveId}-_-${row.softwareVendor}-_-${row.softwareName}-_-${row.softwareVersion}`,
        cveId: row.cveId,
        machineId: row.deviceId,
        fixingKbId: row.recommendedSecurityUpdateId,
        productName: row.softwareName,
        productVendor: row.softwareVendor,
        productVersion: row.softwareVersion,
        severity: row.vulnerabilitySeverityLevel
      }))
      return list(ctx, { shape: shapeOf('MachineVulnerability', items[0]), context: 'MachineVulnerabilities', items })
    }
  },
  { method: 'GET', path: '/api/software', handle: (ctx) => list(ctx, { shape: shapeOf('Software', ctx.state.data.software[0]), context: 'Software', items: ctx.state.data.software }) },
  { method: 'GET', path: '/api/software/{id}', handle: (ctx) => entity(ctx.state, 'Software', byId(ctx.state.data.software, ctx.params[0] ?? '', 'Software')) },
  {
    method: 'GET',
    path: '/api/software/{id}/machinereferences',
    handle: (ctx) => {
      const software = byId(ctx.state.data.software, ctx.params[0] ?? '', 'Software')
      return machineReferences(ctx, (row) => row.cveId === undefined && software.id === `${row.softwareVendor}-_-${row.softwareName}`)
    }
  },
  {
    method: 'GET',
    path: '/api/software/{id}/vulnerabilities',
    handle: (ctx) => {
      const software = byId(ctx.state.data.software, ctx.params[0] ?? '', 'Software')
      const cves = new Set(ctx.state.data.softwareVulnerabilities.filter((row) => software.id === `${row.softwareVendor}-_-${row.softwareName}`).map((row) => row.cveId))
      return vulnerabilityList(ctx, ctx.state.data.vulnerabilities.filter((cve) => cves.has(cve.id)))
    }
  },
  {
    method: 'GET',
    path: '/api/machines/softwarevulnerabilitiesbymachine',
    handle: (ctx) => exportList(ctx, 'Collection(microsoft.windowsDefenderATP.api.AssetVulnerability)', ctx.state.data.softwareVulnerabilities)
  },
  {
    method: 'GET',
    path: '/api/machines/softwareinventorybymachine',
    handle: (ctx) => exportList(ctx, 'Collection(microsoft.windowsDefenderATP.api.AssetSoftware)', ctx.state.data.softwareInventory)
  }
]
