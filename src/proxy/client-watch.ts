import type { Cancellation } from '../ratelimit/profile-budget.js'

/** What an exchange with the API needs to be stopped. */
interface Abortable {
  abort: (reason: Error) => void
}

/** Why something under way for a client stopped. */
export class ClientGone extends Error {
  constructor () {
    super('the client went away')
  }
}

/**
 * The client's side of one forwarded request: when it goes away before its response is done,
 * what is under way for it stops, a wait (the budget's queue, a Retry-After) or the API's call.
 * An AbortSignal is made only for what waits; most requests never need one.
 */
export class ClientWatch implements Cancellation {
  #gone = false
  #controller: AbortController | undefined
  #exchange: Abortable | undefined

  get gone (): boolean {
    return this.#gone
  }

  get signal (): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController()
      if (this.#gone) this.#controller.abort(new ClientGone())
    }
    return this.#controller.signal
  }

  /** The API's call under way now. */
  watch<T extends Abortable> (exchange: T): T {
    this.#exchange = exchange
    if (this.#gone) exchange.abort(new ClientGone())
    return exchange
  }

  /** The response closed: unless it finished, the client went away. */
  closed (finished: boolean): void {
    if (!finished) this.#leave()
  }

  #leave (): void {
    this.#gone = true
    const reason = new ClientGone()
    this.#controller?.abort(reason)
    this.#exchange?.abort(reason)
  }
}
