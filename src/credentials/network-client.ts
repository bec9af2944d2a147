import { AsyncLocalStorage } from 'node:async_hooks'
import type { INetworkModule, NetworkRequestOptions, NetworkResponse } from '@azure/msal-node'
import type { Dispatcher } from 'undici'

/**
 * The token call under way carries its AbortSignal here, so a timeout set by the token holder
 * closes the socket msal-node is waiting on: msal-node's own API takes no signal.
 */
const callSignal = new AsyncLocalStorage<AbortSignal>()

export function runWithSignal<T> (signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
  return callSignal.run(signal, fn)
}

export interface NetworkClientOptions {
  dispatcher: Dispatcher
  timeoutMs: number
}

/** msal-node's `system.networkClient`: every Entra ID call goes through our undici dispatcher. */
export function createNetworkClient (options: NetworkClientOptions): INetworkModule {
  async function send<T> (method: 'GET' | 'POST', url: string, init?: NetworkRequestOptions): Promise<NetworkResponse<T>> {
    const target = new URL(url)
    const response = await options.dispatcher.request({
      origin: target.origin,
      path: target.pathname + target.search,
      method,
      headers: init?.headers,
      body: init?.body,
      signal: callSignal.getStore(),
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs
    })
    const text = await response.body.text()
    const headers: Record<string, string> = {}
    for (const [name, value] of Object.entries(response.headers)) {
      if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value
    }
    return { status: response.statusCode, headers, body: parseBody(text, response.statusCode) as T }
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
