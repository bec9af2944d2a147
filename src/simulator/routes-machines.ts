import { alertList, fileEntity, fileOf } from './routes-alerts.js'
import { badRequest, byId, entity, list, shapeOf } from './router.js'
import type { RouteContext, RouteDefinition } from './router.js'
import type { Machine, SampleData } from './sample-data.js'
import { softwareOf, vulnerabilitiesOf } from './routes-tvm.js'

const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)$/
const FIND_WINDOW_MS = 15 * 60 * 1000
const FIND_HORIZON_MS = 30 * 24 * 60 * 60 * 1000

/** A machine by its id or, as the API also takes, its computer DNS name. */
function machineOf (ctx: RouteContext): Machine {
  const key = (ctx.params[0] ?? '').toLowerCase()
  return ctx.state.data.machines.find((machine) => machine.computerDnsName.toLowerCase() === key) ??
    byId(ctx.state.data.machines, ctx.params[0] ?? '', 'Machine')
}

export function machineList (ctx: RouteContext, machines: readonly Machine[]) {
  return list(ctx, { shape: shapeOf('Machine', ctx.state.data.machines[0]), context: 'Machines', items: machines })
}

/** `findbyip(ip='10.0.1.20',timestamp=2024-05-01T10:00:00Z)`: machines that had the address 15 minutes either side. */
function findByIp (ctx: RouteContext) {
  const args = new Map<string, string>()
  for (const part of (ctx.params[0] ?? '').split(',')) {
    const match = /^\s*(\w+)\s*=\s*'?([^']*)'?\s*$/.exec(part)
    if (match !== null) args.set((match[1] as string).toLowerCase(), match[2] as string)
  }
  const ip = args.get('ip') ?? ''
  const timestamp = Date.parse(args.get('timestamp') ?? '')
  if (!IPV4.test(ip)) throw badRequest(`findbyip needs ip='<IPv4 address>', not '${ip}'.`, 'InvalidInput')
  if (Number.isNaN(timestamp)) throw badRequest('findbyip needs timestamp=<ISO 8601 date and time>.', 'InvalidInput')
  if (timestamp < ctx.state.clock.now() - FIND_HORIZON_MS) throw badRequest('The timestamp must be within the last 30 days.', 'InvalidInput')
  const machines = ctx.state.data.machines.filter((machine) =>
    (machine.lastIpAddress === ip || machine.ipAddresses.some((address) => address.ipAddress === ip)) &&
    timestamp >= Date.parse(machine.firstSeen) - FIND_WINDOW_MS && timestamp <= Date.parse(machine.lastSeen) + FIND_WINDOW_MS)
  return machineList(ctx, machines)
}

/** `findbytag?tag=Tier0&useStartsWithFilter=true` */
function findByTag (ctx: RouteContext) {
  const tag = ctx.query.get('tag')
  if (tag === null || tag === '') throw badRequest('findbytag needs a tag parameter.', 'InvalidInput')
  const startsWith = ctx.query.get('useStartsWithFilter')?.toLowerCase() === 'true'
  const lower = tag.toLowerCase()
  return machineList(ctx, ctx.state.data.machines.filter((machine) =>
    machine.machineTags.some((candidate) => startsWith ? candidate.toLowerCase().startsWith(lower) : candidate.toLowerCase() === lower)))
}

function logonUsers (ctx: RouteContext) {
  const machine = machineOf(ctx)
  const sample = [...ctx.state.data.logonUsers.values()].find((users) => users.length > 0)?.[0]
  return list(ctx, { shape: shapeOf('User', sample), context: 'Users', items: ctx.state.data.logonUsers.get(machine.id) ?? [] })
}

function alertsWithFile (data: SampleData, sha1: string) {
  return data.alerts.filter((alert) => (data.evidence.get(alert.id) ?? []).some((item) => item.sha1 === sha1))
}

function machinesOf (data: SampleData, ids: Iterable<string>): Machine[] {
  const wanted = new Set(ids)
  return data.machines.filter((machine) => wanted.has(machine.id))
}

function ipOf (ctx: RouteContext): string {
  const ip = ctx.params[0] ?? ''
  if (!IPV4.test(ip)) throw badRequest(`'${ip}' is not a valid IP address.`, 'InvalidInput')
  return ip
}

function alertsWithIp (data: SampleData, ip: string) {
  const machines = new Set(data.machines.filter((machine) => machine.lastIpAddress === ip).map((machine) => machine.id))
  return data.alerts.filter((alert) => machines.has(alert.machineId) || (data.evidence.get(alert.id) ?? []).some((item) => item.ipAddress === ip))
}

