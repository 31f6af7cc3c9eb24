// The data-path check for IPv6 l2dsr backends, in network namespaces made here (xh6-<random>-*):
//
//   lb  eth0 fd6b:1::1/64 ───── eth0 fd6b:1::2/64  be  (backend "alpha": VIP fd6b:100::1 on lo, servers)
//                                    eth1 fd6b:2::1/64 ───── eth0 fd6b:2::2/64  be2  (backend "beta": VIP on lo,
//                                                                                    default route via be)
//
// The same as datapath.test.ts does for IPv4, with `ip -6 rule` / `ip -6 route ... onlink`: probes
// run in lb under `ip netns exec` (dist/health/probe-once.js: `make build` first), and the rules
// and routes are also driven from here with DatapathRoutes({netns}). be2 exists for the guard test:
// with alpha's VIP gone and forwarding on, a probe that alpha forwarded would reach beta and pass.
import { CYCLE_PAUSE_MS, atMostOneLoneMiss } from './fixtures/lone-miss.js';
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DatapathRoutes, DEFAULT_PORT_BASE, DEFAULT_RULE_PRIORITY, DEFAULT_SLOTS, DEFAULT_TABLE_BASE } from '../../src/health/index.js';
import { exec, run, REPO_ROOT, waitVethsUp } from '../../src/lab/index.js';
import { selfSigned } from './fixtures/helpers.js';

const ID = randomBytes(3).toString('hex');
const LB = `xh6-${ID}-lb`;
const BE = `xh6-${ID}-be`;
const BE2 = `xh6-${ID}-be2`;
const NAMESPACES = [LB, BE, BE2];
const VIP = 'fd6b:100::1';
const LB_ADDR = 'fd6b:1::1';
const BE_ADDR = 'fd6b:1::2';
const BE_FWD = 'fd6b:2::1';
const BE2_ADDR = 'fd6b:2::2';
const PROBE = join(REPO_ROOT, 'dist/health/probe-once.js');
const SERVER = join(REPO_ROOT, 'test/health/fixtures/ns-server.mjs');

const svc = { name: 'web6', vip: VIP, port: 80, proto: 'tcp', mode: 'l2dsr' };
const alpha = { address: BE_ADDR };
const CHECKS = {
  tcp: { type: 'tcp', datapath: true, timeoutMs: 500 },
  http: { type: 'http', datapath: true, timeoutMs: 500, http: { bodyContains: 'alpha ready' } },
  https: { type: 'https', datapath: true, timeoutMs: 500, port: 443, http: { insecure: true, bodyContains: 'alpha ready' } },
  udp: { type: 'udp', datapath: true, timeoutMs: 500, port: 5353, udp: { payload: '7868362d70726f6265', expect: 'reply' } },
} as const;

interface Line {
  ok: boolean;
  ms: number;
  detail: string;
  plain: { ok: boolean; ms: number; detail: string };
  datapath?: { ok: boolean; ms: number; detail: string };
  slot?: Record<string, unknown>;
}

const children: ChildProcess[] = [];
const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces, policy routing)' : undefined;

