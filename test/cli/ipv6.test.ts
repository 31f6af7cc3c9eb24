/**
 * lbctl with IPv6: `[addr]:port` parsed and printed everywhere, and the whole edit cycle against a
 * real daemon (dist/cli/main.js and build/bpf: `make build` first) in namespaces made here
 * (xh6-<random>-*): IPv6 VIPs and backends in every mode, IPv4-in-IPv6 with the tunnel source taken
 * from the interface, any spelling of an address, nat backends by [addr]:port, refusals with their
 * messages. No traffic is sent; the data path's IPv6 forwarding is tested in test/bpf.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BpfMap, removePinDir } from '../../src/bpf/index.js';
import { parseVipPort } from '../../src/cli/commands/service.js';
import { formatNat } from '../../src/cli/commands/nat.js';
import { formatServices, hostPort } from '../../src/cli/output.js';
import type { ServiceView } from '../../src/daemon/daemon.js';
import { ctlValue, u32Key } from '../../src/dataplane/abi.js';
import { run, waitVethsUp } from '../../src/lab/index.js';
import { DaemonProc, lbctl } from '../daemon/harness.js';

t.test('parseVipPort: [IPv6]:port[/proto]; an unbracketed IPv6 with a port is refused', async (t) => {
  t.same(parseVipPort('[2001:db8::10]:443/tcp'), { vip: '2001:db8::10', port: 443, proto: 'tcp' });
  t.same(parseVipPort('[2001:DB8::10]:53/udp'), { vip: '2001:DB8::10', port: 53, proto: 'udp' }, 'the config canonicalizes');
  t.same(parseVipPort('[::ffff:1]:80'), { vip: '::ffff:1', port: 80 });
  t.same(parseVipPort('10.0.0.10:80'), { vip: '10.0.0.10', port: 80 });
  for (const bad of ['2001:db8::10:80', '[2001:db8::10]', '[2001:db8::10]80', '[2001:db8::10]:80/sctp']) {
    t.throws(() => parseVipPort(bad), { code: 'ERR_LB_USAGE', message: `"${bad}" is not VIP:PORT[/PROTO]`, hint: 'e.g. 10.0.0.10:80/tcp or [2001:db8::10]:443' }, bad);
  }
});

const backend = (address: string, port: number | undefined, weight: number, inRing: boolean) => ({
  address,
  ...(port === undefined ? {} : { port }),
  weight,
  health: { state: 'up' as const, check: 'none' },
  inRing,
  slots: inRing ? 1 : 0,
  share: inRing ? 0.5 : 0,
  flows: { total: 0, active: 0 },
});

t.test('formatServices and formatNat print IPv6 as [addr]:port', async (t) => {
  t.equal(hostPort('2001:db8::10', 443), '[2001:db8::10]:443');
  t.equal(hostPort('10.0.0.10', 80), '10.0.0.10:80');
  const views: ServiceView[] = [
    {
      name: 'nat6',
      key: '[2001:db8::20]:80/tcp',
      vip: '2001:db8::20',
      port: 80,
      proto: 'tcp',
      mode: 'nat',
      hashSourceOnly: false,
      onAllDown: 'drop',
      usableBackends: 1,
      backends: [backend('fd00::5', 8080, 1, true), backend('fd00::5', 8081, 0, false)],
    },
  ];
  t.equal(
    formatServices(views),
    [
      'Prot  LocalAddress:Port  Mode  Weight  Health  Ring   ActFlows',
      '  -> RemoteAddress:Port',
      'TCP   [2001:db8::20]:80  nat           1/2 up         0',
      '  ->  [fd00::5]:8080           1       up      50.0%  0',
      '  ->  [fd00::5]:8081           0       drain   0.0%   0',
    ].join('\n'),
  );
  const conn = {
    proto: 'tcp' as const,
    client: '2001:db8:9::1',
    clientPort: 40000,
    vip: '2001:db8::20',
    vipPort: 80,
    backend: 'fd00::5',
    backendPort: 8080,
    source: 'fd00::1',
    sourcePort: 10001,
    fullNat: true,
    serviceId: 1,
    backendId: 1,
    state: 'established' as never,
    idleMs: 1500,
    expiresInMs: 298_500,
  };
  const count = { connections: 1, entries: 2, fullNat: 1, expired: 0, orphans: 0, byState: { established: 1 } } as never;
  t.equal(
    formatNat({ count, connections: [conn] }),
    [
      'Prot  Client                 VIP                Source seen by backend  Backend         State        Idle  Expires',
      'TCP   [2001:db8:9::1]:40000  [2001:db8::20]:80  [fd00::1]:10001         [fd00::5]:8080  established  1.5s  299s',
      '1 connections (1 full NAT; established 1), 0 expired awaiting the sweeper, 0 half-built',
    ].join('\n'),
  );
});

// ---- against a real daemon ----

const ID = randomBytes(3).toString('hex');
const NS = `xh6-${ID}-cli`;
const PEER = `xh6-${ID}-peer`;
const BARE = `xh6-${ID}-bare`;
const BARE_PEER = `xh6-${ID}-bpeer`;
const NAMESPACES = [NS, PEER, BARE, BARE_PEER];
const pins = `/sys/fs/bpf/xdplb-test-h6-${ID}`;
const pinsBare = `/sys/fs/bpf/xdplb-test-h6b-${ID}`;
const dir = mkdtempSync(join(tmpdir(), 'xdplb-h6-'));
chmodSync(dir, 0o755);
const cfgPath = join(dir, 'config.yaml');
const sock = join(dir, 'lbctl.sock');
const cfgBare = join(dir, 'bare.yaml');
const sockBare = join(dir, 'bare.sock');
const daemons: DaemonProc[] = [];
const skip = process.getuid?.() !== 0 ? 'needs root (namespaces, XDP)' : undefined;

const CONFIG = `node:
  interfaces: [eth0]
  bpffs: ${pins}
  maxServices: 8
  flowBuckets: 16384
  api: { socket: ${sock} }
services:
  - name: web6
    vip: "2001:db8:100::10"
    port: 80
    mode: l2dsr
    healthCheck: { type: none }
    backends:
      - { address: "fd6c::2", mac: "02:00:00:6c:00:02" }
  - name: t46                       # IPv4 VIP, IPv6 backend: the tunnel source comes from eth0
    vip: 10.203.100.1
    port: 80
    mode: ipip
    healthCheck: { type: none }
    backends:
      - { address: "fd6c::3" }
  - name: nat6
    vip: "2001:db8:100::20"
    port: 80
    mode: nat
    healthCheck: { type: none }
    backends:
      - { address: "fd6c::5", port: 8080 }
      - { address: "fd6c::5", port: 8081 }
`;

async function veth(ns: string, peer: string, addrs: string[]): Promise<void> {
  for (const n of [ns, peer]) await run(['ip', 'netns', 'add', n]);
  await run(['ip', '-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peer]);
  for (const a of addrs) await run(['ip', '-n', ns, 'addr', 'add', a, 'dev', 'eth0', ...(a.includes(':') ? ['nodad'] : [])]);
  for (const n of [ns, peer]) await run(['ip', '-n', n, 'link', 'set', 'eth0', 'up']);
  for (const n of [ns, peer]) await waitVethsUp(n);
}

t.test('the lbctl edit cycle with IPv6, on a real daemon', { skip }, async (t) => {
  t.teardown(async () => {
    for (const d of daemons) await d.kill();
    for (const n of NAMESPACES) await run(['ip', 'netns', 'del', n], { allowFail: true });
    removePinDir(pins);
    removePinDir(pinsBare);
    rmSync(dir, { recursive: true, force: true });
  });
  await veth(NS, PEER, ['10.203.0.1/24', 'fd6c::1/64']);
  writeFileSync(cfgPath, CONFIG);
  const d = new DaemonProc(NS, cfgPath, sock);
  daemons.push(d);
  await d.ready();
  const ok = (args: string[]) => {
    const r = lbctl(sock, args);
    if (r.status !== 0) throw new Error(`lbctl ${args.join(' ')}: ${r.status} ${r.stderr}`);
    return r;
  };

  const views = ok(['list', '--json']).json<ServiceView[]>();
  t.same(
    views.map((v) => [v.key, v.backends.map((b) => [b.address, b.port, b.inRing])]),
    [
      ['[2001:db8:100::10]:80/tcp', [['fd6c::2', undefined, true]]],
      ['10.203.100.1:80/tcp', [['fd6c::3', undefined, true]]],
      ['[2001:db8:100::20]:80/tcp', [['fd6c::5', 8080, true], ['fd6c::5', 8081, true]]],
    ],
    'every IPv6 backend is in its ring',
  );
  t.equal(views[0]?.backends[0]?.mac, '02:00:00:6c:00:02');
  const text = ok(['list']).stdout;
  t.match(text, /^TCP\s+\[2001:db8:100::10\]:80\s+l2dsr\s+1\/1 up/m);
  t.match(text, /^\s+->\s+\[fd6c::2\]:80\s+1\s+up\s+100\.0%/m);
  t.match(text, /^\s+->\s+\[fd6c::3\]:80\s+1\s+up/m, 'the IPv6 backend of the IPv4 VIP');
  t.match(text, /^\s+->\s+\[fd6c::5\]:8081\s+1\s+up\s+50\.0%/m);

  const ctl = BpfMap.openPinned(join(pins, 'ctl'));
  t.teardown(() => ctl.close());
  t.match(ctlValue.decode(ctl.lookup(u32Key(0))!), { src4: '10.203.0.1', src6: 'fd6c::1' }, 'lb_ctl: src6 from eth0 for the tunnel to fd6c::3');

  t.equal(ok(['get', '[2001:DB8:100:0::10]:80', '--json']).json<ServiceView>().name, 'web6', 'any spelling of the VIP, /tcp implied');
  t.match(ok(['get', '[2001:db8:100::20]:80/tcp']).stdout, /\[fd6c::5\]:8080/);

  ok(['service', 'add', '[2001:db8:100::30]:443', '--mode', 'ipip', '--check', 'none', '-b', 'fd6c::7']);
  ok(['backend', 'add', '[2001:db8:100::30]:443/tcp', '2001:db8:5::8', '--weight', '2']);
  const six = ok(['get', '[2001:db8:100::30]:443', '--json']).json<ServiceView>();
  t.same(six.backends.map((b) => [b.address, b.weight, b.inRing]), [['fd6c::7', 1, true], ['2001:db8:5::8', 2, true]], 'IPv6-in-IPv6 service added with two backends');
  t.match(readFileSync(cfgPath, 'utf8'), /2001:db8:5::8/, 'persisted to the file');

  ok(['backend', 'set', 'web6', 'FD6C:0::2', '--weight', '3']);
  t.equal(ok(['get', 'web6', '--json']).json<ServiceView>().backends[0]?.weight, 3, 'a backend named in another spelling');

  const drain = ok(['backend', 'drain', 'nat6', '[fd6c::5]:8081']);
  t.equal(drain.stdout.trim(), 'draining [fd6c::5]:8081: 0 active flows');
  t.same(ok(['get', 'nat6', '--json']).json<ServiceView>().backends.map((b) => [b.port, b.weight]), [[8080, 1], [8081, 0]], 'only the one port drained');

  const ambiguous = lbctl(sock, ['backend', 'del', 'nat6', 'fd6c::5']);
  t.equal(ambiguous.status, 2);
  t.match(ambiguous.stderr, /lbctl: fd6c::5 is ambiguous in service nat6: \[fd6c::5\]:8080, \[fd6c::5\]:8081\n\s+hint: add the port/);
  ok(['backend', 'del', 'nat6', '[fd6c::5]:8080']);
  t.same(ok(['get', 'nat6', '--json']).json<ServiceView>().backends.map((b) => b.port), [8081]);

  const v6to4 = lbctl(sock, ['service', 'add', '[2001:db8:100::40]:80', '--mode', 'ipip', '-b', '10.0.0.1']);
  t.equal(v6to4.status, 2, 'an IPv4 backend behind an IPv6 ipip VIP: config error');
  t.match(v6to4.stderr, /services\[4\]\.backends\[0\]\.address: 10\.0\.0\.1 is IPv4 but the VIP 2001:db8:100::40 is IPv6 \(hint: mode ipip sends an IPv6 VIP to IPv6 backends only/);
  const unbracketed = lbctl(sock, ['service', 'add', '2001:db8:100::40:80', '--mode', 'l2dsr']);
  t.equal(unbracketed.status, 2);
  t.match(unbracketed.stderr, /"2001:db8:100::40:80" is not VIP:PORT\[\/PROTO\]/);

  t.match(ok(['stats']).stdout, /TCP\s+\[2001:db8:100::30\]:443\s+ipip/);
  t.match(ok(['nat', 'list']).stdout, /^Prot\s+Client\s+VIP/);
  ok(['service', 'del', '[2001:db8:100::30]:443']);
  t.same(ok(['list', '--json']).json<ServiceView[]>().map((v) => v.name), ['web6', 't46', 'nat6']);

  // A host without a global IPv6 address: starts (nothing needs one), refuses the change that would.
  await veth(BARE, BARE_PEER, ['10.204.0.1/24']);
  writeFileSync(cfgBare, `node:\n  interfaces: [eth0]\n  bpffs: ${pinsBare}\n  maxServices: 4\n  flowBuckets: 16384\n  api: { socket: ${sockBare} }\nservices: []\n`);
  const bare = new DaemonProc(BARE, cfgBare, sockBare);
  daemons.push(bare);
  await bare.ready();
  const before = readFileSync(cfgBare, 'utf8');
  const refused = lbctl(sockBare, ['service', 'add', '10.204.100.1:80', '--mode', 'ipip', '-b', 'fd6c::9']);
  t.equal(refused.status, 1, 'a runtime error');
  t.match(refused.stderr, /lbctl: interface eth0 has no global IPv6 address for the outer source of ipip tunnels to IPv6 backends \(service 10\.204\.100\.1:80\/tcp, backend fd6c::9\)\n\s+hint: set node\.sourceAddress\.ipv6 in the config, or give eth0 a global IPv6 address/);
  t.equal(readFileSync(cfgBare, 'utf8'), before, 'the file is untouched');
  const withSource = lbctl(sockBare, ['service', 'add', '10.204.100.1:80', '--mode', 'nat', '-b', '10.204.0.9']);
  t.equal(withSource.status, 0, `an IPv4 change still works: ${withSource.stderr}`);

  // and at start: the config needs one, the host has none
  const startCfg = join(dir, 'start.yaml');
  writeFileSync(startCfg, CONFIG.replace(pins, `${pinsBare}-2`).replace(sock, join(dir, 'start.sock')));
  const failing = new DaemonProc(BARE, startCfg, join(dir, 'start.sock'));
  daemons.push(failing);
  const code = await Promise.race([failing.exited, new Promise((r) => setTimeout(() => r('hung'), 20_000))]);
  t.equal(code, 1, 'the daemon refuses to start');
  t.match(failing.logs, /interface eth0 has no global IPv6 address for the outer source of ipip tunnels to IPv6 backends \(service t46, backend fd6c::3\)/);
  removePinDir(`${pinsBare}-2`);
});
