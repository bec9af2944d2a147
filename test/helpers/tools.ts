import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, writeFileSync } from 'node:fs'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer } from 'node:tls'
import { fileURLToPath } from 'node:url'
import type { TestPki } from '../../src/simulator/index.js'

const REPO = fileURLToPath(new URL('../..', import.meta.url))
const TOOL_TIMEOUT_MS = 30_000

interface Teardown {
  teardown: (fn: () => unknown) => void
}

/**
 * The broker's own server reached over TLS, as an intercepting or terminating front hands it
 * connections: each TLS connection goes to the same Node HTTP server, which sees it encrypted.
 * MSAL and azure-identity accept only an https authority. Returns the https origin.
 */
export async function startTlsFront (t: Teardown, server: Server, pki: TestPki): Promise<string> {
  const front = createServer({ cert: pki.serverCertPem, key: pki.serverKeyPem })
  front.on('secureConnection', (socket) => server.emit('connection', socket))
  front.listen(0, '127.0.0.1')
  await once(front, 'listening')
  t.teardown(() => new Promise((resolve) => front.close(resolve)))
  return `https://127.0.0.1:${(front.address() as AddressInfo).port}`
}

/** The test CA in a file, as NODE_EXTRA_CA_CERTS and REQUESTS_CA_BUNDLE take it. */
export function caFile (pki: TestPki): string {
  const file = join(mkdtempSync(join(tmpdir(), 'broker-ca-')), 'ca.pem')
  writeFileSync(file, pki.caCertPem)
  return file
}

export interface ToolRun {
  stdout: string
  stderr: string
  code: number | null
}

/**
 * A tool in its own process, configured only through `env` (nothing inherited but PATH and
 * HOME): the test's environment is left as it is.
 */
export async function runTool (command: string, args: string[], env: Record<string, string>): Promise<ToolRun> {
  return await new Promise((resolve) => {
    execFile(command, args, {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmpdir(), ...env },
      timeout: TOOL_TIMEOUT_MS,
      maxBuffer: 4 * 1024 * 1024
    }, (error, stdout, stderr) => {
      resolve({ stdout, stderr, code: error === null ? 0 : typeof error.code === 'number' ? error.code : null })
    })
  })
}

/** A Node ES module run as a tool: `node --input-type=module -e <source>`, resolving packages from the repository. */
export async function runNodeTool (source: string, env: Record<string, string>): Promise<ToolRun> {
  return await runTool(process.execPath, ['--input-type=module', '-e', source], env)
}
