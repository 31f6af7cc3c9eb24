/** Small statistics for the benchmarks: medians of noisy samples. */

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** The q-quantile (0..1) of the samples, nearest rank below: no interpolation between modes. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.floor(q * (s.length - 1))))] as number;
}

/**
 * The samples of the fast mode: within 10% of the smallest, plus 1 ns for the kernel's whole-ns
 * truncation. The VMs we run on give every program two modes ~1.6-1.8x apart (see datapath.ts).
 */
export function fastSamples(xs: readonly number[]): number[] {
  if (xs.length === 0) return [];
  const m = Math.min(...xs);
  return xs.filter((x) => x <= m * 1.1 + 1);
}

/** Median of the fast mode's samples. */
export function fastMode(xs: readonly number[]): number {
  return median(fastSamples(xs));
}
