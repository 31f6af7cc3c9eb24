/**
 * NAT66 and full NAT66 (bpf/lib/nat6.h), packet by packet through BPF_PROG_TEST_RUN: forward and
 * reverse rewrites in both topologies (LB as gateway, full NAT), port translation, UDP (with a
 * checksum, without one: invalid over IPv6, and the computed-zero case), replies without a
 * connection, full-NAT66 port allocation under collisions, expiry, TCP states, hop limit, next
 * hops, a full table, extension headers in front of TCP, and packet-too-big about a connection
 * (PMTU discovery through NAT66: sent on to the backend with its quote translated back).
 *
 * Every expected output is built from scratch by src/packet (checksums the slow, obvious way over
 * the IPv6 pseudo header), so an exact byte match proves the data path's incremental updates over
 * the 128-bit addresses; the parser's independent checksum verdicts are asserted on top.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { inNetns } from '../../src/bpf/index.js';
import { loadBalancer, type LoadedBalancer } from '../../src/dataplane/loader.js';
import type { DesiredService } from '../../src/dataplane/apply.js';
import { NAT_DIR, nat6Entry, nat6Key, natKey, type NatKey } from '../../src/dataplane/abi.js';
import { fullNatFirstChoice, monotonicNs } from '../../src/dataplane/nat.js';
import {
  icmpv6PacketTooBig,
  internetChecksum,
  ipPacket,
  packet,
  parsePacket,
  pseudoHeader,
  type Ipv6ExtSpec,
  type L3Spec,
  type PacketSpec,
  type TcpFlag,
} from '../../src/packet/index.js';
import { runFixture, XDP } from './fixture.js';
import { NatBench, PORT_MAX, PORT_MIN, RING, SEED, type Flow, type Hdr } from './nat-fixture.js';

const CLIENT = '2001:db8:1::10';
const ROUTER_MAC = '02:cc:00:00:00:01';
/** Full-NAT sources of both families: NAT66 must take only the IPv6 ones. */
const SOURCES = ['10.9.0.1', 'fd09::1', 'fd09::100'];
const SOURCES6 = ['fd09::1', 'fd09::100'];
/** A second interface: NAT66 traffic to fd05::/32 leaves by it. */
const OUT2 = { ifname: 'veth2', mac: '02:aa:00:00:00:11', addr: 'fd08::1', gw: 'fd08::2', gwMac: '02:bb:00:00:00:02', net: 'fd05::/32' };

const gwBackends = [1, 2, 3].map((i) => ({ address: `fd02::1${i}`, port: 8080, weight: 1 }));
const fullBackends = [1, 2, 3].map((i) => ({ address: `fd02::2${i}`, port: 8080, weight: 1 }));

const services: DesiredService[] = [
  { vip: 'fd00:1::1', port: 80, proto: 'tcp', mode: 'nat', backends: gwBackends },
  { vip: 'fd00:1::1', port: 53, proto: 'udp', mode: 'nat', backends: gwBackends.map((b) => ({ ...b, port: 5353 })) },
  { vip: 'fd00:1::2', port: 80, proto: 'tcp', mode: 'nat', fullNat: true, backends: fullBackends },
  // backend port 0: the VIP's port is kept
  { vip: 'fd00:1::2', port: 53, proto: 'udp', mode: 'nat', fullNat: true, backends: fullBackends.map((b) => ({ address: b.address, weight: 1 })) },
  { vip: 'fd00:1::3', port: 80, proto: 'tcp', mode: 'nat', backends: [{ address: 'fd05::1', port: 8080, weight: 1 }] },
  { vip: 'fd00:1::5', port: 80, proto: 'tcp', mode: 'nat', backends: [{ address: 'fd03::1', port: 8080, weight: 1 }] },
  { vip: 'fd00:1::6', port: 80, proto: 'tcp', mode: 'nat', backends: [{ address: 'fd04::1', port: 8080, weight: 1 }] },
  { vip: 'fd00:1::7', port: 80, proto: 'tcp', mode: 'nat', fullNat: true, backends: [{ address: 'fd02::31', port: 8080, weight: 1 }] },
  { vip: 'fd00:1::8', port: 80, proto: 'tcp', mode: 'nat', backends: [{ address: 'fd02::41', port: 8080, weight: 1 }] },
  { vip: 'fd00:1::9', port: 80, proto: 'tcp', mode: 'nat', backends: [{ address: 'fd02::41', port: 8080, weight: 1 }] },
  // the next-hop cache's fixtures: backends of their own, routed with an MTU of their own
  { vip: 'fd00:1::10', port: 80, proto: 'tcp', mode: 'nat', backends: [{ address: 'fd02::51', port: 8080, weight: 1 }] },
  { vip: 'fd00:1::11', port: 80, proto: 'tcp', mode: 'nat', fullNat: true, backends: [{ address: 'fd02::52', port: 8080, weight: 1 }] },
  // IPv4 NAT beside it: its connections must stay in nat_conns
  { vip: '10.0.1.1', port: 80, proto: 'tcp', mode: 'nat', backends: [{ address: '10.2.0.11', port: 8080, weight: 1 }] },
];

const bench = new NatBench({ services, sources: SOURCES, client: CLIENT, out2: OUT2, clientNets: ['2001:db8::/32', '192.0.2.0/24'], nat6Entries: 4096 });
const { net, ipn, tuple, svcId, ringBackend, connOf, stats } = bench;
let lb: LoadedBalancer;

t.before(() => {
  lb = bench.up();
});
t.teardown(() => bench.down());

// ---- helpers ---------------------------------------------------------------------------------

/** A TCP segment from the router to the LB; traffic class and flow label set, to catch stray writes. */
function tcpSpec(h: Hdr, flags: TcpFlag[] = ['SYN'], hopLimit = 64, ext?: Ipv6ExtSpec[]): PacketSpec {
  return {
    eth: { src: ROUTER_MAC, dst: net.mac },
    ipv6: { src: h.src, dst: h.dst, hopLimit, trafficClass: 0x28, flowLabel: 0xbeef5, ...(ext ? { ext } : {}) },
    tcp: {
      srcPort: h.sport,
      dstPort: h.dport,
      flags,
      seq: 0x11223344,
      ack: flags.includes('ACK') ? 0x55667788 : 0,
      window: 29200,
      options: flags.includes('SYN') ? Buffer.from([2, 4, 0x05, 0xa0, 1, 1, 4, 2]) : undefined,
      payload: flags.includes('PSH') ? Buffer.from('GET / HTTP/1.1\r\n\r\n') : undefined,
    },
  };
}

function udpSpec(h: Hdr, payload: string | Buffer = 'query', checksum?: number): PacketSpec {
  return {
    eth: { src: ROUTER_MAC, dst: net.mac },
    ipv6: { src: h.src, dst: h.dst, hopLimit: 64 },
    udp: { srcPort: h.sport, dstPort: h.dport, payload: Buffer.from(payload), ...(checksum !== undefined ? { checksum } : {}) },
  };
}

/** The spec as it must leave: new tuple, MACs from the next hop, hop limit one less; checksums recomputed by the builder. */
function translated(spec: PacketSpec, h: Hdr, via: { smac: string; dmac: string } = { smac: net.mac, dmac: net.gwMac }, hopDec = 1): Buffer {
  const out: PacketSpec = {
    ...spec,
    eth: { src: via.smac, dst: via.dmac },
    ipv6: { ...spec.ipv6, src: h.src, dst: h.dst, hopLimit: (spec.ipv6?.hopLimit ?? 64) - hopDec },
  };
  if (spec.tcp) out.tcp = { ...spec.tcp, srcPort: h.sport, dstPort: h.dport };
  if (spec.udp) out.udp = { ...spec.udp, srcPort: h.sport, dstPort: h.dport };
  return packet(out);
}

function checksumsOk(t: Test, out: Buffer, what: string): void {
  const p = parsePacket(out);
  t.ok(p.ipv6, `${what}: an IPv6 packet`);
  if (p.tcp) t.equal(p.tcp.checksumOk, true, `${what}: TCP checksum valid (independent check)`);
  if (p.udp) t.equal(p.udp.checksumOk, true, `${what}: UDP checksum valid (independent check)`);
}

