/**
 * The benchmark's fixtures, each run as a child process of its own with an IPC channel, so the
 * load generator and the servers never share an event loop, and signing a token never holds up
 * the API's answers (as Entra ID and the API are not one server either). BENCH_SERVE says which:
 *  - `upstream`: a stand-in Defender API on plain HTTP (loopback only): a ~1 KiB JSON alert page
 *    at any /api/... path (GET, or POST with its body read and dropped), and GET /stream?bytes=N
 *    streaming N bytes in 64 KiB chunks. It sends `{ type: 'ready', upstream, pageBytes }`.
 *  - `entra`: the simulator's Entra ID token endpoint (one app with a secret).
 * The token endpoint sends the parent `{ type: 'ready', ... }` and answers `{ type: 'tokenRequests', id }` (token
 * requests received so far) and `{ type: 'slowNextToken', id, ms }`: the next token answer is
 * held back `ms`, as a real Entra ID round trip takes that long, so a cold broker's first token
 * request is still in flight when its first clients arrive.
 */
import { request as httpsRequest } from 'node:https'
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'
import { randomBytes } from 'node:crypto'
import { createTestPki, startEntraSimulator, DEMO_TENANT_ID, DEMO_CLIENT_ID, DEMO_ROLES } from '../src/simulator/index.js'

const STREAM_CHUNK_BYTES = 64 * 1024
const MAX_STREAM_BYTES = 8 * 1024 * 1024 * 1024

export interface UpstreamReady {
  type: 'ready'
  upstream: string
  pageBytes: number
}

export interface EntraReady {
  type: 'ready'
  entra: string
  caPem: string
  tenantId: string
  clientId: string
  clientSecret: string
  /** A genuine access token of the app, for the baselines' static Authorization header. */
  staticToken: string
}

export type FixturesReady = UpstreamReady & EntraReady

export interface TokenRequestsReply {
  type: 'tokenRequests'
  id: number
  count: number
}

/** A page shaped like GET /api/alerts answers, padded to about 1 KiB. */
function alertPage (): Buffer {
  const alert = {
    id: 'da637551227677560813_-961444813',
    incidentId: 1126093,
    severity: 'Medium',
    status: 'New',
    classification: null,
    determination: null,
    detectionSource: 'WindowsDefenderAv',
    category: 'Malware',
    title: 'Suspicious process injection observed',
    machineId: '111e6dd8c833c8a052ea231ec1b19adaf497b625',
    computerDnsName: 'mdetest.contoso.local',
    alertCreationTime: '2024-04-05T10:12:44.2012345Z',
    lastUpdateTime: '2024-04-05T10:17:21.0213456Z'
  }
  const page = { '@odata.context': 'https://api.securitycenter.microsoft.com/api/$metadata#Alerts', value: [alert, { ...alert, id: 'da637551227677560813_-961444814' }] }
  let text = JSON.stringify(page)
  if (text.length < 1024) {
    page.value[1] = { ...page.value[1] as typeof alert, title: alert.title + ' '.repeat(1024 - text.length) }
    text = JSON.stringify(page)
  }
  return Buffer.from(text)
}

function startUpstream (): Promise<string> {
  const page = alertPage()
  const pageHeaders = {
    'content-type': 'application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8',
    'content-length': String(page.length)
  }
  const chunk = Buffer.alloc(STREAM_CHUNK_BYTES, 0x61)
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '/'
    if (url.startsWith('/api/')) {
      if (req.method === 'GET' || req.method === 'HEAD') {
        res.writeHead(200, pageHeaders)
        res.end(req.method === 'HEAD' ? undefined : page)
        return
      }
      req.resume()
      req.once('end', () => {
        res.writeHead(200, pageHeaders)
        res.end(page)
      })
      return
    }
    if (url.startsWith('/stream?') && req.method === 'GET') {
      const bytes = Number(new URLSearchParams(url.slice('/stream?'.length)).get('bytes'))
      if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes > MAX_STREAM_BYTES) {
        res.writeHead(400).end()
        return
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(bytes) })
      streamBytes(res, chunk, bytes)
      return
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"code":"NotFound"}}')
  })
  server.keepAliveTimeout = 65_000
  server.headersTimeout = 66_000
  server.listen(0, '127.0.0.1')
  return once(server, 'listening').then(() => `http://127.0.0.1:${(server.address() as AddressInfo).port}`)
}

