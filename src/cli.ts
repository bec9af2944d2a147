#!/usr/bin/env node
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

const HELP = `defender-token-broker: holds an Entra ID app's credentials and forwards your tools'
requests to the Microsoft Defender for Endpoint API with a fresh bearer token.

Usage:
  defender-token-broker [serve] [--config FILE]    run the broker
  defender-token-broker check [--config FILE] [--json]
                                                   get one token per profile and show what it allows
  defender-token-broker demo                       run against the built-in simulator (no Azure needed)
  defender-token-broker keygen [NAME] [--json]     make a client key and print its config lines
  defender-token-broker init --tenant ID --client-id ID --secret-file FILE [--client NAME]...
                                                   write a commented config file (never overwrites);
                                                   also --certificate-file FILE or --managed-identity:
                                                   see defender-token-broker init --help
  defender-token-broker ca [--config FILE]         print the egress proxy's CA certificate (made if needed)
  defender-token-broker consent [--profile NAME] [--config FILE] [--json]
                                                   print each profile's admin-consent link and the permissions it asks for

Options:
  --config FILE   YAML or JSON config file (or BROKER_CONFIG)
  --host HOST     listen address (BROKER_HOST, default 127.0.0.1)
  --port PORT     listen port (BROKER_PORT, default 8080)
  --json          check, consent: print JSON
  --profile NAME  consent: only this profile
  --help, -h      this text
  --version, -v   the version

Credentials come from AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or
AZURE_CLIENT_CERTIFICATE_PATH), or from the profiles of a config file, or from a managed
identity (IDENTITY_ENDPOINT, MSI_ENDPOINT, or BROKER_MANAGED_IDENTITY=true). See the README.
`

function version (): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

export async function main (argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  // init has flags of its own.
  if (argv[0] === 'init') {
    const { INIT_USAGE, runInit } = await import('./commands/init.js')
    if (argv.includes('--help') || argv.includes('-h')) {
      process.stdout.write(INIT_USAGE)
      return 0
    }
    return runInit(argv.slice(1))
  }
  let parsed
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string' },
        host: { type: 'string' },
        port: { type: 'string' },
        json: { type: 'boolean', default: false },
        profile: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
        version: { type: 'boolean', short: 'v', default: false }
      }
    })
  } catch (err) {
    process.stderr.write(`defender-token-broker: ${(err as Error).message}\n\n${HELP}`)
    return 2
  }
  const { values, positionals } = parsed
  if (values.help) {
    process.stdout.write(HELP)
    return 0
  }
  if (values.version) {
    process.stdout.write(`${version()}\n`)
    return 0
  }
  const overrides: Record<string, string> = {}
  if (values.host !== undefined) overrides.BROKER_HOST = values.host
  if (values.port !== undefined) overrides.BROKER_PORT = values.port
  const options = { configPath: values.config, env: { ...env, ...overrides }, json: values.json }

  const [command = 'serve', ...rest] = positionals
  // Each command loads only its own code: `serve` starts without the simulator's PKI library.
  if (command === 'keygen' && rest.length <= 1) {
    const { runKeygen } = await import('./commands/keygen.js')
    return runKeygen({ ...options, name: rest[0] })
  }
  if (values.profile !== undefined && command !== 'consent') {
    process.stderr.write(`defender-token-broker: --profile is for consent only\n\n${HELP}`)
    return 2
  }
  if (rest.length > 0) {
    process.stderr.write(`defender-token-broker: unexpected argument ${rest[0]}\n\n${HELP}`)
    return 2
  }
  switch (command) {
    case 'serve': return (await import('./commands/serve.js')).runServe(options)
    case 'check': return (await import('./commands/check.js')).runCheck(options)
    case 'demo': return (await import('./commands/demo.js')).runDemo(options)
    case 'ca': return (await import('./commands/ca.js')).runCa(options)
    case 'consent': return (await import('./commands/consent.js')).runConsent({ ...options, profile: values.profile })
    default:
      process.stderr.write(`defender-token-broker: unknown command ${command}\n\n${HELP}`)
      return 2
  }
}

main(process.argv.slice(2), process.env).then((code) => {
  // serve and demo keep running: they return -1 and exit from their signal handlers.
  if (code >= 0) process.exitCode = code
}, (err: unknown) => {
  process.stderr.write(`defender-token-broker: ${(err as Error)?.message ?? String(err)}\n`)
  process.exitCode = 1
})
