// The data-path check for l2dsr, in network namespaces made here (xhc-<random>-*):
//
//   lb  eth0 10.201.0.1 ───── eth0 10.201.0.2  be  (backend "alpha": VIP on lo, servers)
//                                   eth1 10.201.1.1 ───── eth0 10.201.1.2  be2  (backend "beta": VIP on lo, servers;
//                                                                                default route via be)
//
// be2 exists for the guard tests: with be's VIP gone and forwarding on, a probe that be forwarded
// would reach beta and pass. The probes run in lb under `ip netns exec` (dist/health/probe-once.js:
// build with `npx tsc -p tsconfig.json` first); the routes are also driven from here with
// DatapathRoutes({netns}). No XDP program is involved: the probe does not need one. Strict
// rp_filter on lb proves the DSR answer (from the VIP, which lb has no route to) is accepted.
import { CYCLE_PAUSE_MS, atMostOneLoneMiss } from './fixtures/lone-miss.js';
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DatapathRoutes, DEFAULT_PORT_BASE, DEFAULT_RULE_PRIORITY, DEFAULT_SLOTS, DEFAULT_TABLE_BASE, ipipNote, type DatapathSlot } from '../../src/health/index.js';
import { exec, run, REPO_ROOT, waitVethsUp } from '../../src/lab/index.js';
import { selfSigned, sleep } from './fixtures/helpers.js';

const ID = randomBytes(3).toString('hex');
const LB = `xhc-${ID}-lb`;
const BE = `xhc-${ID}-be`;
const BE2 = `xhc-${ID}-be2`;
const NAMESPACES = [LB, BE, BE2];
const VIP = '10.201.100.1';
const LB_ADDR = '10.201.0.1';
const BE_ADDR = '10.201.0.2';
const BE_FWD = '10.201.1.1';
const BE2_ADDR = '10.201.1.2';
const PROBE = join(REPO_ROOT, 'dist/health/probe-once.js');
const SERVER = join(REPO_ROOT, 'test/health/fixtures/ns-server.mjs');
const PREP = join(REPO_ROOT, 'scripts/server-prep.sh');

const svc = { name: 'web', vip: VIP, port: 80, proto: 'tcp', mode: 'l2dsr' };
const alpha = { address: BE_ADDR };
const CHECKS = {
  tcp: { type: 'tcp', datapath: true, timeoutMs: 500 },
  http: { type: 'http', datapath: true, timeoutMs: 500, http: { bodyContains: 'alpha ready' } },
  https: { type: 'https', datapath: true, timeoutMs: 500, port: 443, http: { insecure: true, bodyContains: 'alpha ready' } },
  udp: { type: 'udp', datapath: true, timeoutMs: 500, port: 5353, udp: { payload: '7868632d70726f6265', expect: 'reply' } },
} as const;

interface Line {
  ok: boolean;
  ms: number;
  detail: string;
  plain: { ok: boolean; ms: number; detail: string };
  datapath?: { ok: boolean; ms: number; detail: string };
  slot?: DatapathSlot;
  note?: string;
}

const children: ChildProcess[] = [];

function cannotRun(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, policy routing)';
  return undefined;
}

/** dist/health must be built from the current sources, else we would test old code. */
function assertBuilt(): void {
  const src = join(REPO_ROOT, 'src/health');
  for (const f of readdirSync(src).filter((n) => n.endsWith('.ts'))) {
    const js = join(REPO_ROOT, 'dist/health', f.replace(/\.ts$/, '.js'));
    if (!existsSync(js) || statSync(js).mtimeMs < statSync(join(src, f)).mtimeMs) {
      throw new Error(`dist/health/${f.replace(/\.ts$/, '.js')} is missing or older than its source: run \`npx tsc -p tsconfig.json\` first`);
    }
  }
}

const ip = (ns: string, ...args: string[]) => run(['ip', '-n', ns, ...args]);
const ipJson = async <T>(ns: string, ...args: string[]): Promise<T> => JSON.parse((await run(['ip', '-n', ns, '-j', ...args])).stdout) as T;

