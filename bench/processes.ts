/** Starting, watching and stopping the benchmark's child processes. */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { accessSync, chmodSync, closeSync, constants, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer, connect, type AddressInfo } from 'node:net'
import { delimiter, dirname, join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'

const children = new Set<ChildProcess>()

/** Kills whatever is still running, synchronously: for process exit and signals. */
export function killAllChildren (): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
  children.clear()
}

function track (child: ChildProcess): ChildProcess {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

/** Keeps the last few KiB a stream wrote, for error messages. */
function tail (stream: NodeJS.ReadableStream | null): () => string {
  let text = ''
  stream?.on('data', (chunk: Buffer) => {
    text = (text + chunk.toString('utf8')).slice(-4096)
  })
  return () => text.trim()
}

export async function stopChild (child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill(signal)
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  try {
    await exited
  } finally {
    clearTimeout(timer)
  }
}

/** Environment for children: no proxy settings, nothing of a broker configured around us. */
export function cleanEnv (extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [name, value] of Object.entries(process.env)) {
    const upper = name.toUpperCase()
    if (upper.startsWith('BROKER_') || upper.startsWith('AZURE_') || upper.endsWith('_PROXY') || upper === 'NODE_OPTIONS') continue
    env[name] = value
  }
  return { ...env, ...extra }
}

export interface IpcChild<T> {
  child: ChildProcess
  ready: T
  stop: () => Promise<void>
}

