import { closeSync, fstatSync, fsyncSync, openSync, writeSync } from 'node:fs'
import { pipeline, Transform, type Readable } from 'node:stream'
import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib'
import type { Logger } from 'pino'
import type { Clock } from '../common/clock.js'
import { BrokerConfigInvalid } from '../common/errors.js'

/** What one request that changes state leaves in the audit trail. */
export interface AuditEvent {
  reqId: string
  /** The client key's name; absent when the broker takes no keys or none was valid. */
  client?: string
  /** Absent when the request was refused before a profile was picked. */
  profile?: string
  method: string
  /** The path as the client sent it (profile prefix included), without the query. */
  target: string
  /** What the broker answered; absent when the client went away before any answer. */
  status?: number
  upstreamStatus?: number
  upstreamRequestId?: string
  /** Id of the machine action the API created (isolate, scan, live response, …). */
  machineActionId?: string
  /** The broker's error code when it answered itself (BrokerUnauthenticated, BrokerRateLimited, …). */
  code?: string
  /** The machines the call names (its path and body), when the guard rails looked. */
  machines?: string[]
  /** The guard rail that refused the call, and why. */
  guard?: string
  reason?: string
  /** Answered in the API's shape without any call: nothing changed. */
  dryRun?: true
  aborted?: boolean
}

export interface AuditLog {
  record: (event: AuditEvent) => void
  close: () => void
}

export interface AuditLogOptions {
  /** Absent: audit events are lines of the main log, msg "audit". */
  file?: string
  logger: Logger
  clock: Clock
}

/**
 * The audit trail: lines of the main log, or an append-only file of JSON lines, each written
 * and fsync'd before the response's log line, so a line is on disk once its request is over.
 * Audit events are few (state changes only), so a synchronous write costs little.
 */
export function createAuditLog ({ file, logger, clock }: AuditLogOptions): AuditLog {
  if (file === undefined) {
    return {
      record: (event) => logger.info(event, 'audit'),
      close: () => {}
    }
  }
  const fd = openAuditFile(file)
  let open = true
  return {
    record (event) {
      // An event the file cannot take still reaches the main log, with the reason.
      if (!open) {
        logger.error({ ...event, err: { message: 'the audit file is closed' } }, 'audit write failed')
        return
      }
      const line = Buffer.from(JSON.stringify({ time: new Date(clock.now()).toISOString(), ...event }) + '\n')
      try {
        for (let written = 0; written < line.length;) written += writeSync(fd, line, written)
        fsyncSync(fd)
      } catch (err) {
        logger.error({ ...event, err: { code: (err as NodeJS.ErrnoException).code, message: (err as Error).message } }, 'audit write failed')
      }
    },
    close () {
      if (!open) return
      open = false
      closeSync(fd)
    }
  }
}

function openAuditFile (file: string): number {
  let fd
  try {
    fd = openSync(file, 'a', 0o600)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error'
    throw new BrokerConfigInvalid('audit.file', `the file ${file} cannot be opened for appending (${code}): ` +
      'give the broker\'s user write access to it and its directory (a writable volume when the root filesystem is read-only)')
  }
  if (!fstatSync(fd).isFile()) {
    closeSync(fd)
    throw new BrokerConfigInvalid('audit.file', `${file} is not a regular file: give the path of a file (unset audit.file to send audit events to stdout)`)
  }
  return fd
}

/** Machine actions are small objects: a bigger body is not one, and is not looked into. */
export const ACTION_BODY_LIMIT = 64 * 1024

const SYNC_DECODERS: Record<string, (bytes: Buffer) => Buffer> = {
  gzip: (bytes) => gunzipSync(bytes, { maxOutputLength: ACTION_BODY_LIMIT }),
  'x-gzip': (bytes) => gunzipSync(bytes, { maxOutputLength: ACTION_BODY_LIMIT }),
  deflate: (bytes) => inflateSync(bytes, { maxOutputLength: ACTION_BODY_LIMIT }),
  br: (bytes) => brotliDecompressSync(bytes, { maxOutputLength: ACTION_BODY_LIMIT })
}

const ACTION_ID = /^[A-Za-z0-9._:-]{1,128}$/

/** The `id` of a MachineAction entity (`@odata.context` …#MachineActions/$entity, or its machineId and type). */
export function machineActionIdOf (json: Buffer): string | undefined {
  let value: unknown
  try {
    value = JSON.parse(json.toString('utf8'))
  } catch {
    return undefined
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined
  const entity = value as Record<string, unknown>
  const context = entity['@odata.context']
  const isAction = (typeof context === 'string' && context.includes('#MachineActions')) ||
    (typeof entity.machineId === 'string' && typeof entity.type === 'string')
  return isAction && typeof entity.id === 'string' && ACTION_ID.test(entity.id) ? entity.id : undefined
}

/**
 * The response body as it goes to the client, with the machine action id read on the way:
 * a small JSON body (decompressed when the API compressed it) is kept aside until it ends,
 * which is before the response does; anything else passes untouched.
 */
export function watchMachineActionId (
  body: Readable | Buffer,
  headers: Record<string, string | string[]>,
  found: (id: string) => void
): Readable | Buffer {
  const type = headers['content-type']
  if (typeof type !== 'string' || !type.includes('json')) return body
  const length = headers['content-length']
  if (length !== undefined && !(Number(length) <= ACTION_BODY_LIMIT)) return body
  const encoding = headers['content-encoding']
  const decode = encoding === undefined
    ? (bytes: Buffer) => bytes
    : typeof encoding === 'string' ? SYNC_DECODERS[encoding.trim().toLowerCase()] : undefined
  if (decode === undefined) return body
  const read = (bytes: Buffer) => {
    let id
    try {
      id = machineActionIdOf(decode(bytes))
    } catch {
      return
    }
    if (id !== undefined) found(id)
  }
  if (Buffer.isBuffer(body)) {
    read(body)
    return body
  }
  const chunks: Buffer[] = []
  let size = 0
  const tap = new Transform({
    transform (chunk: Buffer, _encoding, callback) {
      size += chunk.length
      if (size <= ACTION_BODY_LIMIT) chunks.push(chunk)
      callback(null, chunk)
    },
    flush (callback) {
      if (size <= ACTION_BODY_LIMIT) read(Buffer.concat(chunks, size))
      callback()
    }
  })
  return pipeline(body, tap, () => {})
}
