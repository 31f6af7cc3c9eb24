/**
 * The balancer, packet by packet, through BPF_PROG_TEST_RUN: verdicts, exact output bytes and
 * counters for every mode and every malformed case the data path promises to handle.
 */
import t from 'tap';
import { loadBalancer, type LoadedBalancer } from '../../src/dataplane/loader.js';
import type { DesiredService } from '../../src/dataplane/apply.js';
import { icmpFragNeeded, ipPacket, packet, parsePacket, verifyIpv4Header } from '../../src/packet/index.js';
import { FixtureBench, runFixture, type Flow } from './fixture.js';

const RING = 251;
const SEED = 0x5eed;
const CLIENT = '192.0.2.10';
const ROUTER_MAC = '02:cc:00:00:00:01';

const l2Backends = [1, 2, 3].map((i) => ({ address: `10.1.0.${i}`, mac: `02:00:00:00:01:0${i}`, weight: 1 }));
const ipipBackends = [1, 2, 3].map((i) => ({ address: `10.2.0.${i}`, weight: 1 }));

const services: DesiredService[] = [
  { vip: '10.0.0.1', port: 80, proto: 'tcp', mode: 'l2dsr', backends: l2Backends },
  { vip: '10.0.0.1', port: 53, proto: 'udp', mode: 'l2dsr', backends: l2Backends },
  { vip: '10.0.0.2', port: 80, proto: 'tcp', mode: 'ipip', backends: ipipBackends },
  { vip: '10.0.0.3', port: 80, proto: 'tcp', mode: 'l2dsr', hashSrcOnly: true, backends: l2Backends },
  { vip: '10.0.0.4', port: 80, proto: 'tcp', mode: 'l2dsr', backends: [{ ...l2Backends[0]!, weight: 0 }] },
  { vip: '10.0.0.4', port: 81, proto: 'tcp', mode: 'l2dsr', onAllDown: 'pass', backends: [] },
  { vip: '10.0.0.5', port: 80, proto: 'tcp', mode: 'ipip', backends: [{ address: '10.3.0.1', weight: 1 }] },
  { vip: '10.0.0.6', port: 80, proto: 'tcp', mode: 'ipip', backends: [{ address: '10.4.0.1', weight: 1 }] },
];

const bench = new FixtureBench(CLIENT, RING, SEED);
const { net, tuple, svcId, ringSlot: ringBackend, addrOf, stats } = bench;
let lb: LoadedBalancer;

t.before(() => {
  lb = bench.start(
    () => loadBalancer({ ringSize: RING, maxServices: 16, flowBuckets: 1024, seed: SEED }),
    (lb) => {
      lb.dataplane.apply(services);
      lb.dataplane.setCtl({ src4: net.addr, clock: 1 });
    },
  );
});
t.teardown(() => bench.down());

function tcpIn(f: Flow, flags: ('SYN' | 'ACK' | 'PSH')[] = ['SYN'], extra: { vlan?: number } = {}): Buffer {
  return packet({
    eth: { src: ROUTER_MAC, dst: net.mac },
    ...(extra.vlan !== undefined ? { vlan: { vid: extra.vlan } } : {}),
    ipv4: { src: f.client ?? CLIENT, dst: f.vip, flags: ['DF'], tos: 0x10 },
    tcp: { srcPort: f.clientPort, dstPort: f.vipPort, flags, payload: flags.includes('PSH') ? Buffer.from('hello') : undefined },
  });
}

/** The same frame with only the MACs changed: what L2 DSR must send. */
function l2Out(input: Buffer, backendMac: string): Buffer {
  const out = Buffer.from(input);
  Buffer.from(backendMac.split(':').map((x) => parseInt(x, 16))).copy(out, 0);
  input.copy(out, 6, 0, 6);
  return out;
}

t.test('l2dsr: SYN goes to the ring backend, MACs rewritten, nothing else', async (t) => {
  const f: Flow = { vip: '10.0.0.1', vipPort: 80, clientPort: 40001 };
  const be = ringBackend(f);
  const mac = l2Backends.find((b) => b.address === addrOf(f, be, l2Backends))!.mac;
  const input = tcpIn(f);
  runFixture(t, lb, net, { name: 'SYN', in: input, verdict: 'TX', reason: 'TX_L2DSR', out: l2Out(input, mac) });
  const ack = tcpIn(f, ['ACK', 'PSH']);
  runFixture(t, lb, net, { name: 'ACK same flow', in: ack, verdict: 'TX', reason: 'TX_L2DSR', out: l2Out(ack, mac) });
});

