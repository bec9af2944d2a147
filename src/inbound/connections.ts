import type { Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'

export interface ConnectionDrain {
  /**
   * Shutdown has begun: connections with no request in progress are closed now, the others as
   * soon as their last response is done.
   */
  closeIdle: () => void
}

/**
 * Which open connections have a request in progress. Node's `closeIdleConnections` leaves a
 * connection that never sent a whole request (a client's pre-connect, a half-sent head) to the
 * headers timeout, and `server.close()` stops checking that timeout: such a connection would
 * hold a shutdown up until the client gave up, for as long as the keep-alive timeout.
 */
export function trackConnections (server: Server): ConnectionDrain {
  const sockets = new Set<Socket>()
  const inProgress = new Map<Socket, number>()
  let draining = false

  server.on('connection', (socket: Socket) => {
    if (draining) {
      socket.destroy()
      return
    }
    sockets.add(socket)
    socket.once('close', () => {
      sockets.delete(socket)
      inProgress.delete(socket)
    })
  })
  server.on('request', (req: { socket: Socket }, res: ServerResponse) => {
    const socket = req.socket
    inProgress.set(socket, (inProgress.get(socket) ?? 0) + 1)
    res.once('close', () => {
      const left = (inProgress.get(socket) ?? 1) - 1
      if (left > 0) {
        inProgress.set(socket, left)
        return
      }
      inProgress.delete(socket)
      if (draining) socket.destroySoon()
    })
  })

  return {
    closeIdle () {
      draining = true
      for (const socket of sockets) {
        if (!inProgress.has(socket)) socket.destroy()
      }
    }
  }
}