/** Writes `total` bytes in chunks, waiting for 'drain' whenever the socket is full. */
function streamBytes (res: ServerResponse, chunk: Buffer, total: number): void {
  let left = total
  const pump = (): void => {
    while (left > 0) {
      const piece = left >= chunk.length ? chunk : chunk.subarray(0, left)
      left -= piece.length
      if (!res.write(piece)) {
        res.once('drain', pump)
        return
      }
    }
    res.end()
  }
  res.once('close', () => { left = 0 })
  pump()
}

function fetchToken (tokenEndpoint: string, caPem: string, clientSecret: string): Promise<string> {
  const form = new URLSearchParams({
    grant_type: 'client_credentials',
    client_id: DEMO_CLIENT_ID,
    client_secret: clientSecret,
    scope: 'https://api.securitycenter.microsoft.com/.default'
  }).toString()
  return new Promise((resolve, reject) => {
    const req = httpsRequest(tokenEndpoint, {
      method: 'POST',
      ca: caPem,
      headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(form) }
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.once('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { access_token?: string }
        if (res.statusCode === 200 && typeof body.access_token === 'string') resolve(body.access_token)
        else reject(new Error(`token endpoint answered ${res.statusCode ?? '?'}`))
      })
      res.once('error', reject)
    })
    req.once('error', reject)
    req.end(form)
  })
}

async function main (): Promise<void> {
  if (process.send === undefined) throw new Error('run me with an IPC channel (from bench/run)')
  // The parent went away: nothing left to serve.
  process.once('disconnect', () => process.exit(0))
  if (process.env.BENCH_SERVE === 'upstream') {
    const ready: UpstreamReady = { type: 'ready', upstream: await startUpstream(), pageBytes: alertPage().length }
    process.send(ready)
    return
  }
  const pki = await createTestPki()
  const clientSecret = `${randomBytes(2).toString('hex').slice(0, 3)}8Q~${randomBytes(24).toString('base64url').slice(0, 34)}`
  const entra = await startEntraSimulator({
    pki,
    apps: [{ tenantId: DEMO_TENANT_ID, clientId: DEMO_CLIENT_ID, secret: clientSecret, roles: [...DEMO_ROLES] }]
  })
  const staticToken = await fetchToken(entra.tokenEndpoint(DEMO_TENANT_ID), pki.caCertPem, clientSecret)

  // The simulator emits 'token-request' once it has read a request and before it answers:
  // blocking this process there delays the answer (nothing else is asked of it meanwhile).
  let holdNextMs = 0
  const blocker = new Int32Array(new SharedArrayBuffer(4))
  entra.on('token-request', () => {
    if (holdNextMs > 0) {
      const ms = holdNextMs
      holdNextMs = 0
      Atomics.wait(blocker, 0, 0, ms)
    }
  })
  process.on('message', (message: { type?: string, id?: number, ms?: number }) => {
    if (typeof message.id !== 'number') return
    if (message.type === 'tokenRequests') {
      const reply: TokenRequestsReply = { type: 'tokenRequests', id: message.id, count: entra.tokenRequests }
      process.send?.(reply)
    } else if (message.type === 'slowNextToken' && typeof message.ms === 'number') {
      holdNextMs = message.ms
      process.send?.({ type: 'slowNextToken', id: message.id })
    }
  })
  const ready: EntraReady = {
    type: 'ready',
    entra: entra.url,
    caPem: pki.caCertPem,
    tenantId: DEMO_TENANT_ID,
    clientId: DEMO_CLIENT_ID,
    clientSecret,
    staticToken
  }
  process.send(ready)
}

main().catch((err: unknown) => {
  process.stderr.write(`bench fixtures: ${(err as Error)?.stack ?? String(err)}\n`)
  process.exit(1)
})
