// scripts/server-prep.sh, run for real inside throw-away network namespaces.
// Every command runs under `ip netns exec` or `ip -n` in a namespace xsp-<random> or xsp6-<random>
// (the IPv6 tests) made here: nothing touches the root namespace's interfaces or sysctls.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SCRIPT = join(REPO, 'scripts', 'server-prep.sh');

/** The decap program, or the pass-through stand-in until bpf/decap.bpf.c is built. */
function decapObject(): string | undefined {
  for (const name of ['decap.bpf.o', 'xdp_pass.bpf.o']) {
    const path = join(REPO, 'build', 'bpf', name);
    if (existsSync(path)) return path;
  }
  return undefined;
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command on the host; throws unless it exits 0. */
function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
  }
  return r.stdout;
}

/** Whether this process may create namespaces (root with iproute2), else why not. */
function cannotRun(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)';
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  if (r.status !== 0) return 'needs iproute2 with netns support';
  return undefined;
}

interface Teardownable {
  teardown(fn: () => void | Promise<void>): void;
}

/**
 * A fresh namespace `xsp-<random>` with lo up, and a veth pair: veth0 up (the "real" interface),
 * veth1 down (so the script leaves it alone). Deleted in t.teardown, also when the test fails.
 */
class Netns {
  readonly name: string;