t.test('l2dsr: 200 flows spread over all backends, each the ring predicts', async (t) => {
  const seen = new Map<number, number>();
  let mismatches = 0;
  for (let p = 0; p < 200; p++) {
    const f: Flow = { vip: '10.0.0.1', vipPort: 80, clientPort: 50000 + 2 * p };
    const want = ringBackend(f);
    const { out } = net.run(lb, tcpIn(f));
    const mac = l2Backends.find((b) => b.address === addrOf(f, want, l2Backends))!.mac;
    if (!out.subarray(0, 6).equals(Buffer.from(mac.split(':').map((x) => parseInt(x, 16))))) mismatches++;
    seen.set(want, (seen.get(want) ?? 0) + 1);
  }
  t.equal(mismatches, 0, 'every flow went where the TypeScript hash and ring say');
  t.equal(seen.size, 3, 'all three backends got flows');
  for (const n of seen.values()) t.ok(n > 30, `a backend got ${n} of 200 flows`);
});

t.test('udp service and VLAN tag', async (t) => {
  const f: Flow = { vip: '10.0.0.1', vipPort: 53, clientPort: 33333, proto: 'udp' };
  const mac = l2Backends.find((b) => b.address === addrOf(f, ringBackend(f), l2Backends))!.mac;
  const input = packet({
    eth: { src: ROUTER_MAC, dst: net.mac },
    ipv4: { src: CLIENT, dst: '10.0.0.1' },
    udp: { srcPort: 33333, dstPort: 53, payload: Buffer.from('query') },
  });
  runFixture(t, lb, net, { name: 'UDP', in: input, verdict: 'TX', reason: 'TX_L2DSR', out: l2Out(input, mac) });

  const fv: Flow = { vip: '10.0.0.1', vipPort: 80, clientPort: 40100 };
  const macv = l2Backends.find((b) => b.address === addrOf(fv, ringBackend(fv), l2Backends))!.mac;
  const tagged = tcpIn(fv, ['SYN'], { vlan: 42 });
  const out = runFixture(t, lb, net, { name: 'VLAN', in: tagged, verdict: 'TX', reason: 'TX_L2DSR', out: l2Out(tagged, macv) });
  t.equal(parsePacket(out).vlan?.vid, 42, 'tag kept');
});

t.test('ipip: outer header to the backend, next hop from the kernel, inner untouched', async (t) => {
  const f: Flow = { vip: '10.0.0.2', vipPort: 80, clientPort: 40002 };
  const backend = addrOf(f, ringBackend(f), ipipBackends);
  const inner = { ipv4: { src: CLIENT, dst: f.vip, flags: ['DF'] as 'DF'[], tos: 0x10 }, tcp: { srcPort: 40002, dstPort: 80, flags: ['SYN'] as 'SYN'[] } };
  const input = packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ...inner });
  const want = packet({
    eth: { src: net.mac, dst: net.gwMac },
    ipv4: { src: net.addr, dst: backend, ttl: 64, id: 0, flags: ['DF'], tos: 0x10 },
    inner,
  });
  const out = runFixture(t, lb, net, { name: 'SYN', in: input, verdict: 'TX', reason: 'TX_IPIP', out: want });
  // The outer checksum, checked by code that shares nothing with the BPF side.
  t.ok(verifyIpv4Header(out.subarray(14, 34)), 'outer IPv4 checksum valid (RFC 1071, independent)');
  const p = parsePacket(out);
  t.equal(p.ipv4?.proto, 4, 'outer protocol is IPIP');
  t.equal(p.inner?.tcp?.checksumOk, true, 'inner TCP checksum still valid');
  t.same(out.subarray(34), input.subarray(14), 'inner packet byte for byte');

  const ack = packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ...inner, tcp: { ...inner.tcp, flags: ['ACK'] } });
  const out2 = net.run(lb, ack).out;
  t.equal(parsePacket(out2).ipv4?.dst, backend, 'non-SYN of the flow to the same backend');
});

