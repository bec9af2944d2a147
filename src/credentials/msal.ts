import type * as Msal from '@azure/msal-node'

let loading: Promise<typeof Msal> | undefined

/**
 * msal-node, loaded at the first token request rather than at start-up: it is the largest
 * module the broker uses, and the broker listens (and answers /healthz) without it.
 */
export function loadMsal (): Promise<typeof Msal> {
  loading ??= import('@azure/msal-node')
  return loading
}
