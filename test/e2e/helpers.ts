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
  segmentOf,
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

/** A NAT service of the lab as the PMTU check sees it: its VIP, its backends' segment, the peer they talk to. */
export interface NatTopo {
  name: string;
  vip: string;
  segment: string;
  /** the address the backends see as their peer: the client (LB as gateway) or the LB (full NAT) */
  seen: () => string;
}

/**
 * A PMTU black hole: the router's leg to the client gets `mtu`, the client keeps 1500 and so
 * advertises an MSS the backends' full-size replies fill; the router refuses them with
 * frag-needed / packet-too-big to the VIP. A 200 KB download through each service completes only
 * if the balancer hands that error to the connection's backend, translated, and the backend's
 * route cache then holds the MTU toward the peer it knows.
 */
export async function checkPmtuThroughNat(t: Test, lab: Lab, bal: LabBalancer, topos: readonly NatTopo[], family: 4 | 6, mtu: number): Promise<void> {
  const SIZE = 200_000;
  const error = family === 4 ? 'frag-needed' : 'packet-too-big';
  const routerIf = segmentOf(lab.topology, 'client').routerIf;
  await exec(lab.router, ['ip', 'link', 'set', 'dev', routerIf, 'mtu', String(mtu)]);
  t.teardown(async () => {
    await exec(lab.router, ['ip', 'link', 'set', 'dev', routerIf, 'mtu', '1500']);
  });
  for (const topo of topos) {
    const before = bal.lb.reasons();
    const url = family === 4 ? `http://${topo.vip}/bytes/${SIZE}` : `http://[${topo.vip}]/bytes/${SIZE}`;
    const r = await exec(
      lab.client,
      ['curl', '-s', '-g', `-${family}`, '--noproxy', '*', '-o', '/dev/null', '--max-time', '10', '-w', '%{http_code} %{size_download} %header{x-lab-backend}', url],
      { timeoutMs: 15_000, allowFail: true },
    );
    const [code, size, name] = r.stdout.trim().split(' ');
    t.equal(`${code} ${size}`, `200 ${SIZE}`, `${topo.name}: ${SIZE} bytes through a ${mtu}-byte link within 10 s (curl exit ${r.status})`);
    const after = bal.lb.reasons();
    t.ok(moved(before, after, ['ICMP_TOO_BIG']) >= 1n, `${topo.name}: the router's ${error} reached the balancer (ICMP_TOO_BIG +${moved(before, after, ['ICMP_TOO_BIG'])})`);
    // Counted as too-big first, then by what became of it: any of these would mean not translated.
    t.equal(moved(before, after, ['PASS_NAT_ICMP', 'PASS_NAT_TTL', 'DROP_MALFORMED', 'DROP_NAT_NO_ROUTE', 'DROP_NAT_MTU']), 0n, `${topo.name}: every one translated (none left to the kernel or dropped)`);
    const be = lab.backends.find((b) => b.name === name);
    t.ok(be && be.segment === topo.segment, `${topo.name}: served by ${name}, a ${topo.segment} backend`);
    if (!be) continue;
    const route = await exec(be.ns, ['ip', `-${family}`, 'route', 'get', topo.seen()]);
    t.match(route.stdout, new RegExp(`\\bmtu ${mtu}\\b`), `${topo.name}: ${name} learnt mtu ${mtu} toward ${topo.seen()} (${route.stdout.trim().replace(/\s+/g, ' ')})`);
  }
}
