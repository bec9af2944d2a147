import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, normalize } from 'node:path'
import t from 'tap'
import * as errors from '../src/common/errors.js'
import { SETTINGS_DOC, withSettingsTable } from '../scripts/settings-table.js'

/** The error catalogue: its source text is read for the codes and statuses of its define calls. */
const ERRORS_SOURCE = 'src/common/errors.ts'
/** A define call's first string argument is the code; a number after it is the HTTP status. */
const DEFINE_CALL = /\bdefine\w*Error\s*(?:<[^>]*>)?\(\s*'(\w+)'(?:\s*,\s*(\d{3})\b)?/g
const ERRORS_DOC = 'docs/errors.md'
const ARCHITECTURE_DOC = 'docs/architecture.md'
/** Rooms beside the layers: what each may import, and who may import it. */
const SIDE_ROOMS = new Map([['src/simulator/', { imports: ['src/common/'], importedBy: ['src/commands/'] }]])

function markdownFiles (): string[] {
  const docs = readdirSync('docs').filter((name) => name.endsWith('.md')).map((name) => join('docs', name))
  return ['README.md', 'bench/README.md', ...docs]
}

/** GitHub's heading ids: lower case, punctuation but `-` and `_` dropped, spaces to `-`, repeats numbered. */
function anchorsOf (markdown: string): Set<string> {
  const anchors = new Set<string>()
  const seen = new Map<string, number>()
  let fenced = false
  for (const line of markdown.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced
    const heading = fenced ? null : /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line)
    if (heading === null) continue
    const slug = (heading[1] ?? '').toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/ /g, '-')
    const count = seen.get(slug) ?? 0
    seen.set(slug, count + 1)
    anchors.add(count === 0 ? slug : `${slug}-${count}`)
  }
  return anchors
}

/** Relative links `[text](target)` outside code: `http(s):` and `mailto:` links are not checked. */
function relativeLinks (markdown: string): string[] {
  const prose = markdown.replace(/^\s*(```|~~~)[\s\S]*?^\s*\1/gm, '').replace(/`[^`\n]*`/g, '``')
  const links: string[] = []
  for (const match of prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
    const target = match[1] ?? ''
    if (!/^[a-z][a-z0-9+.-]*:/i.test(target)) links.push(target)
  }
  return links
}

t.test(`the settings table in ${SETTINGS_DOC} is generated from the schema (run \`npm run docs\`)`, async (t) => {
  const doc = readFileSync(SETTINGS_DOC, 'utf8')
  t.equal(doc, withSettingsTable(doc))
  t.match(doc, /\| `refresh\.beforeSeconds` \| number \| `600` \|/)
  t.match(doc, /\| `rateLimit\.store\.timeoutMs` \(redis\) \| integer \| `50` \|/)
})

t.test('every relative link in the README, docs/ and bench/README.md leads to a file and a heading that exist', async (t) => {
  const files = markdownFiles()
  t.ok(files.length >= 9, 'the README, bench/README.md and the pages of docs/')
  for (const file of files) {
    const links = relativeLinks(readFileSync(file, 'utf8'))
    for (const link of links) {
      const [path = '', anchor] = link.split('#', 2)
      const target = path === '' ? file : normalize(join(dirname(file), decodeURIComponent(path)))
      if (!existsSync(target)) {
        t.fail(`${file}: ${link} points at ${target}, which does not exist`)
        continue
      }
      if (anchor === undefined || anchor === '') continue
      if (statSync(target).isDirectory() || !target.endsWith('.md')) {
        t.fail(`${file}: ${link} has an anchor into a file that is not markdown`)
        continue
      }
      t.ok(anchorsOf(readFileSync(target, 'utf8')).has(anchor), `${file}: ${link}`)
    }
  }
})

t.test('headings get GitHub\'s anchors', async (t) => {
  const anchors = anchorsOf("# The broker's own endpoints\n## Start-up error: `BrokerConfigInvalid`\n```\n# not a heading\n```\n## Logs\n## Logs\n")
  t.same([...anchors], ['the-brokers-own-endpoints', 'start-up-error-brokerconfiginvalid', 'logs', 'logs-1'])
})

t.test(`${ERRORS_DOC} lists exactly the codes of the error catalogue, with their status`, async (t) => {
  const catalogue = new Map<string, number | undefined>()
  for (const match of readFileSync(ERRORS_SOURCE, 'utf8').matchAll(DEFINE_CALL)) {
    catalogue.set(match[1] ?? '', match[2] === undefined ? undefined : Number(match[2]))
  }
  t.ok(catalogue.size >= 10, `${ERRORS_SOURCE} defines the codes`)
  const exported = new Set(Object.keys(errors))

  const documented = new Map<string, number | undefined>()
  for (const row of readFileSync(ERRORS_DOC, 'utf8').matchAll(/^\| `(Broker\w+)` \| ([^|]*)\|/gm)) {
    const status = /^\s*(\d{3})\s*$/.exec(row[2] ?? '')?.[1]
    documented.set(row[1] ?? '', status === undefined ? undefined : Number(status))
  }

  for (const [code, status] of catalogue) {
    t.ok(documented.has(code), `${code} is in the table of ${ERRORS_DOC}`)
    t.ok(exported.has(code), `${code} is exported from ${ERRORS_SOURCE} under its own name`)
    if (status !== undefined) t.equal(documented.get(code), status, `${code} is documented with status ${status}`)
  }
  for (const code of documented.keys()) {
    t.ok(catalogue.has(code), `${code} of ${ERRORS_DOC} is in ${ERRORS_SOURCE}`)
  }
})

/** Every .ts file under a folder. */
function sourceFiles (dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : []
  })
}

/** The room of a file: its folder under src/, or `src/` itself. */
function roomOf (file: string): string {
  const parts = file.split('/')
  return parts.length === 2 ? 'src/' : `src/${parts[1] ?? ''}/`
}

/** The numbered list after the `layers` marker of the architecture page, lowest room first. */
function layersOf (markdown: string): string[] {
  const list = markdown.split('<!-- layers')[1] ?? ''
  return [...list.matchAll(/^\d+\. `(src\/[\w-]*\/?)`/gm)].map((match) => match[1] ?? '')
}

t.test(`no import runs from a lower room to a higher one, in the order of ${ARCHITECTURE_DOC}`, async (t) => {
  const layers = layersOf(readFileSync(ARCHITECTURE_DOC, 'utf8'))
  const files = sourceFiles('src')
  const rooms = new Set(files.map(roomOf))
  t.same([...rooms].filter((room) => !layers.includes(room) && !SIDE_ROOMS.has(room)), [], 'every room of src/ is in the list')
  t.same(layersOf('<!-- layers -->\n1. `src/common/`: a\n   more\n2. `src/`: b\n'), ['src/common/', 'src/'], 'the list is read as written')

  const upward: string[] = []
  for (const file of files) {
    const from = roomOf(file)
    for (const match of readFileSync(file, 'utf8').matchAll(/^(?:import|export)\b[^;]*?\bfrom '(\.{1,2}\/[^']+)'/gm)) {
      const to = roomOf(normalize(join(dirname(file), match[1] ?? '')))
      if (to === from) continue
      const side = SIDE_ROOMS.get(from) ?? SIDE_ROOMS.get(to)
      const allowed = side === undefined
        ? layers.indexOf(to) < layers.indexOf(from)
        : SIDE_ROOMS.has(from) ? side.imports.includes(to) : side.importedBy.includes(from)
      if (!allowed) upward.push(`${file} imports ${match[1] ?? ''} (${to})`)
    }
  }
  t.same(upward, [], 'each import points at the same room or a lower one')
})
