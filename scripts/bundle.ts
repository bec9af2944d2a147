/**
 * The shipped entry point: `dist/bin/defender-token-broker.js`, the CLI and its dependencies
 * bundled by esbuild into a few ES modules. Node then reads and compiles a handful of files at
 * start instead of some four hundred, which halves the time to listening and the code kept in
 * memory. What is loaded only on demand stays on demand: each command, msal-node and the demo's
 * PKI are chunks of their own, imported when first needed. yaml, ioredis and pino-pretty are
 * loaded with `require` when a YAML file, a shared budget or a terminal asks for them, and are
 * resolved from node_modules as before.
 *
 * Run by `npm run build` after tsc: `node dist/scripts/bundle.js`.
 */
import { rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const BUNDLE_DIR = 'dist/bin'
export const BUNDLE_ENTRY = `${BUNDLE_DIR}/defender-token-broker.js`

export async function bundle (): Promise<void> {
  rmSync(`${ROOT}/${BUNDLE_DIR}`, { recursive: true, force: true })
  await build({
    absWorkingDir: ROOT,
    entryPoints: { 'defender-token-broker': 'dist/src/cli.js' },
    outdir: BUNDLE_DIR,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20.18',
    // Loaded with createRequire where they are needed (see the module comment).
    external: ['yaml', 'ioredis', 'pino-pretty'],
    // The CommonJS packages inside call `require` for Node's own modules.
    banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    chunkNames: 'chunks/[name]-[hash]',
    // Whitespace and syntax are minified, which keeps 10 MiB less of source and code in an idle
    // broker; names are not minified, and the linked source maps give a stack trace its lines back
    // under NODE_OPTIONS=--enable-source-maps.
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: 'linked',
    legalComments: 'none',
    logLevel: 'warning'
  })
}

bundle().catch((err: unknown) => {
  process.stderr.write(`bundle: ${(err as Error)?.message ?? String(err)}\n`)
  process.exitCode = 1
})