/** A user id is `domain\name` or the bare account name. */
function userName (ctx: RouteContext): string {
  return (ctx.params[0] ?? '').split('\\').at(-1)?.toLowerCase() ?? ''
}

export const MACHINE_ROUTES: RouteDefinition[] = [
  { method: 'GET', path: '/api/machines', handle: (ctx) => machineList(ctx, ctx.state.data.machines) },
  { method: 'GET', path: '/api/machines/{id}', handle: (ctx) => entity(ctx.state, 'Machines', machineOf(ctx)) },
  {
    method: 'GET',
    path: '/api/machines/{id}/alerts',
    handle: (ctx) => {
      const machine = machineOf(ctx)
      return alertList(ctx, ctx.state.data.alerts.filter((alert) => alert.machineId === machine.id))
    }
  },
  { method: 'GET', path: '/api/machines/{id}/software', handle: (ctx) => softwareOf(ctx, machineOf(ctx).id) },
  { method: 'GET', path: '/api/machines/{id}/vulnerabilities', handle: (ctx) => vulnerabilitiesOf(ctx, machineOf(ctx).id) },
  { method: 'GET', path: '/api/machines/{id}/logonusers', handle: logonUsers },
  { method: 'GET', path: '/api/machines/findbyip(*)', handle: findByIp },
  { method: 'GET', path: '/api/machines/findbytag', handle: findByTag },

  { method: 'GET', path: '/api/files/{id}', handle: (ctx) => entity(ctx.state, 'Files', fileEntity(fileOf(ctx.state.data, ctx.params[0] ?? ''))) },
  { method: 'GET', path: '/api/files/{id}/alerts', handle: (ctx) => alertList(ctx, alertsWithFile(ctx.state.data, fileOf(ctx.state.data, ctx.params[0] ?? '').sha1)) },
  {
    method: 'GET',
    path: '/api/files/{id}/machines',
    handle: (ctx) => {
      const file = fileOf(ctx.state.data, ctx.params[0] ?? '')
      return machineList(ctx, machinesOf(ctx.state.data, alertsWithFile(ctx.state.data, file.sha1).map((alert) => alert.machineId)))
    }
  },
  {
    method: 'GET',
    path: '/api/files/{id}/stats',
    handle: (ctx) => {
      const file = fileOf(ctx.state.data, ctx.params[0] ?? '')
      const alerts = alertsWithFile(ctx.state.data, file.sha1)
      const times = alerts.map((alert) => alert.firstEventTime).sort()
      return {
        status: 200,
        body: {
          '@odata.context': `${ctx.state.url}/api/$metadata#microsoft.windowsDefenderATP.api.FileStats`,
          sha1: file.sha1,
          orgPrevalence: String(new Set(alerts.map((alert) => alert.machineId)).size),
          orgFirstSeen: times[0] ?? null,
          orgLastSeen: times.at(-1) ?? null,
          globalPrevalence: String(file.globalPrevalence),
          globalFirstObserved: file.globalFirstObserved,
          globalLastObserved: file.globalLastObserved,
          topFileNames: [file.fileName]
        }
      }
    }
  },
  { method: 'GET', path: '/api/ips/{id}/alerts', handle: (ctx) => alertList(ctx, alertsWithIp(ctx.state.data, ipOf(ctx))) },
  {
    method: 'GET',
    path: '/api/ips/{id}/stats',
    handle: (ctx) => {
      const ip = ipOf(ctx)
      const alerts = alertsWithIp(ctx.state.data, ip)
      const times = alerts.map((alert) => alert.firstEventTime).sort()
      return {
        status: 200,
        body: {
          '@odata.context': `${ctx.state.url}/api/$metadata#microsoft.windowsDefenderATP.api.InOrgIPStats`,
          ipAddress: ip,
          orgPrevalence: String(new Set(alerts.map((alert) => alert.machineId)).size),
          orgFirstSeen: times[0] ?? null,
          orgLastSeen: times.at(-1) ?? null
        }
      }
    }
  },
  {
    method: 'GET',
    path: '/api/users/{id}/alerts',
    handle: (ctx) => {
      const name = userName(ctx)
      return alertList(ctx, ctx.state.data.alerts.filter((alert) => alert.relatedUser?.userName.toLowerCase() === name))
    }
  },
  {
    method: 'GET',
    path: '/api/users/{id}/machines',
    handle: (ctx) => {
      const name = userName(ctx)
      const ids = [...ctx.state.data.logonUsers.entries()].filter(([, users]) => users.some((user) => user.accountName === name)).map(([id]) => id)
      return machineList(ctx, machinesOf(ctx.state.data, ids))
    }
  }
]
