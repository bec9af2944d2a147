import { pino, type DestinationStream, type Logger } from 'pino'
import pretty from 'pino-pretty'

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

/** pino JSON on stdout, pretty only when stdout is a terminal. */
export function createLogger (options: LoggerOptions): Logger {
  const base = {
    level: options.level,
    base: undefined,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' }
  }
  if (options.destination !== undefined) return pino(base, options.destination)
  if (process.stdout.isTTY === true) {
    return pino(base, pretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }))
  }
  return pino(base, pino.destination({ dest: 1, sync: false }))
}