t.test('ipip: unresolved next hop goes to the kernel encapsulated; no route drops', async (t) => {
  const unres = packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: CLIENT, dst: '10.0.0.5' }, tcp: { srcPort: 40003, dstPort: 80 } });
  const out = runFixture(t, lb, net, { name: 'no neighbour', in: unres, verdict: 'PASS', reason: 'PASS_IPIP_KERNEL' });
  const p = parsePacket(out);
  t.equal(p.ipv4?.dst, '10.3.0.1', 'already encapsulated to the backend');
  t.same(out.subarray(0, 12), unres.subarray(0, 12), 'L2 header kept so the kernel accepts it');
  const noroute = packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: CLIENT, dst: '10.0.0.6' }, tcp: { srcPort: 40004, dstPort: 80 } });
  runFixture(t, lb, net, { name: 'no route', in: noroute, verdict: 'DROP', reason: 'DROP_IPIP_NO_ROUTE' });
});

t.test('after a ring change: established flows stay, new flows follow the new ring', async (t) => {
  const base: Flow = { vip: '10.0.0.1', vipPort: 80, clientPort: 0 };
  // Establish 100 flows on the current ring.
  const flows: { f: Flow; be: number }[] = [];
  for (let p = 0; p < 100; p++) {
    const f = { ...base, clientPort: 41000 + 2 * p };
    net.run(lb, tcpIn(f));
    flows.push({ f, be: ringBackend(f) });
  }
  const grown = services.map((s) =>
    s.vip === '10.0.0.1' && s.port === 80
      ? { ...s, backends: [...l2Backends, { address: '10.1.0.4', mac: '02:00:00:00:01:04', weight: 3 }] }
      : s,
  );
  lb.dataplane.apply(grown);
  const moved = flows.filter(({ f, be }) => ringBackend(f) !== be);
  t.ok(moved.length > 10, `the new ring moves ${moved.length} of the 100 flows' slots`);
  const macOf = (id: number, f: Flow) =>
    [...l2Backends, { address: '10.1.0.4', mac: '02:00:00:00:01:04' }].find((b) => lb.dataplane.backendId(svcId(f), b.address) === id)!.mac;
  for (const { f, be } of moved.slice(0, 10)) {
    const ack = tcpIn(f, ['ACK']);
    runFixture(t, lb, net, { name: `established ${f.clientPort}`, in: ack, verdict: 'TX', reason: 'TX_L2DSR', out: l2Out(ack, macOf(be, f)) });
  }
  const fresh = { ...base, clientPort: 45000 };
  const syn = tcpIn(fresh);
  runFixture(t, lb, net, { name: 'new flow', in: syn, verdict: 'TX', reason: 'TX_L2DSR', out: l2Out(syn, macOf(ringBackend(fresh), fresh)) });

  // A client reusing the port of a moved flow: its SYN is a new connection and takes the new ring
  // (a stale entry must not send new connections to where the ring no longer points, e.g. a
  // drained backend); the entry now follows the new connection.
  const reused = moved[0]!;
  const reSyn = tcpIn(reused.f, ['SYN']);
  const now = ringBackend(reused.f);
  t.not(now, reused.be, 'precondition: the ring moved this tuple');
  runFixture(t, lb, net, { name: 'SYN on a stale tuple', in: reSyn, verdict: 'TX', reason: 'TX_L2DSR', out: l2Out(reSyn, macOf(now, reused.f)) });
  const reAck = tcpIn(reused.f, ['ACK']);
  runFixture(t, lb, net, { name: 'its ACK follows', in: reAck, verdict: 'TX', reason: 'TX_L2DSR', out: l2Out(reAck, macOf(now, reused.f)) });

  // A removed backend's established flows re-hash onto the remaining ring.
  const victim = flows[0]!;
  const without = grown.map((s) =>
    s.vip === '10.0.0.1' && s.port === 80
      ? { ...s, backends: s.backends.filter((b) => lb.dataplane.backendId(svcId(victim.f), b.address) !== victim.be) }
      : s,
  );
  lb.dataplane.apply(without);
  const out = net.run(lb, tcpIn(victim.f, ['ACK'])).out;
  t.same(out.subarray(0, 6), Buffer.from(macOf(ringBackend(victim.f), victim.f).split(':').map((x) => parseInt(x, 16))), 'flow of a removed backend re-hashed');
  lb.dataplane.apply(services);
});

