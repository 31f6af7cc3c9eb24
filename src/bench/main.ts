/**
 * make bench: measures the data path (BPF_PROG_TEST_RUN, beside the floor program) and the control
 * plane, writes bench/results.json and prints a table with the goals beside the figures.
 * Exit status: 0 when every case was measured on its intended path, whatever the goals say;
 * 1 when a case's path could not be verified (the figure would be of the wrong path).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { isLbError } from '../errors.js';
import { REPO_ROOT } from '../dataplane/loader.js';
import { benchDatapath, type DatapathCase } from './datapath.js';
import { benchControlplane, type Figure } from './controlplane.js';
import { evaluateGoals, renderTable } from './report.js';

export interface BenchResults {
  datapath: Array<DatapathCase | { case: 'floor'; mode: '-'; ns_per_packet: number; ratio_to_floor: 1 }>;
  controlplane: Record<string, Figure>;
  lab: Record<string, unknown>;
  goals: ReturnType<typeof evaluateGoals>;
  meta: Record<string, unknown>;
}

function gitCommit(): string | undefined {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

function main(): number {
  const t0 = Date.now();
  const log = (line: string) => process.stderr.write(`bench: ${line}\n`);
  const dp = benchDatapath({ log });
  const cp = benchControlplane({ log });
  const datapath: BenchResults['datapath'] = [
    { case: 'floor', mode: '-', ns_per_packet: dp.floor_ns, ratio_to_floor: 1 },
    ...dp.cases,
  ];
  const goals = evaluateGoals(dp.cases, cp);
  const results: BenchResults = {
    datapath,
    controlplane: cp,
    lab: { note: 'not measured yet' },
    goals,
    meta: {
      date: new Date().toISOString(),
      kernel: release(),
      cpus: cpus().length,
      cpu_model: cpus()[0]?.model ?? 'unknown',
      memory_gib: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      commit: gitCommit(),
      method: {
        datapath: 'BPF_PROG_TEST_RUN, ns per packet as the kernel reports it; each case interleaved with the floor (xdp_floor) in every round, medians over rounds; ratio = case median / median of all floor samples of its phase (floor_ns; floor_ns_beside keeps the median of just the samples right before the case)',
        wrapper: 'VIP cases run through bpf/bench_balancer.bpf.c (undoes encapsulation, restores the Ethernet header, varies/forgets flows); its own cost (xdp_bench_null - xdp_bench_empty) is subtracted, raw_ns keeps the figure before',
        rounds: dp.rounds,
        repeat: dp.repeat,
        empty_program_ns: dp.empty_ns,
        floor_iqr_ns: dp.floor_iqr_ns,
        floor_samples: dp.floor_samples,
      },
      runtime_s: Math.round((Date.now() - t0) / 100) / 10,
    },
  };
  const dir = join(REPO_ROOT, 'bench');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'results.json');
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(renderTable(results));
  process.stdout.write(`\nwritten: ${file} (${results.meta.runtime_s} s)\n`);
  return 0;
}

try {
  process.exitCode = main();
} catch (e) {
  if (isLbError(e)) {
    process.stderr.write(`bench: ${e.code}: ${e.message}\n`);
    if (e.hint) process.stderr.write(`  hint: ${e.hint}\n`);
  } else {
    process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  }
  process.exitCode = 1;
}
