import { once } from 'node:events'
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { request, type Dispatcher } from 'undici'

interface Teardown {
  teardown: (fn: () => unknown) => void
}

export interface UpstreamRequest {
  method: string
  /** The request target exactly as it arrived. */
  url: string
  headers: IncomingHttpHeaders
  /** Names and values as sent, in order: shows what a parsed header object would merge or hide. */
  rawHeaders: string[]
  /** Filled in by `readBody` (and so by the default handler); empty until then. */
  body: Buffer
}

export type UpstreamHandler = (req: IncomingMessage, res: ServerResponse, recorded: UpstreamRequest) => void

export interface Upstream {
  /** `http://127.0.0.1:PORT`: what `BROKER_UPSTREAM` and `ProfileConfig.upstream` take. */
  url: string
  /** `127.0.0.1:PORT`: the Host header a request to it carries. */
  host: string
  server: Server
  /** Every request that reached this upstream, in order of arrival. */
  requests: UpstreamRequest[]
  /** Resolves with the next request to arrive (its handler has already been called). */
  nextRequest: () => Promise<{ req: IncomingMessage, res: ServerResponse, recorded: UpstreamRequest }>
}

/** Reads a whole (small) request body into `recorded.body`. */
export async function readBody (req: IncomingMessage, recorded?: UpstreamRequest): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of req) chunks.push(chunk as Buffer)
  const body = Buffer.concat(chunks)
  if (recorded !== undefined) recorded.body = body
  return body
}

/** Reads the body, then answers 200 with a small JSON body. */
export const recordAndAnswer: UpstreamHandler = (req, res, recorded) => {
  readBody(req, recorded).then(() => {
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' })
    res.end('{"value":[]}')
  }, () => res.destroy())
}

/**
 * A plain http "Defender API" on 127.0.0.1 port 0 whose every request is recorded; `handler`
 * answers (the default reads the body and answers 200).
 */
export async function startUpstream (t: Teardown, handler: UpstreamHandler = recordAndAnswer): Promise<Upstream> {
  const requests: UpstreamRequest[] = []
  const server = createServer((req, res) => {
    const recorded: UpstreamRequest = {
      method: req.method as string,
      url: req.url as string,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      body: Buffer.alloc(0)
    }
    requests.push(recorded)
    handler(req, res, recorded)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise((resolve) => server.close(resolve))
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    server,
    requests,
    nextRequest: async () => {
      const [req, res] = await once(server, 'request') as [IncomingMessage, ServerResponse]
      return { req, res, recorded: requests[requests.length - 1] as UpstreamRequest }
    }
  }
}

/**
 * Sends one request to `url` (through the broker, to `upstream`) and abandons it once the
 * upstream has it; resolves, once the upstream's side has closed too, with 'aborted' or,
 * should the request have been answered after all, its status.
 */
export async function abandonAtUpstream (
  upstream: Upstream,
  url: string,
  options: { method?: Dispatcher.HttpMethod, body?: string } = {}
): Promise<number | 'aborted'> {
  const controller = new AbortController()
  const sent = request(url, { ...options, signal: controller.signal }).then((res) => res.statusCode, () => 'aborted' as const)
  const { req } = await upstream.nextRequest()
  // The broker cutting the upstream request short is an 'aborted' error here: only its end matters.
  req.on('error', () => {})
  const upstreamClosed = new Promise((resolve) => req.once('close', resolve))
  controller.abort()
  const outcome = await sent
  await upstreamClosed
  return outcome
}

/**
 * An origin nothing answers on, for as long as the test runs: connecting to it is refused at once.
 * A port that was merely freed can be taken by another test's server in the meantime (seen: a
 * minute-long hang instead of a refusal), so the port stays held by a listener on 127.0.0.1, which
 * also keeps anyone from binding it on every address, and the origin is 127.0.0.2 on that port.
 */
export async function closedOrigin (t: Teardown): Promise<string> {
  const holder = createServer((req) => req.socket.destroy())
  holder.listen(0, '127.0.0.1')
  await once(holder, 'listening')
  t.teardown(() => new Promise((resolve) => holder.close(resolve)))
  return `http://127.0.0.2:${(holder.address() as AddressInfo).port}`
}