/** Moves both entries of a NAT66 connection back in time, as if it had been idle for `sec` seconds. */
function age(fwd: NatKey, sec: number): void {
  const m = lb.maps.nat6_conns;
  const fv = m.lookup(nat6Key.encode(fwd));
  if (!fv) throw new Error('no forward entry to age');
  const f = nat6Entry.decode(fv);
  const keys = [fwd, { saddr: f.daddr, daddr: f.saddr, sport: f.dport, dport: f.sport, proto: fwd.proto, dir: NAT_DIR.reverse }];
  for (const k of keys) {
    const v = m.lookup(nat6Key.encode(k));
    if (!v) throw new Error(`no entry ${JSON.stringify(k)}`);
    m.update(nat6Key.encode(k), nat6Entry.encode({ ...nat6Entry.decode(v), lastSeen: monotonicNs() - BigInt(sec) * 1_000_000_000n }));
  }
}

const count6 = () => [...lb.maps.nat6_conns.keys()].length;
const count4 = () => [...lb.maps.nat_conns.keys()].length;

// ---- LB as the backends' gateway ---------------------------------------------------------------

t.test('gateway NAT66, TCP: SYN to the ring backend with port translation; the reply goes back from the VIP', async (t) => {
  const f: Flow = { vip: 'fd00:1::1', vipPort: 80, clientPort: 40001 };
  const be = ringBackend(f);
  t.equal(be.port, 8080, 'the backend listens on 8080, the VIP on 80');
  const syn = tcpSpec({ src: CLIENT, sport: 40001, dst: f.vip, dport: 80 });
  const out = runFixture(t, lb, net, {
    name: 'SYN', in: packet(syn), verdict: 'TX', reason: 'TX_NAT',
    out: translated(syn, { src: CLIENT, sport: 40001, dst: be.address, dport: 8080 }),
  });
  checksumsOk(t, out, 'SYN');

  const c = connOf(40001, f.vip);
  t.match(c, { proto: 'tcp', client: CLIENT, backend: be.address, backendPort: 8080, source: CLIENT, sourcePort: 40001, fullNat: false, state: 'tcpNew', backendId: be.id }, 'connection listed with IPv6 addresses, client address kept');

  const synack = tcpSpec({ src: be.address, sport: 8080, dst: CLIENT, dport: 40001 }, ['SYN', 'ACK']);
  const rout = runFixture(t, lb, net, {
    name: 'SYN-ACK', in: packet(synack), verdict: 'TX', reason: 'TX_NAT_REPLY',
    out: translated(synack, { src: f.vip, sport: 80, dst: CLIENT, dport: 40001 }),
  });
  checksumsOk(t, rout, 'SYN-ACK');
  t.equal(connOf(40001, f.vip)?.state, 'tcpEstablished', 'the reply made it established');

  const data = tcpSpec({ src: CLIENT, sport: 40001, dst: f.vip, dport: 80 }, ['ACK', 'PSH']);
  checksumsOk(t, runFixture(t, lb, net, {
    name: 'data', in: packet(data), verdict: 'TX', reason: 'TX_NAT',
    out: translated(data, { src: CLIENT, sport: 40001, dst: be.address, dport: 8080 }),
  }), 'data');
});

t.test('gateway NAT66: 90 flows spread over all three backends, each where the ring says', async (t) => {
  const seen = new Map<string, number>();
  let wrong = 0;
  for (let p = 0; p < 90; p++) {
    const f: Flow = { vip: 'fd00:1::1', vipPort: 80, clientPort: 41000 + 2 * p, client: '2001:db8:2::20' };
    const { verdict, out } = net.run(lb, packet(tcpSpec({ src: f.client!, sport: f.clientPort, dst: f.vip, dport: 80 })));
    const o = parsePacket(out);
    const want = ringBackend(f).address;
    if (verdict !== XDP.TX || o.ipv6?.dst !== want || o.tcp?.dstPort !== 8080) wrong++;
    seen.set(want, (seen.get(want) ?? 0) + 1);
  }
  t.equal(wrong, 0, 'every flow translated to the backend the TypeScript hash and ring predict');
  t.equal(seen.size, 3, 'all three backends got flows');
});

// ---- full NAT66 --------------------------------------------------------------------------------

t.test('full NAT66, TCP: source becomes an LB IPv6 address and a hashed port; the reply goes back to the client', async (t) => {
  const f: Flow = { vip: 'fd00:1::2', vipPort: 80, clientPort: 40002 };
  const be = ringBackend(f);
  const first = fullNatFirstChoice(tuple(f), SEED, { sources: SOURCES, portMin: PORT_MIN, portMax: PORT_MAX });
  t.ok(SOURCES6.includes(first.source), `an IPv6 source is predicted (${first.source})`);
  const syn = tcpSpec({ src: CLIENT, sport: 40002, dst: f.vip, dport: 80 });
  checksumsOk(t, runFixture(t, lb, net, {
    name: 'SYN', in: packet(syn), verdict: 'TX', reason: 'TX_NAT',
    out: translated(syn, { src: first.source, sport: first.port, dst: be.address, dport: 8080 }),
  }), 'SYN');
  t.match(connOf(40002, f.vip), { fullNat: true, source: first.source, sourcePort: first.port, backend: be.address }, 'listed with its LB source');

  const synack = tcpSpec({ src: be.address, sport: 8080, dst: first.source, dport: first.port }, ['SYN', 'ACK']);
  checksumsOk(t, runFixture(t, lb, net, {
    name: 'SYN-ACK', in: packet(synack), verdict: 'TX', reason: 'TX_NAT_REPLY',
    out: translated(synack, { src: f.vip, sport: 80, dst: CLIENT, dport: 40002 }),
  }), 'SYN-ACK');

  const used = new Set<string>();
  let wrong = 0;
  for (let p = 0; p < 40; p++) {
    const g: Flow = { vip: 'fd00:1::2', vipPort: 80, clientPort: 42000 + p, client: '2001:db8:3::30' };
    const fc = fullNatFirstChoice(tuple(g), SEED, { sources: SOURCES, portMin: PORT_MIN, portMax: PORT_MAX });
    const o = parsePacket(net.run(lb, packet(tcpSpec({ src: g.client!, sport: g.clientPort, dst: g.vip, dport: 80 }))).out);
    if (o.ipv6?.src === fc.source && o.tcp?.srcPort === fc.port) used.add(fc.source);
    else wrong++;
  }
  t.equal(wrong, 0, 'every connection got the predicted source and port');
  t.same([...used].sort(), [...SOURCES6].sort(), 'spread over both IPv6 sources, never the IPv4 one');
});

// ---- UDP ---------------------------------------------------------------------------------------

t.test('UDP with checksum, both directions, both topologies', async (t) => {
  const f: Flow = { vip: 'fd00:1::1', vipPort: 53, clientPort: 33333, proto: 'udp' };
  const be = ringBackend(f);
  t.equal(be.port, 5353, 'UDP port translation 53 -> 5353');
  const q = udpSpec({ src: CLIENT, sport: 33333, dst: f.vip, dport: 53 });
  checksumsOk(t, runFixture(t, lb, net, {
    name: 'query', in: packet(q), verdict: 'TX', reason: 'TX_NAT',
    out: translated(q, { src: CLIENT, sport: 33333, dst: be.address, dport: 5353 }),
  }), 'query');
  const a = udpSpec({ src: be.address, sport: 5353, dst: CLIENT, dport: 33333 }, 'answer');
  checksumsOk(t, runFixture(t, lb, net, {
    name: 'answer', in: packet(a), verdict: 'TX', reason: 'TX_NAT_REPLY',
    out: translated(a, { src: f.vip, sport: 53, dst: CLIENT, dport: 33333 }),
  }), 'answer');
  t.equal(connOf(33333, f.vip)?.state, 'udp', 'listed as a UDP connection');

  // Full NAT, backend port 0: the VIP's port is kept.
  const g: Flow = { vip: 'fd00:1::2', vipPort: 53, clientPort: 33334, proto: 'udp' };
  const gb = ringBackend(g);
  const fc = fullNatFirstChoice(tuple(g), SEED, { sources: SOURCES, portMin: PORT_MIN, portMax: PORT_MAX });
  const gq = udpSpec({ src: CLIENT, sport: 33334, dst: g.vip, dport: 53 });
  checksumsOk(t, runFixture(t, lb, net, {
    name: 'full NAT66 query', in: packet(gq), verdict: 'TX', reason: 'TX_NAT',
    out: translated(gq, { src: fc.source, sport: fc.port, dst: gb.address, dport: 53 }),
  }), 'full NAT66 query');
  const ga = udpSpec({ src: gb.address, sport: 53, dst: fc.source, dport: fc.port }, 'answer');
  checksumsOk(t, runFixture(t, lb, net, {
    name: 'full NAT66 answer', in: packet(ga), verdict: 'TX', reason: 'TX_NAT_REPLY',
    out: translated(ga, { src: g.vip, sport: 53, dst: CLIENT, dport: 33334 }),
  }), 'full NAT66 answer');
});

