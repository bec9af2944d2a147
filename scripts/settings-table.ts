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

export const README_FILE = 'README.md'
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
        out.push(`| \`${path}.${name}\` (${String(kind)}) | ${typeOf(child)} | | ${cell(child.description ?? '')} |`)
      }
    }
    return
  }
  const value = node.default === undefined ? '' : `\`${JSON.stringify(node.default)}\``
  out.push(`| \`${path}\` | ${typeOf(node)} | ${value} | ${cell(node.description ?? '')} |`)
}

/** The README's settings table, one row per setting of the config file. */
export function settingsTable (): string {
  const out = ['| setting | type | default | meaning |', '| --- | --- | --- | --- |']
  rows(ConfigFileSchema as unknown as SchemaNode, '', out)
  return `${START}\n${out.join('\n')}\n${END}`
}

export function readmeWithTable (readme: string): string {
  const start = readme.indexOf(START)
  const end = readme.indexOf(END)
  if (start === -1 || end === -1) throw new Error(`README.md lacks the ${START} … ${END} markers`)
  return readme.slice(0, start) + settingsTable() + readme.slice(end + END.length)
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  writeFileSync(README_FILE, readmeWithTable(readFileSync(README_FILE, 'utf8')))
  console.log(`updated the settings table in ${README_FILE}`)
}
