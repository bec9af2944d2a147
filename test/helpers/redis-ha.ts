import { execFile, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { freePort } from './programs.js'
import { spawnRedisServer, stop } from './redis.js'

interface Teardown {
  teardown: (fn: () => unknown) => void
}

const run = promisify(execFile)
const WAIT_MS = 20_000

function workDir (t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'broker-redis-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function server (t: Teardown, dir: string, port: number, extra: string[] = []): Promise<ChildProcess> {
  const child = await spawnRedisServer([
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra
  ])
  t.teardown(() => stop(child, 'SIGKILL'))
  return child
}

/** Asks `check` every 50 ms until it gives a value, or fails after WAIT_MS saying `what`. */
async function until<T> (what: string, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + WAIT_MS
  let last: unknown
  for (;;) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`${what} did not happen in ${WAIT_MS} ms${last === undefined ? '' : `: ${String(last)}`}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

/** A short-lived client for a control command. */
export async function command (port: number, ...args: string[]): Promise<unknown> {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  try {
    await client.connect()
    return await client.call(args[0] as string, ...args.slice(1))
  } finally {
    client.disconnect()
  }
}

export interface SentinelGroup {
  name: string
  sentinels: Array<{ host: string, port: number }>
  /** The port of the primary the sentinels name now. */
  primaryPort (): Promise<number>
  /** SENTINEL FAILOVER, resolved once the sentinels name the former replica the primary. */
  failover (): Promise<number>
}

/**
 * One primary, one replica and three sentinels on free loopback ports, all killed in teardown.
 * Resolves once the sentinels know the replica, so a failover can pick it.
 */
export async function startSentinelGroup (t: Teardown, name = 'budgets'): Promise<SentinelGroup> {
  const dir = workDir(t)
  const [primary, replica, ...sentinelPorts] = await Promise.all(Array.from({ length: 5 }, () => freePort())) as [number, number, ...number[]]
  await server(t, dir, primary)
  await server(t, dir, replica, ['--replicaof', '127.0.0.1', String(primary)])
  await until('the replica\'s first sync', async () =>
    /master_link_status:up/.test(String(await command(replica, 'INFO', 'replication'))) ? true : undefined)
  await Promise.all(sentinelPorts.map(async (port) => {
    const conf = join(dir, `sentinel-${port}.conf`)
    writeFileSync(conf, [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${primary} 2`,
      `sentinel down-after-milliseconds ${name} 1000`,
      `sentinel failover-timeout ${name} 5000`,
      ''
    ].join('\n'))
    const child = await spawnRedisServer([conf, '--sentinel'], '+monitor master')
    t.teardown(() => stop(child, 'SIGKILL'))
  }))
  const primaryPort = async () => {
    const [, port] = await command(sentinelPorts[0] as number, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name) as [string, string]
    return Number(port)
  }
  await Promise.all(sentinelPorts.map((port) => until(`sentinel ${port} finding the replica`, async () => {
    const replicas = await command(port, 'SENTINEL', 'REPLICAS', name) as string[][]
    return replicas.some((fields) => fields.includes(String(replica)) && fields.includes('slave')) ? true : undefined
  })))
  return {
    name,
    sentinels: sentinelPorts.map((port) => ({ host: '127.0.0.1', port })),
    primaryPort,
    async failover () {
      const before = await primaryPort()
      await command(sentinelPorts[0] as number, 'SENTINEL', 'FAILOVER', name)
      return until('the failover', async () => {
        const now = await primaryPort()
        return now !== before ? now : undefined
      })
    }
  }
}

export interface ClusterNode {
  host: string
  port: number
  /** SIGKILL, as a crash. */
  kill (): Promise<void>
}

/** Three primaries, no replicas, joined with redis-cli --cluster create; killed in teardown. */
export async function startCluster (t: Teardown): Promise<ClusterNode[]> {
  const dir = workDir(t)
  const ports = await Promise.all(Array.from({ length: 6 }, () => freePort()))
  const nodes = [0, 1, 2].map((i) => ({ port: ports[i] as number, bus: ports[i + 3] as number }))
  const children = await Promise.all(nodes.map(({ port, bus }) => server(t, dir, port, [
    '--cluster-enabled', 'yes', '--cluster-port', String(bus), '--cluster-config-file', join(dir, `nodes-${port}.conf`)
  ])))
  await run('redis-cli', ['--cluster', 'create', ...nodes.map(({ port }) => `127.0.0.1:${port}`), '--cluster-replicas', '0', '--cluster-yes'])
  await Promise.all(nodes.map(({ port }) => until(`node ${port} seeing the cluster whole`, async () =>
    /cluster_state:ok/.test(String(await command(port, 'CLUSTER', 'INFO'))) ? true : undefined)))
  return nodes.map(({ port }, i) => ({ host: '127.0.0.1', port, kill: () => stop(children[i], 'SIGKILL') }))
}
