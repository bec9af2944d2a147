import type { IncomingMessage } from 'node:http'
import t from 'tap'
import { createHostCheck, fromBrowserPage } from '../../src/inbound/browser-defences.js'
import { protocolViolation } from '../../src/inbound/protocol.js'

/** The parts of a parsed request the checks read, as Node's parser fills them in. */
function parsed (rawHeaders: string[], httpVersionMinor = 1): IncomingMessage {
  const headers: Record<string, string> = {}
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = (rawHeaders[i] as string).toLowerCase()
    headers[name] ??= rawHeaders[i + 1] as string
  }
  return { rawHeaders, headers, httpVersionMinor } as unknown as IncomingMessage
}

t.test('protocolViolation: one plain Host, honest framing, no protocol switch', async (t) => {
  t.equal(protocolViolation(parsed(['Host', 'localhost:8080'])), undefined)
  t.equal(protocolViolation(parsed(['Host', '[::1]:8080'])), undefined)
  t.equal(protocolViolation(parsed(['Host', 'defender_broker_1'])), undefined, 'compose v1 service names have underscores')
  t.equal(protocolViolation(parsed([])), 'it has no Host header')
  t.equal(protocolViolation(parsed(['Host', 'a', 'HOST', 'a'])), 'it has more than one Host header')
  for (const host of ['', 'a b', 'localhost:1@evil.example', 'a/b', 'a:b', '[::1', 'a%2eb', 'localhost:123456']) {
    t.equal(protocolViolation(parsed(['Host', host])), 'its Host header is not a host name or address with an optional port', JSON.stringify(host))
  }
  t.equal(protocolViolation(parsed(['Host', 'a', 'Connection', 'keep-alive, Upgrade', 'Upgrade', 'websocket'])),
    'it asks to switch protocols (Upgrade), which the broker does not do')
  t.equal(protocolViolation(parsed(['Host', 'a', 'Upgrade', 'h2c'])), undefined, 'an Upgrade the Connection header does not name is ignored')
  t.equal(protocolViolation(parsed(['Host', 'a', 'Connection', 'upgrades', 'Upgrade', 'h2c'])), undefined)
  t.equal(protocolViolation(parsed(['Host', 'a', 'Transfer-Encoding', 'chunked'])), undefined)
  t.equal(protocolViolation(parsed(['Host', 'a', 'Transfer-Encoding', 'gzip, Chunked'])), undefined)
  t.equal(protocolViolation(parsed(['Host', 'a', 'Transfer-Encoding', 'identity'])), 'its Transfer-Encoding does not end in chunked')
  t.equal(protocolViolation(parsed(['Host', 'a', 'Transfer-Encoding', 'chunked, gzip'])), 'its Transfer-Encoding does not end in chunked')
  t.equal(protocolViolation(parsed(['Host', 'a', 'Transfer-Encoding', 'xchunked'])), 'its Transfer-Encoding does not end in chunked')
  t.equal(protocolViolation(parsed(['Host', 'a', 'Transfer-Encoding', 'chunked', 'Content-Length', '3'])), 'it has both Content-Length and Transfer-Encoding')
  t.equal(protocolViolation(parsed(['Host', 'a', 'Transfer-Encoding', 'chunked'], 0)), 'it is HTTP/1.0 with a Transfer-Encoding')
})

t.test('createHostCheck: loopback names, the listen address and allowedHosts, with or without a port', async (t) => {
  const allowed = createHostCheck('10.0.0.5', ['Defender-Broker', 'broker.internal:9443'])
  const check = (host: string) => allowed(parsed(['Host', host]))
  for (const host of ['localhost', 'LOCALHOST:1', '127.0.0.1', '127.255.0.1:80', '[::1]', '[::1]:8080', '10.0.0.5:8080', 'defender-broker', 'defender-broker:8080', 'broker.internal:9443']) {
    t.equal(check(host), undefined, host)
  }
  for (const host of ['evil.example', 'broker.internal', 'broker.internal:443', '10.0.0.6', '[::2]:8080', '[::ffff:127.0.0.1]']) {
    t.equal(check(host), host.toLowerCase(), host)
  }
})

t.test('fromBrowserPage: any Origin, a cross-site or same-site fetch', async (t) => {
  t.equal(fromBrowserPage(parsed(['Origin', 'null'])), 'requests from web pages (an Origin header) are refused')
  t.equal(fromBrowserPage(parsed(['Sec-Fetch-Site', ' Same-Site '])), 'cross-site requests from a browser are refused')
  t.equal(fromBrowserPage(parsed(['Sec-Fetch-Site', 'same-origin'])), undefined)
  t.equal(fromBrowserPage(parsed(['Sec-Fetch-Site', 'none'])), undefined)
  t.equal(fromBrowserPage(parsed([])), undefined)
})
