import { chmodSync, mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { BrokerConfigInvalid } from '../../src/common/errors.js'
import { defaultStateDir, readOrCreateStateFile } from '../../src/config/state-dir.js'

const modeOf = (path: string) => statSync(path).mode & 0o777

t.test('a state file is made once, private, and found again', async (t) => {
  const dir = join(mkdtempSync(join(tmpdir(), 'state-')), 'nested', 'state')
  let made = 0
  const first = readOrCreateStateFile(dir, 'key', () => { made++; return 'first' })
  const second = readOrCreateStateFile(dir, 'key', () => { made++; return 'second' })
  t.equal(first.toString(), 'first')
  t.equal(second.toString(), 'first', 'the second call reads what the first made')
  t.equal(made, 1, 'made once')
  t.equal(modeOf(dir), 0o700, 'the directory is the broker user\'s alone')
  t.equal(modeOf(join(dir, 'key')), 0o600, 'and so is the file')
  t.same(readdirSync(dir), ['key'], 'no draft is left behind')
})

t.test('a state file that group or others may read is refused, and so is an empty one', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'state-'))
  writeFileSync(join(dir, 'key'), 'value')
  chmodSync(join(dir, 'key'), 0o644)
  t.throws(() => readOrCreateStateFile(dir, 'key', () => 'new'), new BrokerConfigInvalid('stateDir', `${join(dir, 'key')} is readable by group or others: run chmod 600 ${join(dir, 'key')}`))
  writeFileSync(join(dir, 'empty'), '', { mode: 0o600 })
  t.throws(() => readOrCreateStateFile(dir, 'empty', () => 'new'), { name: 'BrokerConfigInvalid', message: /is empty/ })
})

t.test('a state directory that cannot be made says which and what to set', async (t) => {
  const parent = mkdtempSync(join(tmpdir(), 'state-'))
  writeFileSync(join(parent, 'file'), 'not a directory')
  t.throws(() => readOrCreateStateFile(join(parent, 'file', 'state'), 'key', () => 'x'), { name: 'BrokerConfigInvalid', message: /cannot be created \(ENOTDIR\): set BROKER_STATE_DIR/ })
})

t.test('the default state directory follows XDG_STATE_HOME, else ~/.local/state', async (t) => {
  t.equal(defaultStateDir({ XDG_STATE_HOME: '/var/state' }), '/var/state/defender-token-broker')
  t.match(defaultStateDir({}), /\/\.local\/state\/defender-token-broker$/)
})
