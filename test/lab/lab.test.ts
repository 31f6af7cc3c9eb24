// The namespace lab (src/lab/): build it, reach every backend, check VIP preparation and the veth
// quirks, and make sure labDown removes everything (also after a crash) and nothing else.
// Needs root, `make bpf ts` (the backend server runs from dist/). Prefix `xlt-` so it never
// touches the demo's `xlb-` lab or anyone else's namespaces.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isLbError } from '../../src/errors.js';
import {
  buildTopology,
  clientRequests,
  exec,
  labDown,
  labStatus,
  labUp,
  listLabNamespaces,
  processAlive,
  run,
  stateDirOf,
  udpRequests,
  REPO_ROOT,
  type Lab,
} from '../../src/lab/index.js';

const PREFIX = 'xlt-';
/** A namespace that shares letters with our prefix but not the prefix: labDown must leave it alone. */
const DECOY = 'xltz-decoy';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function allPids(prefix: string): Promise<number[]> {
  const pids: number[] = [];
  for (const ns of listLabNamespaces(prefix)) {
    const r = await run(['ip', 'netns', 'pids', ns], { allowFail: true });
    pids.push(...r.stdout.split(/\s+/).filter((s) => /^\d+$/.test(s)).map(Number));
  }
  return pids;
}

async function sysctlMax(ns: string, keys: string[]): Promise<number> {
  const r = await exec(ns, ['sysctl', '-n', ...keys]);
  return Math.max(...r.stdout.trim().split(/\s+/).map(Number));
}

t.teardown(async () => {
  await labDown(PREFIX);
  await run(['ip', 'netns', 'del', DECOY], { allowFail: true });
});