/** Starts `node script` with an IPC channel and waits for its `{ type: 'ready' }` message. */
export async function startIpcChild<T extends { type: 'ready' }> (
  script: string,
  env: Record<string, string> = {},
  timeoutMs = 30_000
): Promise<IpcChild<T>> {
  const child = track(spawn(process.execPath, [script], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: cleanEnv(env)
  }))
  const stderr = tail(child.stderr)
  const ready = await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script} not ready after ${timeoutMs} ms: ${stderr()}`)), timeoutMs)
    child.on('message', (message: { type?: string }) => {
      if (message.type === 'ready') {
        clearTimeout(timer)
        resolve(message as T)
      }
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`${script} exited (${code ?? signal ?? '?'}) before it was ready: ${stderr()}`))
    })
  })
  return { child, ready, stop: () => stopChild(child) }
}

/** Resident set size of a process in bytes, from /proc (Linux); undefined elsewhere. */
export function rssBytes (pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined
  try {
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return match?.[1] === undefined ? undefined : Number(match[1]) * 1024
  } catch {
    return undefined
  }
}

/** Where a process's resident memory is, from /proc/PID/smaps_rollup (Linux), in bytes. */
export interface MemoryParts {
  rss: number
  /** The process's own memory: V8's heap, buffers, malloc'd memory. */
  anonymous: number
  /** Pages of files, most of them the Node.js binary's, shared by every process that maps them. */
  fileBacked: number
}

export function memoryParts (pid: number | undefined): MemoryParts | undefined {
  if (pid === undefined) return undefined
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8')
    const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN) * 1024
    const rss = kib('Rss')
    const anonymous = kib('Anonymous')
    if (Number.isNaN(rss) || Number.isNaN(anonymous)) return undefined
    return { rss, anonymous, fileBacked: rss - anonymous }
  } catch {
    return undefined
  }
}

/** CPU seconds (user + system) a process has used, from /proc (Linux); undefined elsewhere. */
export function cpuSeconds (pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The fields after the command name, which is in parentheses and may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND
  } catch {
    return undefined
  }
}

/** Linux's USER_HZ, what /proc counts CPU time in, on every architecture Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100

/** A port that was free a moment ago, for servers that cannot be told to listen on port 0. */
export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  await once(server, 'close')
  return port
}

async function canConnect (port: number): Promise<boolean> {
  const socket = connect(port, '127.0.0.1')
  try {
    await once(socket, 'connect')
    return true
  } catch {
    return false
  } finally {
    socket.destroy()
  }
}

/** `promise`, or a rejection after `ms` with the message `describe` gives then. */
export async function withTimeout<T> (promise: Promise<T>, ms: number, describe: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(describe())), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** GETs `url` every 20 ms until it answers `status`; bounded by `timeoutMs`. */
export async function waitForStatus (url: string, status: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs
  let last = 'no answer'
  while (performance.now() < deadline) {
    try {
      const response = await request(url, { headersTimeout: 2000, bodyTimeout: 2000 })
      const text = await response.body.text()
      if (response.statusCode === status) return
      last = `${response.statusCode} ${text.slice(0, 300)}`
    } catch (err) {
      last = (err as Error).message
    }
    await sleep(20)
  }
  throw new Error(`${url} did not answer ${status} within ${timeoutMs} ms (last: ${last})`)
}

// ---------------------------------------------------------------------------------------------
// The broker: the real CLI.

export interface BrokerFiles {
  /** Config files by variant, written once. */
  configFor: (variant: { refreshBeforeSeconds?: number }) => string
  caFile: string
}

export interface BrokerStartOptions {
  cli: string
  files: BrokerFiles
  authorityHost: string
  logLevel: 'info' | 'warn'
  refreshBeforeSeconds?: number
  /** The Node.js binary to run the broker on; the bench's own by default. */
  nodePath?: string
  /** Resolves as soon as the broker listens, before its first token is in. */
  onListening?: (url: string) => void
}

export interface Broker {
  child: ChildProcess
  pid: number
  url: string
  /** Spawn to the 'broker listening' log line (info), or to the first /healthz answer (warn). */
  listeningMs: number
  /** How `listeningMs` was measured. */
  listeningFrom: 'log line' | 'healthz'
  stop: () => Promise<void>
}

const LISTENING = '"msg":"broker listening"'
let brokerLogs = 0

/**
 * Spawns `node dist/bin/defender-token-broker.js serve --config FILE` and resolves once it listens. At info, the
 * port comes from the 'broker listening' line; at warn that line is not logged, so the broker
 * gets a port picked beforehand and is polled on /healthz. Its stdout (one line per request at
 * info) goes to a file beside its config.
 */
export async function startBroker (options: BrokerStartOptions): Promise<Broker> {
  const port = options.logLevel === 'info' ? 0 : await freePort()
  const configPath = options.files.configFor(
    options.refreshBeforeSeconds === undefined ? {} : { refreshBeforeSeconds: options.refreshBeforeSeconds }
  )
  const env = cleanEnv({
    AZURE_AUTHORITY_HOST: options.authorityHost,
    BROKER_CA_FILE: options.files.caFile,
    BROKER_PORT: String(port),
    BROKER_LOG_LEVEL: options.logLevel
  })
  // The log goes to a file, as it would go to a container's log driver: read through a pipe, it
  // would cost the load generator in this process CPU in the broker's rounds only.
  const logPath = join(dirname(options.files.caFile), `broker-${++brokerLogs}.log`)
  const logFd = openSync(logPath, 'w')
  const spawnedAt = performance.now()
  const child = track(spawn(options.nodePath ?? process.execPath, [options.cli, 'serve', '--config', configPath], {
    stdio: ['ignore', logFd, 'pipe'],
    env
  }))
  closeSync(logFd)
  const stderr = tail(child.stderr)
  const exited = new Promise<never>((_resolve, reject) => {
    child.once('exit', (code, signal) => reject(new Error(`the broker exited (${code ?? signal ?? '?'}): ${stderr()}`)))
  })
  exited.catch(() => {})
  const stop = () => stopChild(child)

  let url: string
  let listeningMs: number
  try {
    if (options.logLevel === 'info') {
      const listening = (async () => {
        // The start-up line is written at once (the broker flushes its log after it); polling
        // the file every 2 ms is as close as reading a pipe.
        for (;;) {
          const text = readFileSync(logPath, 'utf8')
          const at = text.indexOf(LISTENING)
          const end = at === -1 ? -1 : text.indexOf('\n', at)
          if (end !== -1) {
            const line = JSON.parse(text.slice(text.lastIndexOf('\n', at) + 1, end)) as { listen: string }
            return { url: line.listen, at: performance.now() }
          }
          await sleep(2)
        }
      })()
      const result = await withTimeout(Promise.race([listening, exited]), 20_000,
        () => `the broker did not log 'broker listening' within 20 s: ${stderr()}`)
      url = result.url
      listeningMs = result.at - spawnedAt
      options.onListening?.(url)
    } else {
      url = `http://127.0.0.1:${port}`
      await Promise.race([waitForStatus(`${url}/healthz`, 200, 20_000), exited])
      listeningMs = performance.now() - spawnedAt
    }
  } catch (err) {
    await stop()
    throw err
  }
  return {
    child,
    pid: child.pid as number,
    url,
    listeningMs,
    listeningFrom: options.logLevel === 'info' ? 'log line' : 'healthz',
    stop
  }
}

