import { writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { ConfigFileSchema } from '../src/config/schema.js'

export const SCHEMA_FILE = 'config/schema.json'

/** The config file's JSON Schema as shipped in config/schema.json: 2-space indent, final newline. */
export function configSchemaJson (): string {
  const { description, ...schema } = ConfigFileSchema
  return JSON.stringify({
    $schema: 'http://json-schema.org/draft-07/schema#',
    title: 'defender-token-broker configuration',
    description,
    ...schema
  }, null, 2) + '\n'
}

export function writeSchema (file: string): void {
  writeFileSync(file, configSchemaJson())
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = resolve(process.argv[2] ?? SCHEMA_FILE)
  writeSchema(file)
  console.log(`wrote ${file}`)
}
