/**
 * Build-time benchmark for the Maglev table, for `make bench`. Timing lives here and not in the
 * tests, because a loaded CI machine would make a timing assertion flaky.
 */

import { performance } from 'node:perf_hooks';
import { buildMaglev, type MaglevBackend } from './maglev.js';

export interface MaglevBenchResult {
  readonly backends: number;
  readonly size: number;
  /** 'equal': all weight 1; 'mixed': weights 1..4 in turn, which exercises the weighted turn order. */
  readonly weights: 'equal' | 'mixed';
  readonly runs: number;
  readonly medianMs: number;
  readonly minMs: number;
  readonly maxMs: number;
}

export interface MaglevBenchOptions {
  readonly backends?: readonly number[];
  readonly sizes?: readonly number[];
  readonly runs?: number;
}

function pool(n: number, mixed: boolean): MaglevBackend[] {
  const out: MaglevBackend[] = [];
  for (let i = 0; i < n; i++) {
    out.push({ id: i + 1, key: `10.1.${i >> 8}.${i & 255}:80`, weight: mixed ? (i % 4) + 1 : 1 });
  }
  return out;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Median, min and max build time over `runs` runs (after one untimed warm-up) per case. */
export function benchMaglev(opts: MaglevBenchOptions = {}): MaglevBenchResult[] {
  const counts = opts.backends ?? [10, 100, 1000];
  const sizes = opts.sizes ?? [65537, 655373];
  const runs = opts.runs ?? 7;
  const results: MaglevBenchResult[] = [];
  for (const size of sizes) {
    for (const n of counts) {
      for (const weights of ['equal', 'mixed'] as const) {
        const backends = pool(n, weights === 'mixed');
        buildMaglev(backends, { size }); // warm-up, so the JIT is not what gets measured
        const times: number[] = [];
        for (let r = 0; r < runs; r++) {
          const t0 = performance.now();
          buildMaglev(backends, { size });
          times.push(performance.now() - t0);
        }
        results.push({
          backends: n,
          size,
          weights,
          runs,
          medianMs: median(times),
          minMs: Math.min(...times),
          maxMs: Math.max(...times),
        });
      }
    }
  }
  return results;
}
