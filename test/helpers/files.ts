import { chmodSync, writeFileSync } from 'node:fs'

/**
 * Writes `content` to `file` with exactly `mode` (0600 unless given): created with it, so that
 * no reader ever sees it more open, then set whatever the umask took off.
 */
export function writePrivate (file: string, content: string, mode = 0o600): string {
  writeFileSync(file, content, { mode })
  chmodSync(file, mode)
  return file
}
