import type { ClientWatch } from './client-watch.js'
import type { DefenderEndpoint } from '../defender/catalogue.js'
import type { Profile } from '../runtime/profiles.js'
import type { HeldToken } from '../tokens/token-holder.js'
import type { ForwardedRequest } from './forwarded-request.js'
import type { RequestBody } from './request-body.js'
import type { UpstreamExchange, UpstreamHead } from './upstream-exchange.js'

/**
 * One forwarded request, once prepared: where it goes, what it is in the API's catalogue, the
 * token it carries, and its body once read. The exchange policies read and change it.
 */
export interface Call {
  readonly request: ForwardedRequest
  /** What stops the call: the client's watch, or a shared read's, which stops once all its clients went. */
  readonly watch: ClientWatch
  readonly profile: Profile
  readonly method: string
  readonly upstreamTarget: string
  readonly endpoint: DefenderEndpoint | undefined
  token: HeldToken
  /** Read once the budget let the request through; kept for a replay when small. */
  body: RequestBody | undefined
  /** The 401 replay was spent: one per request. */
  renewed: boolean
}

/** What the API answered, the exchange still open for its body. */
export interface Answer {
  head: UpstreamHead
  exchange: UpstreamExchange
  attempt: number
}