export function writeBrokerFiles (dir: string, fixtures: {
  upstream: string
  tenantId: string
  clientId: string
  clientSecret: string
  caPem: string
}): BrokerFiles {
  const secretFile = join(dir, 'client-secret')
  writeFileSync(secretFile, fixtures.clientSecret, { mode: 0o600 })
  chmodSync(secretFile, 0o600)
  const caFile = join(dir, 'ca.pem')
  writeFileSync(caFile, fixtures.caPem)
  const written = new Map<string, string>()
  return {
    caFile,
    configFor ({ refreshBeforeSeconds }) {
      const key = refreshBeforeSeconds === undefined ? 'default' : `refresh-${refreshBeforeSeconds}`
      const existing = written.get(key)
      if (existing !== undefined) return existing
      // The API's default budget (100 a minute) would turn a load test into a rate-limit test:
      // the largest budget the schema accepts, and a 429 after 1 s of queueing if it ever binds.
      const lines = [
        'profiles:',
        '  - name: bench',
        '    basePath: /',
        `    tenantId: ${fixtures.tenantId}`,
        `    clientId: ${fixtures.clientId}`,
        `    credential: { type: secret, secretFile: ${JSON.stringify(secretFile)} }`,
        `    upstream: ${fixtures.upstream}`,
        '    rateLimit: { perMinute: 100000, perHour: 1000000, maxQueueSeconds: 1 }'
      ]
      if (refreshBeforeSeconds !== undefined) lines.push(`refresh: { beforeSeconds: ${refreshBeforeSeconds} }`)
      const path = join(dir, `broker-${key}.yaml`)
      writeFileSync(path, lines.join('\n') + '\n')
      written.set(key, path)
      return path
    }
  }
}

/** Milliseconds from spawning `node -e 0` to its exit: node's own start-up on this machine. */
export async function nodeStartupMs (nodePath = process.execPath): Promise<number> {
  const started = performance.now()
  const child = spawn(nodePath, ['-e', '0'], { stdio: 'ignore', env: cleanEnv({}) })
  await once(child, 'exit')
  return performance.now() - started
}

// ---------------------------------------------------------------------------------------------
// nginx, when installed.

export function findNginx (): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/usr/local/nginx/sbin']
  for (const dir of dirs) {
    if (dir === '') continue
    const candidate = join(dir, 'nginx')
    try {
      accessSync(candidate, constants.X_OK)
      return candidate
    } catch {}
  }
  return undefined
}

export interface Nginx {
  url: string
  version: string
  stop: () => Promise<void>
}

export async function nginxVersion (bin: string): Promise<string> {
  const child = spawn(bin, ['-v'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let text = ''
  child.stdout?.on('data', (c: Buffer) => { text += c.toString() })
  child.stderr?.on('data', (c: Buffer) => { text += c.toString() })
  await once(child, 'exit')
  return text.trim().replace(/^nginx version:\s*/, '')
}

/**
 * nginx in a prefix of its own: one worker, a keep-alive upstream block, the Authorization
 * header set, no access log, in the foreground as our child.
 */
export async function startNginx (bin: string, prefix: string, upstreamPort: number, token: string): Promise<Nginx> {
  const version = await nginxVersion(bin)
  let lastError: Error | undefined
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort()
    const temp = (name: string) => {
      const path = join(prefix, name)
      mkdirSync(path, { recursive: true, mode: 0o777 })
      chmodSync(path, 0o777)
      return path
    }
    // nginx started as root runs its worker as nobody, which must reach the temp directories.
    mkdirSync(prefix, { recursive: true })
    chmodSync(prefix, 0o755)
    const conf = `worker_processes 1;
daemon off;
master_process on;
pid ${join(prefix, 'nginx.pid')};
error_log ${join(prefix, 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${temp('client_body')};
  proxy_temp_path ${temp('proxy')};
  fastcgi_temp_path ${temp('fastcgi')};
  uwsgi_temp_path ${temp('uwsgi')};
  scgi_temp_path ${temp('scgi')};
  keepalive_requests 1000000;
  upstream defender {
    server 127.0.0.1:${upstreamPort};
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://defender;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer ${token}";
      # Streams a long body through its memory buffers, as the proxies in Node do, never to disk.
      proxy_max_temp_file_size 0;
    }
  }
}
`
    const confPath = join(prefix, 'nginx.conf')
    writeFileSync(confPath, conf)
    const child = track(spawn(bin, ['-p', prefix + '/', '-c', confPath, '-e', join(prefix, 'error.log')], {
      stdio: ['ignore', 'ignore', 'pipe']
    }))
    const stderr = tail(child.stderr)
    const started = performance.now()
    let up = false
    while (performance.now() - started < 5000 && child.exitCode === null && child.signalCode === null) {
      if (await canConnect(port)) {
        up = true
        break
      }
      await sleep(50)
    }
    if (up) {
      return { url: `http://127.0.0.1:${port}`, version, stop: () => stopChild(child, 'SIGQUIT') }
    }
    let log = ''
    try { log = readFileSync(join(prefix, 'error.log'), 'utf8').slice(-2000) } catch {}
    lastError = new Error(`nginx did not start: ${stderr()} ${log}`.trim())
    await stopChild(child, 'SIGTERM')
  }
  throw lastError ?? new Error('nginx did not start')
}
