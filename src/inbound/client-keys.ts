import { createHash, timingSafeEqual } from 'node:crypto'
import type { ClientConfig } from '../config/types.js'
import { compileRules, type RuleSet } from './rules.js'

export interface Client {
  readonly name: string
  readonly profiles: ReadonlySet<string> | undefined
  readonly allows: RuleSet
  /** Its state-changing calls are dry runs. */
  readonly dryRun?: boolean
  /** The profile a broker token pins: its requests go there whatever their path. */
  readonly profile?: string
}

interface Entry {
  digest: Buffer
  client: Client
}

/**
 * Keys are compared as SHA-256 digests with timingSafeEqual: equal length whatever was sent,
 * and the broker never holds a key itself, only its digest.
 */
export function createKeyVerifier (clients: readonly ClientConfig[]) {
  return createClientRegistry(clients).verify
}

/** The configured clients: found by the key they present, or by name (a broker token's). */
export function createClientRegistry (clients: readonly ClientConfig[]) {
  const entries: Entry[] = clients.map((client) => ({
    digest: Buffer.from(client.keySha256.toLowerCase(), 'hex'),
    client: {
      name: client.name,
      profiles: client.profiles.length === 0 ? undefined : new Set(client.profiles),
      allows: compileRules(client.allow),
      dryRun: client.dryRun === true
    }
  }))
  const byName = new Map(entries.map((entry) => [entry.client.name, entry.client]))
  return {
    verify (key: string | undefined): Client | undefined {
      if (key === undefined || key === '') return undefined
      const digest = createHash('sha256').update(key).digest()
      let found: Client | undefined
      for (const entry of entries) {
        if (timingSafeEqual(entry.digest, digest)) found = entry.client
      }
      return found
    },
    named (name: string): Client | undefined {
      return byName.get(name)
    }
  }
}

/** The key as a client sends it: `Authorization: Bearer <key>` or `X-Broker-Key: <key>`. */
export function presentedKey (headers: Record<string, string | string[] | undefined>): string | undefined {
  const header = headers['x-broker-key']
  if (typeof header === 'string') return header.trim()
  const authorization = headers.authorization
  if (typeof authorization === 'string' && /^bearer /i.test(authorization)) return authorization.slice(7).trim()
  return undefined
}
