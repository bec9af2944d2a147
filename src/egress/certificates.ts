import { createPrivateKey, randomBytes, webcrypto } from 'node:crypto'
import { existsSync } from 'node:fs'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { createSecureContext, type SecureContext } from 'node:tls'
import * as x509 from '@peculiar/x509'
import { systemClock, type Clock } from '../common/clock.js'
import { BrokerConfigInvalid } from '../common/errors.js'
import { readCaFile, readPrivateKeyFile } from '../config/secret-files.js'
import { readOrCreateStateFile } from '../config/state-dir.js'
import type { Config } from '../config/types.js'

/** The state directory's file holding the CA the broker made: certificate and private key, mode 0600. */
export const EGRESS_CA_FILE = 'egress-ca.pem'

const HOUR_MS = 60 * 60 * 1000
const CA_VALIDITY_MS = 10 * 365 * 24 * HOUR_MS
/** A leaf lives a day, and is minted again once less than an hour of it is left. */
export const LEAF_VALIDITY_MS = 24 * HOUR_MS
export const LEAF_RENEW_BEFORE_MS = HOUR_MS
/** Clocks of the tools may be behind the broker's. */
const BACKDATE_MS = HOUR_MS

const EC_KEY = { name: 'ECDSA', namedCurve: 'P-256' } as const
const EC_SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const
const RSA_SIGNING = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as const
// Passed to every call rather than set on x509.cryptoProvider, a process-wide singleton.
const crypto = webcrypto as unknown as ReturnType<typeof x509.cryptoProvider.get>

export interface EgressCa {
  /** The CA certificate tools trust, PEM. */
  readonly certPem: string
  readonly cert: x509.X509Certificate
  readonly signingKey: webcrypto.CryptoKey
  readonly signingAlgorithm: typeof EC_SIGNING | typeof RSA_SIGNING
}

/**
 * The egress proxy's CA: the files of `egressProxy.caCertFile` and `caKeyFile`, else the one
 * in the state directory, made on first use (certificate and key in one file, mode 0600).
 */
export async function loadEgressCa (config: Pick<Config, 'egressProxy' | 'stateDir'>, clock: Clock = systemClock): Promise<EgressCa> {
  const given = config.egressProxy.ca
  if (given !== undefined) {
    const certPem = readCaFile(given.certFile, 'egressProxy.caCertFile')
    const keyPem = readPrivateKeyFile(given.keyFile, 'egressProxy.caKeyFile')
    return await parseCa(certPem, keyPem, 'egressProxy.caCertFile')
  }
  const file = join(config.stateDir, EGRESS_CA_FILE)
  // The key is made asynchronously, the file written synchronously: made first, kept only if no other broker linked one in before.
  const made = existsSync(file) ? undefined : await makeCaPem(clock)
  const pem = readOrCreateStateFile(config.stateDir, EGRESS_CA_FILE, () => {
    if (made === undefined) throw new BrokerConfigInvalid('stateDir', `${file} went away while the broker started: start it again`)
    return made
  }).toString('utf8')
  return await parseCa(pem, pem, file)
}

async function makeCaPem (clock: Clock): Promise<string> {
  const keys = await webcrypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify'])
  const now = clock.now()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: `CN=defender-token-broker egress proxy CA ${randomBytes(4).toString('hex')}, O=defender-token-broker`,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + CA_VALIDITY_MS),
    keys,
    signingAlgorithm: EC_SIGNING,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto)
    ]
  }, crypto)
  return pemLines(cert.toString('pem')) + await privateKeyPem(keys.privateKey)
}

