import { createRequire } from 'node:module'
import type { FastifyBaseLogger } from 'fastify'
import { pino, type DestinationStream, type Logger } from 'pino'

const require = createRequire(import.meta.url)

export const REDACTED_PATHS = [
  'req.headers.authorization', 'req.headers["x-broker-key"]', 'req.headers.cookie',
  'headers.authorization', 'headers["x-broker-key"]',
  'token', 'accessToken', 'access_token', 'secret', 'clientSecret', 'client_secret', 'key', 'password',
  '*.token', '*.accessToken', '*.secret', '*.clientSecret', '*.password', '*.key'
]

export interface LoggerOptions {
  level: string
  /** Where lines go; stdout when absent (tests pass a sink). */
  destination?: DestinationStream
}

/** Lines are gathered up to this many bytes, so a busy broker makes one write for many lines. */
const LOG_BATCH_BYTES = 4096
/** And written at most this long after the first of them, however quiet the broker is. */
const LOG_FLUSH_MS = 50

/**
 * stdout through sonic-boom, lines written in batches: a line per request would otherwise be a
 * write of its own. What is gathered is written within `LOG_FLUSH_MS`, and at exit.
 */
function batchedStdout (): DestinationStream {
  const stdout = pino.destination({ dest: 1, sync: false, minLength: LOG_BATCH_BYTES })
  let timer: NodeJS.Timeout | undefined
  const flush = (callback?: (err?: Error) => void) => {
    clearTimeout(timer)
    timer = undefined
    try {
      stdout.flush(callback)
    } catch {
      // Gone (an EPIPE, or the exit's flush already ran): nothing left to write.
      callback?.()
    }
  }
  return {
    write (line: string) {
      stdout.write(line)
      timer ??= setTimeout(flush, LOG_FLUSH_MS).unref()
    },
    // pino's logger.flush(): what is gathered goes now.
    flush
  } as DestinationStream
}

/** pino JSON on stdout, pretty only when stdout is a terminal. */
export function createLogger (options: LoggerOptions): Logger {
  const base = {
    level: options.level,
    base: undefined,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' }
  }
  if (options.destination !== undefined) return pino(base, options.destination)
  if (process.stdout.isTTY === true) {
    // Loaded only for a terminal.
    const pretty = require('pino-pretty') as typeof import('pino-pretty')
    return pino(base, pretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }))
  }
  return pino(base, batchedStdout())
}

type Bindings = Record<string, unknown>
type ChildOptions = Parameters<Logger['child']>[1]
type LogArguments = [object | string, ...unknown[]]
type ChildLogger = ReturnType<Logger['child']>

/**
 * What fastify makes for each request as `request.log`: the child logger is made only when a
 * line is logged through it. pino's child serializes its bindings (through the redaction) at
 * once, and most requests log nothing through theirs (the request line has its own logger).
 */
class LazyChildLogger {
  readonly #parent: Logger
  readonly #bindings: Bindings
  readonly #options: ChildOptions
  #child: ChildLogger | undefined

  constructor (parent: Logger, bindings: Bindings, options: ChildOptions) {
    this.#parent = parent
    this.#bindings = bindings
    this.#options = options
  }

  #logger (): ChildLogger {
    this.#child ??= this.#parent.child(this.#bindings, this.#options)
    return this.#child
  }

  get level (): string {
    return this.#child?.level ?? this.#parent.level
  }

  set level (level: string) {
    this.#logger().level = level
  }

  fatal (...args: LogArguments): void { this.#logger().fatal(...(args as [string])) }
  error (...args: LogArguments): void { this.#logger().error(...(args as [string])) }
  warn (...args: LogArguments): void { this.#logger().warn(...(args as [string])) }
  info (...args: LogArguments): void { this.#logger().info(...(args as [string])) }
  debug (...args: LogArguments): void { this.#logger().debug(...(args as [string])) }
  trace (...args: LogArguments): void { this.#logger().trace(...(args as [string])) }
  silent (): void {}

  child (bindings: Bindings, options?: ChildOptions): ChildLogger {
    return this.#logger().child(bindings, options)
  }
}

/** fastify's `childLoggerFactory`: request loggers made on first use. */
export function lazyChildLogger (parent: Logger, bindings: Bindings, options: ChildOptions): FastifyBaseLogger {
  return new LazyChildLogger(parent, bindings, options) as unknown as FastifyBaseLogger
}