t.test('topology: pure description, validated', async (t) => {
  const topo = buildTopology({ prefix: 'abc-', l2Backends: 2, routedBackends: 1, natBackends: 1 });
  t.equal(topo.hosts.filter((h) => h.role === 'backend').length, 4);
  t.ok(topo.hosts.every((h) => h.ns.startsWith('abc-')));
  t.equal(topo.router.ns, 'abc-router');
  t.same(topo.router.routes, [{ dst: '10.200.100.0/24', via: '10.200.2.10' }, { dst: '10.200.4.0/24', via: '10.200.2.10' }]);
  t.same(
    topo.hosts.filter((h) => h.name === 'natbe1').map((h) => [h.addr, h.segment, h.vips, h.prepMode]),
    [['10.200.4.11', 'nat', [], null]],
    'a nat backend: no VIP, its gateway is the LB',
  );
  t.same(topo.hosts.find((h) => h.role === 'lb')?.extraIfs, [{ segment: 'nat', ifname: 'eth1', addr: '10.200.4.1', addr6: 'fd00:200:4::1', routerPort: 'v-lbnat' }]);
  t.same(topo.serverPorts, { tcp: [80, 8080], udpEcho: [9000] }, 'backends serve the NAT target ports');
  const noNat = buildTopology({ prefix: 'abc-', natBackends: 0 });
  t.notOk(noNat.segments.some((s) => s.name === 'nat') || noNat.hosts.some((h) => h.extraIfs), 'natBackends 0: no nat segment, no second LB leg');
  t.same(noNat.router.routes, [{ dst: '10.200.100.0/24', via: '10.200.2.10' }]);
  t.same(
    topo.hosts.filter((h) => h.name === 'l2be2').map((h) => [h.addr, h.vips, h.prepMode]),
    [['10.200.2.12', ['10.200.100.1', 'fd00:200:100::1'], 'l2dsr']],
  );
  t.same(
    topo.hosts.filter((h) => h.name === 'rtbe1').map((h) => [h.addr, h.addr6, h.vips, h.prepMode]),
    [['10.200.3.11', 'fd00:200:3::11', ['10.200.100.2', 'fd00:200:100::2', '10.200.100.5'], 'ipip']],
    'routed backends hold the 6in6 and the 4in6 VIPs too',
  );
  // IPv6 mirrors IPv4: 10.200.S.H is fd00:200:S::H.
  t.same(
    topo.segments.map((s) => [s.subnet, s.subnet6, s.gateway6]),
    [
      ['10.200.1.0/24', 'fd00:200:1::/64', 'fd00:200:1::1'],
      ['10.200.2.0/24', 'fd00:200:2::/64', 'fd00:200:2::1'],
      ['10.200.3.0/24', 'fd00:200:3::/64', 'fd00:200:3::1'],
      ['10.200.4.0/24', 'fd00:200:4::/64', 'fd00:200:4::1'],
    ],
  );
  t.same(topo.router.routes6, [{ dst: 'fd00:200:100::/64', via: 'fd00:200:2::10' }, { dst: 'fd00:200:4::/64', via: 'fd00:200:2::10' }]);
  t.same(topo.hosts.find((h) => h.role === 'lb')?.extraIfs?.[0]?.addr6, 'fd00:200:4::1', 'the nat backends\' IPv6 gateway is the LB');
  t.same(
    topo.services.filter((s) => s.vip.includes(':') || s.backendFamily === 6).map((s) => `${s.vip} ${s.proto} ${s.mode}${s.fullNat ? ' full' : ''}`),
    [
      'fd00:200:100::1 tcp l2dsr', 'fd00:200:100::2 tcp ipip', 'fd00:200:100::3 tcp nat', 'fd00:200:100::3 udp nat',
      'fd00:200:100::4 tcp nat full', 'fd00:200:100::4 udp nat full', '10.200.100.5 tcp ipip',
    ],
    'one IPv6 VIP per mode, and an IPv4 VIP over IPv6 (4in6)',
  );
  for (const bad of [
    { vip: 'fd00:200:101::1', port: 80, proto: 'tcp', mode: 'l2dsr' },
    { vip: 'fd00:200:100:0::1', port: 80, proto: 'tcp', mode: 'l2dsr' },
    { vip: 'fd00:200:100::1', port: 80, proto: 'tcp', mode: 'l2dsr', backendFamily: 4 },
    { vip: '10.200.100.9', port: 80, proto: 'tcp', mode: 'l2dsr', backendFamily: 6 },
  ] as const) {
    t.throws(() => buildTopology({ services: [bad] }), { code: 'ERR_LB_USAGE' }, JSON.stringify(bad));
  }
  t.same(JSON.parse(JSON.stringify(topo)), topo, 'JSON-serialisable');
  for (const bad of ['', 'x', 'XLB-', 'a b-', 'toolongprefix-']) {
    t.throws(() => buildTopology({ prefix: bad }), { code: 'ERR_LB_USAGE' }, `prefix ${JSON.stringify(bad)}`);
  }
  t.throws(
    () => buildTopology({ services: [{ vip: '10.1.1.1', port: 80, proto: 'tcp', mode: 'l2dsr' }] }),
    { code: 'ERR_LB_USAGE' },
  );
  t.throws(() => buildTopology({ l2Backends: 99 }), { code: 'ERR_LB_USAGE' });
  t.throws(() => buildTopology({ services: [{ vip: '10.200.100.9', port: 80, proto: 'tcp', mode: 'l2dsr', backendPort: 8080 }] }), { code: 'ERR_LB_USAGE' });
});

