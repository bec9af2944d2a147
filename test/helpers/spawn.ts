import { spawn, type ChildProcess } from 'node:child_process'
import { connect } from 'node:net'
import { fileURLToPath } from 'node:url'

/** The built entry point, as `npm start` and the package's bin run it. */
export const CLI_PATH = fileURLToPath(new URL('../../dist/bin/defender-token-broker.js', import.meta.url))

/** Long enough for a slow CI machine; a test that gets here has hung and fails. */
export const DEFAULT_WAIT_MS = 20_000

export interface Exit {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export interface CliProcess {
  child: ChildProcess
  stdout: () => string
  stderr: () => string
  /** Resolves with the first line of `stream` matching `pattern`; rejects if the process exits first or time runs out. */
  waitForLine: (stream: 'stdout' | 'stderr', pattern: RegExp, timeoutMs?: number) => Promise<string>
  /** Resolves when the process has exited and both pipes are drained; rejects when time runs out. */
  waitForExit: (timeoutMs?: number) => Promise<Exit>
}

interface Teardown {
  teardown: (fn: () => unknown) => void
}

/**
 * A controlled environment for the child: nothing inherited from this machine (no AZURE_*,
 * no BROKER_*, no proxy), only PATH, HOME and what the case sets.
 */
export function cliEnv (home: string, extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: process.env.PATH ?? '', HOME: home, ...extra }
}

function withTimeout<T> (promise: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what()}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Spawns `node dist/bin/defender-token-broker.js ...args`; a process still running at teardown is killed. */
export function spawnCli (t: Teardown, args: string[], options: { env: Record<string, string>, cwd?: string }): CliProcess {
  const child = spawn(process.execPath, [CLI_PATH, ...args], {
    env: options.env,
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const text = { stdout: '', stderr: '' }
  const waiters = new Set<() => void>()
  const notify = () => { for (const waiter of waiters) waiter() }
  for (const stream of ['stdout', 'stderr'] as const) {
    child[stream]?.setEncoding('utf8')
    child[stream]?.on('data', (chunk: string) => {
      text[stream] += chunk
      notify()
    })
  }
  let done = false
  const exited = new Promise<Exit>((resolve) => {
    child.on('error', (err) => {
      text.stderr += `spawn failed: ${err.message}\n`
    })
    child.on('close', (code, signal) => {
      done = true
      resolve({ code, signal, stdout: text.stdout, stderr: text.stderr })
      notify()
    })
  })
  t.teardown(async () => {
    if (!done) {
      child.kill('SIGKILL')
      await exited
    }
  })

  const waitForLine = (stream: 'stdout' | 'stderr', pattern: RegExp, timeoutMs = DEFAULT_WAIT_MS): Promise<string> => {
    let check: () => void = () => {}
    const found = new Promise<string>((resolve, reject) => {
      check = () => {
        // Only whole lines: a pattern must not match half a line still being written.
        const lines = text[stream].split('\n').slice(0, -1)
        const line = lines.find((candidate) => pattern.test(candidate))
        if (line !== undefined) resolve(line)
        else if (done) reject(new Error(`the process exited (code ${child.exitCode}, signal ${child.signalCode}) before ${stream} printed a line matching ${pattern}\nstdout: ${text.stdout}\nstderr: ${text.stderr}`))
      }
      waiters.add(check)
      check()
    })
    return withTimeout(found, timeoutMs, () => `a line matching ${pattern} on ${stream}\nstdout: ${text.stdout}\nstderr: ${text.stderr}`)
      .finally(() => waiters.delete(check))
  }

  return {
    child,
    stdout: () => text.stdout,
    stderr: () => text.stderr,
    waitForLine,
    waitForExit: (timeoutMs = DEFAULT_WAIT_MS) => withTimeout(exited, timeoutMs, () => `the process to exit\nstdout: ${text.stdout}\nstderr: ${text.stderr}`)
  }
}

/** Runs a command that is expected to finish on its own. */
/** SIGTERM, then the exit: 0, handled by the broker rather than killed by the signal. */
export async function stopsCleanly (t: { equal: (a: unknown, b: unknown, message: string) => unknown }, cli: CliProcess): Promise<void> {
  cli.child.kill('SIGTERM')
  const exit = await cli.waitForExit()
  t.equal(exit.code, 0, 'SIGTERM: exit code 0')
  t.equal(exit.signal, null, 'SIGTERM: handled, not killed')
}

export function runCli (t: Teardown, args: string[], options: { env: Record<string, string>, cwd?: string }): Promise<Exit> {
  return spawnCli(t, args, options).waitForExit()
}

/** The pino JSON lines of an output, skipping anything else. */
export function logLines (output: string): Array<Record<string, unknown>> {
  return output.split('\n').flatMap((line) => {
    if (!line.startsWith('{')) return []
    try {
      return [JSON.parse(line) as Record<string, unknown>]
    } catch {
      return []
    }
  })
}

/** Whether something accepts TCP connections on 127.0.0.1:`port` (the answer to "is it still listening?"). */
export function acceptsConnections (port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}
