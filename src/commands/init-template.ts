/**
 * The commented config file `init` writes. Every value is checked before it gets here; strings
 * that may hold anything (paths, URLs) are written as JSON strings, which YAML reads as they are.
 */

export type InitCredential =
  | { readonly type: 'secret', readonly secretFile: string }
  | { readonly type: 'certificate', readonly certificateFile: string }
  /** `clientId` names a user-assigned identity; absent, the system-assigned one. */
  | { readonly type: 'managedIdentity', readonly clientId?: string }

export interface InitSettings {
  readonly tenantId?: string
  /** The app registration's client id (not a managed identity's). */
  readonly clientId?: string
  readonly credential: InitCredential
  readonly cloud?: string
  readonly upstream?: string
  readonly clients: ReadonlyArray<{ readonly name: string, readonly keySha256: string }>
}

const quote = (value: string): string => JSON.stringify(value)

function credentialLines (credential: InitCredential): string[] {
  switch (credential.type) {
    case 'secret':
      return [
        '    credential:',
        '      type: secret',
        '      # The client secret\'s Value (not its Secret ID), alone in a file only the broker\'s user',
        '      # may read (chmod 600). Read again on every token request: rotate it without a restart.',
        `      secretFile: ${quote(credential.secretFile)}`
      ]
    case 'certificate':
      return [
        '    credential:',
        '      type: certificate',
        '      # PEM holding the certificate and its private key (chmod 600); upload the certificate',
        '      # to the app registration. An encrypted key needs passwordFile.',
        `      certificateFile: ${quote(credential.certificateFile)}`,
        '      # passwordFile: /run/secrets/certificate-password'
      ]
    case 'managedIdentity':
      return [
        '    credential:',
        '      # The managed identity of the Azure resource the broker runs on; msal-node finds its',
        '      # endpoint (App Service, Container Apps, Arc, IMDS on a VM) by itself.',
        '      type: managedIdentity',
        credential.clientId === undefined
          ? '      # clientId: 00000000-0000-0000-0000-000000000000   # a user-assigned identity; absent: the system-assigned one'
          : `      clientId: ${credential.clientId}   # the user-assigned identity`
      ]
  }
}

function profileLines (settings: InitSettings): string[] {
  const managed = settings.credential.type === 'managedIdentity'
  const lines = [
    'profiles:',
    '  - name: default',
    '    # basePath: /           # optional with one profile; with several, each needs its own'
  ]
  if (settings.tenantId !== undefined) lines.push(`    tenantId: ${settings.tenantId}`)
  else if (managed) lines.push('    # tenantId and clientId: not needed, the identity\'s token names them (see `check`)')
  if (settings.clientId !== undefined) lines.push(`    clientId: ${settings.clientId}`)
  lines.push(...credentialLines(settings.credential))
  lines.push(settings.cloud === undefined
    ? '    # cloud: public         # public | gcc | gcc-high | dod: sign-in host, API host and scope'
    : `    cloud: ${settings.cloud}`)
  lines.push(settings.upstream === undefined
    ? '    # upstream: https://api.securitycenter.microsoft.com   # or a regional host, e.g. https://eu.api.security.microsoft.com'
    : `    upstream: ${quote(settings.upstream)}`)
  lines.push('    # allow: ["GET /api/**"]   # profile-wide rules, e.g. read-only for every client')
  return lines
}

function clientLines (settings: InitSettings): string[] {
  if (settings.clients.length === 0) {
    return [
      '# No client keys: any process on this machine may use the broker, which then listens on',
      '# loopback only. `defender-token-broker keygen NAME` makes a key and its lines for here.',
      '# clients:',
      '#   - name: my-tool',
      '#     keySha256: <printed by keygen>'
    ]
  }
  return [
    '# Each key was printed once by init; the broker keeps only its SHA-256. A tool sends its key',
    '# as "Authorization: Bearer <key>" or "X-Broker-Key: <key>".',
    'clients:',
    ...settings.clients.flatMap((client) => [
      `  - name: ${client.name}`,
      `    keySha256: ${client.keySha256}`,
      '    # allow: ["GET /api/**"]   # what this tool may do, on top of the profile\'s rules'
    ])
  ]
}

/** The whole file. */
export function renderConfig (settings: InitSettings, fileName: string): string {
  const listenHost = settings.clients.length === 0
    ? '#   host: 127.0.0.1         # BROKER_HOST; with no clients, loopback only'
    : '#   host: 127.0.0.1         # BROKER_HOST; 0.0.0.0 for a container, as clients have keys'
  return [
    '# defender-token-broker configuration, written by `defender-token-broker init`.',
    `#   check it:  defender-token-broker check --config ${fileName}`,
    `#   run it:    defender-token-broker serve --config ${fileName}`,
    '# Every setting is described in docs/configuration.md (schema: config/schema.json).',
    '# Relative paths in this file are relative to the file.',
    '',
    '# listen:',
    listenHost,
    '#   port: 8080              # BROKER_PORT',
    '#   allowedHosts: [defender-broker]   # the name other containers reach the broker by',
    '',
    ...profileLines(settings),
    '',
    ...clientLines(settings),
    ''
  ].join('\n')
}
