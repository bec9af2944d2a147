/**
 * Baseline: what a Node user writes instead of the broker, fastify with @fastify/http-proxy and
 * a static Authorization header, no logging. Run as a child with an IPC channel; the upstream
 * origin and the token come in BENCH_UPSTREAM and BENCH_TOKEN, and the URL it listens on goes
 * back as `{ type: 'ready', url }`.
 */
import fastify from 'fastify'
import proxy from '@fastify/http-proxy'

async function main (): Promise<void> {
  const upstream = process.env.BENCH_UPSTREAM
  const token = process.env.BENCH_TOKEN
  if (process.send === undefined || upstream === undefined || token === undefined) {
    throw new Error('run me from bench/run (IPC channel, BENCH_UPSTREAM and BENCH_TOKEN)')
  }
  const authorization = `Bearer ${token}`
  const app = fastify({ logger: false })
  await app.register(proxy, {
    upstream,
    replyOptions: {
      rewriteRequestHeaders: (_request, headers) => ({ ...headers, authorization })
    }
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  process.once('disconnect', () => process.exit(0))
  process.send({ type: 'ready', url: `http://127.0.0.1:${address.port}` })
}

main().catch((err: unknown) => {
  process.stderr.write(`bench http-proxy: ${(err as Error)?.stack ?? String(err)}\n`)
  process.exit(1)
})