  constructor(t: Teardownable, prefix = 'xsp-') {
    this.name = `${prefix}${randomBytes(4).toString('hex')}`;
    sh('ip', ['netns', 'add', this.name]);
    t.teardown(() => {
      spawnSync('ip', ['netns', 'del', this.name]);
    });
    sh('ip', ['-n', this.name, 'link', 'set', 'lo', 'up']);
    sh('ip', ['-n', this.name, 'link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'veth1']);
    sh('ip', ['-n', this.name, 'link', 'set', 'veth0', 'up']);
  }

  /** A command in the namespace; throws unless it exits 0. */
  exec(cmd: string, ...args: string[]): string {
    return sh('ip', ['netns', 'exec', this.name, cmd, ...args]);
  }

  /** The script in the namespace (by path, or on stdin like the daemon sends it over SSH). */
  prep(args: string[], opts: { env?: NodeJS.ProcessEnv; stdin?: boolean; script?: string } = {}): Run {
    const script = opts.script ?? SCRIPT;
    const argv = opts.stdin
      ? ['netns', 'exec', this.name, 'bash', '-s', '--', ...args]
      : ['netns', 'exec', this.name, 'bash', script, ...args];
    const r = spawnSync('ip', argv, {
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, ...opts.env },
      ...(opts.stdin ? { input: sh('cat', [script]) } : {}),
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  sysctl(dev: string, knob: string): string {
    return this.exec('cat', `/proc/sys/net/ipv4/conf/${dev}/${knob}`).trim();
  }

  setSysctl(dev: string, knob: string, value: string): void {
    this.exec('sh', '-c', `echo "$1" > "/proc/sys/net/ipv4/conf/$2/$3"`, 'sh', value, dev, knob);
  }

  /** Every IPv4 conf knob that server-prep may touch, for every interface, plus addresses and links. */
  snapshot(): string {
    const sys = this.exec(
      'sh',
      '-c',
      'for f in /proc/sys/net/ipv4/conf/*/arp_ignore /proc/sys/net/ipv4/conf/*/arp_announce ' +
        '/proc/sys/net/ipv4/conf/*/rp_filter; do echo "$f=$(cat "$f")"; done',
    );
    const addrs = this.exec('ip', '-o', 'addr', 'show');
    const links = this.exec('ip', '-d', '-o', 'link', 'show');
    return `${sys}\n${addrs}\n${links}`;
  }

  loAddrs(): string {
    return this.exec('ip', '-o', 'addr', 'show', 'dev', 'lo');
  }

  xdp(dev: string): string {
    return this.exec('ip', '-d', 'link', 'show', 'dev', dev);
  }
}


/** The kernel's fallback tunnel devices in a namespace (none on the project's machine: no modules). */
function kernelTunnels(ns: Netns): string[] {
  return ['tunl0', 'ip6tnl0'].filter((d) => spawnSync('ip', ['-n', ns.name, 'link', 'show', 'dev', d]).status === 0);
}

const cannot = cannotRun();
const opts = cannot ? { skip: cannot } : {};

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

interface CheckJson {
  ok: boolean;
  checks: { name: string; ok: boolean; detail: string }[];
}

/** Output lines that report a change (not "unchanged: ...", not a note). */
function changeLines(stdout: string): string[] {
  return stdout
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('unchanged: ') && !l.startsWith('note: '));
}

t.test('add, check, add again, remove restores the exact previous state', opts, async (t) => {
  const ns = new Netns(t);
  const state = t.testdir();
  // Non-default values that add must change (and remove must bring back), and one it accepts as is.
  ns.setSysctl('all', 'arp_ignore', '3');
  ns.setSysctl('veth0', 'arp_announce', '1');
  ns.setSysctl('veth0', 'arp_ignore', '2');
  const before = ns.snapshot();
  const args = ['--vip', '10.0.0.10', '--mode', 'l2dsr', '--state-dir', state];

  const add = ns.prep(['add', ...args]);
  t.equal(add.status, 0, add.stderr);
  t.match(add.stdout, /^added 10\.0\.0\.10\/32 on lo$/m);
  t.match(add.stdout, /^arp_ignore all: 3 -> 1$/m);
  t.match(add.stdout, /^arp_announce all: 0 -> 2$/m);
  t.match(add.stdout, /^arp_announce veth0: 1 -> 2$/m);
  t.match(add.stdout, /^unchanged: arp_ignore veth0: 2$/m, 'arp_ignore=2 is stricter than 1 and fine');
  t.notMatch(add.stdout, /veth1/, 'an interface that is down is not a real interface');
  t.match(ns.loAddrs(), /inet 10\.0\.0\.10\/32 /);
  t.equal(ns.sysctl('all', 'arp_ignore'), '1');
  t.equal(ns.sysctl('veth0', 'arp_announce'), '2');
  t.equal(ns.sysctl('all', 'rp_filter'), '0', 'l2dsr relaxes no rp_filter');
  t.equal(readdirSync(state).filter((f) => f.endsWith('.state')).length, 1, 'one state file');

  const check = ns.prep(['check', ...args]);
  t.equal(check.status, 0, check.stdout);
  t.match(check.stdout, /^ok\s+vip 10\.0\.0\.10\/32 on lo\s+present$/m);
  t.match(check.stdout, /^all \d+ checks ok$/m);

  const again = ns.prep(['add', ...args]);
  t.equal(again.status, 0, again.stderr);
  t.same(changeLines(again.stdout), ['nothing to change: this host was already prepared for these VIPs']);
  t.match(again.stdout, /^unchanged: 10\.0\.0\.10\/32 on lo$/m);

  const againJson = ns.prep(['add', ...args, '--json']);
  t.equal(againJson.status, 0);
  const j = JSON.parse(againJson.stdout) as { changed: boolean; changes: string[] };
  t.equal(j.changed, false);
  t.same(j.changes, []);

  const remove = ns.prep(['remove', '--vip', '10.0.0.10', '--state-dir', state]);
  t.equal(remove.status, 0, remove.stderr);
  t.match(remove.stdout, /^removed 10\.0\.0\.10\/32 from lo$/m);
  t.match(remove.stdout, /^arp_ignore all: 1 -> 3 \(restored\)$/m);
  t.match(remove.stdout, /^arp_announce veth0: 2 -> 1 \(restored\)$/m);
  t.equal(ns.snapshot(), before, 'sysctls, addresses and links are exactly as before add');
  t.equal(ns.sysctl('veth0', 'arp_ignore'), '2');
  t.same(readdirSync(state), [], 'state file and lock are gone');

  const removeAgain = ns.prep(['remove', '--vip', '10.0.0.10', '--state-dir', state]);
  t.equal(removeAgain.status, 0);
  t.match(removeAgain.stdout, /nothing to undo/);
  t.equal(ns.snapshot(), before);
});

t.test('a VIP that was on lo before add stays there after remove', opts, async (t) => {
  const ns = new Netns(t);
  const state = t.testdir();
  ns.exec('ip', 'addr', 'add', '10.0.0.20/32', 'dev', 'lo');
  const args = ['--vip', '10.0.0.20', '--vip', '10.0.0.21', '--mode', 'l2dsr', '--state-dir', state];
  const add = ns.prep(['add', ...args]);
  t.equal(add.status, 0, add.stderr);
  t.match(add.stdout, /^unchanged: 10\.0\.0\.20\/32 on lo \(it was there before add; remove will leave it\)$/m);
  t.match(add.stdout, /^added 10\.0\.0\.21\/32 on lo$/m);

  const remove = ns.prep(['remove', ...args]);
  t.equal(remove.status, 0, remove.stderr);
  t.match(remove.stdout, /^unchanged: 10\.0\.0\.20\/32 on lo \(it was there before add, left there\)$/m);
  t.match(remove.stdout, /^removed 10\.0\.0\.21\/32 from lo$/m);
  t.match(ns.loAddrs(), /inet 10\.0\.0\.20\/32 /);
  t.notMatch(ns.loAddrs(), /10\.0\.0\.21/);
});

t.test('remove of one VIP keeps what the others still need', opts, async (t) => {
  const ns = new Netns(t);
  const state = t.testdir();
  t.equal(ns.prep(['add', '--vip', '10.0.0.30', '--mode', 'l2dsr', '--state-dir', state]).status, 0);
  t.equal(ns.prep(['add', '--vip', '10.0.0.31', '--mode', 'l2dsr', '--state-dir', state]).status, 0);
  const r1 = ns.prep(['remove', '--vip', '10.0.0.30', '--state-dir', state]);
  t.equal(r1.status, 0, r1.stderr);
  t.match(r1.stdout, /kept the ARP sysctls: still needed by 10\.0\.0\.31\/32/);
  t.equal(ns.sysctl('all', 'arp_ignore'), '1');
  const r2 = ns.prep(['remove', '--vip', '10.0.0.31', '--state-dir', state]);
  t.equal(r2.status, 0, r2.stderr);
  t.equal(ns.sysctl('all', 'arp_ignore'), '0');
  t.equal(ns.sysctl('veth0', 'arp_announce'), '0');
});

t.test('check reports what is missing, as text and as JSON', opts, async (t) => {
  const ns = new Netns(t);
  const state = t.testdir();
  const args = ['--vip', '10.0.0.10', '--mode', 'l2dsr', '--state-dir', state];

  const fresh = ns.prep(['check', ...args, '--json']);
  t.equal(fresh.status, 1);
  const before = JSON.parse(fresh.stdout) as CheckJson;
  t.equal(before.ok, false);
  t.ok(before.checks.every((c) => typeof c.name === 'string' && typeof c.detail === 'string'));

  t.equal(ns.prep(['add', ...args]).status, 0);
  const okJson = ns.prep(['check', ...args, '--json']);
  t.equal(okJson.status, 0);
  const ok = JSON.parse(okJson.stdout) as CheckJson;
  t.equal(ok.ok, true);
  t.same(
    ok.checks.map((c) => c.name),
    [
      'lo up',
      'vip 10.0.0.10/32 on lo',
      'arp_ignore all',
      'arp_announce all',
      'arp_ignore veth0',
      'arp_announce veth0',
    ],
  );

  ns.exec('ip', 'addr', 'del', '10.0.0.10/32', 'dev', 'lo');
  const noVip = ns.prep(['check', ...args]);
  t.equal(noVip.status, 1);
  t.match(noVip.stdout, /^missing\s+vip 10\.0\.0\.10\/32 on lo\s+not on lo$/m);
  t.match(noVip.stdout, /^1 of 6 checks missing$/m);

  ns.setSysctl('all', 'arp_ignore', '0');
  const noArp = ns.prep(['check', ...args, '--json']);
  t.equal(noArp.status, 1);
  const bad = JSON.parse(noArp.stdout) as CheckJson;
  t.equal(bad.ok, false);
  t.same(
    bad.checks.filter((c) => !c.ok),
    [
      { name: 'vip 10.0.0.10/32 on lo', ok: false, detail: 'not on lo' },
      { name: 'arp_ignore all', ok: false, detail: 'is 0, want 1 (or 2)' },
    ],
  );

  // add puts back what is missing (and records the VIP as its own again).
  const fix = ns.prep(['add', ...args]);
  t.equal(fix.status, 0);
  t.same(changeLines(fix.stdout), ['added 10.0.0.10/32 on lo', 'arp_ignore all: 0 -> 1']);
  t.equal(ns.prep(['check', ...args]).status, 0);
});

t.test('bad input: exit 2, a clear message, nothing changed', opts, async (t) => {
  const ns = new Netns(t);
  const state = t.testdir();
  const cases: [string, string[], RegExp][] = [
    ['no action', [], /missing action/],
    ['unknown action', ['frobnicate', '--vip', '10.0.0.1', '--mode', 'l2dsr'], /unknown action 'frobnicate'/],
    ['not an address', ['add', '--vip', '10.0.0.256', '--mode', 'l2dsr'], /--vip '10\.0\.0\.256': not an IPv4 or IPv6 address/],
    ['a name', ['add', '--vip', 'example.com', '--mode', 'l2dsr'], /not an IPv4 or IPv6 address/],
    ['leading zero', ['add', '--vip', '10.0.0.010', '--mode', 'l2dsr'], /not an IPv4 or IPv6 address/],
    ['bad IPv6', ['add', '--vip', '2001:db8::1::2', '--mode', 'l2dsr'], /not an IPv4 or IPv6 address/],
    ['a prefix', ['add', '--vip', '10.0.0.0/24', '--mode', 'l2dsr'], /must be \/32/],
    ['loopback', ['add', '--vip', '127.0.0.2', '--mode', 'l2dsr'], /not usable as a VIP/],
    ['bad mode', ['add', '--vip', '10.0.0.1', '--mode', 'nat'], /--mode 'nat': unknown mode/],
    ['no mode', ['add', '--vip', '10.0.0.1'], /--mode l2dsr\|ipip is required/],
    ['no vip', ['add', '--mode', 'l2dsr'], /at least one --vip ADDR is required/],
    ['vip without value', ['add', '--mode', 'l2dsr', '--vip'], /--vip needs a value/],
    ['vip followed by a flag', ['add', '--vip', '--mode', 'l2dsr'], /--vip needs a value/],
    ['unknown flag', ['add', '--vip', '10.0.0.1', '--mode', 'l2dsr', '--force'], /unknown option '--force'/],
    ['one bad among good', ['add', '--vip', '10.0.0.1', '--vip', '10.0.0.x', '--mode', 'l2dsr'], /'10\.0\.0\.x'/],
    ['an IPv6 prefix', ['add', '--vip', '2001:db8::/64', '--mode', 'l2dsr'], /must be \/128/],
    ['IPv6 link-local', ['add', '--vip', 'fe80::1', '--mode', 'ipip'], /not usable as a VIP/],
    ['IPv4-mapped', ['add', '--vip', '::ffff:10.0.0.1', '--mode', 'l2dsr'], /IPv4-mapped/],
    ['no such interface', ['add', '--vip', '10.0.0.1', '--mode', 'l2dsr', '--dev', 'nosuch0'], /--dev 'nosuch0': no such interface/],
    ['persist on remove', ['remove', '--vip', '10.0.0.1', '--persist'], /--persist is only for add/],
    ['check without vip', ['check', '--mode', 'l2dsr'], /at least one --vip/],
  ];
  const before = ns.snapshot();
  for (const [what, args, message] of cases) {
    // --state-dir right after the action, so a missing last value stays missing.
    const r = ns.prep(args.length ? [args[0] as string, '--state-dir', state, ...args.slice(1)] : []);
    t.equal(r.status, 2, `${what}: exit 2`);
    t.match(r.stderr, message, `${what}: message`);
    t.match(r.stderr, /nothing was changed/, `${what}: says nothing changed`);
    t.equal(r.stdout, '', `${what}: no output on stdout`);
  }
  t.equal(ns.snapshot(), before, 'sysctls, addresses and links unchanged');
  t.same(readdirSync(state), [], 'no state written');
});

t.test('IPv6 VIPs: /128 on lo with nodad, ARP left alone, check reports the ND state', opts, async (t) => {
  const ns = new Netns(t, 'xsp6-');
  const state = t.testdir();
  const before = ns.snapshot();
  const add = ns.prep(['add', '--vip', '2001:DB8:0:0::0010', '--vip', 'fd00:200::1', '--mode', 'l2dsr', '--state-dir', state]);
  t.equal(add.status, 0, add.stderr);
  t.same(changeLines(add.stdout), ['added 2001:db8::10/128 on lo', 'added fd00:200::1/128 on lo'], 'written canonically; nothing else changes');
  t.notMatch(add.stdout, /arp_/, 'IPv6 only: no ARP sysctl is touched');
  const lo = JSON.parse(ns.exec('ip', '-j', '-6', 'addr', 'show', 'dev', 'lo')) as { addr_info: { local: string; prefixlen: number; nodad?: boolean; tentative?: boolean }[] }[];
  const vip = lo[0]?.addr_info.find((a) => a.local === '2001:db8::10');
  t.same(vip && { prefixlen: vip.prefixlen, nodad: vip.nodad, tentative: vip.tentative }, { prefixlen: 128, nodad: true, tentative: undefined }, '/128, nodad, never tentative');

  const args = ['--vip', '2001:db8::10', '--mode', 'l2dsr', '--state-dir', state];
  const check = ns.prep(['check', ...args, '--json']);
  t.equal(check.status, 0, check.stdout);
  t.same((JSON.parse(check.stdout) as CheckJson).checks, [
    { name: 'lo up', ok: true, detail: 'up' },
    { name: 'vip 2001:db8::10/128 on lo', ok: true, detail: 'present' },
    { name: 'vip 2001:db8::10/128 not ND-proxied', ok: true, detail: 'no proxy entry' },
  ]);

  // The one way this host would answer neighbour solicitations for the VIP: a proxy entry.
  ns.exec('ip', '-6', 'neigh', 'add', 'proxy', '2001:db8::10', 'dev', 'veth0');
  const proxied = ns.prep(['check', ...args]);
  t.equal(proxied.status, 1);
  t.match(proxied.stdout, /^missing\s+vip 2001:db8::10\/128 not ND-proxied\s+proxy entry on veth0: this host answers neighbour solicitations for it$/m);
  ns.exec('ip', '-6', 'neigh', 'del', 'proxy', '2001:db8::10', 'dev', 'veth0');
  // Also on a real interface: it would answer ND there.
  ns.exec('ip', '-6', 'addr', 'add', '2001:db8::10/128', 'dev', 'veth0', 'nodad');
  const elsewhere = ns.prep(['check', ...args]);
  t.equal(elsewhere.status, 1);
  t.match(elsewhere.stdout, /^missing\s+vip 2001:db8::10\/128 only on lo\s+also on veth0 \(that interface would answer ARP\/ND for it\)$/m);
  ns.exec('ip', '-6', 'addr', 'del', '2001:db8::10/128', 'dev', 'veth0');

  // An IPv4 VIP next to them: ARP now; removing it restores ARP although the IPv6 VIPs stay.
  const v4 = ns.prep(['add', '--vip', '10.0.0.60', '--mode', 'l2dsr', '--state-dir', state]);
  t.equal(v4.status, 0, v4.stderr);
  t.match(v4.stdout, /^arp_ignore all: 0 -> 1$/m);
  const rm4 = ns.prep(['remove', '--vip', '10.0.0.60', '--state-dir', state]);
  t.equal(rm4.status, 0, rm4.stderr);
  t.match(rm4.stdout, /^arp_ignore all: 1 -> 0 \(restored\)$/m, 'no IPv4 VIP left: ARP restored');
  t.match(ns.loAddrs(), /inet6 2001:db8::10\/128 /, 'the IPv6 VIPs stay');

  const remove = ns.prep(['remove', '--vip', '2001:db8:0::10', '--vip', 'fd00:200::1', '--state-dir', state]);
  t.equal(remove.status, 0, remove.stderr);
  t.same(changeLines(remove.stdout), ['removed 2001:db8::10/128 from lo', 'removed fd00:200::1/128 from lo']);
  t.equal(ns.snapshot(), before, 'addresses, sysctls and links exactly as before');
  t.same(readdirSync(state), [], 'state file gone');
});

/**
 * Two namespaces on one veth: `be` (the backend, VIP on lo by server-prep) and `peer` (any other
 * host on the segment). The VIP and be's own address share their low 24 bits, so they share one
 * solicited-node group: be's eth0 has joined it and takes a solicitation for the VIP in, and it is
 * ndisc_recv_ns()'s strict lookup, not the multicast filter, that must keep quiet.
 */
t.test('neighbour discovery neither answers for nor announces an IPv6 VIP', opts, async (t) => {
  const be = new Netns(t, 'xsp6-');
  const peer = new Netns(t, 'xsp6-');
  const state = t.testdir();
  const VIP = '2001:db8:100::10';
  const BE = '2001:db8:1::10';
  const OTHER = '2001:db8:2::10'; // the control: on be's eth0, same solicited-node group as the VIP
  const PEER = '2001:db8:1::2';
  for (const n of [be, peer]) n.exec('sysctl', '-q', '-w', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0');
  sh('ip', ['-n', be.name, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peer.name]);
  be.exec('ip', '-6', 'addr', 'add', `${BE}/64`, 'dev', 'eth0', 'nodad');
  be.exec('ip', '-6', 'addr', 'add', `${OTHER}/128`, 'dev', 'eth0', 'nodad');
  peer.exec('ip', '-6', 'addr', 'add', `${PEER}/64`, 'dev', 'eth0', 'nodad');
  for (const n of [be, peer]) n.exec('ip', 'link', 'set', 'eth0', 'up');
  const add = be.prep(['add', '--vip', VIP, '--mode', 'l2dsr', '--dev', 'eth0', '--state-dir', state]);
  t.equal(add.status, 0, add.stderr);
  const beMac = (JSON.parse(be.exec('ip', '-j', 'link', 'show', 'dev', 'eth0')) as { address: string }[])[0]?.address ?? '';
  const nd = (): { ns: number; na: number } => {
    const out = be.exec('nstat', '-asz', 'Icmp6InNeighborSolicits', 'Icmp6OutNeighborAdvertisements');
    const get = (k: string): number => Number(new RegExp(`^${k}\\s+(\\d+)`, 'm').exec(out)?.[1] ?? 'NaN');
    return { ns: get('Icmp6InNeighborSolicits'), na: get('Icmp6OutNeighborAdvertisements') };
  };
  const neigh = (addr: string): string => peer.exec('ip', '-6', 'neigh', 'show', addr, 'dev', 'eth0').trim();
  const ping = (n: Netns, ...args: string[]): number | null =>
    spawnSync('ip', ['netns', 'exec', n.name, 'ping', '-6', '-n', '-q', '-c', '1', '-W', '3', ...args], { timeout: 10_000 }).status;

  // Control: the same kind of solicitation for an address on be's eth0 is answered.
  peer.exec('ip', '-6', 'route', 'add', `${OTHER}/128`, 'dev', 'eth0');
  const c0 = nd();
  t.equal(ping(peer, OTHER), 0, 'control: an address on the interface answers');
  const c1 = nd();
  t.ok(c1.na > c0.na, `control: be sent a neighbour advertisement (${c1.na - c0.na})`);
  t.match(neigh(OTHER), new RegExp(`lladdr ${beMac}`), 'control: the peer learned be\'s MAC');

  // The VIP, on-link from the peer's point of view: solicitations arrive, nothing answers them.
  peer.exec('ip', '-6', 'route', 'add', `${VIP}/128`, 'dev', 'eth0');
  const v0 = nd();
  t.not(ping(peer, VIP), 0, 'the VIP does not answer the peer (no advertisement, so no echo)');
  const v1 = nd();
  t.ok(v1.ns > v0.ns, `be received the solicitations for the VIP (${v1.ns - v0.ns})`);
  t.equal(v1.na - v0.na, 0, 'be sent no neighbour advertisement');
  t.notMatch(neigh(VIP), /lladdr/, `the peer has no MAC for the VIP (${neigh(VIP)})`);

  // be answers from the VIP (as a DSR backend does): its solicitation for the peer must not carry
  // the VIP as source, or the peer would learn the VIP at be's MAC.
  peer.exec('ip', '-6', 'neigh', 'flush', 'dev', 'eth0');
  be.exec('ip', '-6', 'neigh', 'flush', 'dev', 'eth0');
  peer.exec('ip', '-6', 'route', 'replace', `${VIP}/128`, 'via', BE, 'dev', 'eth0');
  t.equal(ping(be, '-I', VIP, PEER), 0, 'be pings the peer from the VIP and gets the reply');
  const learned = peer.exec('ip', '-6', 'neigh', 'show', 'dev', 'eth0');
  t.notMatch(learned, new RegExp(`^${VIP} `, 'm'), 'the peer never learned the VIP as a neighbour');
  t.match(learned, new RegExp(`lladdr ${beMac}`), `it learned be's own address instead:\n${learned}`);

  const rm = be.prep(['remove', '--vip', VIP, '--state-dir', state]);
  t.equal(rm.status, 0, rm.stderr);
});

t.test('ipip with IPv6 (6in6) and IPv4 (4in6) VIPs, no tunnel driver: the XDP decap program', opts, async (t) => {
  const obj = decapObject();
  if (!obj) {
    t.plan(0, 'no build/bpf/decap.bpf.o or xdp_pass.bpf.o: run make bpf');
    return;
  }
  const ns = new Netns(t, 'xsp6-');
  if (kernelTunnels(ns).length > 0) {
    t.plan(0, `this kernel has ${kernelTunnels(ns).join(' and ')}: the fallback is not used`);
    return;
  }
  const state = t.testdir();
  const before = ns.snapshot();
  const args = ['--vip', '2001:db8::40', '--vip', '10.0.0.44', '--mode', 'ipip', '--state-dir', state, '--decap-obj', obj];
  const add = ns.prep(['add', ...args]);
  t.equal(add.status, 0, add.stderr);
  t.match(add.stdout, /^added 2001:db8::40\/128 on lo$/m);
  t.match(add.stdout, /^attached XDP decap .+ to veth0 \(prog id \d+, xdp\)$/m);
  t.equal(ns.sysctl('all', 'rp_filter'), '0', 'decap before the stack: no rp_filter change');

  const check = ns.prep(['check', ...args, '--json']);
  t.equal(check.status, 0, check.stdout);
  t.same(
    (JSON.parse(check.stdout) as CheckJson).checks.map((c) => c.name),
    [
      'lo up',
      'vip 2001:db8::40/128 on lo',
      'vip 2001:db8::40/128 not ND-proxied',
      'vip 10.0.0.44/32 on lo',
      'arp_ignore all',
      'arp_announce all',
      'arp_ignore veth0',
      'arp_announce veth0',
      'xdp decap on veth0',
    ],
  );

  const remove = ns.prep(['remove', '--vip', '2001:db8::40', '--vip', '10.0.0.44', '--state-dir', state]);
  t.equal(remove.status, 0, remove.stderr);
  t.match(remove.stdout, /^detached XDP decap from veth0 \(prog id \d+\)$/m);
  t.equal(ns.snapshot(), before);
});

t.test('ipip without a kernel ipip driver: the XDP decap program is attached', opts, async (t) => {
  const obj = decapObject();
  if (!obj) {
    t.plan(0, 'no build/bpf/decap.bpf.o or xdp_pass.bpf.o: run make bpf');
    return;
  }
  const ns = new Netns(t);
  if (kernelTunnels(ns).length > 0) {
    t.plan(0, `this kernel has ${kernelTunnels(ns).join(' and ')}: the fallback is not used`);
    return;
  }
  const state = t.testdir();
  const before = ns.snapshot();
  const args = ['--vip', '10.0.0.40', '--mode', 'ipip', '--state-dir', state, '--decap-obj', obj];

  const add = ns.prep(['add', ...args]);
  t.equal(add.status, 0, add.stderr);
  t.match(add.stdout, /^attached XDP decap .+ to veth0 \(prog id \d+, xdp\)$/m);
  t.match(ns.xdp('veth0'), /prog\/xdp id \d+/);
  t.notMatch(ns.xdp('veth1'), /prog\/xdp/, 'only interfaces that are up');
  t.equal(ns.sysctl('all', 'rp_filter'), '0', 'decap before the stack: no rp_filter change');

  const check = ns.prep(['check', ...args]);
  t.equal(check.status, 0, check.stdout);
  t.match(check.stdout, /^ok\s+xdp decap on veth0\s+prog id \d+ .*attached by add$/m);
  if (obj.endsWith('/decap.bpf.o')) {
    t.match(ns.xdp('veth0'), /prog\/xdp id \d+ name xdp_decap /, 'the real decap program');
    // Without add's record, check recognises the program by its name.
    const bare = ns.prep(['check', '--vip', '10.0.0.40', '--mode', 'ipip', '--state-dir', join(state, 'none')]);
    t.equal(bare.status, 0, bare.stdout);
  }

  const again = ns.prep(['add', ...args]);
  t.equal(again.status, 0);
  t.match(again.stdout, /^unchanged: XDP decap on veth0 \(prog id \d+\)$/m);
  t.match(again.stdout, /nothing to change/);

  const remove = ns.prep(['remove', '--vip', '10.0.0.40', '--state-dir', state]);
  t.equal(remove.status, 0, remove.stderr);
  t.match(remove.stdout, /^detached XDP decap from veth0 \(prog id \d+\)$/m);
  t.notMatch(ns.xdp('veth0'), /prog\/xdp/);
  t.equal(ns.snapshot(), before);

  const gone = ns.prep(['check', ...args]);
  t.equal(gone.status, 1);
  t.match(gone.stdout, /^missing\s+xdp decap on veth0\s+no tunl0 or ip6tnl0 \(no ipip or ip6_tunnel driver\) and no XDP program on veth0$/m);
});

t.test('ipip: refuses to replace a foreign XDP program, changes nothing', opts, async (t) => {
  const obj = decapObject();
  const foreign = join(REPO, 'build', 'bpf', 'xdp_pass.bpf.o');
  if (!obj || !existsSync(foreign)) {
    t.plan(0, 'no BPF object built: run make bpf');
    return;
  }
  const ns = new Netns(t);
  const state = t.testdir();
  ns.exec('ip', 'link', 'set', 'dev', 'veth0', 'xdp', 'obj', foreign, 'sec', 'xdp');
  const before = ns.snapshot();
  const r = ns.prep(['add', '--vip', '10.0.0.41', '--mode', 'ipip', '--state-dir', state, '--decap-obj', obj]);
  t.equal(r.status, 1);
  t.match(r.stderr, /veth0 already has XDP program .* not replacing it/);
  t.equal(ns.snapshot(), before);
});

t.test('ipip with neither an ipip driver nor a decap object fails clearly', opts, async (t) => {
  if (existsSync('/usr/lib/xdplb/decap.bpf.o')) {
    t.plan(0, '/usr/lib/xdplb/decap.bpf.o is installed');
    return;
  }
  const ns = new Netns(t);
  // t.testdir() empties the directory on each call: one call per test, subdirectories below it.
  const dir = t.testdir({ state: {} });
  const state = join(dir, 'state');
  // A copy outside the repo, so the default build/bpf/decap.bpf.o next to it does not exist.
  const lonely = join(dir, 'server-prep.sh');
  copyFileSync(SCRIPT, lonely);
  const before = ns.snapshot();
  const r = ns.prep(['add', '--vip', '10.0.0.42', '--mode', 'ipip', '--state-dir', state], { script: lonely });
  if (/(unchanged: |^)(ip6)?tunl0|ip6tnl0/m.test(r.stdout)) {
    t.plan(0, 'this kernel has an ipip or ip6_tunnel driver');
    return;
  }
  t.equal(r.status, 1);
  t.match(r.stderr, /this kernel has no ipip or ip6_tunnel driver .* and no XDP decap object was found \(tried: .*decap\.bpf\.o/);
  t.equal(ns.snapshot(), before);
});

t.test('--persist writes sysctl.d, the unit and the script; remove deletes them', opts, async (t) => {
  const ns = new Netns(t);
  const dir = t.testdir({ state: {} });
  const state = join(dir, 'state');
  const env = {
    XDPLB_SYSCTL_DIR: join(dir, 'sysctl.d'),
    XDPLB_SYSTEMD_DIR: join(dir, 'systemd'),
    XDPLB_SBIN_DIR: join(dir, 'sbin'),
  };
  const conf = join(env.XDPLB_SYSCTL_DIR, '60-xdplb-server-prep.conf');
  const unit = join(env.XDPLB_SYSTEMD_DIR, 'xdplb-server-prep.service');
  const sbin = join(env.XDPLB_SBIN_DIR, 'xdplb-server-prep');
  const args = ['--vip', '10.0.0.50', '--mode', 'l2dsr', '--state-dir', state];

  // As the daemon runs it: the script on stdin, so the installed copy is rebuilt from its functions.
  const add = ns.prep(['add', ...args, '--persist'], { env, stdin: true });
  t.equal(add.status, 0, add.stderr);
  t.match(add.stdout, new RegExp(`^wrote ${esc(conf)}$`, 'm'));
  t.match(add.stdout, new RegExp(`^wrote ${esc(unit)}$`, 'm'));
  t.match(add.stdout, new RegExp(`^wrote ${esc(sbin)}$`, 'm'));
  const confText = readFileSync(conf, 'utf8');
  t.match(confText, /^net\.ipv4\.conf\.all\.arp_ignore = 1$/m);
  t.match(confText, /^net\.ipv4\.conf\.veth0\.arp_announce = 2$/m);
  const unitText = readFileSync(unit, 'utf8');
  t.match(unitText, /^Type=oneshot$/m);
  t.match(unitText, new RegExp(`^ExecStart=${esc(sbin)} add --mode l2dsr --vip 10\\.0\\.0\\.50 --state-dir ${esc(state)}$`, 'm'));
  t.match(unitText, /^WantedBy=multi-user\.target$/m);

  // The installed copy works on its own.
  const check = ns.prep(['check', ...args], { script: sbin });
  t.equal(check.status, 0, check.stderr + check.stdout);
  const again = ns.prep(['add', ...args, '--persist'], { env, script: sbin });
  t.equal(again.status, 0, again.stderr);
  t.match(again.stdout, /nothing to change/);

  const remove = ns.prep(['remove', '--vip', '10.0.0.50', '--state-dir', state], { env });
  t.equal(remove.status, 0, remove.stderr);
  t.match(remove.stdout, new RegExp(`^deleted ${esc(unit)}$`, 'm'));
  t.notOk(existsSync(conf), 'sysctl.d file deleted');
  t.notOk(existsSync(unit), 'unit deleted');
  t.notOk(existsSync(sbin), 'installed script deleted');
});