t.test('UDP with checksum 0 (invalid over IPv6) is not translated: DROP_MALFORMED', async (t) => {
  const f: Flow = { vip: 'fd00:1::1', vipPort: 53, clientPort: 33340, proto: 'udp' };
  const be = ringBackend(f);
  const before = count6();
  runFixture(t, lb, net, { name: 'query without checksum', in: packet(udpSpec({ src: CLIENT, sport: 33340, dst: f.vip, dport: 53 }, 'q', 0)), verdict: 'DROP', reason: 'DROP_MALFORMED' });
  t.equal(count6(), before, 'no connection made for it');
  runFixture(t, lb, net, { name: 'full NAT66 query without checksum', in: packet(udpSpec({ src: CLIENT, sport: 33340, dst: 'fd00:1::2', dport: 53 }, 'q', 0)), verdict: 'DROP', reason: 'DROP_MALFORMED' });
  // A live connection's reply without checksum: not translated either.
  runFixture(t, lb, net, { name: 'query', in: packet(udpSpec({ src: CLIENT, sport: 33340, dst: f.vip, dport: 53 })), verdict: 'TX', reason: 'TX_NAT' });
  runFixture(t, lb, net, { name: 'answer without checksum', in: packet(udpSpec({ src: be.address, sport: 5353, dst: CLIENT, dport: 33340 }, 'a', 0)), verdict: 'DROP', reason: 'DROP_MALFORMED' });
  // Not ours: untouched, like any other packet from a backend's address.
  runFixture(t, lb, net, { name: 'no-checksum datagram of no connection', in: packet(udpSpec({ src: be.address, sport: 5353, dst: CLIENT, dport: 33341 }, 'a', 0)), verdict: 'PASS', reason: 'PASS_NOT_NAT', out: 'same' });
});

t.test('a UDP checksum that computes to zero after translation goes out as 0xffff', async (t) => {
  const f: Flow = { vip: 'fd00:1::1', vipPort: 53, clientPort: 33335, proto: 'udp' };
  const be = ringBackend(f);
  // A 2-byte payload whose translated datagram sums to 0xffff, i.e. computes to checksum 0.
  let payload: Buffer | undefined;
  for (let w = 0; w < 0x10000 && !payload; w++) {
    const p = Buffer.from([w >> 8, w & 0xff]);
    const d = Buffer.alloc(10);
    d.writeUInt16BE(33335, 0);
    d.writeUInt16BE(5353, 2);
    d.writeUInt16BE(10, 4);
    p.copy(d, 8);
    if (internetChecksum(pseudoHeader(CLIENT, be.address, 17, 10), d) === 0) payload = p;
  }
  if (!payload) throw new Error('no payload found');
  const spec = udpSpec({ src: CLIENT, sport: 33335, dst: f.vip, dport: 53 }, payload);
  t.not(parsePacket(packet(spec)).udp?.checksum, 0xffff, 'the input checksum itself is not 0xffff');
  const out = runFixture(t, lb, net, {
    name: 'zero sum', in: packet(spec), verdict: 'TX', reason: 'TX_NAT',
    out: translated(spec, { src: CLIENT, sport: 33335, dst: be.address, dport: 5353 }),
  });
  t.equal(parsePacket(out).udp?.checksum, 0xffff, 'checksum field is 0xffff, not 0');
  checksumsOk(t, out, 'zero sum');
});

// ---- replies without a connection ----------------------------------------------------------------

t.test('a reply with no connection entry passes untouched', async (t) => {
  const be = gwBackends[0]!.address;
  const mk = (h: Hdr) => packet(tcpSpec(h, ['SYN', 'ACK']));
  runFixture(t, lb, net, { name: 'from a NAT backend, unknown client port', in: mk({ src: be, sport: 8080, dst: CLIENT, dport: 50999 }), verdict: 'PASS', reason: 'PASS_NOT_NAT', out: 'same' });
  runFixture(t, lb, net, { name: 'from a NAT backend, other source port', in: mk({ src: be, sport: 22, dst: CLIENT, dport: 40001 }), verdict: 'PASS', reason: 'PASS_NOT_NAT', out: 'same' });
  runFixture(t, lb, net, { name: 'from a NAT backend, other client address', in: mk({ src: be, sport: 8080, dst: '2001:db8:1::11', dport: 40001 }), verdict: 'PASS', reason: 'PASS_NOT_NAT', out: 'same' });
  runFixture(t, lb, net, { name: 'to a full-NAT address, no connection', in: mk({ src: fullBackends[0]!.address, sport: 8080, dst: SOURCES6[0]!, dport: PORT_MIN }), verdict: 'PASS', reason: 'PASS_NOT_NAT', out: 'same' });
  runFixture(t, lb, net, { name: 'from anywhere else', in: mk({ src: 'fd02::99', sport: 8080, dst: CLIENT, dport: 40001 }), verdict: 'PASS', reason: 'PASS_NOT_VIP', out: 'same' });
  const ping = packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv6: { src: be, dst: CLIENT }, icmpv6: { type: 128 } });
  runFixture(t, lb, net, { name: 'ping from a NAT backend', in: ping, verdict: 'PASS', reason: 'PASS_NOT_NAT', out: 'same' });
});

// ---- full-NAT66 port allocation ------------------------------------------------------------------

