import type { IncomingHttpHeaders, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'

/**
 * The body of one of the API's answers, however it is held: still arriving (`UpstreamExchange`)
 * or whole in memory (`StoredBody`). The response shaping reads it the same way either way.
 */
export interface AnswerBody {
  /** The whole body when it is all here already (then taken); undefined otherwise. */
  takeIfComplete: () => Buffer | undefined
  readAll: () => Promise<Buffer>
  stream: () => Readable
  /** Writes it into the client's response, `start` (which sends the head) first; absent, the stream is sent. */
  pipeTo?: (res: ServerResponse, start: () => void) => Promise<void>
}

/** An answer of the API's read whole: shared by the clients of one collapsed read, or kept by the cache. */
export interface StoredAnswer {
  readonly status: number
  /** undici's parsed headers, as the API sent them. */
  readonly headers: IncomingHttpHeaders
  readonly body: Buffer
  /** clock.now() when it arrived. */
  readonly receivedAt: number
}

/** A stored answer's body, given to each client that gets it. */
export class StoredBody implements AnswerBody {
  readonly #bytes: Buffer

  constructor (bytes: Buffer) {
    this.#bytes = bytes
  }

  takeIfComplete (): Buffer {
    return this.#bytes
  }

  readAll (): Promise<Buffer> {
    return Promise.resolve(this.#bytes)
  }

  stream (): Readable {
    return Readable.from(this.#bytes.length === 0 ? [] : [this.#bytes])
  }

  pipeTo (res: ServerResponse, start: () => void): Promise<void> {
    start()
    res.end(this.#bytes)
    return Promise.resolve()
  }
}

export interface HeldBody {
  chunks: Buffer[]
  ended: boolean
  /** The rest of the body when more than the limit came. */
  rest: Readable
  /** The body failed (the API's connection cut off) after `chunks`. */
  error?: Error
}

/**
 * Reads a body until it ends, fails or passes `limit` bytes, whichever comes first, without
 * losing any of it.
 */
export function holdBody (source: Readable, limit: number): Promise<HeldBody> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = []
    let size = 0
    const done = (ended: boolean, error?: Error) => {
      source.off('data', data)
      source.off('end', end)
      source.off('error', failed)
      source.pause()
      resolve(error === undefined ? { chunks, ended, rest: source } : { chunks, ended, rest: source, error })
    }
    const failed = (err: Error) => done(false, err)
    const data = (chunk: Buffer) => {
      chunks.push(chunk)
      size += chunk.length
      if (size > limit) done(false)
    }
    const end = () => done(true)
    source.on('data', data)
    source.once('end', end)
    source.once('error', failed)
  })
}

/**
 * A body that failed part way: what came, then the failure. Its client gets the same as it
 * would have alone: the head, those bytes, and the response cut off.
 */
export function cutBody (bytes: Buffer, error: Error): AnswerBody {
  return {
    takeIfComplete: () => undefined,
    readAll: () => Promise.reject(error),
    stream: () => {
      let sent = bytes.length === 0
      return new Readable({
        read () {
          // The bytes first, written out to the client; the failure after, as it came from the API.
          if (sent) {
            setImmediate(() => this.destroy(error))
            return
          }
          sent = true
          this.push(bytes)
        }
      })
    }
  }
}

/** A held body whole again: what was held, then the rest as it comes. */
export function rejoin (held: HeldBody): Readable {
  return Readable.from(concatenate(held.chunks, held.rest))
}

async function * concatenate (head: Buffer[], rest: Readable): AsyncGenerator<Buffer> {
  yield * head
  for await (const chunk of rest) yield chunk as Buffer
}

/** A body that arrives as a stream: a long shared answer, handed to the one client that takes it. */
export function streamedBody (source: Readable): AnswerBody {
  return {
    takeIfComplete: () => undefined,
    readAll: async () => {
      const chunks: Buffer[] = []
      for await (const chunk of source) chunks.push(chunk as Buffer)
      return Buffer.concat(chunks)
    },
    // No pipeTo: it goes out through the client's sendStream.
    stream: () => source
  }
}
