/** The sample data's seed: the same tenant on every start, whatever the clock says. */
export const SAMPLE_SEED = 0x5eed_0014

export interface Random {
  /** A float in [0, 1). */
  next (): number
  /** An integer in [min, max]. */
  int (min: number, max: number): number
  pick<T> (items: readonly T[]): T
  /** Each item with probability `chance`, in order. */
  some<T> (items: readonly T[], chance: number): T[]
  chance (probability: number): boolean
  hex (length: number): string
  guid (): string
}

/** mulberry32: small, fast and good enough for sample data; never for anything secret. */
export function createRandom (seed: number = SAMPLE_SEED): Random {
  let state = seed >>> 0
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
  const int = (min: number, max: number): number => min + Math.floor(next() * (max - min + 1))
  const hex = (length: number): string => Array.from({ length }, () => int(0, 15).toString(16)).join('')
  return {
    next,
    int,
    pick: <T>(items: readonly T[]): T => items[int(0, items.length - 1)] as T,
    some: <T>(items: readonly T[], chance: number): T[] => items.filter(() => next() < chance),
    chance: (probability) => next() < probability,
    hex,
    guid: () => `${hex(8)}-${hex(4)}-4${hex(3)}-8${hex(3)}-${hex(12)}`
  }
}
