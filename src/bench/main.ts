/**
 * make bench: measures the data path (BPF_PROG_TEST_RUN, beside the floor program) and the control
 * plane, writes bench/results.json and prints a table with the goals beside the figures.
 * Exit status: 0 when every case was measured on its intended path, whatever the goals say;
 * 1 when a case's path could not be verified (the figure would be of the wrong path).
 *
 * `node dist/bench/main.js --lab-only [--rounds N] [--seconds S]` measures only the lab (about a
 * minute) and puts it into an existing bench/results.json (goals re-evaluated with the figures
 * already there), or writes a file with the lab alone when there is none.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { LbError, isLbError } from '../errors.js';
import { REPO_ROOT } from '../dataplane/loader.js';
import { benchDatapath, type DatapathCase, type DatapathResult } from './datapath.js';
import { benchControlplane, type Figure } from './controlplane.js';
import { benchLab, type LabResult } from './lab.js';
import { evaluateGoals, renderLab, renderTable } from './report.js';

export interface BenchResults {
  datapath: Array<DatapathCase | { case: 'floor'; mode: '-'; ns_per_packet: number; ratio_to_floor: 1; ns_median: number }>;
  calibration: DatapathResult['calibration'];
  controlplane: Record<string, Figure>;
  lab: LabResult | { error: string };
  goals: ReturnType<typeof evaluateGoals>;
  meta: Record<string, unknown>;
}

function gitCommit(): string | undefined {
  const r = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

interface Args {
  labOnly: boolean;
  rounds?: number;
  seconds?: number;
}

function parseArgs(argv: readonly string[]): Args {
  const out: Args = { labOnly: false };
  const num = (flag: string, v: string | undefined, min: number, max: number): number => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || n < min || n > max) throw new LbError('ERR_LB_USAGE', `${flag} wants a number in ${min}..${max}, got ${String(v)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--lab-only') out.labOnly = true;
    else if (a === '--rounds') out.rounds = Math.round(num(a, argv[++i], 1, 99));
    else if (a === '--seconds') out.seconds = num(a, argv[++i], 0.1, 10);
    else throw new LbError('ERR_LB_USAGE', `unknown argument ${String(a)}`, { hint: 'usage: main.js [--lab-only] [--rounds N] [--seconds S]' });
  }
  return out;
}

/** The lab alone, merged into the last full run's results when there is one. */
async function labOnly(args: Args, log: (line: string) => void): Promise<number> {
  const t0 = Date.now();
  const file = join(REPO_ROOT, 'bench', 'results.json');
  const lab = await benchLab({ log, rounds: args.rounds, seconds: args.seconds });
  const meta = { date: new Date().toISOString(), kernel: release(), cpus: cpus().length, commit: gitCommit(), runtime_s: Math.round((Date.now() - t0) / 100) / 10 };
  let out: Record<string, unknown> = { lab, meta: { lab_only: true, ...meta } };
  if (existsSync(file)) {
    const prev = JSON.parse(readFileSync(file, 'utf8')) as BenchResults;
    const dpCases = (prev.datapath ?? []).filter((c): c is DatapathCase => c.case !== 'floor');
    out = { ...prev, lab, goals: evaluateGoals(dpCases, prev.controlplane ?? {}, lab), meta: { ...prev.meta, lab_rerun: meta } };
  }
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(out, null, 2)}\n`);
  process.stdout.write(renderLab(lab));
  process.stdout.write(`\nwritten: ${file} (lab only, ${meta.runtime_s} s)\n`);
  return 0;
}

async function main(): Promise<number> {
  const t0 = Date.now();
  const log = (line: string) => process.stderr.write(`bench: ${line}\n`);
  const args = parseArgs(process.argv.slice(2));
  if (args.labOnly) return labOnly(args, log);
  if (args.rounds !== undefined || args.seconds !== undefined) throw new LbError('ERR_LB_USAGE', '--rounds and --seconds are for --lab-only');
  const dp = benchDatapath({ log });
  const cp = benchControlplane({ log });
  let lab: BenchResults['lab'];
  let status = 0;
  try {
    lab = await benchLab({ log });
  } catch (e) {
    // The other figures still get written; the missing one is said so, and the exit status is 1.
    lab = { error: isLbError(e) ? `${e.code}: ${e.message}` : String(e) };
    status = 1;
  }
  const datapath: BenchResults['datapath'] = [
    { case: 'floor', mode: '-', ns_per_packet: dp.floor_ns, ratio_to_floor: 1, ns_median: dp.floor_median_ns },
    ...dp.cases,
  ];
  const goals = evaluateGoals(dp.cases, cp, 'error' in lab ? undefined : lab);
  const results: BenchResults = {
    datapath,
    calibration: dp.calibration,
    controlplane: cp,
    lab,
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
        datapath: `BPF_PROG_TEST_RUN (repeat > 1, so through the XDP dispatcher as in a driver), ns per packet as the kernel reports it (whole ns, truncated); each case interleaved with the floor (xdp_floor) in every round; the machine is bimodal (some samples run ~1.8x slower, every program alike), so every figure is the ${dp.statistic}; calibration.trustworthy says whether the run could tell; medians of all samples kept as ns_median/ratio_median; ratio = case / floor of the same phase`,
        wrapper: 'VIP cases run through bpf/bench_balancer.bpf.c (writes the tuple, undoes encapsulation, restores the headers NAT rewrites; IPv6 cases through its IPv6 entry points, modes l2dsr6, ipip6, nat6, fullnat6); its bookkeeping (xdp_bench_null - xdp_bench_empty, same mode) is subtracted, raw_ns keeps the figure before; undoing the encapsulation is NOT subtracted (undo_encap_ns estimates it); test-run\'s own per-packet cost is in the floor and the cases alike; calibration checks the subtraction',
        new_flow: 'every iteration a tuple never seen before, into a table that keeps filling (no entry is removed again); the bucket is a random one of the whole table',
        established_k: 'every packet from another of k flows, in a random order: the worst case for caches (real traffic has runs of packets per flow)',
        rounds: dp.rounds,
        repeat: dp.repeat,
        floor_quantiles_ns: dp.floor_quantiles_ns,
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
  return status;
}

try {
  process.exitCode = await main();
} catch (e) {
  if (isLbError(e)) {
    process.stderr.write(`bench: ${e.code}: ${e.message}\n`);
    if (e.hint) process.stderr.write(`  hint: ${e.hint}\n`);
  } else {
    process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  }
  process.exitCode = 1;
}
