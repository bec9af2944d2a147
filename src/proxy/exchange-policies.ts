import { sleep, type Clock } from '../common/clock.js'
import { causeOf429 } from '../ratelimit/pauses.js'
import { assertPermitted } from '../defender/catalogue.js'
import type { Answer, Call } from './call.js'
import { parseRetryAfter } from './retry-after.js'

/**
 * A policy looks at an answer of the API's with the status it is for, before it is passed on.
 * Undefined: the answer goes on to the client. A promise: the answer's body was dropped, and it
 * resolves true to send the request again, false when the client went away meanwhile.
 */
export type ExchangePolicy = (call: Call, answer: Answer) => Promise<boolean> | undefined

export interface RetryLimits {
  /** Attempts of a read in all, the first included. */
  maxAttempts: number
  /** The longest Retry-After a read waits out; a longer one goes back to the client. */
  maxWaitSeconds: number
  /** The longest a 429 pauses a budget. */
  maxPauseSeconds: number
}

/**
 * The API refused the token (revoked, rotated credential): one fresh token (at most one such
 * request per refresh.after401Seconds, else the 401 goes back), and one replay when the body was
 * kept for it; otherwise the 401 goes back and the next request gets the fresh token.
 */
export const renewAfter401: ExchangePolicy = (call, { exchange }) => {
  if (call.renewed) return undefined
  call.renewed = true
  const renewal = call.profile.tokens.renewAfter401(call.token.value)
  if (renewal === undefined || call.body?.replayable !== true) {
    renewal?.catch(() => {})
    return undefined
  }
  return (async () => {
    await exchange.dump()
    call.token = await renewal
    assertPermitted(call.endpoint, call.token.roles)
    return true
  })()
}

/**
 * The API's 429 pauses the budget the request was counted against (never longer than
 * `maxPauseSeconds`); a read then waits out a short Retry-After and goes again, within its
 * attempts. Anything else, and a longer wait, goes back to the client with the API's answer.
 */
export function waitOut429 (clock: Clock, limits: RetryLimits): ExchangePolicy {
  return (call, { head, exchange, attempt }) => {
    const seconds = parseRetryAfter(head.headers['retry-after'], clock.now())
    if (seconds === undefined) return undefined
    const { endpoint, method, upstreamTarget } = call
    const until = clock.now() + Math.min(seconds, limits.maxPauseSeconds) * 1000
    call.profile.budget.pause(endpoint?.rateLimit, until, causeOf429(method, endpoint?.path, upstreamTarget))
    const idempotentRead = method === 'GET' || method === 'HEAD'
    if (!idempotentRead || attempt >= limits.maxAttempts || seconds > limits.maxWaitSeconds) return undefined
    return (async () => {
      await exchange.dump()
      try {
        await sleep(clock, seconds * 1000, call.watch.signal)
        return true
      } catch {
        return false
      }
    })()
  }
}
