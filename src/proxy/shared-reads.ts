import type { IncomingHttpHeaders } from 'node:http'
import type { Clock } from '../common/clock.js'
import type { CacheRuleConfig } from '../config/types.js'
import { compileRules, type RuleSet } from '../inbound/rules.js'
import { ClientWatch } from './client-watch.js'
import { upstreamRequestHeaders } from './headers.js'
import type { AnswerBody, StoredAnswer } from './stored-answer.js'
import type { UpstreamHead } from './upstream-exchange.js'

/**
 * Request headers that do not change the API's answer, left out of a read's key so that clients
 * differing only in them share it: who is asking and how it traces the call.
 */
const NOT_IN_KEY = new Set([
  'authorization', 'user-agent', 'traceparent', 'tracestate', 'request-id', 'x-ms-client-request-id',
  'x-correlation-id', 'cache-control', 'pragma'
])

/** The largest answer read whole to be shared or kept; a longer one goes to one client as it comes. */
export const SHARED_BODY_LIMIT = 8 * 1024 * 1024

/** How a shared read ended, for each client that waited on it. */
export type ReadOutcome =
  /** The answer, read whole: each client gets it shaped for itself. */
  | { readonly kind: 'stored', readonly answer: StoredAnswer }
  /**
   * Not held (too long, or not a page): the first client to `take` it gets it as it comes, and
   * its going away stops the call; the others make their own.
   */
  | { readonly kind: 'streamed', readonly head: UpstreamHead, readonly take: (client: ClientWatch) => AnswerBody | undefined }
  /** The body failed part way: each client gets the head, what came, and the cut. */
  | { readonly kind: 'cut', readonly head: UpstreamHead, readonly bytes: Buffer, readonly error: Error }
  /** No answer: each client gets the same error. */
  | { readonly kind: 'failed', readonly error: unknown }

/**
 * The key of a read that may be shared: the profile, method, path and query as sent, and the
 * headers that change the answer (`Accept`, `Accept-Encoding`, `Accept-Language`, `Prefer`, …).
 * Undefined for anything else: a request with a body, or that is not GET or HEAD.
 */
