import { createHash } from 'node:crypto'
import t from 'tap'
import { compileRules } from '../../src/inbound/rules.js'
import { normalizePath } from '../../src/common/paths.js'
import { createKeyVerifier, presentedKey } from '../../src/inbound/client-keys.js'

t.test('rules: * is one segment, ** the rest, GET covers HEAD', async (t) => {
  const allows = compileRules(['GET /api/**', 'POST /api/machines/*/isolate'])
  t.ok(allows('GET', '/api/alerts'))
  t.ok(allows('HEAD', '/api/alerts?$top=1'))
  t.ok(allows('GET', '/api'), '** also matches nothing')
  t.ok(allows('POST', '/api/machines/abc/isolate'))
  t.notOk(allows('POST', '/api/machines/abc/unisolate'))
  t.notOk(allows('POST', '/api/machines/abc/def/isolate'))
  t.notOk(allows('POST', '/api/machines/isolate'))
  t.notOk(allows('DELETE', '/api/alerts/1'))
  t.notOk(allows('GET', '/other'))
  t.ok(compileRules([])('DELETE', '/anything'), 'no rules, no restriction')
  t.ok(compileRules(['* /api/alerts'])('PATCH', '/api/alerts'))
})

t.test('rules match the normalized path: no spelling slips past', async (t) => {
  const allows = compileRules(['POST /api/machines/*/unisolate'])
  t.ok(allows('POST', '/api/machines/x/un%69solate'), 'encoded unreserved characters are decoded')
  t.ok(allows('POST', '/API/Machines/x/UnIsolate'), 'the API routes case-insensitively, so do rules')
  const readOnly = compileRules(['GET /api/**'])
  t.notOk(readOnly('POST', '/api/machines/x/isolate'))
  t.notOk(readOnly('GET', '/%61pi2/x'))
  t.equal(normalizePath('/A%2dB%7E/%2F?x=1'), '/a-b~/%2f')
})

t.test('client keys: digests compared, either header', async (t) => {
  const key = 'k3y-value-for-tests'
  const verify = createKeyVerifier([{ name: 'soar', keySha256: createHash('sha256').update(key).digest('hex').toUpperCase(), profiles: [], allow: [] }])
  t.equal(verify(key)?.name, 'soar')
  t.equal(verify('wrong'), undefined)
  t.equal(verify(''), undefined)
  t.equal(verify(undefined), undefined)
  t.equal(verify(key + 'x'.repeat(1000)), undefined)
  t.equal(presentedKey({ authorization: `Bearer ${key}` }), key)
  t.equal(presentedKey({ authorization: `bearer ${key}` }), key)
  t.equal(presentedKey({ 'x-broker-key': key, authorization: 'Bearer other' }), key)
  t.equal(presentedKey({ authorization: `Basic ${key}` }), undefined)
})