t.test('hash on the source address only keeps a client on one backend', async (t) => {
  const bes = new Set<string>();
  for (let p = 0; p < 20; p++) {
    const { out } = net.run(lb, tcpIn({ vip: '10.0.0.3', vipPort: 80, clientPort: 46000 + p }));
    bes.add(out.subarray(0, 6).toString('hex'));
  }
  t.equal(bes.size, 1, 'one client, 20 ports, one backend');
  const clients = new Set<string>();
  for (let c = 1; c <= 30; c++) {
    const { out } = net.run(lb, tcpIn({ vip: '10.0.0.3', vipPort: 80, clientPort: 46000, client: `192.0.2.${c}` }));
    clients.add(out.subarray(0, 6).toString('hex'));
  }
  t.equal(clients.size, 3, 'different clients spread over all backends');
});

t.test('not for a service: passed untouched', async (t) => {
  const mk = (dst: string, l4: object) => packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: CLIENT, dst }, ...l4 });
  runFixture(t, lb, net, { name: 'non-VIP', in: mk('10.0.0.99', { tcp: { dstPort: 80 } }), verdict: 'PASS', reason: 'PASS_NOT_VIP', out: 'same' });
  runFixture(t, lb, net, { name: 'wrong port', in: mk('10.0.0.1', { tcp: { dstPort: 8080 } }), verdict: 'PASS', reason: 'PASS_NOT_SERVICE', out: 'same' });
  runFixture(t, lb, net, { name: 'wrong protocol', in: mk('10.0.0.2', { udp: { dstPort: 80 } }), verdict: 'PASS', reason: 'PASS_NOT_SERVICE', out: 'same' });
  runFixture(t, lb, net, { name: 'ping to VIP', in: mk('10.0.0.1', { icmp: { type: 8, code: 0 } }), verdict: 'PASS', reason: 'PASS_NOT_SERVICE', out: 'same' });
  const arp = Buffer.concat([Buffer.from('ffffffffffff02cc000000010806', 'hex'), Buffer.alloc(46)]);
  runFixture(t, lb, net, { name: 'ARP', in: arp, verdict: 'PASS', reason: 'PASS_NOT_IP', out: 'same' });
});

t.test('malformed, fragmented and optioned packets get their counted verdict', async (t) => {
  const good = tcpIn({ vip: '10.0.0.1', vipPort: 80, clientPort: 47000 });
  const cases: [string, Buffer, 'PASS' | 'DROP', string][] = [
    ['IPv4 ethertype, no IP header', good.subarray(0, 20), 'PASS', 'PASS_MALFORMED'],
    ['TCP header cut short', good.subarray(0, 14 + 20 + 10), 'DROP', 'DROP_MALFORMED'],
    ['IHL 4', packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: CLIENT, dst: '10.0.0.1', ihl: 4 }, tcp: { dstPort: 80 } }), 'DROP', 'DROP_MALFORMED'],
    ['total length beyond the frame', packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: CLIENT, dst: '10.0.0.1', totalLength: 400 }, tcp: { dstPort: 80 } }), 'DROP', 'DROP_MALFORMED'],
    ['TCP data offset 4', packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: CLIENT, dst: '10.0.0.1' }, tcp: { dstPort: 80, dataOffset: 4 } }), 'DROP', 'DROP_MALFORMED'],
    ['UDP header cut short', packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: CLIENT, dst: '10.0.0.1' }, udp: { dstPort: 53 } }).subarray(0, 14 + 20 + 4), 'DROP', 'DROP_MALFORMED'],
    ['first fragment', packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: CLIENT, dst: '10.0.0.1', flags: ['MF'] }, tcp: { dstPort: 80 } }), 'DROP', 'DROP_FRAGMENT'],
    ['later fragment', packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: CLIENT, dst: '10.0.0.1', fragOffset: 100 }, tcp: { dstPort: 80 } }), 'DROP', 'DROP_FRAGMENT'],
    ['IP options', packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: CLIENT, dst: '10.0.0.1', options: Buffer.from([1, 1, 1, 0]) }, tcp: { dstPort: 80 } }), 'DROP', 'DROP_IP_OPTIONS'],
  ];
  // The IPv4 header cut short still needs a frame the kernel will run: 20 bytes is enough.
  for (const [name, input, verdict, reason] of cases) runFixture(t, lb, net, { name, in: input, verdict, reason });
});

