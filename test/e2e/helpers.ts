/**
 * What the end-to-end tests share: a lab of their own (under a prefix, torn down before and after
 * so a crashed run leaves nothing that breaks the next), the balancer in it, and the checks every
 * run of real connections makes.
 */
import type { Test } from 'tap';
import {
  exec,
  labDown,
  labUp,
  startLabBalancer,
  type ClientRequestsResult,
  type Lab,
  type LabBalancer,
  type LabBalancerOptions,
} from '../../src/lab/index.js';

/** Brings up the lab under `prefix`, after taking down whatever an earlier run left there, and starts the balancer. */
export async function startLab(prefix: string, opts: LabBalancerOptions = {}): Promise<{ lab: Lab; bal: LabBalancer }> {
  await labDown(prefix);
  const lab = await labUp({ prefix });
  return { lab, bal: startLabBalancer(lab, opts) };
}

/** The teardown that goes with startLab(); `bal` is undefined when the set-up failed before it. */
export async function stopLab(prefix: string, bal: LabBalancer | undefined): Promise<void> {
  bal?.stop();
  await labDown(prefix);
}

/** `n` connections: all answered, by every backend of `expected` (names, sorted), each with 20-47% of them. */
export function assertSpread(t: Test, res: ClientRequestsResult, expected: string[], n = 300): void {
  t.equal(res.ok, n, `all ${n} answered (failures: ${JSON.stringify(res.failures)})`);
  t.same(Object.keys(res.byBackend).sort(), expected, 'every backend answered');
  for (const [name, got] of Object.entries(res.byBackend)) {
    t.ok(got >= 60 && got <= 141, `${name} got ${got} of ${n} (${((got / n) * 100).toFixed(0)}%, want 20-47%)`);
  }
}

/** How far the reason counters `names` moved together between two readings. */
export function moved(before: Record<string, bigint>, after: Record<string, bigint>, names: readonly string[]): bigint {
  return names.reduce((a, r) => a + ((after[r] ?? 0n) - (before[r] ?? 0n)), 0n);
}

/** A backend kernel's SNMP counters `names` (absolute, the history file left alone). */
export async function nstat(ns: string, names: string[]): Promise<Record<string, number>> {
  const r = await exec(ns, ['nstat', '-asz', ...names]);
  const out: Record<string, number> = {};
  for (const line of r.stdout.split('\n')) {
    const m = /^(\w+)\s+(\d+)/.exec(line);
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}
