// The data-path check beside the real XDP balancer, in the namespace lab (prefix `xhc-`: needs
// `make bpf ts`, i.e. build/bpf and dist). The balancer runs on the LB's eth0 ingress and forwards
// VIP traffic; the check's own packets leave the LB locally and its answers come from the VIP to
// the LB's own address, so the program must pass them to the stack (PASS_NOT_VIP), not forward them.
// A check that fell through to the LB's main table would go router -> LB -> XDP -> any backend:
// the lab is where that would show. labDown('xhc-') removes every xhc- namespace; tap runs test
// files one at a time here (jobs: 1), so it never meets datapath.test.ts's namespaces.
import { CYCLE_PAUSE_MS, atMostOneLoneMiss } from './fixtures/lone-miss.js';
import t from 'tap';
import { join } from 'node:path';
import { exec, labDown, labUp, REPO_ROOT, startLabBalancer, type Lab, type LabBalancer } from '../../src/lab/index.js';

const PREFIX = 'xhc-';
const PROBE = join(REPO_ROOT, 'dist/health/probe-once.js');
let lab: Lab;
let bal: LabBalancer | undefined;

interface Line {
  ok: boolean;
  detail: string;
  plain: { ok: boolean; detail: string };
  datapath?: { ok: boolean; detail: string };
}

const skip = process.getuid?.() !== 0 ? 'needs root (namespaces, XDP)' : undefined;

t.before(async () => {
  if (skip) return;
  t.teardown(async () => {
    bal?.stop();
    await labDown(PREFIX);
  });
  await labDown(PREFIX);
  lab = await labUp({ prefix: PREFIX, l2Backends: 2, routedBackends: 1 });
  bal = startLabBalancer(lab);
});

async function probe(backend: string, vip: string, mode: string): Promise<Line[]> {
  const input = {
    service: { name: 'web', vip, port: 80, proto: 'tcp', mode },
    backend: { address: backend },
    check: { type: 'http', datapath: true, timeoutMs: 500 },
    repeat: 5,
    pauseMs: CYCLE_PAUSE_MS,
  };
  const r = await exec(lab.lb.ns, ['node', PROBE, JSON.stringify(input)], { allowFail: true, timeoutMs: 60_000 });
  return r.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Line);
}

t.test('l2dsr backends with the VIP pass; the balancer passes the answers to the stack and forwards none', { skip }, async (t) => {
  const svc = lab.services.find((s) => s.mode === 'l2dsr');
  if (!svc || !bal) throw new Error('lab has no l2dsr service');
  const before = bal.lb.reasons();
  for (const b of lab.backends.filter((b) => b.segment === 'l2')) {
    const lines = await probe(b.addr, svc.vip, 'l2dsr');
    t.equal(lines.length, 5);
    const details = lines.map((l) => l.detail).join(' / ');
    t.ok(lines.every((l) => l.plain.ok), `${b.name}: every plain check passed: ${details}`);
    const dp = lines.map((l) => l.datapath?.ok === true);
    t.ok(atMostOneLoneMiss(dp), `${b.name}: data-path probes pass (at most one lone miss, see fixtures/lone-miss.ts): ${details}`);
  }
  const after = bal.lb.reasons();
  const delta = (k: string): bigint => (after[k] ?? 0n) - (before[k] ?? 0n);
  t.equal(delta('TX_L2DSR'), 0n, 'the balancer forwarded none of the check traffic');
  t.ok(delta('PASS_NOT_VIP') >= 2n * 5n * 2n, `answers passed as not-VIP (+${delta('PASS_NOT_VIP')})`);
});

t.test('a backend that lost the VIP fails the data-path check, its neighbour still passes', { skip }, async (t) => {
  const svc = lab.services.find((s) => s.mode === 'l2dsr');
  const [be1, be2] = lab.backends.filter((b) => b.segment === 'l2');
  if (!svc || !be1 || !be2) throw new Error('lab lacks l2dsr backends');
  t.teardown(() => exec(be1.ns, ['ip', 'addr', 'replace', `${svc.vip}/32`, 'dev', 'lo']).then(() => {}));
  await exec(be1.ns, ['ip', 'addr', 'del', `${svc.vip}/32`, 'dev', 'lo']);
  const bad = await probe(be1.addr, svc.vip, 'l2dsr');
  t.ok(bad.every((l) => !l.ok && l.plain.ok && l.datapath?.detail === 'timeout after 500 ms (connecting)'), `${be1.name}: ${bad[0]?.detail}`);
  const good = await probe(be2.addr, svc.vip, 'l2dsr');
  t.ok(good.every((l) => l.ok), `${be2.name}: ${good[0]?.detail}`);
});

t.test('ipip: plain check only, said so', { skip }, async (t) => {
  const svc = lab.services.find((s) => s.mode === 'ipip');
  const be = lab.backends.find((b) => b.segment === 'routed');
  if (!svc || !be) throw new Error('lab lacks an ipip backend');
  const lines = (await probe(be.addr, svc.vip, 'ipip')) as (Line & { note?: string })[];
  t.ok(lines.every((l) => l.ok && l.datapath === undefined));
  t.match(lines[0]?.note, /^datapath check not (supported|implemented) for ipip/);
});
