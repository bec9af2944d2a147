import { Readable } from 'node:stream'
import { text } from 'node:stream/consumers'
import t from 'tap'
import { createNextLinkRewriter } from '../../src/proxy/next-link.js'

const UPSTREAM = 'https://api.securitycenter.microsoft.com'
const BROKER = 'http://127.0.0.1:8080/fabrikam'

async function rewrite (chunks: Array<string | Buffer>, origin = UPSTREAM): Promise<string> {
  return text(Readable.from(chunks.map((c) => Buffer.from(c))).pipe(createNextLinkRewriter(origin, BROKER)))
}

t.test('rewrites the nextLink, leaves everything else', async (t) => {
  const body = JSON.stringify({
    '@odata.context': `${UPSTREAM}/api/$metadata#Alerts`,
    value: [{ id: 1, link: `${UPSTREAM}/api/alerts/1` }],
    '@odata.nextLink': `${UPSTREAM}/api/alerts?$top=10&$skip=10`
  })
  const out = JSON.parse(await rewrite([body]))
  t.equal(out['@odata.nextLink'], `${BROKER}/api/alerts?$top=10&$skip=10`)
  t.equal(out['@odata.context'], `${UPSTREAM}/api/$metadata#Alerts`, 'only the nextLink')
  t.equal(out.value[0].link, `${UPSTREAM}/api/alerts/1`)
})

t.test('every split of the body across chunks gives the same result', async (t) => {
  const body = `{"value":[{"title":"é ü 漢字"}],"@odata.nextLink" : "${UPSTREAM.replaceAll('/', '\\/')}\\/api\\/machines?$skip=2"}`
  const expected = `{"value":[{"title":"é ü 漢字"}],"@odata.nextLink" : "${BROKER}\\/api\\/machines?$skip=2"}`
  const bytes = Buffer.from(body)
  for (let i = 0; i <= bytes.length; i++) {
    const out = await rewrite([bytes.subarray(0, i), bytes.subarray(i)])
    if (out !== expected) t.fail(`split at ${i}: ${out}`)
  }
  t.equal(await rewrite([...bytes].map((b) => Buffer.from([b]))), expected, 'one byte at a time')
})

t.test('another origin, a longer host or no nextLink pass untouched', async (t) => {
  for (const body of [
    '{"@odata.nextLink":"https://evil.example/api/alerts"}',
    `{"@odata.nextLink":"${UPSTREAM}.evil.example/api"}`,
    `{"@odata.nextLink":"${UPSTREAM}:8443/api"}`,
    `{"note":"${UPSTREAM}/api/alerts"}`,
    ''
  ]) {
    t.equal(await rewrite([body]), body, body)
  }
  t.equal(await rewrite(['{"@odata.nextLink":"HTTPS://API.SECURITYCENTER.MICROSOFT.COM/api?x=1"}']),
    `{"@odata.nextLink":"${BROKER}/api?x=1"}`, 'the host is case-insensitive')
})
