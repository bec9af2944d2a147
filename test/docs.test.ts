import { readFileSync } from 'node:fs'
import t from 'tap'
import { readmeWithTable } from '../scripts/settings-table.js'

t.test('the README\'s settings table is generated from the schema (run `npm run docs`)', async (t) => {
  const readme = readFileSync('README.md', 'utf8')
  t.equal(readme, readmeWithTable(readme))
  t.match(readme, /\| `refresh\.beforeSeconds` \| number \| `600` \|/)
})
