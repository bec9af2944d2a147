import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { Client } from '../inbound/client-keys.js'
import type { RequestFacts } from '../observability/request-log.js'

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

  constructor (id: string, req: IncomingMessage, res: ServerResponse, startedAt: number) {
    this.id = id
    this.req = req
    this.res = res
    this.startedAt = startedAt
  }

  /** A body known whole: a page rewritten, an error. */
  send (status: number, headers: OutgoingHttpHeaders, body: Buffer | string): void {
    this.res.writeHead(status, headers)
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
        res.writeHead(status, headers)
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
