import { existsSync, writeFileSync } from 'node:fs'
import { basename, dirname, isAbsolute, relative, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { CLOUD_NAMES } from '../config/clouds.js'
import { parseOrigin } from '../config/origin.js'
import { GUID_PATTERN, NAME_PATTERN, TENANT_PATTERN } from '../config/schema.js'
import { createClientKey, type ClientKey } from './keygen.js'
import { renderConfig, type InitCredential, type InitSettings } from './init-template.js'

export const DEFAULT_INIT_OUTPUT = 'defender-token-broker.yaml'

export const INIT_USAGE = `Usage:
  defender-token-broker init --tenant ID --client-id ID --secret-file FILE [options]
  defender-token-broker init --tenant ID --client-id ID --certificate-file FILE [options]
  defender-token-broker init --managed-identity [--client-id ID] [options]

Writes a commented config file for one app registration (or managed identity) and its
clients; it never overwrites a file.

  --tenant ID               directory (tenant) id or verified domain of the app registration
  --client-id ID            application (client) id; with --managed-identity, a user-assigned
                            identity's client id (absent: the system-assigned identity)
  --secret-file FILE        file holding the client secret (chmod 600)
  --certificate-file FILE   PEM file holding the certificate and its private key (chmod 600)
  --managed-identity        the managed identity of the Azure resource the broker runs on
  --client NAME             a tool allowed to use the broker (repeat for each): its key is made
                            now and printed once; the file keeps only its SHA-256
  --cloud NAME              public (default), gcc, gcc-high or dod
  --upstream URL            the Defender API's origin, e.g. https://eu.api.security.microsoft.com
  --output FILE             where to write (default ./${DEFAULT_INIT_OUTPUT})
  --json                    print the file's path and the keys as JSON
`

const CREDENTIAL_FLAGS = ['--secret-file FILE', '--certificate-file FILE', '--managed-identity']

interface Written {
  file: string
  clients: Array<{ name: string } & ClientKey>
}

class UsageError extends Error {}

/** `defender-token-broker init ...`: 0 written, 1 refused (the file exists or cannot be made), 2 bad flags. */
export function runInit (args: string[], cwd: string = process.cwd()): number {
  let settings: ReturnType<typeof readFlags>
  try {
    settings = readFlags(args, cwd)
  } catch (err) {
    const isParseError = String((err as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS')
    if (!(err instanceof UsageError) && !isParseError) throw err
    process.stderr.write(`defender-token-broker init: ${(err as Error).message}\n\n${INIT_USAGE}`)
    return 2
  }
  const { output, json, clientNames } = settings
  const clients = clientNames.map((name) => ({ name, ...createClientKey() }))
  const text = renderConfig({ ...settings.profile, clients }, relative(cwd, output) || basename(output))
  try {
    // O_EXCL: an existing file (or a link planted in its place) is never written through.
    writeFileSync(output, text, { flag: 'wx', mode: 0o600 })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error'
    process.stderr.write(code === 'EEXIST'
      ? `defender-token-broker init: ${output} already exists, and init never overwrites a file: give another --output, or move that file away\n`
      : `defender-token-broker init: ${output} cannot be created (${code}): check that its directory exists and is writable\n`)
    return 1
  }
  const written: Written = { file: output, clients }
  if (json) {
    process.stdout.write(JSON.stringify(written) + '\n')
    return 0
  }
  process.stdout.write(describe(written, settings.profile.credential, dirname(output), relative(cwd, output) || output))
  return 0
}

function describe (written: Written, credential: InitCredential, fileDir: string, shown: string): string {
  const lines = [`Wrote ${written.file} (mode 0600).`, '']
  for (const client of written.clients) {
    lines.push(`Key for client ${client.name} (give it to the tool; it is shown once and the broker never stores it):`, '', `  ${client.key}`, '')
  }
  const secretPath = credential.type === 'secret' ? credential.secretFile : credential.type === 'certificate' ? credential.certificateFile : undefined
  if (secretPath !== undefined && !existsSync(resolve(fileDir, secretPath))) {
    const what = credential.type === 'secret' ? 'the client secret\'s Value' : 'the certificate and its private key'
    lines.push(`${resolve(fileDir, secretPath)} does not exist yet: put ${what} in it, and chmod 600 it.`, '')
  }
  lines.push('Next:', `  defender-token-broker check --config ${shown}`, `  defender-token-broker serve --config ${shown}`, '')
  return lines.join('\n')
}

function readFlags (args: string[], cwd: string) {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      tenant: { type: 'string' },
      'client-id': { type: 'string' },
      'secret-file': { type: 'string' },
      'certificate-file': { type: 'string' },
      'managed-identity': { type: 'boolean', default: false },
      client: { type: 'string', multiple: true, default: [] },
      cloud: { type: 'string' },
      upstream: { type: 'string' },
      output: { type: 'string' },
      json: { type: 'boolean', default: false }
    }
  })
  if (positionals.length > 0) throw new UsageError(`unexpected argument ${positionals[0]}`)
  const output = resolve(cwd, values.output ?? DEFAULT_INIT_OUTPUT)
  const chosen = [values['secret-file'], values['certificate-file'], values['managed-identity'] ? true : undefined]
    .flatMap((value, index) => value === undefined ? [] : [CREDENTIAL_FLAGS[index] as string])
  if (chosen.length !== 1) {
    throw new UsageError(chosen.length === 0
      ? `add the app's credential: one of ${CREDENTIAL_FLAGS.join(', ')}`
      : `${chosen.join(' and ')} contradict each other: give only one of them`)
  }
  const managed = values['managed-identity']
  const missing = managed
    ? []
    : [['tenant', '--tenant ID (the directory (tenant) id)'], ['client-id', '--client-id ID (the application (client) id)']]
        .filter(([name]) => values[name as 'tenant' | 'client-id'] === undefined).map(([, flag]) => flag)
  if (missing.length > 0) throw new UsageError(`add ${missing.join(' and ')} of the app registration`)

  const tenantId = checked(values.tenant, TENANT_PATTERN, '--tenant must be a tenant GUID or a verified domain such as contoso.onmicrosoft.com')
  const clientId = checked(values['client-id'], GUID_PATTERN, '--client-id must be a GUID such as 11111111-1111-1111-1111-111111111111')
  const clientNames = values.client
  for (const name of clientNames) {
    checked(name, NAME_PATTERN, `--client ${JSON.stringify(name)}: a client name must be lower-case letters, digits and dashes`)
  }
  const twice = clientNames.find((name, index) => clientNames.indexOf(name) !== index)
  if (twice !== undefined) throw new UsageError(`--client ${twice} is given twice: give each client once`)
  if (values.cloud !== undefined && !(CLOUD_NAMES as readonly string[]).includes(values.cloud)) {
    throw new UsageError(`--cloud must be one of ${CLOUD_NAMES.join(', ')}`)
  }
  let upstream: string | undefined
  if (values.upstream !== undefined) {
    try {
      upstream = parseOrigin(values.upstream, '--upstream', { allowLoopbackHttp: true })
    } catch (err) {
      throw new UsageError((err as Error).message)
    }
  }

  // A path given on the command line is relative to where init runs; in the file, to the file.
  const inFile = (path: string): string => isAbsolute(path) ? path : relative(dirname(output), resolve(cwd, path))
  const secretFile = values['secret-file']
  const certificateFile = values['certificate-file']
  const credential: InitCredential = secretFile !== undefined
    ? { type: 'secret', secretFile: inFile(secretFile) }
    : certificateFile !== undefined
      ? { type: 'certificate', certificateFile: inFile(certificateFile) }
      : { type: 'managedIdentity', ...(clientId === undefined ? {} : { clientId }) }
  const profile: Omit<InitSettings, 'clients'> = {
    ...(tenantId === undefined ? {} : { tenantId }),
    ...(clientId === undefined || managed ? {} : { clientId }),
    credential,
    ...(values.cloud === undefined ? {} : { cloud: values.cloud }),
    ...(upstream === undefined ? {} : { upstream })
  }
  return { output, json: values.json, clientNames, profile }
}

function checked (value: string | undefined, pattern: string, problem: string): string | undefined {
  if (value !== undefined && !new RegExp(pattern).test(value)) throw new UsageError(problem)
  return value
}
