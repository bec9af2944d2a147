import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { Client } from '../inbound/client-keys.js'
import type { RequestFacts } from '../observability/request-log.js'
import { ClientWatch } from './client-watch.js'

/**
 * One request on its way to the API, outside fastify: what the forwarder learns of it (for its
 * log line and audit event) and the ways its response is sent. Node's own request and response
 * are used as they are: no wrapper objects, hooks or serializers per request.
 */
export class ForwardedRequest {
  readonly id: string
  readonly req: IncomingMessage
  readonly res: ServerResponse
  /** performance.now() when the request arrived. */
  readonly startedAt: number
  /** The client whose key was presented; none when the broker requires no keys. */
  caller: Client | undefined = undefined
  readonly facts: RequestFacts = {}
  /** Whatever is under way for the client stops when it goes away: a wait, or the API's call. */
  readonly client = new ClientWatch()

  /** Shutdown has begun: the connection is closed after this response. */
  readonly closing: boolean

  constructor (id: string, req: IncomingMessage, res: ServerResponse, startedAt: number, closing: boolean) {
    this.id = id
    this.req = req
    this.res = res
    this.startedAt = startedAt
    this.closing = closing
  }

  /**
   * The head, with the broker's own headers added to `headers` (which it takes over). They go in
   * the one writeHead call: a header set before with setHeader would make Node take every
   * header through setHeader again, validated twice.
   */
  writeHead (status: number, headers: OutgoingHttpHeaders): void {
    headers['x-request-id'] = this.id
    // While draining, a request already on an open connection is answered as usual, and the
    // connection closed after it.
    if (this.closing) headers.connection = 'close'
    this.res.writeHead(status, headers)
  }

  /** A body known whole: a page rewritten, an error. */
  send (status: number, headers: OutgoingHttpHeaders, body: Buffer | string): void {
    this.writeHead(status, headers)
    this.res.end(body)
  }

  /**
   * A body on its way through transforms. The head is sent with the first chunk (or the end),
   * so a failure before any byte is still the broker's to answer: the promise rejects then.
   * It resolves once the head is sent; a failure after that cuts the response off.
   */
  sendStream (status: number, headers: OutgoingHttpHeaders, body: Readable): Promise<void> {
    const res = this.res
    return new Promise((resolve, reject) => {
      let started = false
      const begin = () => {
        if (started) return
        started = true
        this.writeHead(status, headers)
        resolve()
      }
      body.on('data', (chunk: Buffer) => {
        begin()
        if (!res.write(chunk)) body.pause()
      })
      res.on('drain', () => body.resume())
      body.once('end', () => {
        begin()
        res.end()
      })
      body.once('error', (err) => {
        if (started) res.destroy(err)
        else reject(err)
      })
      res.once('close', () => {
        if (!res.writableFinished) body.destroy()
      })
    })
  }
}
