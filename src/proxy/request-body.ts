import type { IncomingMessage } from 'node:http'

/** The largest body kept in memory so that the request can be replayed after an upstream 401. */
export const REPLAYABLE_BODY_LIMIT = 1024 * 1024

export type RequestBody =
  /** No body, or a small one held whole: the request can be sent again. */
  | { replayable: true, bytes: Buffer | null }
  /** A large or chunked body: streamed once, never held. */
  | { replayable: false, stream: IncomingMessage }

const NO_BODY: RequestBody = Object.freeze({ replayable: true, bytes: null })

/** The body to send, at once when there is none or it is streamed, after reading it when it is kept for a replay. */
export function takeRequestBody (req: IncomingMessage): RequestBody | Promise<RequestBody> {
  const length = req.headers['content-length']
  if (req.headers['transfer-encoding'] === undefined && (length === undefined || length === '0')) return NO_BODY
  const size = length === undefined ? Infinity : Number(length)
  if (!(size <= REPLAYABLE_BODY_LIMIT)) return { replayable: false, stream: req }
  return readWhole(req)
}

async function readWhole (req: IncomingMessage): Promise<RequestBody> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  return { replayable: true, bytes: Buffer.concat(chunks) }
}
