import t from 'tap'
import { describeNetworkFailure } from '../../src/outbound/network-failure.js'

const coded = (code: string, message = code, extra: object = {}) => Object.assign(new Error(message), { code }, extra)

t.test('a transport code and a few words for it', async (t) => {
  t.strictSame(describeNetworkFailure(coded('ECONNREFUSED')), { code: 'ECONNREFUSED', reason: 'connection refused (ECONNREFUSED)' })
  t.strictSame(describeNetworkFailure(coded('UNABLE_TO_VERIFY_LEAF_SIGNATURE')), {
    code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    reason: 'its TLS certificate is not trusted (UNABLE_TO_VERIFY_LEAF_SIGNATURE)'
  })
  t.strictSame(describeNetworkFailure(coded('ERR_TLS_CERT_ALTNAME_INVALID')).reason, 'its TLS certificate is for another host name (ERR_TLS_CERT_ALTNAME_INVALID)')
  t.strictSame(describeNetworkFailure(coded('EWHATEVER')), { code: 'EWHATEVER', reason: 'EWHATEVER' })
  t.strictSame(describeNetworkFailure(new Error('no code')), { code: 'network', reason: 'network' })
  t.strictSame(describeNetworkFailure('not an error'), { code: 'network', reason: 'network' })
})

t.test('the specific code inside undici\'s wrappers wins', async (t) => {
  const wrapped = coded('UND_ERR_PRX_TLS', 'TLS Error', { cause: coded('SELF_SIGNED_CERT_IN_CHAIN') })
  t.equal(describeNetworkFailure(wrapped).code, 'SELF_SIGNED_CERT_IN_CHAIN')
  const dualStack = Object.assign(new AggregateError([coded('ECONNREFUSED'), coded('ECONNREFUSED')], 'connect failed'))
  t.equal(describeNetworkFailure(dualStack).code, 'ECONNREFUSED', 'the AggregateError of a dual-stack connect')
  const loop: Error & { cause?: unknown } = new Error('loop')
  loop.cause = loop
  t.equal(describeNetworkFailure(loop).code, 'network', 'a cause cycle ends')
})

t.test('a proxy that refuses the tunnel', async (t) => {
  const tunnel = (status: number) => coded('UND_ERR_ABORTED', `Proxy response (${status}) !== 200 when HTTP Tunneling`)
  t.strictSame(describeNetworkFailure(tunnel(407)), {
    code: 'proxy_authentication_required',
    reason: 'the proxy refused the credentials (407): check the user and password in the proxy URL'
  })
  t.equal(describeNetworkFailure(tunnel(401)).code, 'proxy_authentication_required', 'tinyproxy says 401')
  t.strictSame(describeNetworkFailure(tunnel(403)), { code: 'proxy_refused', reason: 'the proxy refused the tunnel (403)' })
  t.equal(describeNetworkFailure(coded('UND_ERR_INVALID_ARG', 'Proxy Authentication Required (407)')).code, 'proxy_authentication_required')
})
