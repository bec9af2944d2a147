import t from 'tap'
import { ODataError, compareBy, parseFilter, parseOrderBy, parseSelect } from '../../src/simulator/odata.js'

const SHAPE = { name: 'Thing', properties: ['name', 'size', 'seen', 'tags', 'owner', 'parts', 'flag', 'note'] }
const ITEMS = [
  { name: 'a', size: 1, seen: '2024-05-01T10:00:00Z', tags: ['x', 'y'], owner: { name: 'ann' }, parts: [{ kind: 'k1', tags: ['p'] }], flag: true, note: null },
  { name: 'b', size: 2, seen: '2024-05-02T10:00:00Z', tags: [], owner: { name: 'bob' }, parts: [{ kind: 'k2', tags: [] }], flag: false, note: 'it\'s' },
  { name: 'c', size: 3, seen: '2024-05-03T00:00:00.000Z', tags: ['y'], owner: null, parts: [], flag: true, note: 'n' }
]
const names = (filter: string) => ITEMS.filter(parseFilter(filter, SHAPE)).map((item) => item.name)

t.test('precedence, literals and lambdas', async (t) => {
  const cases: Array<[string, string[]]> = [
    ["name eq 'a' or name eq 'b' and size gt 5", ['a']],
    ["(name eq 'a' or name eq 'b') and size gt 1", ['b']],
    ["not name eq 'a' and flag", ['c']],
    ['not (size lt 2 or size gt 2)', ['b']],
    ['flag eq true and size ge 3', ['c']],
    ['note eq null', ['a']],
    ["note eq 'it''s'", ['b']],
    ['seen ge 2024-05-02', ['b', 'c']],
    ['seen lt 2024-05-02Z', ['a']],
    ['seen gt 2024-05-02T10:00:00+01:00', ['b', 'c']],
    ['seen eq 2024-05-03T00:00:00Z', ['c']],
    ['size in (1, 3)', ['a', 'c']],
    ["tags/any(t: t eq 'y')", ['a', 'c']],
    ["tags/all(t: t eq 'y')", ['b', 'c']],
    ['tags/any()', ['a', 'c']],
    ["owner/name eq 'bob'", ['b']],
    ["parts/any(p: p/kind eq 'k1' and p/tags/any(q: q eq 'p'))", ['a']],
    ["tolower(NAME) eq 'a' or length(name) gt 5", ['a']],
    ["indexof(note, 's') eq 3", ['b']],
    ["contains(note, 'x') eq false", ['a', 'b', 'c']],
    ['size le -1 or size ge 2.5', ['c']]
  ]
  for (const [filter, expected] of cases) t.strictSame(names(filter), expected, filter)
})

t.test('what cannot be read is an ODataError, with where and why', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['nope eq 1', /could not find a property named 'nope' on type 'Thing'/],
    ["name eq 'open", /position 8 .*unterminated string/],
    ['(size eq 1', /'\)' expected/],
    ['size eq', /ends too early/],
    ['size eq 1 2', /unexpected '2'/],
    ['size', /not a boolean expression/],
    ["startswith(name, 'a', 'b')", /takes 2 arguments/],
    ['tags/all()', /needs a lambda/],
    ['tags/any(t t eq 1)', /':' expected/],
    ['size # 1', /unexpected character '#'/],
    ["size gt 'x'", /cannot compare number with string/],
    ['', /empty/]
  ]
  for (const [filter, message] of cases) {
    const error = (() => {
      try {
        names(filter)
      } catch (caught) {
        return caught
      }
      return undefined
    })()
    t.ok(error instanceof ODataError, `${filter}: an ODataError`)
    t.match(error, { code: 'BadRequest', message }, filter)
  }
})

t.test('$orderby and $select', async (t) => {
  const sorted = [...ITEMS].sort(compareBy(parseOrderBy('flag desc, SIZE desc', SHAPE))).map((item) => item.name)
  t.strictSame(sorted, ['c', 'a', 'b'])
  t.strictSame([...ITEMS].sort(compareBy(parseOrderBy('note', SHAPE))).map((item) => item.name), ['a', 'b', 'c'], 'null first ascending')
  t.throws(() => parseOrderBy('size sideways', SHAPE), { code: 'BadRequest', message: /Invalid ODataQuery/ })
  t.throws(() => parseOrderBy('weight', SHAPE), { code: 'BadRequest', message: /Invalid ODataQuery/ })
  t.strictSame(parseSelect('Name, size', SHAPE), ['name', 'size'])
  t.throws(() => parseSelect('name,weight', SHAPE), { code: 'BadRequest', message: /Invalid ODataQuery/ })
})