t.test('full-NAT66 ports: a taken port is skipped, an expired holder is replaced, a full range drops, a freed port is reused', async (t) => {
  const VIP = 'fd00:1::7';
  const BE = 'fd02::31';
  const range = { sources: SOURCES, portMin: 30000, portMax: 30099 };
  lb.nat.configure(range);
  t.teardown(() => {
    lb.nat.configure({ sources: SOURCES, portMin: PORT_MIN, portMax: PORT_MAX });
  });

  // Another client's live connection holds this flow's first-choice port.
  const f: Flow = { vip: VIP, vipPort: 80, clientPort: 44000 };
  const first = fullNatFirstChoice(tuple(f), SEED, range);
  const taken: NatKey = { saddr: BE, daddr: first.source, sport: 8080, dport: first.port, proto: 6, dir: NAT_DIR.reverse };
  lb.maps.nat6_conns.update(nat6Key.encode(taken), nat6Entry.encode({
    saddr: VIP, daddr: '2001:db8:9::99', sport: 80, dport: 1234, serviceId: svcId(f), backendId: 1, state: 2, flags: 1, lastSeen: monotonicNs(),
  }));
  const next = first.port === range.portMax ? range.portMin : first.port + 1;
  const syn = tcpSpec({ src: CLIENT, sport: 44000, dst: VIP, dport: 80 });
  runFixture(t, lb, net, { name: 'first port taken', in: packet(syn), verdict: 'TX', reason: 'TX_NAT', out: translated(syn, { src: first.source, sport: next, dst: BE, dport: 8080 }) });

  // A port held by an entry that has expired is free for the taking (its stale partner goes too).
  let g: Flow = { vip: VIP, vipPort: 80, clientPort: 44100 };
  let gf = fullNatFirstChoice(tuple(g), SEED, range);
  while (gf.source === first.source && (gf.port === first.port || gf.port === next)) {
    g = { ...g, clientPort: g.clientPort + 1 };
    gf = fullNatFirstChoice(tuple(g), SEED, range);
  }
  const staleRev: NatKey = { ...taken, daddr: gf.source, dport: gf.port };
  const staleFwd: NatKey = { saddr: '2001:db8:9::98', daddr: VIP, sport: 1235, dport: 80, proto: 6, dir: NAT_DIR.forward };
  const old = monotonicNs() - 400_000_000_000n;
  lb.maps.nat6_conns.update(nat6Key.encode(staleRev), nat6Entry.encode({
    saddr: VIP, daddr: staleFwd.saddr, sport: 80, dport: 1235, serviceId: svcId(g), backendId: 1, state: 2, flags: 1, lastSeen: old,
  }));
  lb.maps.nat6_conns.update(nat6Key.encode(staleFwd), nat6Entry.encode({
    saddr: gf.source, daddr: BE, sport: gf.port, dport: 8080, serviceId: svcId(g), backendId: 1, state: 2, flags: 1, lastSeen: old,
  }));
  const gs = tcpSpec({ src: CLIENT, sport: g.clientPort, dst: VIP, dport: 80 });
  runFixture(t, lb, net, { name: 'expired holder', in: packet(gs), verdict: 'TX', reason: 'TX_NAT', out: translated(gs, { src: gf.source, sport: gf.port, dst: BE, dport: 8080 }) });
  t.notOk(lb.maps.nat6_conns.lookup(nat6Key.encode(staleFwd)), 'the expired holder\'s forward entry was unlinked with it');
  lb.maps.nat6_conns.delete(nat6Key.encode(taken));

  // Four ports, two IPv6 addresses, one backend: eight connections fit, the ninth finds none.
  const tiny = { sources: SOURCES, portMin: 31000, portMax: 31003 };
  lb.nat.configure(tiny);
  const got = new Map<string, number>();
  let n = 0;
  for (let p = 0; p < 200; p++) {
    const { verdict, out } = net.run(lb, packet(tcpSpec({ src: CLIENT, sport: 45000 + p, dst: VIP, dport: 80 })));
    if (verdict !== XDP.TX) break;
    n++;
    const o = parsePacket(out);
    const k = `[${o.ipv6?.src}]:${o.tcp?.srcPort}`;
    got.set(k, (got.get(k) ?? 0) + 1);
  }
  t.equal(n, 8, 'eight connections got a source');
  t.equal(got.size, 8, 'no two share an address and port');
  t.ok([...got.keys()].every((k) => SOURCES6.some((s) => k.startsWith(`[${s}]:`)) && Number(k.split(']:')[1]) >= 31000 && Number(k.split(']:')[1]) <= 31003), 'all IPv6 sources inside the range');
  const before = lb.reasons().DROP_NAT_NO_PORT ?? 0n;
  runFixture(t, lb, net, { name: 'range exhausted', in: packet(tcpSpec({ src: CLIENT, sport: 45999, dst: VIP, dport: 80 })), verdict: 'DROP', reason: 'DROP_NAT_NO_PORT' });
  t.equal((lb.reasons().DROP_NAT_NO_PORT ?? 0n) - before, 1n, 'counted once');

  // Sweeping one idle connection returns its port: the next connection gets exactly that one.
  const victim = lb.nat.connections().find((c) => c.vip === VIP && c.sourcePort >= 31000 && c.sourcePort <= 31003)!;
  age({ saddr: victim.client, daddr: VIP, sport: victim.clientPort, dport: 80, proto: 6, dir: NAT_DIR.forward }, 35);
  t.equal(lb.nat.sweep().connections, 1, 'the sweeper deleted that one NAT66 connection');
  let sport = 45900;
  while (fullNatFirstChoice(tuple({ vip: VIP, vipPort: 80, clientPort: sport }), SEED, tiny).source !== victim.source) sport++;
  const o = parsePacket(runFixture(t, lb, net, { name: 'after sweep', in: packet(tcpSpec({ src: CLIENT, sport, dst: VIP, dport: 80 })), verdict: 'TX', reason: 'TX_NAT' }));
  t.equal(`${o.ipv6?.src}:${o.tcp?.srcPort}`, `${victim.source}:${victim.sourcePort}`, 'the freed address and port were reused');
});

t.test('full NAT66 without IPv6 sources drops with its own reason, even with IPv4 sources set', async (t) => {
  lb.nat.configure({ sources: ['10.9.0.1'] });
  t.teardown(() => {
    lb.nat.configure({ sources: SOURCES });
  });
  runFixture(t, lb, net, { name: 'no IPv6 source', in: packet(tcpSpec({ src: CLIENT, sport: 46000, dst: 'fd00:1::2', dport: 80 })), verdict: 'DROP', reason: 'DROP_NAT_NO_SOURCE' });
  runFixture(t, lb, net, { name: 'gateway NAT66 needs none', in: packet(tcpSpec({ src: CLIENT, sport: 46000, dst: 'fd00:1::1', dport: 80 })), verdict: 'TX', reason: 'TX_NAT' });
});

t.test('gateway NAT66: a reply tuple held by another VIP\'s connection is a counted conflict', async (t) => {
  runFixture(t, lb, net, { name: 'first VIP', in: packet(tcpSpec({ src: CLIENT, sport: 46100, dst: 'fd00:1::8', dport: 80 })), verdict: 'TX', reason: 'TX_NAT' });
  runFixture(t, lb, net, { name: 'second VIP', in: packet(tcpSpec({ src: CLIENT, sport: 46100, dst: 'fd00:1::9', dport: 80 })), verdict: 'DROP', reason: 'DROP_NAT_CONFLICT' });
});

// ---- expiry and state ---------------------------------------------------------------------------

t.test('expiry: an idle connection counts as gone; FIN/RST close it; SYN reopens a closing tuple', async (t) => {
  const f: Flow = { vip: 'fd00:1::1', vipPort: 53, clientPort: 34000, proto: 'udp' };
  const fk: NatKey = { saddr: CLIENT, daddr: f.vip, sport: 34000, dport: 53, proto: 17, dir: NAT_DIR.forward };
  const be = ringBackend(f);
  net.run(lb, packet(udpSpec({ src: CLIENT, sport: 34000, dst: f.vip, dport: 53 })));
  age(fk, 31);
  t.ok(lb.nat.count().expired >= 1, 'count() sees it expired');
  runFixture(t, lb, net, { name: 'reply to an expired connection', in: packet(udpSpec({ src: be.address, sport: 5353, dst: CLIENT, dport: 34000 }, 'late')), verdict: 'PASS', reason: 'PASS_NOT_NAT', out: 'same' });
  const a = stats(f, be.id);
  runFixture(t, lb, net, { name: 'client again after the timeout', in: packet(udpSpec({ src: CLIENT, sport: 34000, dst: f.vip, dport: 53 })), verdict: 'TX', reason: 'TX_NAT' });
  t.equal(stats(f, be.id).svc.newFlows - a.svc.newFlows, 1n, 'counted as a new connection');
  t.ok((connOf(34000, f.vip)?.idleMs ?? 1e9) < 5000, 'the entry is fresh again');

  const g: Flow = { vip: 'fd00:1::1', vipPort: 80, clientPort: 34100 };
  const gk: NatKey = { saddr: CLIENT, daddr: g.vip, sport: 34100, dport: 80, proto: 6, dir: NAT_DIR.forward };
  const gb = ringBackend(g);
  net.run(lb, packet(tcpSpec({ src: CLIENT, sport: 34100, dst: g.vip, dport: 80 })));
  t.equal(connOf(34100, g.vip)?.state, 'tcpNew');
  net.run(lb, packet(tcpSpec({ src: gb.address, sport: 8080, dst: CLIENT, dport: 34100 }, ['SYN', 'ACK'])));
  age(gk, 11);
  t.equal(connOf(34100, g.vip)?.state, 'tcpEstablished');
  t.ok((connOf(34100, g.vip)?.expiresInMs ?? 0) > 200_000, 'established and 11 s idle: far from expiry');
  runFixture(t, lb, net, { name: 'FIN from the backend', in: packet(tcpSpec({ src: gb.address, sport: 8080, dst: CLIENT, dport: 34100 }, ['FIN', 'ACK'])), verdict: 'TX', reason: 'TX_NAT_REPLY' });
  t.equal(connOf(34100, g.vip)?.state, 'tcpClosing', 'a FIN from the backend closes it (both entries)');
  age(gk, 11);
  t.ok((connOf(34100, g.vip)?.expiresInMs ?? 1) < 0, 'closing and 11 s idle: expired');
  const b = stats(g, gb.id);
  runFixture(t, lb, net, { name: 'SYN on the old tuple', in: packet(tcpSpec({ src: CLIENT, sport: 34100, dst: g.vip, dport: 80 })), verdict: 'TX', reason: 'TX_NAT' });
  t.equal(stats(g, gb.id).svc.newFlows - b.svc.newFlows, 1n, 'a new connection, not the closed one');
  t.equal(connOf(34100, g.vip)?.state, 'tcpNew');

  net.run(lb, packet(tcpSpec({ src: CLIENT, sport: 34100, dst: g.vip, dport: 80 }, ['RST'])));
  t.equal(connOf(34100, g.vip)?.state, 'tcpClosing', 'RST from the client closes');
  const c2 = stats(g, gb.id);
  net.run(lb, packet(tcpSpec({ src: CLIENT, sport: 34100, dst: g.vip, dport: 80 })));
  t.equal(stats(g, gb.id).svc.newFlows - c2.svc.newFlows, 1n, 'SYN after RST: a new connection');
  const ack = stats(g, gb.id);
  net.run(lb, packet(tcpSpec({ src: CLIENT, sport: 34100, dst: g.vip, dport: 80 }, ['ACK'])));
  t.equal(stats(g, gb.id).svc.newFlows - ack.svc.newFlows, 0n, 'an ACK of a live connection is not new');
});

