// A client with no key that tries to hold COUNT connections to the broker at PORT open, a third
// of each kind: idle keep-alive after a keyless `GET /healthz`, a head sent a byte every 2 s
// and never finished, and connected and silent. Each one the broker closes is opened again
// after RECONNECT_MS. It prints `ready <n>` once every connection has been opened, `stats
// {...}` when stdin closes or after LIFETIME_MS, and exits; it never outlives its parent.
// Run in its own process so the test needs no more file descriptors than the usual limit.
import { connect } from 'node:net'

const [port, count, reconnectMs, lifetimeMs] = process.argv.slice(2).map(Number)
const host = `127.0.0.1:${port}`
const stats = { opened: 0, closedByBroker: 0, healthzAnswered: 0, errors: {} }
const sockets = new Set()
let stopping = false

function open (kind, onConnect) {
  const socket = connect(port, '127.0.0.1')
  sockets.add(socket)
  let timer
  socket.on('error', (err) => { stats.errors[err.code] = (stats.errors[err.code] ?? 0) + 1 })
  socket.on('data', (chunk) => { if (chunk.toString('latin1').startsWith('HTTP/1.1 200')) stats.healthzAnswered++ })
  socket.once('connect', () => {
    stats.opened++
    if (kind === 'idle') socket.write(`GET /healthz HTTP/1.1\r\nHost: ${host}\r\n\r\n`)
    if (kind === 'slow') {
      socket.write(`GET /healthz HTTP/1.1\r\nHost: ${host}\r\nX-Slow: `)
      timer = setInterval(() => socket.write('a'), 2_000)
    }
    onConnect?.()
  })
  socket.once('close', () => {
    clearInterval(timer)
    sockets.delete(socket)
    if (stopping) return
    stats.closedByBroker++
    // Spread out, as sockets of a real client would be: a burst all at once mostly meets a full accept queue.
    setTimeout(() => { if (!stopping) open(kind) }, reconnectMs * (0.5 + Math.random()))
  })
}

function stop () {
  if (stopping) return
  stopping = true
  process.stdout.write(`stats ${JSON.stringify(stats)}\n`)
  for (const socket of sockets) socket.destroy()
  process.exit(0)
}

process.stdin.on('end', stop)
process.stdin.resume()
setTimeout(stop, lifetimeMs)

const kinds = ['idle', 'slow', 'silent']
let connected = 0
for (let i = 0; i < count; i++) {
  open(kinds[i % 3], () => { if (++connected === count) process.stdout.write(`ready ${connected}\n`) })
}
