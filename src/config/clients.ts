import { resolve } from 'node:path'
import { BrokerConfigInvalid } from '../common/errors.js'
import { checkRules } from './rules.js'
import type { ClientFile } from './schema.js'
import { keyFileSha256 } from './secret-files.js'
import type { ClientConfig, ProfileConfig } from './types.js'

/** Resolves schema-checked clients: key digests, profile names, no name or key used twice. */
export function resolveClients (clients: readonly ClientFile[], profiles: readonly ProfileConfig[], baseDir: string): ClientConfig[] {
  const profileNames = profiles.map(profile => profile.name)
  const names = new Map<string, number>()
  const keys = new Map<string, string>()
  return clients.map((client, index) => {
    const at = `clients[${index}]`
    const sameName = names.get(client.name)
    if (sameName !== undefined) {
      throw new BrokerConfigInvalid(`${at}.name`, `the name ${client.name} is also used by clients[${sameName}]: give each client its own name`)
    }
    names.set(client.name, index)

    let keySha256: string
    if (client.keySha256 !== undefined && client.keyFile !== undefined) {
      throw new BrokerConfigInvalid(`${at}.keySha256`, `and ${at}.keyFile are both set: set only one of them`)
    } else if (client.keySha256 !== undefined) {
      keySha256 = client.keySha256.toLowerCase()
    } else if (client.keyFile !== undefined) {
      keySha256 = keyFileSha256(resolve(baseDir, client.keyFile), `${at}.keyFile`)
    } else {
      throw new BrokerConfigInvalid(`${at}.keySha256`, 'is required: set keySha256 (the key\'s SHA-256 in hex) or keyFile')
    }
    const sameKey = keys.get(keySha256)
    if (sameKey !== undefined) {
      throw new BrokerConfigInvalid(at, `has the same key as client ${sameKey}: give each client its own key, so logs and rules tell them apart`)
    }
    keys.set(keySha256, client.name)

    const allowed = client.profiles ?? []
    allowed.forEach((name, position) => {
      if (!profileNames.includes(name)) {
        throw new BrokerConfigInvalid(`${at}.profiles[${position}]`,
          `no profile is named ${name}: use one of ${profileNames.join(', ')}`)
      }
    })
    return {
      name: client.name,
      keySha256,
      profiles: [...new Set(allowed)],
      allow: checkRules(client.allow ?? [], `${at}.allow`),
      dryRun: client.dryRun ?? false
    }
  })
}
