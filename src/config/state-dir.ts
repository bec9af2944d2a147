import { randomBytes } from 'node:crypto'
import { existsSync, linkSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { BrokerConfigInvalid } from '../common/errors.js'

const GROUP_OR_OTHERS = 0o077

/**
 * Where the broker keeps what it makes once and must find again after a restart (the egress
 * proxy's CA, the key that signs broker tokens): `BROKER_STATE_DIR`, else `stateDir` of the
 * config file, else `$XDG_STATE_HOME/defender-token-broker`, else
 * `~/.local/state/defender-token-broker`. The image sets `BROKER_STATE_DIR` to its volume.
 */
export function defaultStateDir (env: NodeJS.ProcessEnv | Record<string, string | undefined>): string {
  const xdg = env.XDG_STATE_HOME
  const base = xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.local', 'state')
  return resolve(base, 'defender-token-broker')
}

function errnoCode (err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code
  return typeof code === 'string' ? code : 'unknown error'
}

/**
 * The file `name` of the state directory, made by `make` on first use: the directory with mode
 * 0700, the file with 0600, linked into place whole so that two brokers starting together on
 * one volume keep the same one. A file there that group or others may read is refused.
 */
export function readOrCreateStateFile (dir: string, name: string, make: () => string | Buffer): Buffer {
  const file = join(dir, name)
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
  } catch (err) {
    throw new BrokerConfigInvalid('stateDir', `the state directory ${dir} cannot be created (${errnoCode(err)}): set BROKER_STATE_DIR to a writable directory`)
  }
  // Written whole under a name of its own, then linked into place: a broker starting at the
  // same time on the same volume either links first or reads the one that did, never half a file.
  if (existsSync(file)) return readStateFile(file)
  const draft = join(dir, `.${name}.${process.pid}.${randomBytes(4).toString('hex')}`)
  try {
    writeFileSync(draft, make(), { mode: 0o600, flag: 'wx' })
    linkSync(draft, file)
  } catch (err) {
    if (errnoCode(err) !== 'EEXIST') {
      throw new BrokerConfigInvalid('stateDir', `${file} cannot be created (${errnoCode(err)}): give the broker's user write access to ${dir}`)
    }
  } finally {
    try { unlinkSync(draft) } catch {}
  }
  return readStateFile(file)
}

function readStateFile (file: string): Buffer {
  try {
    const stats = statSync(file)
    if (process.platform !== 'win32' && (stats.mode & GROUP_OR_OTHERS) !== 0) {
      throw new BrokerConfigInvalid('stateDir', `${file} is readable by group or others: run chmod 600 ${file}`)
    }
    const bytes = readFileSync(file)
    if (bytes.length === 0) throw new BrokerConfigInvalid('stateDir', `${file} is empty: delete it and the broker makes a new one`)
    return bytes
  } catch (err) {
    if (err instanceof BrokerConfigInvalid) throw err
    throw new BrokerConfigInvalid('stateDir', `${file} cannot be read (${errnoCode(err)}): give the broker's user read access to it`)
  }
}
