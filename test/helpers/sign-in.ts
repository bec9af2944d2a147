import { createHash } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request } from 'undici'
import type { ClientConfig, Config } from '../../src/config/types.js'
import type { BrokerStack } from './broker.js'

/** A fresh state directory: the broker's signing key is made there on first use. */
export function stateDir (): string {
  return mkdtempSync(join(tmpdir(), 'broker-state-'))
}

export function clientConfig (name: string, key: string, profiles: string[] = []): ClientConfig {
  return { name, keySha256: createHash('sha256').update(key).digest('hex'), profiles, allow: [] }
}

/** The config with these clients. */
export function withClients (...clients: ClientConfig[]): (config: Config) => Config {
  return (config) => ({ ...config, clients })
}

export interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  json: Record<string, unknown>
}

async function answerOf (res: Awaited<ReturnType<typeof request>>): Promise<Answer> {
  const text = await res.body.text()
  let json: Record<string, unknown> = {}
  try {
    json = JSON.parse(text) as Record<string, unknown>
  } catch {}
  return { status: res.statusCode, headers: res.headers, text, json }
}

/** A form POST, as a tool's token request is. */
export async function postForm (url: string, form: Record<string, string>, headers: Record<string, string> = {}): Promise<Answer> {
  return await answerOf(await request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams(form).toString()
  }))
}

export async function get (url: string, headers: Record<string, string> = {}): Promise<Answer> {
  return await answerOf(await request(url, { headers }))
}

/** The claims of a JWT, unverified. */
export function claimsOf (jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>
}

/** The real token the stack's first profile holds. */
export function realTokenOf (stack: BrokerStack, index = 0): string {
  const held = stack.app.profiles[index]?.tokens.usable()
  if (held === undefined) throw new TypeError('the profile holds no token')
  return held.value
}

/** The `Authorization` the API saw on its last request. */
export function lastAuthorization (stack: BrokerStack): string | undefined {
  const requests = stack.simulator.defender.requests
  return requests[requests.length - 1]?.headers.authorization
}

export const DEFENDER_SCOPE = 'https://api.securitycenter.microsoft.com/.default'
