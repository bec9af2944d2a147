import { createHash, createPrivateKey, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { INetworkModule } from '@azure/msal-node'
import type { Clock } from '../common/clock.js'
import { checkCertificateFile } from '../config/secret-files.js'
import type { ProfileConfig, SecretSource } from '../config/types.js'
import { BrokerConfigInvalid } from '../common/errors.js'
import type { Credential } from './types.js'
import { CertificateWatch } from './certificate-watch.js'
import { createConfidentialClient } from './confidential-client.js'

export interface CertificateMaterial {
  /** The certificate chain as PEM, leaf first. */
  certificatePem: string
  /** The unencrypted PKCS#8 private key as PEM. */
  privateKeyPem: string
  thumbprintSha256: string
  notAfter: Date
}

const CERTIFICATE_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g
const KEY_BLOCK = /-----BEGIN (?:ENCRYPTED |RSA |EC )?PRIVATE KEY-----[\s\S]+?-----END (?:ENCRYPTED |RSA |EC )?PRIVATE KEY-----/

/** Reads a PEM holding the certificate and its key, as AZURE_CLIENT_CERTIFICATE_PATH does. */
export function readCertificate (file: string, password?: string): CertificateMaterial {
  // The checks of start-up again, a rotated file's mode included: it holds a private key.
  checkCertificateFile(file, file, password !== undefined)
  const pem = readFileSync(file, 'utf8')
  const certificates = pem.match(CERTIFICATE_BLOCK)
  const key = pem.match(KEY_BLOCK)
  if (certificates === null || key === null) {
    throw new BrokerConfigInvalid(file, 'must hold a PEM certificate and its private key')
  }
  let privateKeyPem: string
  try {
    privateKeyPem = createPrivateKey({ key: key[0], passphrase: password })
      .export({ format: 'pem', type: 'pkcs8' }).toString()
  } catch {
    throw new BrokerConfigInvalid(file, 'the private key cannot be read: check the certificate password')
  }
  const leaf = new X509Certificate(certificates[0] as string)
  return {
    certificatePem: certificates.join('\n'),
    privateKeyPem,
    thumbprintSha256: leaf.fingerprint256.replaceAll(':', '').toLowerCase(),
    notAfter: new Date(leaf.validTo)
  }
}

export function createCertificateCredential (
  profile: ProfileConfig,
  file: string,
  password: SecretSource | undefined,
  networkClient: INetworkModule,
  clock: Pick<Clock, 'now'>
): Credential {
  const acquire = createConfidentialClient(profile, networkClient)
  let held: CertificateMaterial | undefined
  let passwordValue: string | undefined
  // Known from the start for /status and `check`; a file that cannot be read yet fails at the
  // first token request, where failures are reported and retried.
  const watch = new CertificateWatch(clock, readQuietly(file, password))
  return {
    type: 'certificate',
    certificate: watch,
    acquire (signal) {
      // Re-read on every call (a file read and a key parse): a rotated certificate takes effect
      // at the next token request.
      passwordValue = password?.read()
      held = readCertificate(file, passwordValue)
      watch.update(held)
      const key = createHash('sha256').update(held.thumbprintSha256).update(held.privateKeyPem).digest('hex')
      return acquire({
        clientCertificate: {
          thumbprintSha256: held.thumbprintSha256,
          privateKey: held.privateKeyPem,
          x5c: held.certificatePem
        }
      }, key, signal)
    },
    secrets: () => [held?.privateKeyPem, passwordValue].filter((value): value is string => Boolean(value))
  }
}

function readQuietly (file: string, password: SecretSource | undefined): CertificateMaterial | undefined {
  try {
    return readCertificate(file, password?.read())
  } catch {
    return undefined
  }
}
