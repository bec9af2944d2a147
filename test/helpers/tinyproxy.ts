import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort, missingProgram } from './programs.js'

interface Teardown {
  teardown: (fn: () => unknown) => void
}

const READY = 'Accepting connections'
const WAIT_MS = 10_000

/**
 * False when the proxy tests can run; otherwise the reason, for the tests' `skip` option. In CI,
 * where they must run, `t` fails as well.
 */
export function skipWithoutTinyproxy (t: { fail: (message: string) => unknown }): string | false {
  return missingProgram(t, { command: 'tinyproxy', versionArgs: ['-v'], neededFor: 'the outbound proxy tests need a real forward proxy' }) ?? false
}

export interface TinyproxyOptions {
  /** `BasicAuth user password`: the proxy then answers 407 to anyone else. */
  basicAuth?: { user: string, password: string }
  /** The only ports CONNECT may reach; any port when not given. */
  connectPorts?: number[]
}

export interface Tinyproxy {
  port: number
  /** `http://127.0.0.1:PORT`, with no credentials. */
  url: string
  /** The proxy's log so far. */
  log (): string
  /** Resolves with the log once a line matches; rejects after 10 s. */
  waitForLog (pattern: RegExp): Promise<string>
  /** The `CONNECT host:port` requests logged so far. */
  connects (): string[]
  /** The absolute-form requests (`GET http://…`) logged so far. */
  forwarded (): string[]
}

function readLog (file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}

/** Watches the log file (its directory: the file appears with the proxy) until a line matches. */
function waitForLog (dir: string, file: string, pattern: RegExp, child?: ChildProcess): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const watcher = watch(dir)
    const timer = setTimeout(() => finish(new Error(`tinyproxy logged nothing matching ${pattern} in ${WAIT_MS} ms:\n${readLog(file)}`)), WAIT_MS)
    const onExit = (code: number | null) => finish(new Error(`tinyproxy exited (${code}):\n${readLog(file)}`))
    function check (): void {
      const text = readLog(file)
      if (pattern.test(text)) finish(undefined, text)
    }
    function finish (err: Error | undefined, text = ''): void {
      clearTimeout(timer)
      watcher.close()
      child?.off('exit', onExit)
      if (err === undefined) resolve(text)
      else reject(err)
    }
    watcher.on('change', check)
    child?.once('exit', onExit)
    check()
  })
}

/**
 * Debian's tinyproxy on 127.0.0.1 and a free port, with its config and log in a temporary
 * directory, in the foreground; stopped at the test's end.
 */
export async function startTinyproxy (t: Teardown, options: TinyproxyOptions = {}): Promise<Tinyproxy> {
  const dir = mkdtempSync(join(tmpdir(), 'tinyproxy-'))
  const port = await freePort()
  const logFile = join(dir, 'tinyproxy.log')
  const config = join(dir, 'tinyproxy.conf')
  writeFileSync(config, [
    `Port ${port}`,
    'Listen 127.0.0.1',
    'Timeout 30',
    `LogFile "${logFile}"`,
    'LogLevel Info',
    'MaxClients 50',
    'Allow 127.0.0.1',
    'DisableViaHeader Yes',
    ...(options.connectPorts ?? []).map((connectPort) => `ConnectPort ${connectPort}`),
    ...(options.basicAuth === undefined ? [] : [`BasicAuth ${options.basicAuth.user} ${options.basicAuth.password}`]),
    ''
  ].join('\n'))
  const child = spawn('tinyproxy', ['-d', '-c', config], { stdio: ['ignore', 'ignore', 'pipe'] })
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      await exited
    }
    rmSync(dir, { recursive: true, force: true })
  })
  await waitForLog(dir, logFile, new RegExp(READY), child)
  const lines = (pattern: RegExp): string[] => [...readLog(logFile).matchAll(pattern)].map((match) => match[1] ?? '')
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    log: () => readLog(logFile),
    waitForLog: (pattern) => waitForLog(dir, logFile, pattern),
    connects: () => lines(/Request \(file descriptor \d+\): CONNECT (\S+) HTTP/g),
    forwarded: () => lines(/Request \(file descriptor \d+\): (?!CONNECT )(\S+ \S+) HTTP/g)
  }
}