async function parseCa (certPem: string, keyPem: string, where: string): Promise<EgressCa> {
  const certBlock = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(certPem)?.[0]
  if (certBlock === undefined) throw new BrokerConfigInvalid(where, 'holds no CERTIFICATE block')
  let cert: x509.X509Certificate
  let key
  try {
    cert = new x509.X509Certificate(certBlock)
    key = createPrivateKey(keyPem)
  } catch {
    throw new BrokerConfigInvalid(where, 'holds a certificate or private key that cannot be read: give a PEM CA certificate and its unencrypted key')
  }
  const der = key.export({ type: 'pkcs8', format: 'der' })
  let signingAlgorithm: EgressCa['signingAlgorithm']
  let importAlgorithm: webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams
  if (key.asymmetricKeyType === 'rsa') {
    signingAlgorithm = RSA_SIGNING
    importAlgorithm = RSA_SIGNING
  } else if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') {
    signingAlgorithm = EC_SIGNING
    importAlgorithm = EC_KEY
  } else {
    throw new BrokerConfigInvalid(where, 'has a private key that is neither RSA nor EC P-256: give one of those')
  }
  const signingKey = await webcrypto.subtle.importKey('pkcs8', der, importAlgorithm, false, ['sign'])
  return { certPem: pemLines(certBlock), cert, signingKey, signingAlgorithm }
}

interface Leaf {
  context: SecureContext
  /** The certificate, PEM: tests and `openssl` read what a tool was shown. */
  certPem: string
  renewAt: number
}

/**
 * Certificates for the intercepted hosts, signed by the CA: one per host, made when a tool
 * first connects to it, kept in memory (never written), short-lived, and made again before
 * it runs out. One mint per host at a time, whatever the number of tools connecting.
 */
export class LeafCertificates {
  readonly #ca: EgressCa
  readonly #clock: Clock
  readonly #leaves = new Map<string, Promise<Leaf>>()

  constructor (ca: EgressCa, clock: Clock = systemClock) {
    this.#ca = ca
    this.#clock = clock
  }

  /** The TLS context to serve `host` with; `host` must be one the caller decided to intercept. */
  async contextFor (host: string): Promise<SecureContext> {
    return (await this.leafFor(host)).context
  }

  async leafFor (host: string): Promise<Leaf> {
    const held = this.#leaves.get(host)
    if (held !== undefined) {
      const leaf = await held.catch(() => undefined)
      if (leaf !== undefined && leaf.renewAt > this.#clock.now()) return leaf
      if (this.#leaves.get(host) !== held) return await this.leafFor(host)
    }
    const minting = this.#mint(host)
    this.#leaves.set(host, minting)
    minting.catch(() => { if (this.#leaves.get(host) === minting) this.#leaves.delete(host) })
    return await minting
  }

  async #mint (host: string): Promise<Leaf> {
    const keys = await webcrypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify'])
    const now = this.#clock.now()
    const notAfter = now + LEAF_VALIDITY_MS
    const ca = this.#ca
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: `CN=${host}`,
      issuer: ca.cert.subject,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(notAfter),
      publicKey: keys.publicKey,
      signingKey: ca.signingKey,
      signingAlgorithm: ca.signingAlgorithm,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: isIP(host) === 0 ? 'dns' : 'ip', value: host }]),
        await x509.AuthorityKeyIdentifierExtension.create(ca.cert, false, crypto),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto)
      ]
    }, crypto)
    const certPem = pemLines(cert.toString('pem'))
    return {
      context: createSecureContext({ cert: certPem, key: await privateKeyPem(keys.privateKey), minVersion: 'TLSv1.2' }),
      certPem,
      renewAt: notAfter - LEAF_RENEW_BEFORE_MS
    }
  }
}

/** The CA certificate as `defender-token-broker ca` prints it. */
export async function egressCaCertificate (config: Pick<Config, 'egressProxy' | 'stateDir'>): Promise<string> {
  return (await loadEgressCa(config)).certPem
}

async function privateKeyPem (key: webcrypto.CryptoKey): Promise<string> {
  return pemLines(x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', key), 'PRIVATE KEY'))
}

function randomSerial (): string {
  const bytes = randomBytes(16)
  bytes[0] = (bytes[0] ?? 0) & 0x7f // a positive INTEGER
  return bytes.toString('hex')
}

function pemLines (pem: string): string {
  const unix = pem.replace(/\r\n/g, '\n')
  return unix.endsWith('\n') ? unix : `${unix}\n`
}
