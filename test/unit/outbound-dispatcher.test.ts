import t from 'tap'
import { once } from 'node:events'
import { createRequire, syncBuiltinESMExports } from 'node:module'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type * as Tls from 'node:tls'
import { createOutboundDispatcher } from '../../src/outbound/dispatcher.js'
import { createTestPki } from '../../src/simulator/index.js'

const tls = createRequire(import.meta.url)('node:tls') as typeof Tls
const pki = await createTestPki()

// With an extra CA, every TLS connection used to get a context of its own, the 140-odd roots
// parsed again each time: 30 ms of blocked event loop per new connection.
t.test('with an extra CA, connections share one TLS context, made at the first connection', async (t) => {
  const server = createServer({ key: pki.serverKeyPem, cert: pki.serverCertPem }, (_req, res) => res.end('ok'))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve) }))
  const origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`

  const made: unknown[] = []
  const original = tls.createSecureContext
  tls.createSecureContext = (options) => {
    made.push(options)
    return original(options)
  }
  syncBuiltinESMExports()
  t.teardown(() => {
    tls.createSecureContext = original
    syncBuiltinESMExports()
  })

  const dispatcher = createOutboundDispatcher({ extraCaPem: pki.caCertPem, connectTimeoutMs: 5000, env: {} })
  t.teardown(() => dispatcher.close())
  t.equal(made.length, 0, 'no context before the first connection')

  // Concurrent requests on a pipelining-1 pool: a connection each.
  const statuses = await Promise.all(Array.from({ length: 4 }, async () => {
    const response = await dispatcher.request({ origin, path: '/', method: 'GET' })
    await response.body.dump()
    return response.statusCode
  }))
  t.same(statuses, [200, 200, 200, 200], 'every request verified the server against the extra CA')
  t.equal(made.length, 1, 'one TLS context for the four connections')
})