t.test('the lab', async (t) => {
  // Leftovers of an earlier, killed run must not make this one fail.
  await labDown(PREFIX);
  await run(['ip', 'netns', 'add', DECOY], { allowFail: true });

  const started = Date.now();
  const lab: Lab = await labUp({ prefix: PREFIX });
  t.comment(`lab up took ${Date.now() - started} ms`);

  await t.test('lab up', async (t) => {
    const ns = listLabNamespaces(PREFIX);
    t.same(ns, [
      'xlt-client', 'xlt-l2be1', 'xlt-l2be2', 'xlt-l2be3', 'xlt-lb', 'xlt-natbe1', 'xlt-natbe2', 'xlt-natbe3',
      'xlt-router', 'xlt-rtbe1', 'xlt-rtbe2', 'xlt-rtbe3',
    ]);
    t.same(JSON.parse(JSON.stringify(lab)), lab, 'Lab is JSON-serialisable');
    const mac = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
    t.match(lab.lb, { ns: 'xlt-lb', ifname: 'eth0', addr: '10.200.2.10', mac, gateway: { addr: '10.200.2.1', mac } });
    const neigh = (await exec(lab.lb.ns, ['ip', 'neigh', 'show', 'dev', 'eth0', '10.200.2.1'])).stdout;
    t.match(neigh, new RegExp(`lladdr ${lab.lb.gateway.mac} PERMANENT`), 'LB has a permanent neighbour entry for its gateway');
    t.equal(lab.backends.length, 9);
    t.equal(new Set(lab.backends.map((b) => b.mac)).size, 9, 'distinct backend MACs');
    t.match(lab.lb.natIf, { ifname: 'eth1', addr: '10.200.4.1', mac }, 'the LB has a leg on the nat segment');
    const route = (await exec(lab.backends.find((b) => b.segment === 'nat')!.ns, ['ip', 'route', 'show', 'default'])).stdout;
    t.match(route, /via 10\.200\.4\.1/, 'nat backends route through the LB');
    const st = await labStatus(PREFIX);
    t.ok(st.up, 'status says up');
    t.same(st.missing, []);
    t.ok(st.servers.every((s) => s.running), 'every backend server runs');
    // Nothing of the lab in the root namespace.
    const root = JSON.parse((await run(['ip', '-j', 'link', 'show'])).stdout) as { ifname: string }[];
    const names = new Set(root.map((l) => l.ifname));
    for (const n of ['eth-client', 'v-lb', 'v-l2be1', 'v-rtbe1', 'br0', 'br1']) t.notOk(names.has(n), `no ${n} in root ns`);
    await t.rejects(labUp({ prefix: PREFIX }), { code: 'ERR_LB_LAB' }, 'refuses to build over an existing lab');
  });

  await t.test('veth quirks are applied', async (t) => {
    for (const port of ['v-lb', 'v-lbnat']) {
      const vlb = JSON.parse((await run(['ip', '-j', '-n', lab.router, 'link', 'show', 'dev', port])).stdout) as {
        xdp?: { mode: number; prog?: { name: string } };
      }[];
      t.equal(vlb[0]?.xdp?.mode, 1, `native XDP on the router port facing the LB (${port})`);
      t.equal(vlb[0]?.xdp?.prog?.name, 'xdp_pass');
    }
    const ends: [string, string][] = [
      [lab.lb.ns, 'eth0'], [lab.lb.ns, 'eth1'], [lab.client, 'eth0'], [lab.router, 'v-lb'], [lab.router, 'v-lbnat'], [lab.router, 'eth-client'],
      ...lab.backends.map((b): [string, string] => [b.ns, 'eth0']),
    ];
    for (const [ns, ifname] of ends) {
      const r = await exec(ns, ['ethtool', '-k', ifname]);
      t.match(r.stdout, /^tx-checksumming: off/m, `tx checksum offload off on ${ns}/${ifname}`);
    }
  });

  await t.test('client reaches every backend directly, through the router', async (t) => {
    for (const b of lab.backends) {
      const r = await exec(lab.client, ['curl', '-s', '--max-time', '2', `http://${b.addr}/`]);
      const body = JSON.parse(r.stdout) as { backend: string; client: string };
      t.equal(body.backend, b.name, `${b.addr} answers as ${b.name}`);
      t.equal(body.client, lab.clientAddr, 'sees the real client address');
      const res = await clientRequests(lab, b.addr, 80, 4, { concurrency: 2 });
      t.same(res.byBackend, { [b.name]: 4 });
      t.same(res.clientAddrs, { [lab.clientAddr]: 4 });
      t.equal(res.failed, 0);
    }
  });

  await t.test('IPv6: every interface has its twin address, not tentative; forwarding; the LB\'s gateway', async (t) => {
    const hosts: [string, string, string][] = [
      [lab.client, 'eth0', lab.clientAddr6],
      [lab.lb.ns, 'eth0', lab.lb.addr6],
      [lab.lb.ns, 'eth1', lab.lb.natIf?.addr6 ?? '?'],
      ...lab.backends.map((b): [string, string, string] => [b.ns, 'eth0', b.addr6]),
    ];
    for (const [ns, ifname, addr] of hosts) {
      const j = JSON.parse((await exec(ns, ['ip', '-j', '-6', 'addr', 'show', 'dev', ifname])).stdout) as {
        addr_info: { local: string; prefixlen: number; tentative?: boolean; dadfailed?: boolean }[];
      }[];
      const info = j[0]?.addr_info ?? [];
      const a = info.find((x) => x.local === addr);
      t.same(a && [a.prefixlen, !!a.tentative, !!a.dadfailed], [64, false, false], `${ns}/${ifname} has ${addr}/64, usable at once`);
      t.notOk(info.some((x) => x.tentative), `${ns}/${ifname}: no tentative address (DAD is off)`);
    }
    for (const ns of [lab.router, lab.lb.ns]) {
      t.equal(await sysctlMax(ns, ['net.ipv6.conf.all.forwarding']), 1, `${ns} forwards IPv6`);
    }
    t.equal(await sysctlMax(lab.lb.ns, ['net.ipv6.conf.eth0.forwarding', 'net.ipv6.conf.eth1.forwarding']), 1);
    const neigh = (await exec(lab.lb.ns, ['ip', '-6', 'neigh', 'show', 'dev', 'eth0', lab.lb.gateway.addr6])).stdout;
    t.match(neigh, new RegExp(`lladdr ${lab.lb.gateway.mac} PERMANENT`), 'permanent IPv6 neighbour entry for the gateway');
    const br = JSON.parse((await exec(lab.router, ['ip', '-j', '-d', 'link', 'show', 'type', 'bridge'])).stdout) as {
      ifname: string; linkinfo?: { info_data?: { mcast_snooping?: number } };
    }[];
    t.same(br.map((b) => [b.ifname, b.linkinfo?.info_data?.mcast_snooping]), [['br0', 0], ['br1', 0], ['br2', 0]], 'no multicast snooping on the bridges');
    const routes = (await exec(lab.router, ['ip', '-6', 'route', 'show'])).stdout;
    t.match(routes, /^fd00:200:100::\/64 via fd00:200:2::10 /m, 'the IPv6 VIP range is routed to the LB');
    t.match(routes, /^fd00:200:4::\/64 via fd00:200:2::10 /m, 'the nat segment is routed through the LB');
  });

  await t.test('IPv6: the client reaches every backend directly (curl -6, UDP echo), real address seen', async (t) => {
    for (const b of lab.backends) {
      const res = await clientRequests(lab, b.addr6, 80, 4, { concurrency: 2 });
      t.same([res.byBackend, res.clientAddrs, res.failed], [{ [b.name]: 4 }, { [lab.clientAddr6]: 4 }, 0], `${b.addr6} answers as ${b.name} and sees ${lab.clientAddr6}`);
    }
    const nat = lab.backends.find((b) => b.segment === 'nat')!;
    const udp = await udpRequests(lab, nat.addr6, 9000, 5, { concurrency: 2 });
    t.same([udp.ok, udp.byBackend, udp.clientAddrs], [5, { [nat.name]: 5 }, { [lab.clientAddr6]: 5 }], 'UDP echo over IPv6 (through the LB as a plain router)');
    const v4 = await udpRequests(lab, nat.addr, 9000, 3);
    t.same(v4.clientAddrs, { [lab.clientAddr]: 3 }, 'the dual-stack echo reports an IPv4 client as IPv4');
  });

  await t.test('IPv6 VIPs on lo answer when a kernel route takes the VIP to one backend', async (t) => {
    // No balancer here: a /128 in the router, more specific than the range's route to the LB, sends
    // the VIP straight to one backend, which must take it as local and answer from it.
    const cases = [
      { vip: 'fd00:200:100::1', be: lab.backends.find((b) => b.name === 'l2be1')! },
      { vip: 'fd00:200:100::2', be: lab.backends.find((b) => b.name === 'rtbe2')! },
    ];
    for (const { vip, be } of cases) {
      const lo = (await exec(be.ns, ['ip', '-o', '-6', 'addr', 'show', 'dev', 'lo'])).stdout;
      t.match(lo, new RegExp(`inet6 ${vip}/128 `), `${vip} is on lo of ${be.name}`);
      await exec(lab.router, ['ip', '-6', 'route', 'add', `${vip}/128`, 'via', be.addr6]);
      try {
        const res = await clientRequests(lab, vip, 80, 6, { concurrency: 2 });
        t.same([res.ok, res.byBackend, res.clientAddrs], [6, { [be.name]: 6 }, { [lab.clientAddr6]: 6 }], `${vip} answered by ${be.name}, client seen`);
        const body = JSON.parse((await exec(lab.client, ['curl', '-s', '-g', '-6', '--max-time', '2', `http://[${vip}]/`])).stdout) as { local: string };
        t.equal(body.local, vip, 'the backend answered from the VIP');
      } finally {
        await exec(lab.router, ['ip', '-6', 'route', 'del', `${vip}/128`, 'via', be.addr6]);
      }
    }
    for (const b of lab.backends.filter((x) => x.segment !== 'nat')) {
      const eth = (await exec(b.ns, ['ip', '-j', '-6', 'addr', 'show', 'dev', 'eth0'])).stdout;
      for (const v of b.vips.filter((x) => x.includes(':'))) t.notOk(eth.includes(`"${v}"`), `${v} not on eth0 of ${b.name}`);
    }
  });

  await t.test('300 requests take a few seconds at most', async (t) => {
    const b = lab.backends[0];
    if (!b) throw new Error('no backend');
    const res = await clientRequests(lab, b.addr, 80, 300, { concurrency: 10 });
    t.equal(res.ok, 300, JSON.stringify(res.failures));
    t.ok(res.elapsedMs < 5000, `took ${res.elapsedMs} ms`);
    // A refused port is counted as failures, not thrown.
    const bad = await clientRequests(lab, b.addr, 81, 3, { maxTimeSec: 1 });
    t.equal(bad.failed, 3);
    t.equal(bad.ok, 0);
  });

  await t.test('each DSR backend holds its VIPs on lo with ARP suppressed', async (t) => {
    t.ok(lab.backends.filter((b) => b.segment === 'nat').every((b) => b.vips.length === 0), 'nat backends hold no VIP');
    for (const b of lab.backends.filter((x) => x.segment !== 'nat')) {
      t.ok(b.vips.length > 0, `${b.name} has VIPs`);
      const lo = JSON.parse((await exec(b.ns, ['ip', '-j', 'addr', 'show', 'dev', 'lo'])).stdout) as {
        addr_info: { local: string }[];
      }[];
      const local = lo.flatMap((l) => l.addr_info.map((a) => a.local));
      for (const v of b.vips) t.ok(local.includes(v), `${v} on lo of ${b.name}`);
      const eth = (await exec(b.ns, ['ip', '-j', 'addr', 'show', 'dev', 'eth0'])).stdout;
      for (const v of b.vips) t.notOk(eth.includes(`"${v}"`), `${v} not on eth0 of ${b.name}`);
      t.equal(await sysctlMax(b.ns, ['net.ipv4.conf.all.arp_ignore', 'net.ipv4.conf.eth0.arp_ignore']), 1, `arp_ignore=1 on ${b.name}`);
      t.equal(await sysctlMax(b.ns, ['net.ipv4.conf.all.arp_announce', 'net.ipv4.conf.eth0.arp_announce']), 2, `arp_announce=2 on ${b.name}`);
    }
    const routed = lab.backends.filter((b) => b.segment === 'routed');
    for (const b of routed) {
      const l = JSON.parse((await exec(b.ns, ['ip', '-j', 'link', 'show', 'dev', 'eth0'])).stdout) as {
        xdp?: { prog?: { name: string } };
      }[];
      t.equal(l[0]?.xdp?.prog?.name, 'xdp_decap', `decap XDP on ${b.name}/eth0`);
    }
  });

  await t.test('labDown removes every namespace and process of the prefix, nothing else', async (t) => {
    const pids = await allPids(PREFIX);
    t.ok(pids.length >= lab.backends.length, 'servers were running');
    const started = Date.now();
    const res = await labDown(PREFIX);
    t.comment(`lab down took ${Date.now() - started} ms`);
    t.equal(res.namespaces.length, 12);
    t.same(listLabNamespaces(PREFIX), []);
    t.same(pids.filter(processAlive), [], 'no process left');
    t.notOk(existsSync(stateDirOf(PREFIX)), 'state dir removed');
    t.ok(existsSync(`/run/netns/${DECOY}`), 'decoy namespace untouched');
    t.notOk((await labStatus(PREFIX)).up);
  });

  await t.test('labDown twice is fine', async (t) => {
    const res = await labDown(PREFIX);
    t.same(res.namespaces, []);
    t.same(listLabNamespaces(PREFIX), []);
  });
});