// ---- counters -----------------------------------------------------------------------------------

t.test('per-service and per-backend counters: forward packets, bytes, new connections', async (t) => {
  const f: Flow = { vip: 'fd00:1::1', vipPort: 80, clientPort: 47000 };
  const be = ringBackend(f);
  const a = stats(f, be.id);
  const syn = packet(tcpSpec({ src: CLIENT, sport: 47000, dst: f.vip, dport: 80 }));
  const data = packet(tcpSpec({ src: CLIENT, sport: 47000, dst: f.vip, dport: 80 }, ['ACK', 'PSH']));
  net.run(lb, syn);
  net.run(lb, packet(tcpSpec({ src: be.address, sport: 8080, dst: CLIENT, dport: 47000 }, ['SYN', 'ACK'])));
  net.run(lb, data);
  const b = stats(f, be.id);
  t.equal(b.svc.packets - a.svc.packets, 2n, 'service: 2 packets (replies are counted as verdicts only)');
  t.equal(b.svc.newFlows - a.svc.newFlows, 1n, 'service: 1 new connection');
  t.equal(b.be.packets - a.be.packets, 2n, 'backend: 2 packets');
  t.equal(b.be.bytes - a.be.bytes, BigInt(syn.length + data.length), 'backend: bytes');
});

// ---- next hop and hop limit -----------------------------------------------------------------------

t.test('next hop: redirect through the devmap, the kernel for what XDP cannot send, drops for no route and MTU; hop limit 1', async (t) => {
  const syn = tcpSpec({ src: CLIENT, sport: 48000, dst: 'fd00:1::3', dport: 80 });
  checksumsOk(t, runFixture(t, lb, net, {
    name: 'egress on veth2', in: packet(syn), verdict: 'REDIRECT', reason: 'REDIRECT_NAT',
    out: translated(syn, { src: CLIENT, sport: 48000, dst: 'fd05::1', dport: 8080 }, { smac: OUT2.mac, dmac: OUT2.gwMac }),
  }), 'redirected');
  const reply = tcpSpec({ src: 'fd05::1', sport: 8080, dst: CLIENT, dport: 48000 }, ['SYN', 'ACK']);
  runFixture(t, lb, net, {
    name: 'its reply, back out veth0 from another interface', in: packet(reply), verdict: 'TX', reason: 'TX_NAT_REPLY',
    out: translated(reply, { src: 'fd00:1::3', sport: 80, dst: CLIENT, dport: 48000 }),
  });

  inNetns(net.ns, () => lb.nat.setTxPorts([net.ifindex]));
  const ack = tcpSpec({ src: CLIENT, sport: 48000, dst: 'fd00:1::3', dport: 80 }, ['ACK']);
  runFixture(t, lb, net, {
    name: 'egress not in tx_ports', in: packet(ack), verdict: 'PASS', reason: 'PASS_NAT_KERNEL',
    out: translated(ack, { src: CLIENT, sport: 48000, dst: 'fd05::1', dport: 8080 }, { smac: ROUTER_MAC, dmac: net.mac }, 0),
  });
  inNetns(net.ns, () => lb.nat.setTxPorts([net.ifindex, bench.out2Index]));

  const unres = tcpSpec({ src: CLIENT, sport: 48001, dst: 'fd00:1::5', dport: 80 });
  checksumsOk(t, runFixture(t, lb, net, {
    name: 'neighbour unresolved', in: packet(unres), verdict: 'PASS', reason: 'PASS_NAT_KERNEL',
    // The kernel forwards it (and decrements the hop limit itself); the MACs are the ones it came with.
    out: translated(unres, { src: CLIENT, sport: 48001, dst: 'fd03::1', dport: 8080 }, { smac: ROUTER_MAC, dmac: net.mac }, 0),
  }), 'to the kernel');
  runFixture(t, lb, net, { name: 'no route', in: packet(tcpSpec({ src: CLIENT, sport: 48002, dst: 'fd00:1::6', dport: 80 })), verdict: 'DROP', reason: 'DROP_NAT_NO_ROUTE' });

  ipn('link', 'set', OUT2.ifname, 'mtu', '1280');
  try {
    const big = tcpSpec({ src: CLIENT, sport: 48000, dst: 'fd00:1::3', dport: 80 }, ['ACK']);
    big.tcp!.payload = Buffer.alloc(1300, 0x61);
    runFixture(t, lb, net, { name: 'larger than the egress MTU', in: packet(big), verdict: 'DROP', reason: 'DROP_NAT_MTU' });
  } finally {
    ipn('link', 'set', OUT2.ifname, 'mtu', '1500');
  }

  runFixture(t, lb, net, { name: 'hop limit 1', in: packet(tcpSpec({ src: CLIENT, sport: 48003, dst: 'fd00:1::1', dport: 80 }, ['SYN'], 1)), verdict: 'PASS', reason: 'PASS_NAT_TTL', out: 'same' });
  t.notOk(connOf(48003, 'fd00:1::1'), 'no connection made for a packet that was not forwarded');
  const be = ringBackend({ vip: 'fd00:1::1', vipPort: 80, clientPort: 40001 });
  runFixture(t, lb, net, { name: 'reply with hop limit 1', in: packet(tcpSpec({ src: be.address, sport: 8080, dst: CLIENT, dport: 40001 }, ['ACK'], 1)), verdict: 'PASS', reason: 'PASS_NAT_TTL', out: 'same' });
  const h2 = tcpSpec({ src: CLIENT, sport: 40001, dst: 'fd00:1::1', dport: 80 }, ['ACK'], 2);
  runFixture(t, lb, net, { name: 'hop limit 2 leaves with 1', in: packet(h2), verdict: 'TX', reason: 'TX_NAT', out: translated(h2, { src: CLIENT, sport: 40001, dst: be.address, dport: 8080 }) });
});

