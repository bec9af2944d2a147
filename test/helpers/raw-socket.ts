import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'

interface Teardown {
  teardown: (fn: () => unknown) => void
}

export interface RawConnection {
  socket: Socket
  /** Everything the server has sent so far, as latin1 text. */
  text: () => string
  /** Resolves with the received text once it matches `pattern`; rejects if the connection closes first. */
  waitFor: (pattern: RegExp) => Promise<string>
  /** Resolves with `performance.now()` at the moment the connection closed, whoever closed it. */
  closed: Promise<number>
}

/**
 * A TCP connection to `url`'s host and port for writing requests byte by byte, at the pace a
 * test chooses: slow clients, `Expect: 100-continue`, half-sent bodies. Destroyed at teardown.
 */
export async function openConnection (t: Teardown, url: string): Promise<RawConnection> {
  const { hostname, port } = new URL(url)
  const socket = connect(Number(port), hostname)
  socket.on('error', () => {})
  const chunks: Buffer[] = []
  const listeners = new Set<() => void>()
  const closed = new Promise<number>((resolve) => {
    socket.once('close', () => {
      resolve(performance.now())
      for (const listener of listeners) listener()
    })
  })
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk)
    for (const listener of listeners) listener()
  })
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  const text = () => Buffer.concat(chunks).toString('latin1')
  return {
    socket,
    text,
    closed,
    waitFor: (pattern) => new Promise((resolve, reject) => {
      const check = () => {
        const received = text()
        if (pattern.test(received)) {
          listeners.delete(check)
          resolve(received)
        } else if (socket.destroyed) {
          listeners.delete(check)
          reject(new Error(`the connection closed before ${pattern} arrived; received ${JSON.stringify(received)}`))
        }
      }
      listeners.add(check)
      check()
    })
  }
}

export interface RawResponse {
  /** The response's bytes as latin1 text: with `rawExchange`, everything the server sent. */
  text: string
  status: number | undefined
  /** Lower-case names; repeated headers keep every value. */
  headers: Record<string, string[]>
  /** With a chunked body, decoded. */
  body: string
}

/**
 * Writes `bytes` as they are to `url`'s host and port and reads until the server closes the
 * connection: HTTP clients normalise request targets, this does not. Send `Connection: close`
 * (or a request the server refuses) so that the server does close.
 */
export async function rawExchange (url: string, bytes: string | Buffer): Promise<RawResponse> {
  const { hostname, port } = new URL(url)
  const socket = connect(Number(port), hostname)
  const chunks: Buffer[] = []
  socket.on('data', (chunk: Buffer) => chunks.push(chunk))
  await once(socket, 'connect')
  socket.write(bytes)
  await new Promise<void>((resolve) => {
    socket.once('close', () => resolve())
    socket.once('error', () => {})
  })
  return parseRawResponse(Buffer.concat(chunks).toString('latin1'))
}

interface Head {
  status: number | undefined
  headers: Record<string, string[]>
  /** Where the body starts; -1 while the head is incomplete. */
  bodyAt: number
}

function parseHead (text: string): Head {
  const end = text.indexOf('\r\n\r\n')
  if (end === -1) return { status: undefined, headers: {}, bodyAt: -1 }
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n')
  const headers: Record<string, string[]> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    const name = line.slice(0, colon).trim().toLowerCase()
    ;(headers[name] ??= []).push(line.slice(colon + 1).trim())
  }
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1])
  return { status: Number.isNaN(status) ? undefined : status, headers, bodyAt: end + 4 }
}

const isChunked = (headers: Record<string, string[]>) => headers['transfer-encoding']?.[0] === 'chunked'

/** Parses `text` as one HTTP/1.1 response: all that follows the head is its body. */
export function parseRawResponse (text: string): RawResponse {
  const { status, headers, bodyAt } = parseHead(text)
  if (bodyAt === -1) return { text, status, headers, body: '' }
  const rest = text.slice(bodyAt)
  return { text, status, headers, body: isChunked(headers) ? decodeChunked(rest).body : rest }
}

/**
 * Splits what one connection received into its responses, in order, each framed as HTTP/1.1
 * frames it (no body for 1xx, 204 and 304; Content-Length; chunked; else to the end). Bytes
 * after the last whole response are one more, unparsed, entry.
 */
export function parseRawResponses (text: string): RawResponse[] {
  const responses: RawResponse[] = []
  let rest = text
  while (rest !== '') {
    const { status, headers, bodyAt } = parseHead(rest)
    let end = rest.length
    if (bodyAt !== -1 && status !== undefined) {
      const length = headers['content-length']?.[0]
      if ((status >= 100 && status < 200) || status === 204 || status === 304) end = bodyAt
      else if (isChunked(headers)) end = bodyAt + decodeChunked(rest.slice(bodyAt)).length
      else if (length !== undefined) end = Math.min(rest.length, bodyAt + Number(length))
    }
    responses.push(parseRawResponse(rest.slice(0, end)))
    rest = rest.slice(end)
  }
  return responses
}

/** The decoded body of a chunked coding and how many characters of `text` the coding takes. */
function decodeChunked (text: string): { body: string, length: number } {
  let body = ''
  let at = 0
  for (;;) {
    const lineEnd = text.indexOf('\r\n', at)
    if (lineEnd === -1) return { body, length: text.length }
    const size = parseInt(text.slice(at, lineEnd), 16)
    if (Number.isNaN(size)) return { body, length: text.length }
    if (size === 0) {
      const trailerEnd = text.indexOf('\r\n\r\n', lineEnd)
      return { body, length: trailerEnd === -1 ? text.length : trailerEnd + 4 }
    }
    body += text.slice(lineEnd + 2, lineEnd + 2 + size)
    at = lineEnd + 2 + size + 2
  }
}
