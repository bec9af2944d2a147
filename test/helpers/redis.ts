import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../src/app.js'
import type { Config } from '../../src/config/types.js'
import { createLogger } from '../../src/observability/logger.js'
import type { RateBudget } from '../../src/ratelimit/profile-budget.js'
import { createLogSink, type LogSink } from './broker.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { tmpdir } from 'node:os'
import { freePort, missingProgram } from './programs.js'

interface Teardown {
  teardown: (fn: () => unknown) => void
}

const READY = 'Ready to accept connections'
const START_TIMEOUT_MS = 10_000

/** Skips the file outside CI, fails it in CI, when there is no redis-server; true when the tests can run. */
export function requireRedis (t: { plan: (count: number, comment?: string) => void, fail: (message: string) => unknown }): boolean {
  const reason = missingProgram(t, { command: 'redis-server', versionArgs: ['--version'], neededFor: 'the shared-budget tests need a real Redis' })
  if (reason === undefined) return true
  if (process.env.CI === undefined || process.env.CI === '') t.plan(0, `skipped: ${reason}`)
  return false
}

export interface RedisServer {
  port: number
  url: string
  /** SIGKILL, as a crash: no goodbye to the clients. */
  kill (): Promise<void>
  /** SIGSTOP: the connections stay up and nothing answers, as a hung Redis. */
  freeze (): void
  thaw (): void
  /** Starts again on the same port, empty. */
  restart (): Promise<void>
}

async function spawnRedis (port: number, password: string | undefined): Promise<ChildProcess> {
  return spawnRedisServer([
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmpdir(),
    ...(password === undefined ? [] : ['--requirepass', password])
  ])
}

/** redis-server with `args`, once its output shows `ready` (a sentinel says it otherwise than a server). */
export async function spawnRedisServer (args: string[], ready = READY): Promise<ChildProcess> {
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`redis-server did not start in ${START_TIMEOUT_MS} ms: ${output}`)), START_TIMEOUT_MS)
    const onData = (chunk: Buffer) => {
      output += String(chunk)
      if (output.includes(ready)) done()
    }
    const onExit = (code: number | null) => fail(new Error(`redis-server exited (${code}) before it was ready: ${output}`))
    const cleanUp = () => {
      clearTimeout(timer)
      child.stdout?.off('data', onData)
      child.off('exit', onExit)
      child.off('error', fail)
    }
    function done () {
      cleanUp()
      resolve()
    }
    function fail (err: Error) {
      cleanUp()
      child.kill('SIGKILL')
      reject(err)
    }
    child.stdout?.on('data', onData)
    child.on('exit', onExit)
    child.on('error', fail)
  })
  child.stdout?.resume()
  child.stderr?.resume()
  return child
}

export async function stop (child: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGCONT')
  child.kill(signal)
  await exited
}

/**
 * A redis-server of its own on a free loopback port (port 0 would turn its TCP listener off),
 * persisting nothing, killed in teardown.
 */
export async function startRedis (t: Teardown, options: { password?: string, port?: number } = {}): Promise<RedisServer> {
  const port = options.port ?? await freePort()
  let child: ChildProcess | undefined = await spawnRedis(port, options.password)
  t.teardown(() => stop(child, 'SIGKILL'))
  return {
    port,
    url: options.password === undefined
      ? `redis://127.0.0.1:${port}`
      : `redis://:${encodeURIComponent(options.password)}@127.0.0.1:${port}`,
    async kill () {
      await stop(child, 'SIGKILL')
      child = undefined
    },
    freeze () {
      child?.kill('SIGSTOP')
    },
    thaw () {
      child?.kill('SIGCONT')
    },
    async restart () {
      await stop(child, 'SIGKILL')
      child = await spawnRedis(port, options.password)
    }
  }
}

/** A broker serving a shared budget, as one replica runs it. */
export interface BudgetBroker {
  app: FastifyInstance
  url: string
  logs: LogSink
  budget: RateBudget
}

/** Builds the broker of `config`, listens on 127.0.0.1 port 0, and waits for its first token. */
export async function startBudgetBroker (t: { teardown: (fn: () => unknown) => void }, config: Config): Promise<BudgetBroker> {
  const logs = createLogSink()
  const app = await buildApp(config, { logger: createLogger({ level: 'debug', destination: logs.stream }), env: {} })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  const url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
  await Promise.all(app.profiles.map((profile) => profile.tokens.get()))
  return { app, url, logs, budget: (app.profiles[0] as { budget: RateBudget }).budget }
}

/** How many answers had each status. */
export function countStatuses (statuses: number[]): Record<number, number> {
  const counts: Record<number, number> = {}
  for (const status of statuses) counts[status] = (counts[status] ?? 0) + 1
  return counts
}
