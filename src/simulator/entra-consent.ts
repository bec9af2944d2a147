import { entraErrors } from './entra-errors.js'
import type { EntraError } from './entra-errors.js'

/** The first-party app behind the Defender for Endpoint API, as a tenant's service principals list it. */
const DEFENDER_APP_ID = 'fc780465-2017-40d4-a0c5-307022471b92'
const DEFENDER_APP_NAME = 'WindowsDefenderATP'

/**
 * How a tenant answers a token request for an app that is not set up in it, each as Entra ID
 * answers in a customer tenant before its admin has consented: `appNotFound` (AADSTS700016, the
 * default) and `noServicePrincipal` (AADSTS7000229) before the credential is looked at;
 * `notConsented` (AADSTS65001), `serviceNotProvisioned` (AADSTS650052) and `resourceNotFound`
 * (AADSTS500011, Defender for Endpoint not in the tenant) after it has been accepted.
 */
export type ConsentGap = 'appNotFound' | 'noServicePrincipal' | 'notConsented' | 'serviceNotProvisioned' | 'resourceNotFound'

export interface UnconsentedApp {
  tenantId: string
  clientId: string
  gap?: ConsentGap
}

export interface GapContext {
  tenant: string
  clientId: string
  /** The scope's resource, e.g. `https://api.securitycenter.microsoft.com`. */
  resource: string
  appName: string
}

/** Whether the tenant checks the app's credential before it answers with the gap's error. */
export function checksCredentialFirst (gap: ConsentGap): boolean {
  return gap !== 'appNotFound' && gap !== 'noServicePrincipal'
}

export function gapError (gap: ConsentGap, { tenant, clientId, resource, appName }: GapContext): EntraError {
  switch (gap) {
    case 'appNotFound': return entraErrors.appNotFound(clientId, tenant)
    case 'noServicePrincipal': return entraErrors.servicePrincipalMissing(clientId, tenant)
    case 'notConsented': return entraErrors.consentMissing(clientId, appName)
    case 'serviceNotProvisioned': return entraErrors.serviceNotProvisioned(DEFENDER_APP_ID, DEFENDER_APP_NAME, tenant)
    case 'resourceNotFound': return entraErrors.resourceNotFound(resource, tenant)
  }
}

/** Tenants where an app registered elsewhere is known but not (yet) consented to. */
export class ConsentGaps {
  #gaps = new Map<string, ConsentGap>()

  constructor (apps: readonly UnconsentedApp[] = []) {
    for (const app of apps) this.add(app)
  }

  add ({ tenantId, clientId, gap = 'appNotFound' }: UnconsentedApp): void {
    this.#gaps.set(key(tenantId, clientId), gap)
  }

  remove (tenantId: string, clientId: string): void {
    this.#gaps.delete(key(tenantId, clientId))
  }

  find (tenantId: string, clientId: string): ConsentGap | undefined {
    return this.#gaps.get(key(tenantId, clientId))
  }

  hasTenant (tenantId: string): boolean {
    const prefix = `${tenantId.toLowerCase()} `
    for (const name of this.#gaps.keys()) if (name.startsWith(prefix)) return true
    return false
  }
}

function key (tenantId: string, clientId: string): string {
  return `${tenantId.toLowerCase()} ${clientId.toLowerCase()}`
}