function assertBuilt(): void {
  const src = join(REPO_ROOT, 'src/health');
  for (const f of readdirSync(src).filter((n) => n.endsWith('.ts'))) {
    const js = join(REPO_ROOT, 'dist/health', f.replace(/\.ts$/, '.js'));
    if (!existsSync(js) || statSync(js).mtimeMs < statSync(join(src, f)).mtimeMs) {
      throw new Error(`dist/health/${f.replace(/\.ts$/, '.js')} is missing or older than its source: run \`make build\` first`);
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

/** IPv6 rules in lb at our priority or into our table range, and IPv6 routes in our tables. */
async function ours(): Promise<{ rules: unknown[]; routes: unknown[] }> {
  const inRange = (tb: number) => tb >= DEFAULT_TABLE_BASE && tb < DEFAULT_TABLE_BASE + DEFAULT_SLOTS;
  const rules = (await ipJson<{ priority: number; table?: string }[]>(LB, '-6', 'rule', 'show')).filter(
    (r) => r.priority === DEFAULT_RULE_PRIORITY || inRange(Number(r.table)),
  );
  const routes = (await ipJson<{ table?: string }[]>(LB, '-6', 'route', 'show', 'table', 'all')).filter((r) => inRange(Number(r.table)));
  return { rules, routes };
}

async function vipOnBe(present: boolean): Promise<void> {
  const has = (await run(['ip', '-n', BE, '-6', '-o', 'addr', 'show', 'dev', 'lo'])).stdout.includes(`${VIP}/128`);
  if (has !== present) await ip(BE, '-6', 'addr', present ? 'add' : 'del', `${VIP}/128`, 'dev', 'lo');
}

async function startServer(ns: string, name: string, cert: string, key: string, udpAddrs: string[]): Promise<void> {
  const argv = ['netns', 'exec', ns, 'node', SERVER, '--name', name, '--host', '::', '--cert', cert, '--key', key, ...udpAddrs.flatMap((a) => ['--udp-addr', a])];
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

t.before(async () => {
  if (skip) return;
  assertBuilt();
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
  for (const ns of existsSync('/run/netns') ? readdirSync('/run/netns') : []) {
    if (/^xh6-[0-9a-f]{6}-(lb|be|be2)$/.test(ns)) await run(['ip', 'netns', 'del', ns], { allowFail: true });
  }
  for (const ns of NAMESPACES) await run(['ip', 'netns', 'add', ns]);
  await ip(LB, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', BE);
  await ip(BE, 'link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', BE2);
  for (const [ns, dev, addr] of [
    [LB, 'eth0', `${LB_ADDR}/64`],
    [BE, 'eth0', `${BE_ADDR}/64`],
    [BE, 'eth1', `${BE_FWD}/64`],
    [BE2, 'eth0', `${BE2_ADDR}/64`],
  ] as const) {
    // nodad: the addresses are usable at once instead of after a second of duplicate detection
    await ip(ns, '-6', 'addr', 'add', addr, 'dev', dev, 'nodad');
    await ip(ns, 'link', 'set', dev, 'up');
  }
  for (const ns of NAMESPACES) await ip(ns, 'link', 'set', 'lo', 'up');
  await Promise.all(NAMESPACES.map((ns) => waitVethsUp(ns)));
  await exec(BE, ['sysctl', '-q', '-w', 'net.ipv6.conf.all.forwarding=0']);
  await ip(BE, '-6', 'route', 'add', `${VIP}/128`, 'via', BE2_ADDR);
  await ip(BE2, '-6', 'route', 'add', 'default', 'via', BE_FWD);
  await ip(BE, '-6', 'addr', 'add', `${VIP}/128`, 'dev', 'lo');
  await ip(BE2, '-6', 'addr', 'add', `${VIP}/128`, 'dev', 'lo');
  const pems = selfSigned(t.testdir());
  await startServer(BE, 'alpha', pems.certFile, pems.keyFile, [BE_ADDR, VIP]);
  await startServer(BE2, 'beta', pems.certFile, pems.keyFile, [BE2_ADDR, VIP]);
});

t.test('IPv6 VIP on the backend: every check type passes through the data path, 5 times from one port', { skip }, async (t) => {
  for (const [name, check] of Object.entries(CHECKS)) {
    const r = await probeOnce({ service: svc, backend: alpha, check, repeat: 5, pauseMs: CYCLE_PAUSE_MS });
    const details = r.lines.map((l) => l.detail).join(' / ');
    t.equal(r.lines.length, 5, `${name}: 5 cycles`);
    t.ok(r.lines.every((l) => l.plain.ok), `${name}: every plain check passed: ${details}`);
    t.ok(atMostOneLoneMiss(r.lines.map((l) => l.datapath?.ok === true)), `${name}: data-path probes pass (at most one lone miss, see fixtures/lone-miss.ts): ${details}`);
    t.match(r.lines[0]?.slot, { vip: VIP, backend: BE_ADDR, proto: name === 'udp' ? 'udp' : 'tcp', localPort: DEFAULT_PORT_BASE, table: DEFAULT_TABLE_BASE, dev: 'eth0', localAddress: LB_ADDR });
  }
  t.same(await ours(), { rules: [], routes: [] }, 'no IPv6 rule or route left after the runs');
});

t.test('IPv6 VIP missing on the backend: the data-path check fails while the plain check passes; back when restored', { skip }, async (t) => {
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
    t.equal(l?.plain.ok, true, `${name}: plain check still passes (${l?.plain.detail})`);
    t.equal(l?.detail, `datapath failed (${VIP}:${want[name]?.port} via ${BE_ADDR}): ${want[name]?.dp}; plain check ok`);
  }
  await vipOnBe(true);
  for (const [name, check] of Object.entries(CHECKS)) {
    const r = await probeOnce({ service: svc, backend: alpha, check });
    t.equal(r.lines[0]?.ok, true, `${name} passes again: ${r.lines[0]?.detail}`);
  }
});

t.test('DatapathRoutes with IPv6: ip -6 rule and onlink route, leftovers removed, both families side by side, remove() complete', { skip }, async (t) => {
  const routes = new DatapathRoutes({ netns: LB });
  t.teardown(() => routes.remove());
  const leftover = String(DEFAULT_TABLE_BASE + 7);
  await ip(LB, '-6', 'route', 'add', `${VIP}/128`, 'via', BE_ADDR, 'dev', 'eth0', 'table', leftover);
  await ip(LB, '-6', 'rule', 'add', 'priority', String(DEFAULT_RULE_PRIORITY), 'to', `${VIP}/128`, 'ipproto', 'tcp', 'sport', '61007', 'table', leftover);
  await ip(LB, '-4', 'addr', 'add', '10.202.0.1/24', 'dev', 'eth0');
  t.teardown(() => ip(LB, '-4', 'addr', 'del', '10.202.0.1/24', 'dev', 'eth0').then(() => {}));

  const pair6 = { vip: VIP, backend: BE_ADDR, proto: 'tcp' as const };
  const pair4 = { vip: '10.202.100.1', backend: '10.202.0.2', proto: 'udp' as const };
  const e = await routes.ensure([pair6, pair4]);
  t.match(e.get(`${VIP}|${BE_ADDR}|tcp`), { ok: true, slot: { index: 0, localPort: DEFAULT_PORT_BASE, table: DEFAULT_TABLE_BASE, dev: 'eth0', localAddress: LB_ADDR } });
  t.match(e.get('10.202.100.1|10.202.0.2|udp'), { ok: true, slot: { index: 1, localAddress: '10.202.0.1' } }, 'slots are shared by both families');
  t.same(await routes.installedRules(), [
    { family: 4, priority: DEFAULT_RULE_PRIORITY, dst: '10.202.100.1', ipproto: 'udp', sport: DEFAULT_PORT_BASE + 1, table: DEFAULT_TABLE_BASE + 1 },
    { family: 6, priority: DEFAULT_RULE_PRIORITY, dst: VIP, ipproto: 'tcp', sport: DEFAULT_PORT_BASE, table: DEFAULT_TABLE_BASE },
  ], 'exactly our rules, the leftover gone');
  t.same(await routes.tableRoutes(DEFAULT_TABLE_BASE, 6), [
    { dst: VIP, gateway: BE_ADDR, dev: 'eth0', metric: 1024, flags: ['onlink'], metrics: [{ hoplimit: 1 }], pref: 'medium' },
    { type: 'unreachable', dst: 'default', dev: 'lo', metric: 1024, flags: [], pref: 'medium' },
  ]);
  t.same(await routes.tableRoutes(DEFAULT_TABLE_BASE + 7, 6), [], 'the leftover table is empty');
  t.same(await routes.tableRoutes(DEFAULT_TABLE_BASE, 4), [], 'no IPv4 route in the IPv6 slot');

  const before = await routes.installedRules();
  await routes.ensure([pair6, pair4]);
  t.same(await routes.installedRules(), before, 'ensure again: nothing changes');
  await ip(LB, '-6', 'rule', 'del', 'priority', String(DEFAULT_RULE_PRIORITY), 'table', String(DEFAULT_TABLE_BASE));
  await routes.ensure([pair6, pair4]);
  t.same(await routes.installedRules(), before, 'an IPv6 rule someone deleted comes back');

  await routes.ensure([pair4]);
  t.same((await routes.installedRules()).map((r) => r.family), [4], 'the dropped IPv6 pair lost its rule');
  t.same(await routes.tableRoutes(DEFAULT_TABLE_BASE, 6), [], 'and its table');

  const far = await routes.ensure([pair4, { vip: VIP, backend: 'fd6b:9::9', proto: 'tcp' }]);
  t.match(far.get(`${VIP}|fd6b:9::9|tcp`), { ok: false, kind: 'unreachable', reason: 'no route to backend fd6b:9::9: Network is unreachable' });

  await routes.remove();
  t.same(await ours(), { rules: [], routes: [] }, 'remove(): none of ours left');
  t.same(await routes.installedRules(), []);
});

t.test('IPv6: what hoplimit 1 is for (alpha without the VIP forwards to beta; the check must still fail)', { skip }, async (t) => {
  const routes = new DatapathRoutes({ netns: LB });
  t.teardown(async () => {
    await routes.remove();
    await vipOnBe(true);
    await exec(BE, ['sysctl', '-q', '-w', 'net.ipv6.conf.all.forwarding=0']);
  });
  const entry = (await routes.ensure([{ vip: VIP, backend: BE_ADDR, proto: 'tcp' }])).get(`${VIP}|${BE_ADDR}|tcp`);
  if (!entry?.ok) throw new Error(`no slot: ${JSON.stringify(entry)}`);
  const slot = entry.slot;
  const check = { type: 'http', datapath: true, timeoutMs: 500, http: { bodyContains: 'beta ready' } };
  const dp = async (): Promise<{ ok?: boolean; detail?: string }> => {
    const r = await probeOnce({ service: svc, backend: alpha, check, slot });
    return { ok: r.lines[0]?.datapath?.ok, detail: r.lines[0]?.datapath?.detail };
  };
  await vipOnBe(false);
  await exec(BE, ['sysctl', '-q', '-w', 'net.ipv6.conf.all.forwarding=1']);
  const held = await dp();
  t.equal(held.ok, false, `with hoplimit 1: alpha cannot forward it, the check fails (${held.detail})`);
  await ip(LB, '-6', 'route', 'replace', `${VIP}/128`, 'via', BE_ADDR, 'dev', 'eth0', 'onlink', 'table', String(slot.table));
  const wrong = await dp();
  t.equal(wrong.ok, true, `without it, alpha forwards to beta and the check passes wrongly (${wrong.detail})`);
});
