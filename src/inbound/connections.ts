import type { Server } from 'node:http'
import type { Socket } from 'node:net'

export interface Connections {
  /**
   * A request arrived on `socket`: returns what to call once its response is done (closed,
   * finished or cut off), which the request's one 'close' listener does.
   */
  requestStarted: (socket: Socket) => () => void
  /**
   * Shutdown has begun: connections with no request in progress are closed now, the others as
   * soon as their last response is done.
   */
  closeIdle: () => void
}

export interface ConnectionPolicy {
  /** Open connections; at the limit, a new one takes the place of an idle one (see below). */
  readonly maxConnections: number
  /** With client keys: a connection that has not presented a valid key is closed after this idle. */
  readonly unauthenticatedIdleTimeoutMs: number
  /** Whether the broker has client keys; without, every connection is unauthenticated and keeps the keep-alive timeout. */
  readonly keysRequired: boolean
}

const STATE = Symbol('broker connection')

interface ConnectionState {
  /** Requests whose response is not done yet. */
  inProgress: number
  /** It has presented a valid client key; it stays so for its life. */
  authenticated: boolean
}

type TrackedSocket = Socket & { [STATE]?: ConnectionState }

/** A valid client key came on this connection: it is no longer among the first to be closed. */
export function markAuthenticated (socket: Socket): void {
  const state = (socket as TrackedSocket)[STATE]
  if (state !== undefined) state.authenticated = true
}

/**
 * The connection of an intercepted CONNECT: it carries the TLS connection the server serves
 * inside it, which is tracked on its own. It never counts as idle, so neither a drain nor the
 * connection limit closes it under a request in progress; it goes when the one inside goes.
 */
export function markCarrier (socket: Socket): void {
  const state = (socket as TrackedSocket)[STATE]
  if (state === undefined) return
  state.inProgress++
  state.authenticated = true
  socket.setTimeout(0)
}

/**
 * Which open connections have a request in progress, and which have presented a valid key.
 *
 * Draining: Node's `closeIdleConnections` leaves a connection that never sent a whole request
 * (a client's pre-connect, a half-sent head) to the headers timeout, and `server.close()` stops
 * checking that timeout: such a connection would hold a shutdown up until the client gave up,
 * for as long as the keep-alive timeout.
 *
 * The connection limit is kept here, not by Node's `server.maxConnections`, which drops every
 * new connection at the limit: a client with no key could hold them all, with idle keep-alive
 * connections or heads sent a byte at a time, and lock every other client and the health probes
 * out. At the limit a new connection is accepted and the oldest connection with no request in
 * progress that has not presented a valid key (idle, silent, or still sending its head) is
 * closed to make room; failing that, the oldest idle one that has. Only when every connection
 * is busy is the new one closed. With client keys, a connection that has not presented one is
 * also closed after `unauthenticatedIdleTimeoutMs` with nothing in progress.
 */
export function trackConnections (server: Server, policy: ConnectionPolicy): Connections {
  // In the order they were accepted: the first found is the oldest.
  const sockets = new Set<TrackedSocket>()
  const shortIdle = policy.keysRequired ? policy.unauthenticatedIdleTimeoutMs : 0
  let draining = false

  /** Closes one connection that can go; false when every one is busy. */
  function makeRoom (): boolean {
    let idleAuthenticated: TrackedSocket | undefined
    for (const socket of sockets) {
      const state = socket[STATE] as ConnectionState
      if (state.inProgress > 0) continue
      if (!state.authenticated) {
        close(socket)
        return true
      }
      idleAuthenticated ??= socket
    }
    if (idleAuthenticated === undefined) return false
    close(idleAuthenticated)
    return true
  }

  function close (socket: TrackedSocket): void {
    sockets.delete(socket)
    socket.destroy()
  }

  server.on('connection', (socket: TrackedSocket) => {
    if (draining || (sockets.size >= policy.maxConnections && !makeRoom())) {
      socket.destroy()
      return
    }
    socket[STATE] = { inProgress: 0, authenticated: false }
    sockets.add(socket)
    if (shortIdle > 0) socket.setTimeout(shortIdle)
    socket.once('close', () => sockets.delete(socket))
  })
  return {
    requestStarted (socket: TrackedSocket) {
      const state = socket[STATE]
      if (state === undefined) return noop
      state.inProgress++
      // The short idle timeout is an idle one: a request in progress has Node's timeouts.
      if (shortIdle > 0 && !state.authenticated) socket.setTimeout(0)
      return () => {
        if (--state.inProgress > 0) return
        if (draining) socket.destroySoon()
        // After Node's own keep-alive timeout is set, which comes with 'finish'.
        else if (shortIdle > 0 && !state.authenticated && !socket.destroyed) socket.setTimeout(shortIdle)
      }
    },
    closeIdle () {
      draining = true
      for (const socket of sockets) {
        if (socket[STATE]?.inProgress === 0) socket.destroy()
      }
    }
  }
}

function noop (): void {}
