import { readFileSync, writeFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { ConfigFileSchema } from '../src/config/schema.js'

interface SchemaNode {
  type?: string
  description?: string
  default?: unknown
  const?: unknown
  properties?: Record<string, SchemaNode>
  items?: SchemaNode
  anyOf?: SchemaNode[]
}

/** The document that holds the generated table, between the two markers. */
export const SETTINGS_DOC = 'docs/configuration.md'
const START = '<!-- settings:start (generated from src/config/schema.ts by `npm run docs`) -->'
const END = '<!-- settings:end -->'

function cell (text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ')
}

function typeOf (node: SchemaNode): string {
  if (node.anyOf?.every((alt) => alt.const !== undefined)) return node.anyOf.map((alt) => String(alt.const)).join(' \\| ')
  if (node.type === 'array') return `list of ${node.items?.type ?? 'values'}`
  return node.type ?? ''
}

function defaultOf (node: SchemaNode): string {
  return node.default === undefined ? '' : `\`${JSON.stringify(node.default)}\``
}

function rows (node: SchemaNode, path: string, out: string[]): void {
  if (node.type === 'object' && node.properties !== undefined) {
    for (const [name, child] of Object.entries(node.properties)) {
      if (name === '$schema') continue
      rows(child, path === '' ? name : `${path}.${name}`, out)
    }
    return
  }
  if (node.type === 'array' && node.items?.type === 'object') {
    out.push(`| \`${path}[]\` | list | | ${cell(node.description ?? '')} |`)
    rows(node.items, `${path}[]`, out)
    return
  }
  if (node.anyOf !== undefined && node.anyOf.some((alt) => alt.properties !== undefined)) {
    out.push(`| \`${path}\` | object | | ${cell(node.description ?? '')} |`)
    for (const alt of node.anyOf) {
      const kind = alt.properties?.type?.const
      for (const [name, child] of Object.entries(alt.properties ?? {})) {
        if (name === 'type') continue
        out.push(`| \`${path}.${name}\` (${String(kind)}) | ${typeOf(child)} | ${defaultOf(child)} | ${cell(child.description ?? '')} |`)
      }
    }
    return
  }
  out.push(`| \`${path}\` | ${typeOf(node)} | ${defaultOf(node)} | ${cell(node.description ?? '')} |`)
}

/** The settings table of docs/configuration.md, one row per setting of the config file. */
export function settingsTable (): string {
  const out = ['| setting | type | default | meaning |', '| --- | --- | --- | --- |']
  rows(ConfigFileSchema as unknown as SchemaNode, '', out)
  return `${START}\n${out.join('\n')}\n${END}`
}

/** The document with its table replaced by the one the schema gives. */
export function withSettingsTable (doc: string): string {
  const start = doc.indexOf(START)
  const end = doc.indexOf(END)
  if (start === -1 || end === -1) throw new Error(`${SETTINGS_DOC} lacks the ${START} … ${END} markers`)
  return doc.slice(0, start) + settingsTable() + doc.slice(end + END.length)
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  writeFileSync(SETTINGS_DOC, withSettingsTable(readFileSync(SETTINGS_DOC, 'utf8')))
  console.log(`updated the settings table in ${SETTINGS_DOC}`)
}
