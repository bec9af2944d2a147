import t from 'tap'
import { readClaims } from '../../src/tokens/jwt.js'

const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

t.test('reads exp and roles from a JWT', async (t) => {
  const token = `${part({ alg: 'RS256' })}.${part({ exp: 2000000000, roles: ['Alert.Read.All', 7], tid: 'x' })}.sig`
  t.same(readClaims(token), { exp: 2000000000, roles: ['Alert.Read.All'], tid: 'x', aud: undefined, appid: undefined })
})

t.test('anything else is no token', async (t) => {
  for (const value of ['', 'abc', 'a.b', 'a.b.c.d', `${part({})}.${part({ roles: [] })}.s`,
    `${part({})}.${part({ exp: '1' })}.s`, `${part({})}.!!!.s`, `${part({})}.${Buffer.from('nope').toString('base64url')}.s`,
    `${part({})}.${part(null)}.s`]) {
    t.equal(readClaims(value), undefined, value)
  }
})