async function probeOnce(input: object): Promise<{ status: number | null; lines: Line[]; stderr: string }> {
  const r = await exec(LB, ['node', PROBE, JSON.stringify(input)], { allowFail: true, timeoutMs: 60_000 });
  const lines = r.stdout
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Line);
  return { status: r.status, lines, stderr: r.stderr };
}

interface RuleJson {
  priority: number;
  dst?: string;
  ipproto?: string;
  sport?: number;
  table?: string;
}

/** Rules in lb at our priority or pointing into our table range. */
async function ourRules(): Promise<RuleJson[]> {
  const rules = await ipJson<RuleJson[]>(LB, '-4', 'rule', 'show');
  return rules.filter((r) => {
    const tb = Number(r.table);
    return r.priority === DEFAULT_RULE_PRIORITY || (tb >= DEFAULT_TABLE_BASE && tb < DEFAULT_TABLE_BASE + DEFAULT_SLOTS);
  });
}

/** Routes in lb in any table of our range. */
async function ourRoutes(): Promise<{ table?: string; dst?: string }[]> {
  const routes = await ipJson<{ table?: string; dst?: string }[]>(LB, '-4', 'route', 'show', 'table', 'all');
  return routes.filter((r) => {
    const tb = Number(r.table);
    return tb >= DEFAULT_TABLE_BASE && tb < DEFAULT_TABLE_BASE + DEFAULT_SLOTS;
  });
}

async function vipOnBe(present: boolean): Promise<void> {
  const has = (await run(['ip', '-n', BE, '-o', 'addr', 'show', 'dev', 'lo'])).stdout.includes(`${VIP}/32`);
  if (has !== present) await ip(BE, 'addr', present ? 'add' : 'del', `${VIP}/32`, 'dev', 'lo');
}

