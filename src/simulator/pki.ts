import { createHash, createPrivateKey, randomBytes, webcrypto } from 'node:crypto'
import * as x509 from '@peculiar/x509'

const KEY_ALGORITHM = {
  name: 'RSASSA-PKCS1-v1_5',
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: 'SHA-256'
} as const
const DAY_MS = 24 * 60 * 60 * 1000
const DEFAULT_VALIDITY_DAYS = 365
// Passed to every call rather than set on x509.cryptoProvider, a process-wide singleton.
const crypto = webcrypto as unknown as ReturnType<typeof x509.cryptoProvider.get>

export interface ClientCertificateOptions {
  notBefore?: Date
  notAfter?: Date
  /** Encrypts the private key (PKCS#8, AES-256-CBC), as AZURE_CLIENT_CERTIFICATE_PASSWORD expects. */
  password?: string
}

export interface ClientCertificate {
  certPem: string
  keyPem: string
  /** Certificate and private key in one file, the shape of AZURE_CLIENT_CERTIFICATE_PATH. */
  pem: string
  thumbprintSha256Hex: string
}

export interface TestPki {
  caCertPem: string
  serverCertPem: string
  serverKeyPem: string
  issueClientCertificate (commonName: string, options?: ClientCertificateOptions): Promise<ClientCertificate>
}

/**
 * A throwaway CA with a loopback server certificate and a way to mint client certificates, so
 * TLS and certificate credentials run for real without touching the system trust store.
 */
export async function createTestPki (): Promise<TestPki> {
  const [caKeys, serverKeys] = await Promise.all([generateKeys(), generateKeys()])
  const caName = `CN=defender-token-broker simulator CA ${randomBytes(4).toString('hex')}`
  const now = Date.now()

  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: caName,
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + DEFAULT_VALIDITY_DAYS * DAY_MS),
    keys: caKeys,
    signingAlgorithm: KEY_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey, false, crypto)
    ]
  }, crypto)

  async function issue (
    subject: string,
    keys: webcrypto.CryptoKeyPair,
    notBefore: Date,
    notAfter: Date,
    extensions: x509.Extension[]
  ): Promise<x509.X509Certificate> {
    return x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject,
      issuer: ca.subject,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: KEY_ALGORITHM,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        await x509.AuthorityKeyIdentifierExtension.create(ca, false, crypto),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
        ...extensions
      ]
    }, crypto)
  }

  const server = await issue('CN=localhost', serverKeys, new Date(now - DAY_MS), new Date(now + DEFAULT_VALIDITY_DAYS * DAY_MS), [
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
    new x509.SubjectAlternativeNameExtension([
      { type: 'ip', value: '127.0.0.1' },
      { type: 'ip', value: '::1' },
      { type: 'dns', value: 'localhost' }
    ])
  ])

  return {
    caCertPem: ca.toString('pem'),
    serverCertPem: server.toString('pem'),
    serverKeyPem: await exportPrivateKeyPem(serverKeys.privateKey),
    async issueClientCertificate (commonName, options = {}) {
      // A key of its own per certificate: a "wrong certificate" must also be a wrong key.
      const keys = await generateKeys()
      const notBefore = options.notBefore ?? new Date(Date.now() - DAY_MS)
      const notAfter = options.notAfter ?? new Date(notBefore.getTime() + DEFAULT_VALIDITY_DAYS * DAY_MS)
      const cert = await issue(`CN=${escapeDnValue(commonName)}`, keys, notBefore, notAfter, [
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth])
      ])
      const certPem = ensureTrailingNewline(cert.toString('pem'))
      let keyPem = await exportPrivateKeyPem(keys.privateKey)
      if (options.password !== undefined) {
        keyPem = createPrivateKey(keyPem).export({
          type: 'pkcs8',
          format: 'pem',
          cipher: 'aes-256-cbc',
          passphrase: options.password
        }).toString()
      }
      keyPem = ensureTrailingNewline(keyPem)
      return {
        certPem,
        keyPem,
        pem: certPem + keyPem,
        thumbprintSha256Hex: createHash('sha256').update(new Uint8Array(cert.rawData)).digest('hex')
      }
    }
  }
}

async function generateKeys (): Promise<webcrypto.CryptoKeyPair> {
  return await webcrypto.subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])
}

async function exportPrivateKeyPem (key: webcrypto.CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key)
  return x509.PemConverter.encode(der, 'PRIVATE KEY')
}

function randomSerial (): string {
  const bytes = randomBytes(16)
  bytes[0] = (bytes[0] ?? 0) & 0x7f // a positive INTEGER
  return bytes.toString('hex')
}

function escapeDnValue (value: string): string {
  return value.replace(/[\\,+"<>;=]/g, (c) => `\\${c}`)
}

function ensureTrailingNewline (pem: string): string {
  return pem.endsWith('\n') ? pem : `${pem}\n`
}
