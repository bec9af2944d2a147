import { createHash } from 'node:crypto'
import { readFileSync, statSync } from 'node:fs'
import { BrokerConfigInvalid } from '../common/errors.js'
import type { SecretSource } from './types.js'

/*
 * Every check names the setting and the file and says what to do; none repeats what a file
 * holds. `path` is the setting that named the file, e.g. `profiles[0].credential.secretFile`.
 */

const GROUP_OR_OTHERS_READ = 0o044

interface ReadOptions {
  /** Refuse a file that group or others may read. */
  readonly private: boolean
}

function errnoCode (err: unknown): string {
  return typeof (err as NodeJS.ErrnoException).code === 'string' ? (err as NodeJS.ErrnoException).code as string : 'unknown error'
}

function readChecked (file: string, path: string, options: ReadOptions): string {
  let stats
  try {
    stats = statSync(file)
  } catch (err) {
    const code = errnoCode(err)
    throw new BrokerConfigInvalid(path, code === 'ENOENT'
      ? `the file ${file} does not exist: check the path and the volume or secret mount`
      : `the file ${file} cannot be read (${code}): check the path and the broker user's access`)
  }
  if (!stats.isFile()) {
    throw new BrokerConfigInvalid(path, `${file} is not a regular file: point the setting at the file itself`)
  }
  // Windows has no POSIX modes: Node reports 0o666 for every writable file there.
  if (options.private && process.platform !== 'win32' && (stats.mode & GROUP_OR_OTHERS_READ) !== 0) {
    throw new BrokerConfigInvalid(path,
      `the file ${file} is readable by group or others: run chmod 600 ${file} ` +
      '(for a Kubernetes or compose secret, set its mode to 0400)')
  }
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    throw new BrokerConfigInvalid(path,
      `the file ${file} cannot be read (${errnoCode(err)}): give the broker's user read access to it`)
  }
}

/** A secret file's value: trailing line breaks dropped, as `echo secret > file` adds one. */
function readSecretValue (file: string, path: string): string {
  const value = readChecked(file, path, { private: true }).replace(/[\r\n]+$/, '')
  if (value === '') {
    throw new BrokerConfigInvalid(path, `the file ${file} is empty: write the secret into it`)
  }
  return value
}

export function inlineSecret (value: string, origin: string): SecretSource {
  return Object.freeze({ origin, read: () => value })
}

/**
 * A secret kept in a file, checked now and read again, with the same checks, on every
 * `read()`, so a rotated file is picked up without a restart.
 */
export function fileSecret (file: string, path: string): SecretSource {
  readSecretValue(file, path)
  return Object.freeze({ origin: file, read: () => readSecretValue(file, path) })
}

/** A PEM file holding a certificate and its private key; an encrypted key needs a password. */
export function checkCertificateFile (file: string, path: string, hasPassword: boolean): void {
  const pem = readChecked(file, path, { private: true })
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new BrokerConfigInvalid(path,
      `the file ${file} holds no CERTIFICATE block: it must be a PEM file with the certificate and its private key`)
  }
  if (!/-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/.test(pem)) {
    throw new BrokerConfigInvalid(path,
      `the file ${file} holds no PRIVATE KEY block: append the private key to the certificate (e.g. cat cert.pem key.pem)`)
  }
  if (!hasPassword && (pem.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----') || pem.includes('Proc-Type: 4,ENCRYPTED'))) {
    throw new BrokerConfigInvalid(path,
      `the private key in ${file} is encrypted: give its password (password or passwordFile, AZURE_CLIENT_CERTIFICATE_PASSWORD)`)
  }
}

/**
 * A federated token file must exist and hold something. Its mode is not checked: the
 * token is short-lived and audience-bound, and Kubernetes projects service account tokens
 * (the usual source) with mode 0644, so refusing that would break workload identity.
 */
export function checkTokenFile (file: string, path: string): void {
  readTokenFile(file, path)
}

/** The client assertion in a federated token file, with the checks of start-up. */
export function readTokenFile (file: string, path: string): string {
  const assertion = readChecked(file, path, { private: false }).trim()
  if (assertion === '') {
    throw new BrokerConfigInvalid(path, `the file ${file} is empty: it must hold the client assertion (a JWT)`)
  }
  return assertion
}

/** Reads a client key file and returns the key's lower-case hex SHA-256; the key itself is not kept. */
export function keyFileSha256 (file: string, path: string): string {
  return createHash('sha256').update(readSecretValue(file, path)).digest('hex')
}

/** Reads a PEM bundle of CA certificates (public data, so any mode will do). */
export function readCaFile (file: string, path: string): string {
  const pem = readChecked(file, path, { private: false })
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new BrokerConfigInvalid(path, `the file ${file} holds no CERTIFICATE block: it must be a PEM file of CA certificates`)
  }
  return pem
}

/** Reads an unencrypted PEM private key that must be kept private. */
export function readPrivateKeyFile (file: string, path: string): string {
  const pem = readChecked(file, path, { private: true })
  if (pem.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----') || pem.includes('Proc-Type: 4,ENCRYPTED')) {
    throw new BrokerConfigInvalid(path, `the private key in ${file} is encrypted: give it unencrypted, in a file only the broker's user may read`)
  }
  if (!/-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----/.test(pem)) {
    throw new BrokerConfigInvalid(path, `the file ${file} holds no PRIVATE KEY block: it must be a PEM file of the CA's private key`)
  }
  return pem
}

/** Shortest signing key accepted: HS256's own key length. */
export const MIN_SIGNING_KEY_BYTES = 32

/**
 * The key that signs broker tokens, as its file holds it (trailing line breaks dropped, so
 * `openssl rand -base64 48 > file` works): private, and at least 32 bytes.
 */
export function readSigningKeyFile (file: string, path: string): Buffer {
  const key = Buffer.from(readChecked(file, path, { private: true }).replace(/[\r\n]+$/, ''), 'utf8')
  if (key.length < MIN_SIGNING_KEY_BYTES) {
    throw new BrokerConfigInvalid(path, `the file ${file} holds fewer than ${MIN_SIGNING_KEY_BYTES} bytes: write a longer key, e.g. openssl rand -base64 48 > ${file}`)
  }
  return key
}