t.test('no usable backend: drop, or pass when the service asks', async (t) => {
  const mk = (port: number) => packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: CLIENT, dst: '10.0.0.4' }, tcp: { dstPort: port } });
  runFixture(t, lb, net, { name: 'all weight 0', in: mk(80), verdict: 'DROP', reason: 'DROP_NO_BACKEND' });
  runFixture(t, lb, net, { name: 'no backends, pass', in: mk(81), verdict: 'PASS', reason: 'PASS_NO_BACKEND', out: 'same' });
});

t.test('ICMP fragmentation-needed about a VIP flow goes to that flow\'s backend', async (t) => {
  const f: Flow = { vip: '10.0.0.1', vipPort: 80, clientPort: 48000 };
  net.run(lb, tcpIn(f));
  const mac = l2Backends.find((b) => b.address === addrOf(f, ringBackend(f), l2Backends))!.mac;
  const reply = ipPacket({ ipv4: { src: f.vip, dst: CLIENT }, tcp: { srcPort: 80, dstPort: 48000, flags: ['SYN', 'ACK'] } });
  const icmp = packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: '198.51.100.1', dst: f.vip }, icmp: icmpFragNeeded(1400, reply) });
  const before = lb.reasons().ICMP_TOO_BIG ?? 0n;
  runFixture(t, lb, net, { name: 'too big', in: icmp, verdict: 'TX', reason: 'TX_L2DSR', out: l2Out(icmp, mac) });
  t.equal((lb.reasons().ICMP_TOO_BIG ?? 0n) - before, 1n, 'counted as ICMP too-big');
});

t.test('per-service and per-backend counters move with each packet', async (t) => {
  const f: Flow = { vip: '10.0.0.1', vipPort: 80, clientPort: 49000 };
  const be = ringBackend(f);
  const read = () => stats(f, be);
  const a = read();
  const syn = tcpIn(f);
  net.run(lb, syn);
  net.run(lb, tcpIn(f, ['ACK']));
  const b = read();
  t.equal(b.svc.packets - a.svc.packets, 2n, 'service: 2 packets');
  t.equal(b.svc.newFlows - a.svc.newFlows, 1n, 'service: 1 new flow');
  t.equal(b.be.packets - a.be.packets, 2n, 'backend: 2 packets');
  t.equal(b.be.bytes - a.be.bytes, BigInt(syn.length + tcpIn(f, ['ACK']).length), 'backend: bytes');
});

t.test('flow table from the control plane: count per backend, purge one backend, others stay', async (t) => {
  const { countFlows, purgeFlows } = await import('../../src/dataplane/flows.js');
  const base = countFlows(lb.flowMemory, 1, 30);
  const flows: Flow[] = Array.from({ length: 60 }, (_, i) => ({ vip: '10.0.0.1', vipPort: 80, clientPort: 20000 + 2 * i, client: '198.51.100.7' }));
  for (const f of flows) net.run(lb, tcpIn(f));
  const after = countFlows(lb.flowMemory, 1, 30);
  const delta = new Map<number, number>();
  for (const [id, c] of after) delta.set(id, c.total - (base.get(id)?.total ?? 0));
  const added = [...delta.values()].reduce((a, b) => a + b, 0);
  t.ok(added >= 55 && added <= 60, `60 new flows recorded (${added}; a 4-way bucket may evict a few)`);
  const victim = ringBackend(flows[0]!);
  t.ok((after.get(victim)?.total ?? 0) > 0, 'the victim backend has flows');
  t.equal(after.get(victim)?.active, after.get(victim)?.total, 'all seen at the current tick: all active');
  t.equal(countFlows(lb.flowMemory, 1 + 31, 30).get(victim)?.active ?? 0, 0, '31 ticks later they are idle');
  const cleared = purgeFlows(lb.flowMemory, new Set([victim]));
  t.equal(cleared, after.get(victim)?.total, 'purge cleared exactly its ways');
  const post = countFlows(lb.flowMemory, 1, 30);
  t.equal(post.get(victim)?.total ?? 0, 0, 'none left');
  for (const [id, c] of after) if (id !== victim) t.equal(post.get(id)?.total, c.total, `backend ${id} kept its flows`);
});
