import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'

interface Teardown {
  teardown: (fn: () => unknown) => void
}

export interface RawConnection {
  socket: Socket
  /** Everything the server has sent so far, as latin1 text. */
  text: () => string
  /** Resolves with the received text once it matches `pattern`; rejects if the connection closes first. */
  waitFor: (pattern: RegExp) => Promise<string>
  /** Resolves with `performance.now()` at the moment the connection closed, whoever closed it. */
  closed: Promise<number>
}

/**
 * A TCP connection to `url`'s host and port for writing requests byte by byte, at the pace a
 * test chooses: slow clients, `Expect: 100-continue`, half-sent bodies. Destroyed at teardown.
 */
export async function openConnection (t: Teardown, url: string): Promise<RawConnection> {
  const { hostname, port } = new URL(url)
  const socket = connect(Number(port), hostname)
  socket.on('error', () => {})
  const chunks: Buffer[] = []
  const listeners = new Set<() => void>()
  const closed = new Promise<number>((resolve) => {
    socket.once('close', () => {
      resolve(performance.now())
      for (const listener of listeners) listener()
    })
  })
  socket.on('data', (chunk: Buffer) => {
    chunks.push(chunk)
    for (const listener of listeners) listener()
  })
  t.teardown(() => socket.destroy())
  await once(socket, 'connect')
  const text = () => Buffer.concat(chunks).toString('latin1')
  return {
    socket,
    text,
    closed,
    waitFor: (pattern) => new Promise((resolve, reject) => {
      const check = () => {
        const received = text()
        if (pattern.test(received)) {
          listeners.delete(check)
          resolve(received)
        } else if (socket.destroyed) {
          listeners.delete(check)
          reject(new Error(`the connection closed before ${pattern} arrived; received ${JSON.stringify(received)}`))
        }
      }
      listeners.add(check)
      check()
    })
  }
}