t.test('next-hop cache: NAT66 answers come from the per-CPU cache for its lifetime; the MTU still applies', async (t) => {
  const TTL_MS = 1000; // LB_NEXTHOP_TTL_NS
  const MOVED = '02:aa:00:00:00:99';
  const CLIENT_B = '2001:db8:1::20';
  const cases = [
    { vip: 'fd00:1::10', backend: 'fd02::51', full: false },
    { vip: 'fd00:1::11', backend: 'fd02::52', full: true },
  ];
  // The cache is per CPU: every packet of this test must run on one CPU. BPF_PROG_TEST_RUN runs
  // XDP on the calling thread's CPU, and this thread is the process's main one (tid = pid).
  const affinity = execFileSync('taskset', ['-pc', String(process.pid)], { encoding: 'utf8' }).trim().split(': ').pop()!;
  const cpu = affinity.split(/[,-]/)[0]!;
  const dmacOf = (out: Buffer) => parsePacket(out).eth?.dst;
  const ack = (c: { vip: string }, sport: number, payload?: number) => {
    const spec = tcpSpec({ src: CLIENT, sport, dst: c.vip, dport: 80 }, ['ACK']);
    if (payload) spec.tcp!.payload = Buffer.alloc(payload, 0x61);
    return packet(spec);
  };
  /** The backend's answer to CLIENT:sport, sent to where its connection's entries say. */
  const reply = (c: { vip: string }, sport: number) => {
    const conn = connOf(sport, c.vip)!;
    return packet(tcpSpec({ src: conn.backend, sport: conn.backendPort, dst: conn.source, dport: conn.sourcePort }, ['ACK']));
  };
  try {
    execFileSync('taskset', ['-pc', cpu, String(process.pid)], { stdio: 'pipe' });
    for (const c of cases) ipn('-6', 'route', 'replace', `${c.backend}/128`, 'via', net.gw6, 'mtu', 'lock', '1300');
    await sleep(TTL_MS + 200); // nothing cached before the routes changed is still answered

    for (const c of cases) {
      const name = c.full ? 'full NAT66' : 'gateway NAT66';
      t.equal(dmacOf(runFixture(t, lb, net, { name: `${name}: SYN`, in: packet(tcpSpec({ src: CLIENT, sport: 51000, dst: c.vip, dport: 80 })), verdict: 'TX', reason: 'TX_NAT' })), net.gwMac, `${name}: SYN to the gateway`);
      t.equal(dmacOf(runFixture(t, lb, net, { name: `${name}: reply`, in: reply(c, 51000), verdict: 'TX', reason: 'TX_NAT_REPLY' })), net.gwMac, `${name}: reply to the gateway`);
      // A hit answers only packets up to the longest the kernel let through: make that 1060 bytes.
      runFixture(t, lb, net, { name: `${name}: 1060 bytes`, in: ack(c, 51000, 1000), verdict: 'TX', reason: 'TX_NAT' });
    }
    ipn('-6', 'neigh', 'replace', net.gw6, 'lladdr', MOVED, 'dev', net.ifname, 'nud', 'permanent');
    for (const c of cases) {
      const name = c.full ? 'full NAT66' : 'gateway NAT66';
      t.equal(dmacOf(runFixture(t, lb, net, { name: `${name}: ACK after the neighbour moved`, in: ack(c, 51000), verdict: 'TX', reason: 'TX_NAT' })), net.gwMac, `${name}: still the cached MAC within the lifetime`);
      t.equal(dmacOf(runFixture(t, lb, net, { name: `${name}: reply after the neighbour moved`, in: reply(c, 51000), verdict: 'TX', reason: 'TX_NAT_REPLY' })), net.gwMac, `${name}: reply, still the cached MAC`);
      if (!c.full) {
        // Neither the client's address nor the flow label is in the lookup: another client's
        // connection shares the backend's entry.
        const spec = tcpSpec({ src: CLIENT_B, sport: 51001, dst: c.vip, dport: 80 });
        spec.ipv6!.flowLabel = 0x12345;
        const out = runFixture(t, lb, net, { name: 'gateway NAT66: another client\'s SYN', in: packet(spec), verdict: 'TX', reason: 'TX_NAT' });
        t.equal(dmacOf(out), net.gwMac, 'gateway NAT66: another client uses the same cached answer');
        t.equal(parsePacket(out).ipv6?.src, CLIENT_B, 'gateway NAT66: its source is kept');
      }
      // 40 + 20 + 1300 bytes > the route's 1300: the kernel is asked and says so, cached entry or not.
      runFixture(t, lb, net, { name: `${name}: 1360 bytes on a 1300-byte route`, in: ack(c, 51000, 1300), verdict: 'DROP', reason: 'DROP_NAT_MTU' });
      t.equal(dmacOf(runFixture(t, lb, net, { name: `${name}: 1060 bytes after a drop`, in: ack(c, 51000, 1000), verdict: 'TX', reason: 'TX_NAT' })), net.gwMac, `${name}: the cached answer outlives the drop`);
      runFixture(t, lb, net, { name: `${name}: 1360 bytes again`, in: ack(c, 51000, 1300), verdict: 'DROP', reason: 'DROP_NAT_MTU' });
    }
    await sleep(TTL_MS + 200);
    for (const c of cases) {
      const name = c.full ? 'full NAT66' : 'gateway NAT66';
      t.equal(dmacOf(runFixture(t, lb, net, { name: `${name}: ACK after the lifetime`, in: ack(c, 51000), verdict: 'TX', reason: 'TX_NAT' })), MOVED, `${name}: the new MAC after the lifetime`);
      t.equal(dmacOf(runFixture(t, lb, net, { name: `${name}: reply after the lifetime`, in: reply(c, 51000), verdict: 'TX', reason: 'TX_NAT_REPLY' })), MOVED, `${name}: reply, the new MAC`);
    }
  } finally {
    ipn('-6', 'neigh', 'replace', net.gw6, 'lladdr', net.gwMac, 'dev', net.ifname, 'nud', 'permanent');
    for (const c of cases) {
      try {
        ipn('-6', 'route', 'del', `${c.backend}/128`);
      } catch {
        // never added: the test failed before
      }
    }
    execFileSync('taskset', ['-pc', affinity, String(process.pid)], { stdio: 'pipe' });
    await sleep(TTL_MS + 200); // the tests after this one see the restored neighbour
  }
});

// ---- extension headers ------------------------------------------------------------------------------

t.test('extension headers before TCP: translated behind them, their bytes unchanged, both ways', async (t) => {
  const ext: Ipv6ExtSpec[] = [
    { type: 'hopByHop', options: Buffer.from([5, 2, 0, 0]) }, // router alert
    { type: 'destOpts', options: Buffer.from([0x1e, 4, 1, 2, 3, 4]) }, // an unknown option that may be skipped
  ];
  const f: Flow = { vip: 'fd00:1::1', vipPort: 80, clientPort: 49000 };
  const be = ringBackend(f);
  const syn = tcpSpec({ src: CLIENT, sport: 49000, dst: f.vip, dport: 80 }, ['SYN'], 64, ext);
  const out = runFixture(t, lb, net, {
    name: 'SYN behind hop-by-hop and destination options', in: packet(syn), verdict: 'TX', reason: 'TX_NAT',
    out: translated(syn, { src: CLIENT, sport: 49000, dst: be.address, dport: 8080 }),
  });
  checksumsOk(t, out, 'SYN with extension headers');
  t.same(parsePacket(out).ipv6?.ext.map((e) => e.type), ['hopByHop', 'destOpts'], 'both extension headers still there');

  const synack = tcpSpec({ src: be.address, sport: 8080, dst: CLIENT, dport: 49000 }, ['SYN', 'ACK'], 64, [{ type: 'hopByHop', options: Buffer.from([5, 2, 0, 0]) }]);
  checksumsOk(t, runFixture(t, lb, net, {
    name: 'SYN-ACK behind hop-by-hop', in: packet(synack), verdict: 'TX', reason: 'TX_NAT_REPLY',
    out: translated(synack, { src: f.vip, sport: 80, dst: CLIENT, dport: 49000 }),
  }), 'SYN-ACK with extension headers');

  const fc = fullNatFirstChoice(tuple({ vip: 'fd00:1::2', vipPort: 80, clientPort: 49001 }), SEED, { sources: SOURCES, portMin: PORT_MIN, portMax: PORT_MAX });
  const fb = ringBackend({ vip: 'fd00:1::2', vipPort: 80, clientPort: 49001 });
  const fsyn = tcpSpec({ src: CLIENT, sport: 49001, dst: 'fd00:1::2', dport: 80 }, ['SYN'], 64, ext);
  checksumsOk(t, runFixture(t, lb, net, {
    name: 'full NAT66 SYN behind extension headers', in: packet(fsyn), verdict: 'TX', reason: 'TX_NAT',
    out: translated(fsyn, { src: fc.source, sport: fc.port, dst: fb.address, dport: 8080 }),
  }), 'full NAT66 SYN with extension headers');
});

// ---- packet too big about a NAT66 connection (PMTU discovery through the LB) ----------------------

const ROUTER6 = 'fd0f::1';

