import type { IncomingHttpHeaders, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import type { Dispatcher } from 'undici'
import type { AnswerBody } from './stored-answer.js'

export interface UpstreamHead {
  status: number
  /** undici's parsed headers: lower-case names. */
  headers: IncomingHttpHeaders
}

/** Bytes of a body taken in before anyone asked for them; past this the socket is paused. */
const EARLY_BYTES = 64 * 1024
/**
 * How much of the API's body may wait in the client's socket before the API's is paused. Node's
 * own mark (16 KiB) is less than one read from the API, so the API would be paused after every
 * read, and the two sockets would take turns instead of moving bytes at once.
 */
export const PIPE_BUFFER_BYTES = 256 * 1024
/** A body dropped before a retry is read to its end up to this size, so the connection is kept; a longer one is cut off. */
const DUMP_LIMIT = 128 * 1024

/** Where the body goes once the head has been looked at. */
interface Sink {
  data: (chunk: Buffer) => boolean
  end: () => void
  error: (err: Error) => void
}

/** The sink of a body taken whole: nothing more can arrive. */
const DONE: Sink = { data: () => true, end: () => {}, error: () => {} }

/**
 * One request to the API through undici's `dispatch`. The head comes back as a promise; the
 * body is then read whole (a page to rewrite), dropped (before a retry), turned into a stream
 * (to decompress or rewrite on the way), or written straight into the client's response, with
 * the API's socket paused whenever the client's is full. No stream or promise per chunk on the
 * common paths, which is where a proxy spends its time.
 */
export class UpstreamExchange implements Dispatcher.DispatchHandler, AnswerBody {
  readonly head: Promise<UpstreamHead>
  #resolveHead!: (head: UpstreamHead) => void
  #rejectHead!: (err: Error) => void
  #headSeen = false
  #controller: Dispatcher.DispatchController | undefined
  #abortReason: Error | undefined
  #sink: Sink | undefined
  #early: Buffer[] = []
  #earlyBytes = 0
  #ended = false
  #error: Error | undefined

  constructor () {
    this.head = new Promise((resolve, reject) => {
      this.#resolveHead = resolve
      this.#rejectHead = reject
    })
    // A caller that gave up (the client went away) may never look at it.
    this.head.catch(() => {})
  }

  /** Sends the request; every outcome arrives through `head` and the body's fate. */
  start (dispatcher: Dispatcher, options: Dispatcher.DispatchOptions): this {
    try {
      dispatcher.dispatch(options, this)
    } catch (err) {
      this.onResponseError(undefined, err as Error)
    }
    return this
  }

  /** Stops the exchange wherever it is; what waits on it sees `reason`. */
  abort (reason: Error): void {
    this.#abortReason ??= reason
    if (this.#controller !== undefined) this.#controller.abort(reason)
  }

  onRequestStart (controller: Dispatcher.DispatchController): void {
    this.#controller = controller
    if (this.#abortReason !== undefined) controller.abort(this.#abortReason)
  }

  onResponseStart (controller: Dispatcher.DispatchController, status: number, headers: IncomingHttpHeaders): void {
    if (status < 200) return
    this.#controller = controller
    this.#headSeen = true
    this.#resolveHead({ status, headers })
  }

  onResponseData (controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#sink !== undefined) {
      if (!this.#sink.data(chunk)) controller.pause()
      return
    }
    this.#early.push(chunk)
    this.#earlyBytes += chunk.length
    if (this.#earlyBytes >= EARLY_BYTES) controller.pause()
  }

  onResponseEnd (): void {
    this.#ended = true
    this.#sink?.end()
  }

  onResponseError (_controller: Dispatcher.DispatchController | undefined, err: Error): void {
    const error = this.#abortReason ?? err
    if (!this.#headSeen) {
      this.#headSeen = true
      this.#rejectHead(error)
      return
    }
    this.#error = error
    this.#sink?.error(error)
  }

  /** Hands the body to `sink`: what came early first, then the rest as it comes. */
  #attach (sink: Sink): void {
    this.#sink = sink
    const early = this.#early
    this.#early = []
    this.#earlyBytes = 0
    let more = true
    for (const chunk of early) more = sink.data(chunk) && more
    if (this.#error !== undefined) sink.error(this.#error)
    else if (this.#ended) sink.end()
    else if (more) this.#resume()
    else this.#controller?.pause()
  }

  #resume (): void {
    if (this.#controller?.paused === true) this.#controller.resume()
  }

  /**
   * The whole body when all of it has arrived already, as a small page usually has with its
   * head (taken, as readAll would); undefined otherwise.
   */
  takeIfComplete (): Buffer | undefined {
    if (!this.#ended || this.#error !== undefined || this.#sink !== undefined) return undefined
    const early = this.#early
    this.#early = []
    this.#earlyBytes = 0
    this.#sink = DONE
    return early.length === 1 ? early[0] as Buffer : Buffer.concat(early)
  }

  /** The whole body, for a page known to be small. */
  readAll (): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = []
      let size = 0
      this.#attach({
        data: (chunk) => {
          chunks.push(chunk)
          size += chunk.length
          return true
        },
        end: () => resolve(chunks.length === 1 ? chunks[0] as Buffer : Buffer.concat(chunks, size)),
        error: reject
      })
    })
  }

  /** Drops the body: read to its end when short, so the connection is kept; cut off when long. */
  dump (): Promise<void> {
    return new Promise((resolve) => {
      let size = 0
      this.#attach({
        data: (chunk) => {
          size += chunk.length
          if (size > DUMP_LIMIT) {
            this.abort(new Error('body dropped'))
            resolve()
          }
          return true
        },
        end: resolve,
        error: () => resolve()
      })
    })
  }

  /** The body as a stream, for transforms on the way (decompression, rewriting, a tap). */
  stream (): Readable {
    const readable = new Readable({
      read: () => this.#resume(),
      destroy: (err, callback) => {
        if (!this.#ended) this.abort(err ?? new Error('body stream destroyed'))
        callback(err)
      }
    })
    this.#attach({
      data: (chunk) => readable.push(chunk),
      end: () => readable.push(null),
      error: (err) => readable.destroy(err)
    })
    return readable
  }

  /**
   * Writes the body straight into the client's response. `start` runs at the first chunk (or
   * the end of an empty body): it sends the head, so a failure before any byte arrives is still
   * answered by the broker. Resolves once the head is sent; rejects if the body fails first.
   * A failure after that cuts the client's response off, as the API's was.
   */
  pipeTo (res: ServerResponse, start: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      let started = false
      const begin = () => {
        if (started) return
        started = true
        start()
        resolve()
      }
      res.on('drain', () => this.#resume())
      this.#attach({
        data: (chunk) => {
          begin()
          res.write(chunk)
          return res.writableLength < PIPE_BUFFER_BYTES
        },
        end: () => {
          begin()
          res.end()
        },
        error: (err) => {
          if (started) res.destroy(err)
          else reject(err)
        }
      })
    })
  }
}
