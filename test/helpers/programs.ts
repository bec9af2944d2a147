import { spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { createServer, type AddressInfo } from 'node:net'

/**
 * Why tests that need a program from Debian's packages cannot run here, or undefined when they
 * can. Outside CI a machine without it skips them; in CI (`CI` set) they must run, so `t` fails.
 */
export function missingProgram (
  t: { fail: (message: string) => unknown },
  program: { command: string, versionArgs: string[], neededFor: string }
): string | undefined {
  const probe = spawnSync(program.command, program.versionArgs, { encoding: 'utf8' })
  if (probe.error === undefined && probe.status === 0) return undefined
  const reason = `${program.command} is not installed (apt-get install ${program.command}): ${program.neededFor}`
  if (process.env.CI !== undefined && process.env.CI !== '') t.fail(`${reason}; CI must run these tests`)
  return reason
}

/** A port on 127.0.0.1 that was free a moment ago, for a server that cannot listen on port 0. */
export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}
