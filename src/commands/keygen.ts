import { createHash, randomBytes } from 'node:crypto'
import type { CommandOptions } from './options.js'

const NAME = /^[a-z0-9][a-z0-9-]*$/

export interface ClientKey {
  /** 32 random bytes, base64url: what the tool sends. */
  readonly key: string
  /** Its lower-case hex SHA-256: all the broker's config holds. */
  readonly keySha256: string
}

export function createClientKey (): ClientKey {
  const key = randomBytes(32).toString('base64url')
  return { key, keySha256: createHash('sha256').update(key).digest('hex') }
}

/** A new client key, so nobody hand-rolls one: 32 random bytes, base64url, and its config lines. */
export function runKeygen (options: CommandOptions & { name?: string }): number {
  const name = options.name ?? 'my-tool'
  if (!NAME.test(name)) {
    process.stderr.write(`defender-token-broker: the client name ${JSON.stringify(name)} must be lower-case letters, digits and dashes\n`)
    return 2
  }
  const { key, keySha256: digest } = createClientKey()
  if (options.json) {
    process.stdout.write(JSON.stringify({ name, key, keySha256: digest }) + '\n')
    return 0
  }
  process.stdout.write(`Key for client ${name} (give it to the tool; it is shown once and the broker never stores it):

  ${key}

Add to the broker's config file:

clients:
  - name: ${name}
    keySha256: ${digest}
    # profiles: [default]
    # allow: ["GET /api/**"]

The tool sends it as "Authorization: Bearer <key>" or "X-Broker-Key: <key>".
`)
  return 0
}
