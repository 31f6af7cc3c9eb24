/**
 * Control-plane benchmark: Maglev table builds, applying a large configuration from scratch and
 * one backend change in it (time and map writes), and the process's memory at that size.
 */
import { performance } from 'node:perf_hooks';
import { loadBalancer } from '../dataplane/loader.js';
import type { ApplyReport, DesiredService } from '../dataplane/apply.js';
import { benchMaglev } from '../maglev/index.js';
import { round } from './stats.js';

export interface Figure {
  value: number;
  unit: string;
}

export interface ControlplaneOptions {
  services?: number;
  backendsPerService?: number;
  log?: (line: string) => void;
}

function hex2(n: number): string {
  return (n & 255).toString(16).padStart(2, '0');
}

function config(services: number, perService: number, dropOne = false): DesiredService[] {
  const out: DesiredService[] = [];
  for (let s = 0; s < services; s++) {
    const backends = [];
    for (let b = 0; b < perService; b++) {
      if (dropOne && s === 0 && b === 0) continue;
      const n = s * perService + b;
      backends.push({ address: `10.${64 + (n >> 16)}.${(n >> 8) & 255}.${n & 255}`, mac: `02:00:00:${hex2(n >> 16)}:${hex2(n >> 8)}:${hex2(n)}`, weight: 1 });
    }
    out.push({ vip: `10.200.${s >> 8}.${s & 255}`, port: 80, proto: 'tcp', mode: 'l2dsr', backends });
  }
  return out;
}

/** Map writes through the bpf() syscall; ring slots are stores into the mmap'ed rings map, counted apart. */
function writes(r: ApplyReport): number {
  const w = r.writes;
  return w.services + w.backends + w.ringChunks + w.vipFilter + w.stats;
}

export function benchControlplane(opts: ControlplaneOptions = {}): Record<string, Figure> {
  const nSvc = opts.services ?? 1000;
  const perSvc = opts.backendsPerService ?? 10;
  const log = opts.log ?? (() => {});
  const out: Record<string, Figure> = {};

  log('control plane: Maglev builds');
  for (const r of benchMaglev()) {
    const suffix = r.weights === 'equal' ? '' : '_mixed_weights';
    out[`maglev_build_N${r.backends}_M${r.size}${suffix}`] = { value: round(r.medianMs, 3), unit: 'ms' };
  }

  log(`control plane: apply ${nSvc} services x ${perSvc} backends`);
  const rssBefore = process.memoryUsage().rss;
  const lb = loadBalancer({ maxServices: nSvc });
  try {
    const full = config(nSvc, perSvc);
    let t0 = performance.now();
    const r1 = lb.dataplane.apply(full);
    const tFull = performance.now() - t0;
    const key = `${nSvc}x${perSvc}`;
    out[`apply_${key}_from_scratch`] = { value: round(tFull, 1), unit: 'ms' };
    out[`apply_${key}_from_scratch_writes`] = { value: writes(r1), unit: 'map writes (syscalls)' };
    out[`apply_${key}_from_scratch_ring_slots`] = { value: r1.writes.ringSlots, unit: 'ring slots' };
    out[`apply_${key}_from_scratch_ring_chunks`] = { value: r1.writes.ringChunks, unit: 'ring chunks' };

    t0 = performance.now();
    const r0 = lb.dataplane.apply(full);
    out[`apply_${key}_unchanged`] = { value: round(performance.now() - t0, 1), unit: 'ms' };
    out[`apply_${key}_unchanged_writes`] = { value: writes(r0), unit: 'map writes (syscalls)' };

    // One backend change: the first service loses one of its backends.
    const changed = config(nSvc, perSvc, true);
    t0 = performance.now();
    const r2 = lb.dataplane.apply(changed);
    out['apply_one_backend_removed'] = { value: round(performance.now() - t0, 2), unit: 'ms' };
    out['apply_one_backend_removed_writes'] = { value: writes(r2), unit: 'map writes (syscalls)' };
    out['apply_one_backend_removed_ring_slots'] = { value: r2.writes.ringSlots, unit: 'ring slots' };
    out['apply_one_backend_removed_ring_chunks'] = { value: r2.writes.ringChunks, unit: 'ring chunks' };
    // ... and comes back.
    t0 = performance.now();
    const r3 = lb.dataplane.apply(full);
    out['apply_one_backend_added'] = { value: round(performance.now() - t0, 2), unit: 'ms' };
    out['apply_one_backend_added_writes'] = { value: writes(r3), unit: 'map writes (syscalls)' };
    out['apply_one_backend_added_ring_slots'] = { value: r3.writes.ringSlots, unit: 'ring slots' };

    const rss = process.memoryUsage().rss;
    out[`rss_at_${key}`] = { value: round(rss / 2 ** 20, 1), unit: 'MiB' };
    out[`rss_growth_at_${key}`] = { value: round((rss - rssBefore) / 2 ** 20, 1), unit: 'MiB' };
  } finally {
    lb.close();
  }
  return out;
}
