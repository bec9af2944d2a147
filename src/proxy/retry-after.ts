/** Every HTTP-date form (IMF-fixdate, RFC 850, asctime) starts with the day's name. */
const HTTP_DATE = /^[A-Za-z]{3}/

/**
 * Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; undefined when absent
 * or unreadable. A fraction of a second is rounded up; a bare number is never taken for a date
 * (`Date.parse('1.5')` is a day in 2001).
 */
export function parseRetryAfter (value: string | string[] | undefined, now: number): number | undefined {
  if (typeof value !== 'string' || value.trim() === '') return undefined
  const text = value.trim()
  if (/^\d+(\.\d+)?$/.test(text)) return Math.ceil(Number(text))
  if (!HTTP_DATE.test(text)) return undefined
  const date = Date.parse(text)
  if (Number.isNaN(date)) return undefined
  return Math.max(0, Math.ceil((date - now) / 1000))
}