async function startServer(ns: string, name: string, cert: string, key: string, udpAddrs: string[]): Promise<void> {
  const argv = ['netns', 'exec', ns, 'node', SERVER, '--name', name, '--cert', cert, '--key', key, ...udpAddrs.flatMap((a) => ['--udp-addr', a])];
  const child = spawn('ip', argv, { stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  let err = '';
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server in ${ns} not ready in 10 s: ${err}`)), 10_000);
    child.stdout.once('data', () => (clearTimeout(timer), resolve()));
    child.once('exit', (code) => (clearTimeout(timer), reject(new Error(`server in ${ns} exited ${code}: ${err}`))));
  });
}

const skip = cannotRun();

t.before(async () => {
  if (skip) return;
  assertBuilt();
  // registered before anything exists, so a setup that fails half-way is cleaned up too
  t.teardown(async () => {
    for (const c of children) if (c.exitCode === null && c.pid !== undefined) c.kill('SIGKILL');
    for (const ns of NAMESPACES) {
      const pids = await run(['ip', 'netns', 'pids', ns], { allowFail: true });
      for (const pid of pids.stdout.split(/\s+/).filter((s) => /^\d+$/.test(s))) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await run(['ip', 'netns', 'del', ns], { allowFail: true });
    }
  });
  // what a run that was killed before its teardown left (names only this file makes)
  for (const ns of existsSync('/run/netns') ? readdirSync('/run/netns') : []) {
    if (/^xhc-[0-9a-f]{6}-(lb|be|be2)$/.test(ns)) await run(['ip', 'netns', 'del', ns], { allowFail: true });
  }
  for (const ns of NAMESPACES) await run(['ip', 'netns', 'add', ns]);
  await ip(LB, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', BE);
  await ip(BE, 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', BE2);
  for (const [ns, dev, addr] of [
    [LB, 'eth0', `${LB_ADDR}/24`],
    [BE, 'eth0', `${BE_ADDR}/24`],
    [BE, 'eth1', `${BE_FWD}/24`],
    [BE2, 'eth0', `${BE2_ADDR}/24`],
  ] as const) {
    await ip(ns, 'addr', 'add', addr, 'dev', dev);
    await ip(ns, 'link', 'set', dev, 'up');
  }
  for (const ns of NAMESPACES) await ip(ns, 'link', 'set', 'lo', 'up');
  await Promise.all(NAMESPACES.map((ns) => waitVethsUp(ns)));
  await exec(LB, ['sysctl', '-q', '-w', 'net.ipv4.conf.all.rp_filter=1', 'net.ipv4.conf.eth0.rp_filter=1']);
  await exec(BE, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=0', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.eth0.rp_filter=0', 'net.ipv4.conf.eth1.rp_filter=0']);
  await exec(BE2, ['sysctl', '-q', '-w', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.eth0.rp_filter=0']);
  await ip(BE, 'route', 'add', `${VIP}/32`, 'via', BE2_ADDR);
  await ip(BE2, 'route', 'add', 'default', 'via', BE_FWD);
  const dir = t.testdir();
  await exec(BE, ['bash', PREP, 'add', '--vip', VIP, '--mode', 'l2dsr', '--state-dir', join(dir, 'prep-be')]);
  await exec(BE2, ['bash', PREP, 'add', '--vip', VIP, '--mode', 'l2dsr', '--state-dir', join(dir, 'prep-be2')]);
  const pems = selfSigned(dir);
  await startServer(BE, 'alpha', pems.certFile, pems.keyFile, [BE_ADDR, VIP]);
  await startServer(BE2, 'beta', pems.certFile, pems.keyFile, [BE2_ADDR, VIP]);
});

t.test('VIP on the backend: every check type passes through the data path, 10 times from one port', { skip }, async (t) => {
  for (const [name, check] of Object.entries(CHECKS)) {
    const r = await probeOnce({ service: svc, backend: alpha, check, repeat: 10, pauseMs: CYCLE_PAUSE_MS });
    const details = r.lines.map((l) => l.detail).join(' / ');
    t.equal(r.status, r.lines.every((l) => l.ok) ? 0 : 1, `${name}: exit 0 when every cycle passed, else 1 ${r.stderr}`);
    t.equal(r.lines.length, 10, `${name}: 10 cycles`);
    t.ok(r.lines.every((l) => l.plain.ok), `${name}: every plain check passed: ${details}`);
    t.ok(atMostOneLoneMiss(r.lines.map((l) => l.datapath?.ok === true)), `${name}: data-path probes pass (at most one lone miss, see fixtures/lone-miss.ts): ${details}`);
    const slot = r.lines[0]?.slot;
    t.match(slot, { vip: VIP, backend: BE_ADDR, proto: name === 'udp' ? 'udp' : 'tcp', localPort: DEFAULT_PORT_BASE, table: DEFAULT_TABLE_BASE, dev: 'eth0', localAddress: LB_ADDR });
    const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
    t.comment(
      `${name}: median plain ${med(r.lines.map((l) => l.plain.ms))} ms, data path ${med(r.lines.map((l) => l.datapath?.ms ?? NaN))} ms, cycle ${med(r.lines.map((l) => l.ms))} ms`,
    );
  }
  t.same(await ourRules(), [], 'no rule left after the runs');
  t.same(await ourRoutes(), [], 'no route left in our tables');
});

t.test('VIP missing on the backend: the data-path check fails while the plain check passes; back when restored', { skip }, async (t) => {
  t.teardown(() => vipOnBe(true));
  await vipOnBe(false);
  const want: Record<string, { port: number; dp: string }> = {
    tcp: { port: 80, dp: 'timeout after 500 ms' },
    http: { port: 80, dp: 'timeout after 500 ms (connecting)' },
    https: { port: 443, dp: 'timeout after 500 ms (connecting)' },
    udp: { port: 5353, dp: 'no reply within 500 ms' },
  };
  for (const [name, check] of Object.entries(CHECKS)) {
    const r = await probeOnce({ service: svc, backend: alpha, check });
    const l = r.lines[0];
    t.equal(r.status, 1, `${name}: exit 1`);
    t.equal(l?.ok, false, `${name}: failed`);
    t.equal(l?.plain.ok, true, `${name}: plain check still passes (${l?.plain.detail})`);
    t.equal(l?.datapath?.detail, want[name]?.dp);
    t.equal(l?.detail, `datapath failed (${VIP}:${want[name]?.port} via ${BE_ADDR}): ${want[name]?.dp}; plain check ok`);
  }
  await vipOnBe(true);
  for (const [name, check] of Object.entries(CHECKS)) {
    const r = await probeOnce({ service: svc, backend: alpha, check });
    t.equal(r.lines[0]?.ok, true, `${name} passes again: ${r.lines[0]?.detail}`);
  }
  t.same(await ourRules(), []);
});

t.test('a UDP service on 0.0.0.0 answers DSR traffic from the wrong address: the data path fails, as real clients would', { skip }, async (t) => {
  const check = { ...CHECKS.udp, port: 5354 };
  const r = await probeOnce({ service: { ...svc, proto: 'udp' }, backend: alpha, check });
  t.equal(r.lines[0]?.plain.ok, true, 'plain: the reply comes from the address asked');
  t.same(r.lines[0]?.datapath, { ok: false, ms: r.lines[0]?.datapath?.ms, detail: 'no reply within 500 ms' }, 'via the VIP: the reply comes from 10.201.0.2, the connected socket drops it');
});

t.test('a plain TCP check against an address nobody answers for: timeout', { skip }, async (t) => {
  const r = await probeOnce({ service: svc, backend: { address: '10.201.0.99' }, check: { type: 'tcp', timeoutMs: 300 } });
  t.equal(r.status, 1);
  t.match(r.lines[0], { ok: false, detail: 'timeout after 300 ms' });
  t.ok((r.lines[0]?.ms ?? 0) >= 295, `after ${r.lines[0]?.ms} ms`);
});

t.test('DatapathRoutes: leftovers removed, foreign rules kept, idempotent, slots stable, remove() complete', { skip }, async (t) => {
  const routes = new DatapathRoutes({ netns: LB });
  t.teardown(async () => {
    await routes.remove();
    await ip(LB, 'rule', 'del', 'priority', String(DEFAULT_RULE_PRIORITY), 'table', '200').catch(() => {});
    await ip(LB, 'rule', 'del', 'priority', '50', 'table', String(DEFAULT_TABLE_BASE + 1)).catch(() => {});
    await ip(LB, 'address', 'del', '10.201.100.9/32', 'dev', 'lo').catch(() => {});
  });
  const leftoverTable = String(DEFAULT_TABLE_BASE + 5);
  // what a crashed run leaves: a rule at our priority into our range, and a route in that table
  await ip(LB, 'route', 'add', `${VIP}/32`, 'via', BE_ADDR, 'dev', 'eth0', 'table', leftoverTable);
  await ip(LB, 'rule', 'add', 'priority', String(DEFAULT_RULE_PRIORITY), 'to', `${VIP}/32`, 'ipproto', 'tcp', 'sport', '61005', 'table', leftoverTable);
  // not ours: our priority but another table; our table range but another priority
  await ip(LB, 'rule', 'add', 'priority', String(DEFAULT_RULE_PRIORITY), 'to', '10.201.200.0/24', 'table', '200');
  await ip(LB, 'rule', 'add', 'priority', '50', 'to', '10.201.201.0/24', 'table', String(DEFAULT_TABLE_BASE + 1));

  const tcpPair = { vip: VIP, backend: BE_ADDR, proto: 'tcp' as const };
  const udpPair = { vip: VIP, backend: BE_ADDR, proto: 'udp' as const };
  const e1 = await routes.ensure([tcpPair]);
  const s1 = e1.get(`${VIP}|${BE_ADDR}|tcp`);
  t.match(s1, { ok: true, slot: { index: 0, localPort: DEFAULT_PORT_BASE, table: DEFAULT_TABLE_BASE, dev: 'eth0', localAddress: LB_ADDR } });
  const rules1 = await routes.installedRules();
  t.same(rules1, [{ family: 4, priority: DEFAULT_RULE_PRIORITY, dst: VIP, ipproto: 'tcp', sport: DEFAULT_PORT_BASE, table: DEFAULT_TABLE_BASE }], 'exactly our rule');
  t.same(await routes.tableRoutes(DEFAULT_TABLE_BASE), [
    { type: 'unreachable', dst: 'default', flags: [] },
    { dst: VIP, gateway: BE_ADDR, dev: 'eth0', flags: ['onlink'], metrics: [{ hoplimit: 1 }] },
  ]);
  t.same(await routes.tableRoutes(DEFAULT_TABLE_BASE + 5), [], 'the leftover table is empty');
  const all = await ipJson<RuleJson[]>(LB, '-4', 'rule', 'show');
  t.ok(all.some((r) => r.priority === DEFAULT_RULE_PRIORITY && r.table === '200'), 'foreign rule at our priority kept');
  t.ok(all.some((r) => r.priority === 50 && r.table === String(DEFAULT_TABLE_BASE + 1)), 'foreign rule into our range kept');

  await routes.ensure([tcpPair]);
  t.same(await routes.installedRules(), rules1, 'ensure again: nothing changes');
  await run(['ip', '-n', LB, 'rule', 'del', 'priority', String(DEFAULT_RULE_PRIORITY), 'table', String(DEFAULT_TABLE_BASE)]);
  await routes.ensure([tcpPair]);
  t.same(await routes.installedRules(), rules1, 'a rule someone deleted comes back');

  const e2 = await routes.ensure([tcpPair, udpPair]);
  t.match(e2.get(`${VIP}|${BE_ADDR}|udp`), { ok: true, slot: { index: 1, localPort: DEFAULT_PORT_BASE + 1, table: DEFAULT_TABLE_BASE + 1 } });
  const e3 = await routes.ensure([udpPair]);
  t.match(e3.get(`${VIP}|${BE_ADDR}|udp`), { ok: true, slot: { index: 1 } }, 'a kept pair keeps its slot');
  t.same(
    (await routes.installedRules()).map((r) => [r.ipproto, r.sport]),
    [['udp', DEFAULT_PORT_BASE + 1]],
    'the dropped pair lost its rule',
  );
  t.same(await routes.tableRoutes(DEFAULT_TABLE_BASE), [], 'and its table');

  // what cannot be checked here, and what has no way to the backend
  await ip(LB, 'address', 'add', '10.201.100.9/32', 'dev', 'lo');
  const e4 = await routes.ensure([
    udpPair,
    { vip: '10.201.100.9', backend: BE_ADDR, proto: 'tcp' },
    { vip: VIP, backend: '10.9.9.9', proto: 'tcp' },
    { vip: '2001:db8::1', backend: '2001:db8::2', proto: 'tcp' },
    { vip: '2001:db8::1', backend: BE_ADDR, proto: 'tcp' },
  ]);
  t.match(e4.get(`10.201.100.9|${BE_ADDR}|tcp`), { ok: false, kind: 'unsupported', reason: /10\.201\.100\.9 is an address of this host/ });
  t.match(e4.get(`${VIP}|10.9.9.9|tcp`), { ok: false, kind: 'unreachable', reason: 'no route to backend 10.9.9.9: Network is unreachable' });
  t.match(e4.get('2001:db8::1|2001:db8::2|tcp'), { ok: false, kind: 'unreachable', reason: 'no route to backend 2001:db8::2: Network is unreachable' }, 'IPv6 is looked up too (lb has no IPv6 route)');
  t.match(e4.get(`2001:db8::1|${BE_ADDR}|tcp`), { ok: false, kind: 'unsupported', reason: `datapath check needs the VIP and the backend in one family (2001:db8::1, ${BE_ADDR}): plain check only` });
  t.equal((await routes.installedRules()).length, 1, 'only the good pair has a rule');

  // a backend that gains, then loses, its route: looked up again on every ensure()
  await ip(LB, 'route', 'add', '10.9.9.9/32', 'via', BE_ADDR);
  const far = { vip: VIP, backend: '10.9.9.9', proto: 'tcp' as const };
  t.match((await routes.ensure([udpPair, far])).get(`${VIP}|10.9.9.9|tcp`), { ok: true, slot: { index: 0, dev: 'eth0', localAddress: LB_ADDR } });
  await ip(LB, 'route', 'del', '10.9.9.9/32');
  t.match((await routes.ensure([udpPair, far])).get(`${VIP}|10.9.9.9|tcp`), { ok: false, kind: 'unreachable' });
  t.same((await routes.installedRules()).map((r) => r.ipproto), ['udp'], 'its rule went with its route');
  t.same(await routes.tableRoutes(DEFAULT_TABLE_BASE), [], 'and its table was emptied');

  await routes.remove();
  t.same(await ourRules().then((rs) => rs.filter((r) => !(r.table === '200' || r.priority === 50))), [], 'remove(): none of ours left');
  t.same(await ourRoutes(), []);
  await routes.remove();
  t.pass('remove() twice is fine');
});

t.test('what hoplimit 1 and the unreachable default are for (each removed, the check passes wrongly)', { skip }, async (t) => {
  const routes = new DatapathRoutes({ netns: LB });
  t.teardown(async () => {
    await routes.remove();
    await vipOnBe(true);
    await exec(BE, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=0']);
    await ip(LB, 'route', 'del', `${VIP}/32`).catch(() => {});
  });
  const entry = (await routes.ensure([{ vip: VIP, backend: BE_ADDR, proto: 'tcp' }])).get(`${VIP}|${BE_ADDR}|tcp`);
  if (!entry?.ok) throw new Error(`no slot: ${JSON.stringify(entry)}`);
  const slot = entry.slot;
  const table = String(slot.table);
  // only beta's answer passes: a pass proves the probe ended up at the wrong backend
  const check = { type: 'http', datapath: true, timeoutMs: 500, http: { bodyContains: 'beta ready' } };
  const dp = async (): Promise<{ ok?: boolean; detail?: string }> => {
    const r = await probeOnce({ service: svc, backend: alpha, check, slot });
    return { ok: r.lines[0]?.datapath?.ok, detail: r.lines[0]?.datapath?.detail };
  };

  // alpha loses the VIP but forwards packets for it (to beta, which holds it)
  await vipOnBe(false);
  await exec(BE, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
  // TTL 1 expires in alpha's forwarding; its ICMP time exceeded aborts the connect at once
  t.same(await dp(), { ok: false, detail: 'connect EHOSTUNREACH' }, 'with hoplimit 1: alpha cannot forward it, the check fails');
  await ip(LB, 'route', 'replace', `${VIP}/32`, 'via', BE_ADDR, 'dev', 'eth0', 'onlink', 'table', table);
  const wrong = await dp();
  t.same(wrong.ok, true, `without it, alpha forwards to beta and the check passes wrongly (${wrong.detail})`);
  await routes.ensure([{ vip: VIP, backend: BE_ADDR, proto: 'tcp' }]);
  t.same((await routes.tableRoutes(slot.table)).find((r) => r.dst === VIP), { dst: VIP, gateway: BE_ADDR, dev: 'eth0', flags: ['onlink'], metrics: [{ hoplimit: 1 }] }, 'ensure() put hoplimit back');
  t.equal((await dp()).ok, false);

  // lb's own route to the VIP leads (through alpha, forwarding) to a healthy backend
  await ip(LB, 'route', 'add', `${VIP}/32`, 'via', BE_ADDR);
  await ip(LB, 'route', 'del', `${VIP}/32`, 'table', table);
  t.same(await dp(), { ok: false, detail: 'connect EHOSTUNREACH' }, 'VIP route gone from the table: the unreachable default stops the lookup');
  await ip(LB, 'route', 'del', 'unreachable', 'default', 'table', table);
  const fell = await dp();
  t.equal(fell.ok, true, `without it, the lookup falls through to main and the check passes wrongly (${fell.detail})`);
  await routes.ensure([{ vip: VIP, backend: BE_ADDR, proto: 'tcp' }]);
  t.equal((await routes.tableRoutes(slot.table)).length, 2, 'ensure() restored both routes');
});

t.test('HealthMonitor in the lb namespace: up, VIP removed -> down (data path), restored -> up; ipip runs plain', { skip }, async (t) => {
  const targets = [
    {
      key: 'alpha',
      service: svc,
      backend: alpha,
      check: { type: 'http', datapath: true, intervalMs: 100, timeoutMs: 300, rise: 2, fall: 2, jitter: 0.1, http: { bodyContains: 'alpha ready' } },
    },
    {
      key: 'tunnel',
      service: { ...svc, name: 'tun', vip: '10.201.100.2', mode: 'ipip' },
      backend: alpha,
      check: { type: 'tcp', datapath: true, intervalMs: 100, timeoutMs: 300, rise: 1, fall: 1 },
    },
  ];
  const child = spawn('ip', ['netns', 'exec', LB, 'node', PROBE, '--watch', JSON.stringify({ targets, durationMs: 60_000 })], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  children.push(child);
  const events: Record<string, unknown>[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => events.push(JSON.parse(l) as Record<string, unknown>));
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  t.teardown(async () => {
    await vipOnBe(true);
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const waitFor = async (what: string, pred: (e: Record<string, unknown>) => boolean, ms: number): Promise<number> => {
    const t0 = Date.now();
    while (Date.now() - t0 < ms) {
      if (events.some(pred)) return Date.now() - t0;
      if (child.exitCode !== null) break;
      await sleep(10);
    }
    throw new Error(`no ${what} within ${ms} ms; events: ${JSON.stringify(events.filter((e) => e['event'] !== 'probe'))}; stderr: ${stderr}`);
  };
  const transition = (key: string, from: string, to: string) => (e: Record<string, unknown>) =>
    e['event'] === 'transition' && e['key'] === key && e['from'] === from && e['to'] === to;

  await waitFor('ready', (e) => e['event'] === 'ready', 10_000);
  await waitFor('alpha up', transition('alpha', 'unknown', 'up'), 3000);
  await waitFor('tunnel up', transition('tunnel', 'unknown', 'up'), 3000);
  t.ok(events.some((e) => e['event'] === 'notice' && e['key'] === 'tunnel' && e['message'] === ipipNote()), 'ipip: a notice, plain check only');
  t.same((await ourRules()).map((r) => r.sport), [DEFAULT_PORT_BASE], 'the monitor installed its rule');

  await vipOnBe(false);
  const downIn = await waitFor('alpha down', transition('alpha', 'up', 'down'), 5000);
  // fall (2) probes, each at most the timeout, plus up to two intervals (110 ms) between them
  t.ok(downIn <= 2 * 300 + 2 * 110 + 300, `down ${downIn} ms after the VIP went`);
  const down = events.find(transition('alpha', 'up', 'down'));
  t.match(down?.['detail'], /^datapath failed \(10\.201\.100\.1:80 via 10\.201\.0\.2\): timeout after 300 ms \(connecting\); plain check ok$/);
  t.equal(events.filter(transition('tunnel', 'up', 'down')).length, 0, 'the plain-only ipip target stayed up');

  await vipOnBe(true);
  const upIn = await waitFor('alpha up again', transition('alpha', 'down', 'up'), 5000);
  t.ok(upIn <= 2 * 300 + 2 * 110 + 300, `up ${upIn} ms after the VIP came back`);

  child.stdin.end();
  const code = await Promise.race([exited, sleep(10_000).then(() => 'hung')]);
  t.equal(code, 0, `exits 0 when stdin closes ${stderr}`);
  const stopped = events.find((e) => e['event'] === 'stopped') as { snapshot?: Record<string, { state: string; datapath: string; note?: string; history: unknown[] }> } | undefined;
  t.match(stopped?.snapshot?.['alpha'], { state: 'up', datapath: 'on' });
  t.equal(stopped?.snapshot?.['alpha']?.history.length, 3);
  t.match(stopped?.snapshot?.['tunnel'], { state: 'up', datapath: 'plain only', note: ipipNote() });
  t.same(await ourRules(), [], 'rules removed at stop');
  t.same(await ourRoutes(), [], 'routes removed at stop');
});
