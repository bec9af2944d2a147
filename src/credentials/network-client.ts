import { AsyncLocalStorage } from 'node:async_hooks'
import type { INetworkModule, NetworkRequestOptions, NetworkResponse } from '@azure/msal-node'
import type { Dispatcher } from 'undici'
import { describeNetworkFailure } from '../outbound/network-failure.js'
import { BrokerTokenEndpointUnreachable } from '../common/errors.js'

export interface NetworkClientOptions {
  dispatcher: Dispatcher
  timeoutMs: number
}

/** The last answer a request of a token call got. */
export interface TokenResponse {
  origin: string
  status: number
  body: unknown
}

export interface TokenCallOptions {
  /** Overrides the options the network client was built with, for the length of this call. */
  network?: NetworkClientOptions
  /** The error for a call that failed after an error answer, when msal-node's says too little. */
  refused?: (response: TokenResponse) => Error | undefined
}

interface TokenCall {
  signal: AbortSignal
  network?: NetworkClientOptions | undefined
  /** What the network said when a request of this call failed to get any answer. */
  failure?: { origin: string, error: unknown }
  response?: TokenResponse
}

/**
 * The token call under way: its AbortSignal, so a timeout set by the token holder closes the
 * socket msal-node is waiting on (msal-node's own API takes no signal), and the transport error
 * of a failed request, which msal-node replaces with a bare `network_error`.
 */
const tokenCall = new AsyncLocalStorage<TokenCall>()
let callsUnderWay = 0

/**
 * Runs one token call of msal-node. When it fails because a request got no answer (refused,
 * reset, an untrusted TLS certificate, a proxy that said no), the error says that, with the
 * transport's code, instead of msal-node's `network_error`.
 */
export async function runTokenCall<T> (signal: AbortSignal, fn: () => Promise<T>, options: TokenCallOptions = {}): Promise<T> {
  const call: TokenCall = { signal, network: options.network }
  callsUnderWay++
  try {
    return await tokenCall.run(call, fn)
  } catch (err) {
    if (signal.aborted) throw err
    if (call.failure !== undefined) {
      throw new BrokerTokenEndpointUnreachable(call.failure.origin, describeNetworkFailure(call.failure.error))
    }
    if (call.response !== undefined && call.response.status >= 400) throw options.refused?.(call.response) ?? err
    throw err
  } finally {
    // On Node 20 the storage keeps a promise hook on for every promise of the process while it
    // is enabled; between token calls the forwarding path does without it.
    if (--callsUnderWay === 0) tokenCall.disable()
  }
}

/** msal-node's `system.networkClient`: every Entra ID call goes through our undici dispatcher. */
export function createNetworkClient (options: NetworkClientOptions): INetworkModule {
  async function send<T> (method: 'GET' | 'POST', url: string, init?: NetworkRequestOptions): Promise<NetworkResponse<T>> {
    const call = tokenCall.getStore()
    const { dispatcher, timeoutMs } = call?.network ?? options
    const target = new URL(url)
    let response: Dispatcher.ResponseData
    let text: string
    try {
      response = await dispatcher.request({
        origin: target.origin,
        path: target.pathname + target.search,
        method,
        headers: init?.headers,
        body: init?.body,
        signal: call?.signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs
      })
      text = await response.body.text()
    } catch (err) {
      if (call !== undefined) call.failure = { origin: target.origin, error: err }
      throw err
    }
    const headers: Record<string, string> = {}
    for (const [name, value] of Object.entries(response.headers)) {
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value
    }
    const body = parseBody(text, response.statusCode)
    if (call !== undefined) {
      // Only the request that ended the call explains its failure.
      call.failure = undefined
      call.response = { origin: target.origin, status: response.statusCode, body }
    }
    return { status: response.statusCode, headers, body: body as T }
  }
  return {
    sendGetRequestAsync: (url, init) => send('GET', url, init),
    sendPostRequestAsync: (url, init) => send('POST', url, init)
  }
}

function parseBody (text: string, status: number): unknown {
  try {
    return JSON.parse(text)
  } catch {
    // Shaped like an OAuth error so msal-node reports it instead of failing on a missing field.
    return {
      error: 'invalid_response',
      error_description: `The token endpoint answered ${status} with a body that is not JSON.`
    }
  }
}
