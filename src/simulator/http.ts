import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'

const DEFAULT_BODY_LIMIT = 1024 * 1024

/** The origin clients should use: a wildcard listen address is reached through loopback. */
export function originFor (protocol: 'http' | 'https', host: string, port: number): string {
  let name = host
  if (name === '0.0.0.0' || name === '') name = '127.0.0.1'
  if (name === '::') name = '::1'
  return `${protocol}://${name.includes(':') ? `[${name}]` : name}:${port}`
}

export async function listen (server: Server, host: string, port: number): Promise<number> {
  server.listen(port, host)
  await once(server, 'listening')
  return (server.address() as AddressInfo).port
}

/** Closes the server and every connection it holds, including requests left hanging on purpose. */
export async function closeServer (server: Server): Promise<void> {
  if (!server.listening) return
  const closed = new Promise<void>((resolve, reject) => {
    server.close((error) => { if (error === undefined) resolve(); else reject(error) })
  })
  server.closeAllConnections()
  await closed
}

export async function readBody (req: IncomingMessage, limit = DEFAULT_BODY_LIMIT): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    const buffer = chunk as Buffer
    size += buffer.length
    if (size > limit) throw new RangeError(`request body over ${limit} bytes`)
    chunks.push(buffer)
  }
  return Buffer.concat(chunks).toString('utf8')
}

export function sendJson (
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
  contentType = 'application/json; charset=utf-8'
): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body)
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(text),
    ...headers
  })
  res.end(text)
}