/** A full-size packet the LB sent a client from the VIP, as a router on the client's side quotes it. */
function bigReply(vip: string, vport: number, cport: number, proto: 'tcp' | 'udp' = 'tcp'): L3Spec {
  const payload = Buffer.alloc(1400, 0x62);
  const ipv6 = { src: vip, dst: CLIENT, hopLimit: 63, trafficClass: 0x28, flowLabel: 0x1234 };
  if (proto === 'udp') return { ipv6, udp: { srcPort: vport, dstPort: cport, payload } };
  return { ipv6, tcp: { srcPort: vport, dstPort: cport, flags: ['ACK', 'PSH'], seq: 7, ack: 9, window: 500, payload } };
}

/** The router's packet-too-big (MTU 1280) about `quoted`, to the quote's source (the VIP). */
function ptbSpec(quoted: L3Spec, hopLimit = 64, quoteLength?: number): PacketSpec {
  return {
    eth: { src: ROUTER_MAC, dst: net.mac },
    ipv6: { src: ROUTER6, dst: quoted.ipv6!.src, hopLimit },
    icmpv6: icmpv6PacketTooBig(1280, ipPacket(quoted), quoteLength),
  };
}

/** Offset of the quoted TCP/UDP checksum inside the ICMPv6 message's quote. */
const quoteL4Check = (quoted: L3Spec) => 40 + (quoted.tcp ? 16 : 6);

/**
 * The error as it must leave, built from scratch: outer source `src`, outer destination the
 * backend (q.src), the quote the packet the backend sent (tuple q), its TCP/UDP checksum the
 * original's (the LB leaves it), the ICMPv6 checksum computed anew by the builder.
 */
function ptbTranslated(quoted: L3Spec, src: string, q: Hdr, via: { smac: string; dmac: string } = { smac: net.mac, dmac: net.gwMac }): Buffer {
  const checksum = ipPacket(quoted).readUInt16BE(quoteL4Check(quoted));
  const l4 = quoted.tcp
    ? { tcp: { ...quoted.tcp, srcPort: q.sport, dstPort: q.dport, checksum } }
    : { udp: { ...quoted.udp, srcPort: q.sport, dstPort: q.dport, checksum } };
  const rewritten = ipPacket({ ipv6: { ...quoted.ipv6, src: q.src, dst: q.dst }, ...l4 });
  return packet({ eth: { src: via.smac, dst: via.dmac }, ipv6: { src, dst: q.src, hopLimit: 63 }, icmpv6: icmpv6PacketTooBig(1280, rewritten) });
}

/** Both entries of a connection, as raw bytes: state and last-seen included. */
function connBytes(fwd: NatKey): Buffer[] {
  const m = lb.maps.nat6_conns;
  const fv = m.lookup(nat6Key.encode(fwd));
  if (!fv) throw new Error('no forward entry');
  const f = nat6Entry.decode(fv);
  const rv = m.lookup(nat6Key.encode({ saddr: f.daddr, daddr: f.saddr, sport: f.dport, dport: f.sport, proto: fwd.proto, dir: NAT_DIR.reverse }));
  if (!rv) throw new Error('no reverse entry');
  return [Buffer.from(fv), Buffer.from(rv)];
}

/**
 * Sends the error about `quoted` and checks what the brief of the feature asks: the exact output,
 * the verdict and its reason, ICMP_TOO_BIG counted once, the ICMPv6 checksum valid by the
 * packet parser's own arithmetic, the MTU field and the quoted L4 checksum as they came, and the
 * connection (both entries, byte for byte) and its counters untouched.
 */
function sendPtb(t: Test, name: string, f: Flow, quoted: L3Spec, want: { src: string; q: Hdr; verdict: 'TX' | 'REDIRECT'; reason: string; via?: { smac: string; dmac: string } }): void {
  const fwd: NatKey = { saddr: CLIENT, daddr: f.vip, sport: f.clientPort, dport: f.vipPort, proto: f.proto === 'udp' ? 17 : 6, dir: NAT_DIR.forward };
  const entries = connBytes(fwd);
  const be = ringBackend(f);
  const counters = stats(f, be.id);
  const tooBig = lb.reasons().ICMP_TOO_BIG ?? 0n;
  const out = runFixture(t, lb, net, { name, in: packet(ptbSpec(quoted)), verdict: want.verdict, reason: want.reason, out: ptbTranslated(quoted, want.src, want.q, want.via) });
  t.equal((lb.reasons().ICMP_TOO_BIG ?? 0n) - tooBig, 1n, `${name}: ICMP_TOO_BIG counted once`);
  const p = parsePacket(out);
  t.equal(p.icmpv6?.checksumOk, true, `${name}: ICMPv6 checksum valid (independent check over the new addresses and quote)`);
  t.equal(p.icmpv6?.mtu, 1280, `${name}: MTU field untouched`);
  t.match(p.ipv6, { src: want.src, dst: want.q.src, hopLimit: 63 }, `${name}: outer addresses, hop limit one less`);
  t.match(p.inner?.ipv6, { src: want.q.src, dst: want.q.dst }, `${name}: quoted addresses`);
  t.match(p.inner?.tcp ?? p.inner?.udp, { srcPort: want.q.sport, dstPort: want.q.dport }, `${name}: quoted ports`);
  const qoff = out.length - (1280 - 48) + quoteL4Check(quoted);
  t.equal(out.readUInt16BE(qoff), ipPacket(quoted).readUInt16BE(quoteL4Check(quoted)), `${name}: quoted ${quoted.tcp ? 'TCP' : 'UDP'} checksum left as it was`);
  t.same(connBytes(fwd), entries, `${name}: both connection entries unchanged (state, last seen)`);
  const after = stats(f, be.id);
  t.equal(after.svc.packets, counters.svc.packets, `${name}: not counted as the service's traffic`);
  t.equal(after.be.packets, counters.be.packets, `${name}: nor as the backend's`);
}

t.test('packet too big about a gateway NAT66 connection goes to its backend, quote rewritten to what the backend sent', async (t) => {
  const f: Flow = { vip: 'fd00:1::1', vipPort: 80, clientPort: 52000 };
  const be = ringBackend(f);
  runFixture(t, lb, net, { name: 'SYN', in: packet(tcpSpec({ src: CLIENT, sport: 52000, dst: f.vip, dport: 80 })), verdict: 'TX', reason: 'TX_NAT' });
  runFixture(t, lb, net, { name: 'SYN-ACK', in: packet(tcpSpec({ src: be.address, sport: 8080, dst: CLIENT, dport: 52000 }, ['SYN', 'ACK'])), verdict: 'TX', reason: 'TX_NAT_REPLY' });
  // Gateway NAT: the router stays the outer source; the quote's destination is the client already.
  sendPtb(t, 'TCP', f, bigReply(f.vip, 80, 52000), { src: ROUTER6, q: { src: be.address, sport: 8080, dst: CLIENT, dport: 52000 }, verdict: 'TX', reason: 'TX_NAT' });
  t.equal(connOf(52000, f.vip)?.state, 'tcpEstablished', 'still established');

  const u: Flow = { vip: 'fd00:1::1', vipPort: 53, clientPort: 52001, proto: 'udp' };
  const ub = ringBackend(u);
  runFixture(t, lb, net, { name: 'UDP query', in: packet(udpSpec({ src: CLIENT, sport: 52001, dst: u.vip, dport: 53 })), verdict: 'TX', reason: 'TX_NAT' });
  sendPtb(t, 'UDP', u, bigReply(u.vip, 53, 52001, 'udp'), { src: ROUTER6, q: { src: ub.address, sport: 5353, dst: CLIENT, dport: 52001 }, verdict: 'TX', reason: 'TX_NAT' });

  // A backend behind the second interface: the error leaves where the connection's packets do.
  const r: Flow = { vip: 'fd00:1::3', vipPort: 80, clientPort: 52003 };
  runFixture(t, lb, net, { name: 'SYN via veth2', in: packet(tcpSpec({ src: CLIENT, sport: 52003, dst: r.vip, dport: 80 })), verdict: 'REDIRECT', reason: 'REDIRECT_NAT' });
  sendPtb(t, 'redirected', r, bigReply(r.vip, 80, 52003), { src: ROUTER6, q: { src: 'fd05::1', sport: 8080, dst: CLIENT, dport: 52003 }, verdict: 'REDIRECT', reason: 'REDIRECT_NAT', via: { smac: OUT2.mac, dmac: OUT2.gwMac } });
});