t.test('labDown cleans up after a crash', async (t) => {
  await t.test('hand-made leftovers: namespaces, a process, a state dir', async (t) => {
    for (const n of ['client', 'l2be1', 'router']) await run(['ip', 'netns', 'add', `${PREFIX}${n}`]);
    const child = spawn('ip', ['netns', 'exec', `${PREFIX}l2be1`, 'sleep', '60'], { detached: true, stdio: 'ignore' });
    child.unref();
    const pid = child.pid;
    if (pid === undefined) throw new Error('no pid');
    const dir = stateDirOf(PREFIX);
    mkdirSync(join(dir, 'l2be1'), { recursive: true });
    writeFileSync(join(dir, 'topology.json'), '{"half":');
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline && !(await allPids(PREFIX)).includes(pid)) await sleep(20);
    t.ok((await allPids(PREFIX)).includes(pid), 'process runs in the namespace');

    await labDown(PREFIX);
    t.same(listLabNamespaces(PREFIX), []);
    t.notOk(processAlive(pid), 'process killed');
    t.notOk(existsSync(dir), 'state dir removed');
    t.ok(existsSync(`/run/netns/${DECOY}`), 'decoy namespace untouched');
  });

  await t.test('lab up killed half-way', async (t) => {
    const mod = join(REPO_ROOT, 'dist/lab/index.js');
    const script = `const m = await import(${JSON.stringify(mod)}); await m.labUp({ prefix: ${JSON.stringify(PREFIX)} });`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' });
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && listLabNamespaces(PREFIX).length === 0) await sleep(5);
    await sleep(150);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    await sleep(500); // let the `ip` commands the dead process had started finish, as time would after a crash
    t.ok(listLabNamespaces(PREFIX).length > 0, 'it left namespaces behind');
    await labDown(PREFIX);
    t.same(listLabNamespaces(PREFIX), []);
    t.same(await allPids(PREFIX), []);
    t.notOk(existsSync(stateDirOf(PREFIX)));
    // And a fresh lab comes up on the same prefix afterwards.
    try {
      const lab = await labUp({ prefix: PREFIX });
      t.equal(lab.backends.length, 9);
    } catch (e) {
      t.fail(isLbError(e) ? `${e.code}: ${e.message}\n${e.detail ?? ''}` : String(e));
    } finally {
      await labDown(PREFIX);
    }
    t.same(listLabNamespaces(PREFIX), []);
  });
});
