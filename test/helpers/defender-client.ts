import { getGlobalDispatcher, type Dispatcher } from 'undici'
import type { SampleData, Simulator } from '../../src/simulator/index.js'

export interface ApiAnswer {
  status: number
  requestId: string
  body: any
}

/**
 * Calls the simulator's Defender API with a token holding `roles`; the path goes out exactly as
 * given (no normalisation), so encodings reach the simulator as a client sent them.
 */
export function defenderClient (sim: Simulator, roles: readonly string[]) {
  const token = sim.entra.issueAccessToken({ tenantId: sim.tenantId, clientId: sim.clientId, roles })
  return async (path: string, init: { method?: Dispatcher.HttpMethod, body?: unknown } = {}): Promise<ApiAnswer> => {
    const url = new URL(path, sim.defender.url)
    const res = await getGlobalDispatcher().request({
      origin: url.origin,
      path: path.startsWith('http') ? url.pathname + url.search : path,
      method: init.method ?? 'GET',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: init.body === undefined ? undefined : typeof init.body === 'string' ? init.body : JSON.stringify(init.body)
    })
    const text = await res.body.text()
    return { status: res.statusCode, requestId: String(res.headers['request-id']), body: text === '' ? undefined : JSON.parse(text) }
  }
}

/** Follows `@odata.nextLink` from `first`; the items of every page and the links followed. */
export async function walk (call: (path: string) => Promise<ApiAnswer>, first: string, limit = 200): Promise<{ items: any[], links: string[] }> {
  const items: any[] = []
  const links: string[] = []
  let next: string | undefined = first
  for (let page = 0; next !== undefined && page < limit; page++) {
    const answer = await call(next)
    if (answer.status !== 200) throw new TypeError(`${next}: ${answer.status} ${JSON.stringify(answer.body)}`)
    items.push(...answer.body.value)
    next = answer.body['@odata.nextLink']
    if (next !== undefined) links.push(next)
  }
  return { items, links }
}

/** A concrete path for a route of the simulator's table (`/api/machines/{id}/alerts`), with ids of its sample data. */
export function samplePath (data: SampleData, path: string): string {
  const machine = data.machines[3]
  const alert = data.alerts[0]
  const ip = [...data.evidence.values()].flat().find((item) => item.entityType === 'Ip')?.ipAddress ?? '10.0.0.1'
  const ids: Array<[string, string | undefined]> = [
    ['/api/alerts', alert?.id],
    ['/api/machineactions', data.machineActions[0]?.id],
    ['/api/machines', machine?.id],
    ['/api/files', data.files[0]?.sha1],
    ['/api/ips', ip],
    ['/api/users', 'adele.vance'],
    ['/api/vulnerabilities', data.softwareVulnerabilities[0]?.cveId],
    ['/api/software', data.software[0]?.id],
    ['/api/indicators', data.indicators[0]?.id],
    ['/api/investigations', data.investigations[0]?.id]
  ]
  const id = ids.find(([prefix]) => path.startsWith(prefix))?.[1] ?? ''
  return path.replace('{id}', id).replace('findbyip(*)', `findbyip(ip='${machine?.lastIpAddress ?? ''}',timestamp=${machine?.lastSeen ?? ''})`)
}