export function readKey (profile: string, method: string, upstreamTarget: string, headers: IncomingHttpHeaders): string | undefined {
  if (method !== 'GET' && method !== 'HEAD') return undefined
  const length = headers['content-length']
  if (headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')) return undefined
  const forwarded = upstreamRequestHeaders(headers, '')
  let key = `${profile}\n${method}\n${upstreamTarget}`
  for (const name of Object.keys(forwarded).sort()) {
    if (NOT_IN_KEY.has(name) || name === 'content-length') continue
    const value = forwarded[name] as string | string[]
    key += `\n${name}: ${Array.isArray(value) ? value.join('\n\t') : value}`
  }
  return key
}

/** A request asks for a fresh answer: the cache neither answers it nor is skipped by it. */
export function wantsFresh (headers: IncomingHttpHeaders): boolean {
  const control = headers['cache-control']
  if (typeof control === 'string' && /(?:^|,)\s*(?:no-cache|no-store|max-age=0)\s*(?:,|$)/i.test(control)) return true
  return headers.pragma === 'no-cache' && control === undefined
}

/**
 * One call to the API that several clients wait on. It runs on a watch of its own, which stops
 * it only once every client waiting has gone: one that disconnects does not cancel it for the
 * others.
 */
class SharedRead {
  readonly watch = new ClientWatch()
  readonly outcome: Promise<ReadOutcome | undefined>
  #waiting = 0

  constructor (run: (watch: ClientWatch) => Promise<ReadOutcome | undefined>) {
    this.outcome = run(this.watch).catch((error: unknown) => ({ kind: 'failed', error }) as const)
  }

  /** The outcome for one client; undefined when it went away first. */
  async waitFor (client: ClientWatch): Promise<ReadOutcome | undefined> {
    this.#waiting++
    let left = false
    client.watch({
      abort: () => {
        left = true
        if (--this.#waiting === 0) this.watch.closed(false)
      }
    })
    const outcome = await this.outcome
    if (left) return undefined
    this.#waiting--
    return outcome
  }
}

interface Kept {
  readonly answer: StoredAnswer
  readonly expiresAt: number
  readonly size: number
}

/**
 * Reads that cost no call: identical reads in flight at once share one call, and answers that a
 * profile's cache rules cover are kept for their `ttlSeconds`, in memory bounded by
 * `reads.cacheMaxMiB` over all profiles, the least recently used going first.
 */
export class SharedReads {
  readonly #flights = new Map<string, SharedRead>()
  readonly #kept = new Map<string, Kept>()
  readonly #clock: Clock
  readonly #maxBytes: number
  readonly #collapse: boolean
  readonly #rules = new Map<string, Array<{ allows: RuleSet, ttlMs: number }>>()
  #bytes = 0

  constructor (options: { clock: Clock, collapse: boolean, cacheMaxBytes: number, profiles: ReadonlyArray<{ name: string, cache: readonly CacheRuleConfig[] }> }) {
    this.#clock = options.clock
    this.#collapse = options.collapse
    this.#maxBytes = options.cacheMaxBytes
    for (const profile of options.profiles) {
      if (profile.cache.length === 0) continue
      this.#rules.set(profile.name, profile.cache.map((rule) => ({ allows: compileRules([rule.allow]), ttlMs: rule.ttlSeconds * 1000 })))
    }
  }

  /** Whether reads of a profile may be shared at all. */
  active (profile: string): boolean {
    return this.#collapse || this.#rules.has(profile)
  }

  /** How long a profile's cache rules keep this read's answer, in ms; undefined when none covers it. */
  keepFor (profile: string, method: string, path: string): number | undefined {
    return this.#rules.get(profile)?.find((rule) => rule.allows(method, path))?.ttlMs
  }

  /** A kept answer of this read, still fresh, with its age in seconds. */
  kept (key: string): { answer: StoredAnswer, age: number } | undefined {
    const kept = this.#kept.get(key)
    if (kept === undefined) return undefined
    const now = this.#clock.now()
    if (now >= kept.expiresAt) {
      this.#forget(key, kept)
      return undefined
    }
    // Most recently used last: the Map's order is the order of eviction.
    this.#kept.delete(key)
    this.#kept.set(key, kept)
    return { answer: kept.answer, age: Math.max(0, Math.floor((now - kept.answer.receivedAt) / 1000)) }
  }

  keep (key: string, answer: StoredAnswer, ttlMs: number): void {
    const size = answer.body.length + key.length + 512
    if (size > this.#maxBytes) return
    const old = this.#kept.get(key)
    if (old !== undefined) this.#forget(key, old)
    this.#kept.set(key, { answer, expiresAt: answer.receivedAt + ttlMs, size })
    this.#bytes += size
    for (const [oldest, entry] of this.#kept) {
      if (this.#bytes <= this.#maxBytes) break
      this.#forget(oldest, entry)
    }
  }

  /**
   * The shared call of this read: the one in flight (`joined`), or a new one that `run` makes,
   * when collapsing is on. Off, every read runs on its own and may still fill the cache.
   */
  flight (key: string, run: (watch: ClientWatch) => Promise<ReadOutcome | undefined>): { read: SharedRead, joined: boolean } {
    const current = this.#collapse ? this.#flights.get(key) : undefined
    if (current !== undefined) return { read: current, joined: true }
    const read = new SharedRead(run)
    if (this.#collapse) {
      this.#flights.set(key, read)
      const done = () => {
        if (this.#flights.get(key) === read) this.#flights.delete(key)
      }
      read.outcome.then(done, done)
    }
    return { read, joined: false }
  }

  #forget (key: string, kept: Kept): void {
    this.#kept.delete(key)
    this.#bytes -= kept.size
  }
}