t.test('packet too big about a full NAT66 connection: from the LB\'s address, quote back to the LB\'s source and port', async (t) => {
  const f: Flow = { vip: 'fd00:1::2', vipPort: 80, clientPort: 52002 };
  const be = ringBackend(f);
  const fc = fullNatFirstChoice(tuple(f), SEED, { sources: SOURCES, portMin: PORT_MIN, portMax: PORT_MAX });
  runFixture(t, lb, net, { name: 'SYN', in: packet(tcpSpec({ src: CLIENT, sport: 52002, dst: f.vip, dport: 80 })), verdict: 'TX', reason: 'TX_NAT', out: translated(tcpSpec({ src: CLIENT, sport: 52002, dst: f.vip, dport: 80 }), { src: fc.source, sport: fc.port, dst: be.address, dport: 8080 }) });
  sendPtb(t, 'TCP', f, bigReply(f.vip, 80, 52002), { src: fc.source, q: { src: be.address, sport: 8080, dst: fc.source, dport: fc.port }, verdict: 'TX', reason: 'TX_NAT' });
  t.equal(connOf(52002, f.vip)?.state, 'tcpNew', 'still new: an error is not an answer');

  const u: Flow = { vip: 'fd00:1::2', vipPort: 53, clientPort: 52004, proto: 'udp' };
  const ub = ringBackend(u);
  const uc = fullNatFirstChoice(tuple(u), SEED, { sources: SOURCES, portMin: PORT_MIN, portMax: PORT_MAX });
  runFixture(t, lb, net, { name: 'UDP query', in: packet(udpSpec({ src: CLIENT, sport: 52004, dst: u.vip, dport: 53 })), verdict: 'TX', reason: 'TX_NAT' });
  sendPtb(t, 'UDP', u, bigReply(u.vip, 53, 52004, 'udp'), { src: uc.source, q: { src: ub.address, sport: 53, dst: uc.source, dport: uc.port }, verdict: 'TX', reason: 'TX_NAT' });
});

t.test('packet too big without a live connection of its quote, or that cannot be forwarded, is not translated', async (t) => {
  const same = (name: string, spec: PacketSpec, verdict: 'PASS' | 'DROP', reason: string) => {
    const tooBig = lb.reasons().ICMP_TOO_BIG ?? 0n;
    runFixture(t, lb, net, { name, in: packet(spec), verdict, reason, ...(verdict === 'PASS' ? { out: 'same' as const } : {}) });
    return (lb.reasons().ICMP_TOO_BIG ?? 0n) - tooBig;
  };
  // 52000 (gateway, TCP) and 52001 (gateway, UDP) are live from the test above.
  same('no connection', ptbSpec(bigReply('fd00:1::1', 80, 52999)), 'PASS', 'PASS_NAT_ICMP');
  same('quote of another client port', ptbSpec(bigReply('fd00:1::1', 80, 52005)), 'PASS', 'PASS_NAT_ICMP');
  same('TCP quote about the UDP connection\'s ports (no TCP service on 53)', ptbSpec(bigReply('fd00:1::1', 53, 52001)), 'PASS', 'PASS_NOT_SERVICE');
  same('UDP quote about the TCP connection\'s ports (no UDP service on 80)', ptbSpec(bigReply('fd00:1::1', 80, 52000, 'udp')), 'PASS', 'PASS_NOT_SERVICE');
  const other = bigReply('fd00:1::1', 80, 52000);
  other.ipv6!.dst = '2001:db8:1::11';
  same('quote of another client address', ptbSpec(other), 'PASS', 'PASS_NAT_ICMP');
  same('hop limit 1', ptbSpec(bigReply('fd00:1::1', 80, 52000), 1), 'PASS', 'PASS_NAT_TTL');
  t.equal(same('quote cut inside the ports', ptbSpec(bigReply('fd00:1::1', 80, 52000), 64, 42), 'DROP', 'DROP_MALFORMED'), 0n, 'a truncated quote: dropped as balance6() drops it, not counted as too-big');

  const e: Flow = { vip: 'fd00:1::1', vipPort: 80, clientPort: 52010 };
  runFixture(t, lb, net, { name: 'SYN', in: packet(tcpSpec({ src: CLIENT, sport: 52010, dst: e.vip, dport: 80 })), verdict: 'TX', reason: 'TX_NAT' });
  age({ saddr: CLIENT, daddr: e.vip, sport: 52010, dport: 80, proto: 6, dir: NAT_DIR.forward }, 400);
  same('expired connection', ptbSpec(bigReply(e.vip, 80, 52010)), 'PASS', 'PASS_NAT_ICMP');

  const ping = packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv6: { src: ROUTER6, dst: 'fd00:1::1' }, icmpv6: { type: 128 } });
  runFixture(t, lb, net, { name: 'other ICMPv6 to a NAT66 VIP (echo request)', in: ping, verdict: 'PASS', reason: 'PASS_NOT_SERVICE', out: 'same' });
  const unreach = packet(ptbSpec(bigReply('fd00:1::1', 80, 52000)));
  unreach[14 + 40] = 1; // destination unreachable, same quote: not a too-big, not translated
  runFixture(t, lb, net, { name: 'destination unreachable about a live connection', in: unreach, verdict: 'PASS', reason: 'PASS_NOT_SERVICE', out: 'same' });
});

// ---- coexistence ----------------------------------------------------------------------------------

t.test('IPv4 and IPv6 connections live in their own tables', async (t) => {
  const v4 = count4();
  const v6 = count6();
  runFixture(t, lb, net, { name: 'IPv4 NAT SYN', in: packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: '192.0.2.10', dst: '10.0.1.1' }, tcp: { srcPort: 49100, dstPort: 80 } }), verdict: 'TX', reason: 'TX_NAT' });
  t.equal(count4() - v4, 2, 'the IPv4 connection: two entries in nat_conns');
  t.equal(count6(), v6, 'none in nat6_conns');
  t.ok(lb.maps.nat_conns.lookup(natKey.encode({ saddr: '192.0.2.10', daddr: '10.0.1.1', sport: 49100, dport: 80, proto: 6, dir: NAT_DIR.forward })), 'found under its IPv4 key');
  runFixture(t, lb, net, { name: 'IPv6 NAT SYN', in: packet(tcpSpec({ src: CLIENT, sport: 49100, dst: 'fd00:1::1', dport: 80 })), verdict: 'TX', reason: 'TX_NAT' });
  t.equal(count6() - v6, 2, 'the IPv6 connection: two entries in nat6_conns');
  t.equal(count4() - v4, 2, 'nat_conns unchanged');
  t.match(connOf(49100, '10.0.1.1'), { client: '192.0.2.10', backend: '10.2.0.11' }, 'both listed');
  t.match(connOf(49100, 'fd00:1::1'), { client: CLIENT });
});

t.test('a full table drops new NAT66 connections with a counted verdict and keeps the established ones', async (t) => {
  const small = loadBalancer({ ringSize: RING, maxServices: 4, flowBuckets: 64, seed: SEED, natEntries: 4096, nat6Entries: 4 });
  t.teardown(() => small.close());
  small.nat.configure({ sources: SOURCES });
  small.dataplane.apply([services[0]!]);
  const mk = (port: number, flags: TcpFlag[] = ['SYN']) => packet(tcpSpec({ src: CLIENT, sport: port, dst: 'fd00:1::1', dport: 80 }, flags));
  for (const p of [50000, 50002]) t.equal(net.run(small, mk(p)).verdict, XDP.TX, `connection ${p} fits`);
  const before = small.reasons();
  t.equal(net.run(small, mk(50004)).verdict, XDP.DROP, 'the third does not');
  t.equal((small.reasons().DROP_NAT_TABLE_FULL ?? 0n) - (before.DROP_NAT_TABLE_FULL ?? 0n), 1n, 'counted as DROP_NAT_TABLE_FULL');
  t.equal(small.nat.count().entries, 4, 'no half-built pair left behind');
  t.equal(net.run(small, mk(50000, ['ACK'])).verdict, XDP.TX, 'an established connection still passes');
});
