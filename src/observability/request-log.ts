import { LogController, type FastifyReply, type FastifyRequest } from 'fastify'

declare module 'fastify' {
  interface FastifyRequest {
    /** Filled in as the request goes: what its one log line reports. */
    broker: {
      profile?: string
      client?: string
      upstreamRequestId?: string
      /** Set once the API's response is being passed on: a stream error then is the API's. */
      upstream?: string
    }
  }
}

/**
 * One line per request, with the fields an operator filters on; fastify's own two lines
 * (incoming, completed) would double the volume and carry the headers. The query string is
 * left out: OData filters can hold names and addresses.
 */
export class RequestLog extends LogController {
  override incomingRequest (): void {}

  override requestCompleted (error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    const url = request.raw.url ?? ''
    const queryAt = url.indexOf('?')
    const line = {
      client: request.broker?.client,
      profile: request.broker?.profile,
      method: request.raw.method,
      path: queryAt === -1 ? url : url.slice(0, queryAt),
      status: reply.statusCode,
      durationMs: Math.round(reply.elapsedTime * 100) / 100,
      upstreamRequestId: request.broker?.upstreamRequestId
    }
    if (error) request.log.error({ ...line, err: { message: error.message, code: (error as { code?: string }).code } }, 'request failed')
    else request.log.info(line, 'request')
  }
}
