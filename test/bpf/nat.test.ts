/**
 * NAT mode, packet by packet through BPF_PROG_TEST_RUN: forward and reverse rewrites in both
 * topologies (LB as gateway, full NAT), port translation, UDP with and without checksum, replies
 * without a connection, full-NAT port allocation under collisions, expiry, next-hop handling.
 *
 * Every expected output is built from scratch by src/packet (which computes checksums the slow,
 * obvious way), so an exact byte match also proves the data path's incremental checksum updates;
 * the parser's independent checksum verdicts are asserted on top.
 */
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { inNetns } from '../../src/bpf/index.js';
import { loadBalancer, type LoadedBalancer } from '../../src/dataplane/loader.js';
import type { DesiredService } from '../../src/dataplane/apply.js';
import { lbReduce, ringHash } from '../../src/dataplane/hash.js';
import { NAT_DIR, natEntry, natKey, type NatKey } from '../../src/dataplane/abi.js';
import { fullNatFirstChoice, monotonicNs } from '../../src/dataplane/nat.js';
import {
  icmpFragNeeded,
  internetChecksum,
  ipPacket,
  packet,
  parsePacket,
  pseudoHeader,
  type PacketSpec,
  type TcpFlag,
} from '../../src/packet/index.js';
import { runFixture, XDP } from './fixture.js';
import { NatBench, PORT_MAX, PORT_MIN, RING, SEED, type Flow, type Hdr } from './nat-fixture.js';

const CLIENT = '192.0.2.10';
const ROUTER_MAC = '02:cc:00:00:00:01';
const SOURCES = ['10.9.0.1', '10.9.0.100'];
/** The second interface of the fixture namespace: NAT traffic to 10.5.0.0/16 leaves by it. */
const OUT2 = { ifname: 'veth2', mac: '02:aa:00:00:00:11', addr: '10.8.0.1', gw: '10.8.0.2', gwMac: '02:bb:00:00:00:02', net: '10.5.0.0/16' };

const gwBackends = [1, 2, 3].map((i) => ({ address: `10.2.0.1${i}`, port: 8080, weight: 1 }));
const fullBackends = [1, 2, 3].map((i) => ({ address: `10.2.0.2${i}`, port: 8080, weight: 1 }));

const services: DesiredService[] = [
  { vip: '10.0.1.1', port: 80, proto: 'tcp', mode: 'nat', backends: gwBackends },
  { vip: '10.0.1.1', port: 53, proto: 'udp', mode: 'nat', backends: gwBackends.map((b) => ({ ...b, port: 5353 })) },
  { vip: '10.0.1.2', port: 80, proto: 'tcp', mode: 'nat', fullNat: true, backends: fullBackends },
  // backend port 0: the VIP's port is kept
  { vip: '10.0.1.2', port: 53, proto: 'udp', mode: 'nat', fullNat: true, backends: fullBackends.map((b) => ({ address: b.address, weight: 1 })) },
  { vip: '10.0.1.3', port: 80, proto: 'tcp', mode: 'nat', backends: [{ address: '10.5.0.1', port: 8080, weight: 1 }] },
  { vip: '10.0.1.5', port: 80, proto: 'tcp', mode: 'nat', backends: [{ address: '10.3.0.1', port: 8080, weight: 1 }] },
  { vip: '10.0.1.6', port: 80, proto: 'tcp', mode: 'nat', backends: [{ address: '10.4.0.1', port: 8080, weight: 1 }] },
  { vip: '10.0.1.7', port: 80, proto: 'tcp', mode: 'nat', fullNat: true, backends: [{ address: '10.2.0.31', port: 8080, weight: 1 }] },
  { vip: '10.0.1.8', port: 80, proto: 'tcp', mode: 'nat', backends: [{ address: '10.2.0.41', port: 8080, weight: 1 }] },
  { vip: '10.0.1.9', port: 80, proto: 'tcp', mode: 'nat', backends: [{ address: '10.2.0.41', port: 8080, weight: 1 }] },
  // the next-hop cache's fixtures: backends of their own, routed with an MTU of their own
  { vip: '10.0.1.10', port: 80, proto: 'tcp', mode: 'nat', backends: [{ address: '10.2.0.51', port: 8080, weight: 1 }] },
  { vip: '10.0.1.11', port: 80, proto: 'tcp', mode: 'nat', fullNat: true, backends: [{ address: '10.2.0.52', port: 8080, weight: 1 }] },
  { vip: '10.0.0.1', port: 80, proto: 'tcp', mode: 'l2dsr', backends: [{ address: '10.1.0.1', mac: '02:00:00:00:01:01', weight: 1 }] },
];

const bench = new NatBench({ services, sources: SOURCES, client: CLIENT, out2: OUT2, clientNets: ['192.0.2.0/24', '198.51.100.0/24'] });
const { net, ipn, tuple, svcId, ringBackend, connOf, stats } = bench;
let lb: LoadedBalancer;

t.before(() => {
  lb = bench.up();
});
t.teardown(() => bench.down());

// ---- helpers ---------------------------------------------------------------------------------

/** A TCP segment from the router to the LB, with enough in it (payload, seq, window) to catch stray writes. */
function tcpSpec(h: Hdr, flags: TcpFlag[] = ['SYN'], ttl = 64): PacketSpec {
  return {
    eth: { src: ROUTER_MAC, dst: net.mac },
    ipv4: { src: h.src, dst: h.dst, flags: ['DF'], tos: 0x10, id: 0x4d2, ttl },
    tcp: {
      srcPort: h.sport,
      dstPort: h.dport,
      flags,
      seq: 0x11223344,
      ack: flags.includes('ACK') ? 0x55667788 : 0,
      window: 29200,
      options: flags.includes('SYN') ? Buffer.from([2, 4, 0x05, 0xb4, 1, 1, 4, 2]) : undefined,
      payload: flags.includes('PSH') ? Buffer.from('GET / HTTP/1.1\r\n\r\n') : undefined,
    },
  };
}

function udpSpec(h: Hdr, payload = 'query', checksum?: number): PacketSpec {
  return {
    eth: { src: ROUTER_MAC, dst: net.mac },
    ipv4: { src: h.src, dst: h.dst, id: 0x99, ttl: 64 },
    udp: { srcPort: h.sport, dstPort: h.dport, payload: Buffer.from(payload), ...(checksum !== undefined ? { checksum } : {}) },
  };
}

/** The spec as it must leave: new tuple, MACs from the next hop, TTL one less; checksums recomputed by the builder. */
function translated(spec: PacketSpec, h: Hdr, via: { smac: string; dmac: string } = { smac: net.mac, dmac: net.gwMac }, ttlDec = 1): Buffer {
  const out: PacketSpec = {
    ...spec,
    eth: { src: via.smac, dst: via.dmac },
    ipv4: { ...spec.ipv4, src: h.src, dst: h.dst, ttl: (spec.ipv4?.ttl ?? 64) - ttlDec },
  };
  if (spec.tcp) out.tcp = { ...spec.tcp, srcPort: h.sport, dstPort: h.dport };
  if (spec.udp) out.udp = { ...spec.udp, srcPort: h.sport, dstPort: h.dport };
  return packet(out);
}

function checksumsOk(t: Test, out: Buffer, what: string): void {
  const p = parsePacket(out);
  t.equal(p.ipv4?.checksumOk, true, `${what}: IPv4 header checksum valid (independent check)`);
  if (p.tcp) t.equal(p.tcp.checksumOk, true, `${what}: TCP checksum valid (independent check)`);
  if (p.udp) t.equal(p.udp.checksumOk, true, `${what}: UDP checksum valid or absent (independent check)`);
}

/** Moves both entries of a connection back in time, as if it had been idle for `sec` seconds. */
function age(fwd: NatKey, sec: number): void {
  const keys = [fwd];
  const fv = lb.maps.nat_conns.lookup(natKey.encode(fwd));
  if (!fv) throw new Error('no forward entry to age');
  const f = natEntry.decode(fv);
  keys.push({ saddr: f.daddr, daddr: f.saddr, sport: f.dport, dport: f.sport, proto: fwd.proto, dir: NAT_DIR.reverse });
  for (const k of keys) {
    const v = lb.maps.nat_conns.lookup(natKey.encode(k));
    if (!v) throw new Error(`no entry ${JSON.stringify(k)}`);
    const e = natEntry.decode(v);
    lb.maps.nat_conns.update(natKey.encode(k), natEntry.encode({ ...e, lastSeen: monotonicNs() - BigInt(sec) * 1_000_000_000n }));
  }
}

// ---- LB as the backends' gateway ---------------------------------------------------------------

t.test('gateway NAT, TCP: SYN to the ring backend with port translation; the reply goes back from the VIP', async (t) => {
  const f: Flow = { vip: '10.0.1.1', vipPort: 80, clientPort: 40001 };
  const be = ringBackend(f);
  t.equal(be.port, 8080, 'the backend listens on 8080, the VIP on 80');
  const syn = tcpSpec({ src: CLIENT, sport: 40001, dst: f.vip, dport: 80 });
  const out = runFixture(t, lb, net, {
    name: 'SYN', in: packet(syn), verdict: 'TX', reason: 'TX_NAT',
    out: translated(syn, { src: CLIENT, sport: 40001, dst: be.address, dport: 8080 }),
  });
  checksumsOk(t, out, 'SYN');

  const c = connOf(40001, f.vip);
  t.match(c, { proto: 'tcp', client: CLIENT, backend: be.address, backendPort: 8080, source: CLIENT, sourcePort: 40001, fullNat: false, state: 'tcpNew' }, 'connection listed, client address kept');

  const synack = tcpSpec({ src: be.address, sport: 8080, dst: CLIENT, dport: 40001 }, ['SYN', 'ACK']);
  const rout = runFixture(t, lb, net, {
    name: 'SYN-ACK', in: packet(synack), verdict: 'TX', reason: 'TX_NAT_REPLY',
    out: translated(synack, { src: f.vip, sport: 80, dst: CLIENT, dport: 40001 }),
  });
  checksumsOk(t, rout, 'SYN-ACK');
  t.equal(connOf(40001, f.vip)?.state, 'tcpEstablished', 'the reply made it established');

  const data = tcpSpec({ src: CLIENT, sport: 40001, dst: f.vip, dport: 80 }, ['ACK', 'PSH']);
  const dout = runFixture(t, lb, net, {
    name: 'data', in: packet(data), verdict: 'TX', reason: 'TX_NAT',
    out: translated(data, { src: CLIENT, sport: 40001, dst: be.address, dport: 8080 }),
  });
  checksumsOk(t, dout, 'data');
});

t.test('gateway NAT: 90 flows spread over all three backends, each where the ring says', async (t) => {
  const seen = new Map<string, number>();
  let wrong = 0;
  for (let p = 0; p < 90; p++) {
    const f: Flow = { vip: '10.0.1.1', vipPort: 80, clientPort: 41000 + 2 * p, client: '198.51.100.20' };
    const { verdict, out } = net.run(lb, packet(tcpSpec({ src: f.client!, sport: f.clientPort, dst: f.vip, dport: 80 })));
    const p2 = parsePacket(out);
    const want = ringBackend(f).address;
    if (verdict !== XDP.TX || p2.ipv4?.dst !== want || p2.tcp?.dstPort !== 8080) wrong++;
    seen.set(want, (seen.get(want) ?? 0) + 1);
  }
  t.equal(wrong, 0, 'every flow translated to the backend the TypeScript hash and ring predict');
  t.equal(seen.size, 3, 'all three backends got flows');
});

// ---- full NAT ----------------------------------------------------------------------------------

t.test('full NAT, TCP: source becomes an LB address and a hashed port; the reply goes back to the client', async (t) => {
  const f: Flow = { vip: '10.0.1.2', vipPort: 80, clientPort: 40002 };
  const be = ringBackend(f);
  const first = fullNatFirstChoice(tuple(f), SEED, { sources: SOURCES, portMin: PORT_MIN, portMax: PORT_MAX });
  const syn = tcpSpec({ src: CLIENT, sport: 40002, dst: f.vip, dport: 80 });
  const out = runFixture(t, lb, net, {
    name: 'SYN', in: packet(syn), verdict: 'TX', reason: 'TX_NAT',
    out: translated(syn, { src: first.source, sport: first.port, dst: be.address, dport: 8080 }),
  });
  checksumsOk(t, out, 'SYN');
  t.ok(first.port >= PORT_MIN && first.port <= PORT_MAX, `port ${first.port} in the configured range`);
  t.match(connOf(40002, f.vip), { fullNat: true, source: first.source, sourcePort: first.port, backend: be.address }, 'listed with its LB source');

  const synack = tcpSpec({ src: be.address, sport: 8080, dst: first.source, dport: first.port }, ['SYN', 'ACK']);
  const rout = runFixture(t, lb, net, {
    name: 'SYN-ACK', in: packet(synack), verdict: 'TX', reason: 'TX_NAT_REPLY',
    out: translated(synack, { src: f.vip, sport: 80, dst: CLIENT, dport: 40002 }),
  });
  checksumsOk(t, rout, 'SYN-ACK');

  // Both source addresses are used, by the hash the TypeScript side predicts.
  const used = new Set<string>();
  for (let p = 0; p < 40; p++) {
    const g: Flow = { vip: '10.0.1.2', vipPort: 80, clientPort: 42000 + p, client: '198.51.100.30' };
    const fc = fullNatFirstChoice(tuple(g), SEED, { sources: SOURCES, portMin: PORT_MIN, portMax: PORT_MAX });
    const o = parsePacket(net.run(lb, packet(tcpSpec({ src: g.client!, sport: g.clientPort, dst: g.vip, dport: 80 }))).out);
    if (o.ipv4?.src === fc.source && o.tcp?.srcPort === fc.port) used.add(fc.source);
  }
  t.same([...used].sort(), [...SOURCES].sort(), 'connections are spread over both source addresses, as predicted');
});

// ---- UDP ---------------------------------------------------------------------------------------

t.test('UDP with and without checksum, both directions, both topologies', async (t) => {
  const f: Flow = { vip: '10.0.1.1', vipPort: 53, clientPort: 33333, proto: 'udp' };
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

  // Checksum 0 means "none" over IPv4: it must stay 0, not become a checksum of the new header.
  const q0 = udpSpec({ src: CLIENT, sport: 33333, dst: f.vip, dport: 53 }, 'query', 0);
  const out0 = runFixture(t, lb, net, {
    name: 'query without checksum', in: packet(q0), verdict: 'TX', reason: 'TX_NAT',
    out: translated(q0, { src: CLIENT, sport: 33333, dst: be.address, dport: 5353 }),
  });
  t.equal(parsePacket(out0).udp?.checksum, 0, 'UDP checksum still 0');
  const a0 = udpSpec({ src: be.address, sport: 5353, dst: CLIENT, dport: 33333 }, 'answer', 0);
  const rout0 = runFixture(t, lb, net, {
    name: 'answer without checksum', in: packet(a0), verdict: 'TX', reason: 'TX_NAT_REPLY',
    out: translated(a0, { src: f.vip, sport: 53, dst: CLIENT, dport: 33333 }),
  });
  t.equal(parsePacket(rout0).udp?.checksum, 0, 'reply UDP checksum still 0');

  // Full NAT, backend port 0: the VIP's port is kept.
  const g: Flow = { vip: '10.0.1.2', vipPort: 53, clientPort: 33334, proto: 'udp' };
  const gb = ringBackend(g);
  const fc = fullNatFirstChoice(tuple(g), SEED, { sources: SOURCES, portMin: PORT_MIN, portMax: PORT_MAX });
  const gq = udpSpec({ src: CLIENT, sport: 33334, dst: g.vip, dport: 53 });
  checksumsOk(t, runFixture(t, lb, net, {
    name: 'full NAT query', in: packet(gq), verdict: 'TX', reason: 'TX_NAT',
    out: translated(gq, { src: fc.source, sport: fc.port, dst: gb.address, dport: 53 }),
  }), 'full NAT query');
  const ga = udpSpec({ src: gb.address, sport: 53, dst: fc.source, dport: fc.port }, 'answer', 0);
  runFixture(t, lb, net, {
    name: 'full NAT answer without checksum', in: packet(ga), verdict: 'TX', reason: 'TX_NAT_REPLY',
    out: translated(ga, { src: g.vip, sport: 53, dst: CLIENT, dport: 33334 }),
  });
  t.equal(connOf(33334, g.vip)?.state, 'udp', 'listed as a UDP connection');
});

t.test('a UDP checksum that computes to zero after translation goes out as 0xffff', async (t) => {
  const f: Flow = { vip: '10.0.1.1', vipPort: 53, clientPort: 33335, proto: 'udp' };
  const be = ringBackend(f);
  // Find a 2-byte payload whose translated datagram sums to 0xffff, i.e. computes to checksum 0.
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
  const spec: PacketSpec = { eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: CLIENT, dst: f.vip, id: 7 }, udp: { srcPort: 33335, dstPort: 53, payload } };
  const out = runFixture(t, lb, net, {
    name: 'zero sum', in: packet(spec), verdict: 'TX', reason: 'TX_NAT',
    out: translated(spec, { src: CLIENT, sport: 33335, dst: be.address, dport: 5353 }),
  });
  t.equal(parsePacket(out).udp?.checksum, 0xffff, 'checksum field is 0xffff (RFC 768), not 0');
  checksumsOk(t, out, 'zero sum');
});

// ---- replies without a connection ----------------------------------------------------------------

t.test('a reply with no connection entry passes untouched', async (t) => {
  const be = gwBackends[0]!.address;
  const mk = (h: Hdr) => packet(tcpSpec(h, ['SYN', 'ACK']));
  runFixture(t, lb, net, { name: 'from a NAT backend, unknown client port', in: mk({ src: be, sport: 8080, dst: CLIENT, dport: 50999 }), verdict: 'PASS', reason: 'PASS_NOT_NAT', out: 'same' });
  runFixture(t, lb, net, { name: 'from a NAT backend, other source port', in: mk({ src: be, sport: 22, dst: CLIENT, dport: 40001 }), verdict: 'PASS', reason: 'PASS_NOT_NAT', out: 'same' });
  runFixture(t, lb, net, { name: 'to a full-NAT address, no connection', in: mk({ src: fullBackends[0]!.address, sport: 8080, dst: SOURCES[0]!, dport: PORT_MIN }), verdict: 'PASS', reason: 'PASS_NOT_NAT', out: 'same' });
  runFixture(t, lb, net, { name: 'from anywhere else', in: mk({ src: '10.2.0.99', sport: 8080, dst: CLIENT, dport: 40001 }), verdict: 'PASS', reason: 'PASS_NOT_VIP', out: 'same' });
  const icmp = packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: be, dst: CLIENT }, icmp: { type: 8 } });
  runFixture(t, lb, net, { name: 'ping from a NAT backend', in: icmp, verdict: 'PASS', reason: 'PASS_NOT_NAT', out: 'same' });
});

// ---- backend set changes -------------------------------------------------------------------------

t.test('connections stay on their backend when the backend set changes; a removed backend\'s re-hash', async (t) => {
  const flows: { f: Flow; be: string }[] = [];
  for (let p = 0; p < 60; p++) {
    const f: Flow = { vip: '10.0.1.1', vipPort: 80, clientPort: 43000 + 2 * p, client: '198.51.100.40' };
    net.run(lb, packet(tcpSpec({ src: f.client!, sport: f.clientPort, dst: f.vip, dport: 80 })));
    flows.push({ f, be: ringBackend(f).address });
  }
  const bigger = services.map((s) =>
    s.vip === '10.0.1.1' && s.port === 80 ? { ...s, backends: [...s.backends, { address: '10.2.0.14', port: 8080, weight: 3 }] } : s,
  );
  lb.dataplane.apply(bigger);
  const moved = flows.filter(({ f, be }) => ringBackendIn(bigger, f) !== be);
  t.ok(moved.length >= 10, `the new ring moves ${moved.length} of 60 flows' slots`);
  let stayed = 0;
  for (const { f, be } of moved) {
    const o = parsePacket(net.run(lb, packet(tcpSpec({ src: f.client!, sport: f.clientPort, dst: f.vip, dport: 80 }, ['ACK']))).out);
    if (o.ipv4?.dst === be) stayed++;
  }
  t.equal(stayed, moved.length, 'every established connection kept its backend');
  const fresh: Flow = { vip: '10.0.1.1', vipPort: 80, clientPort: 43999, client: '198.51.100.41' };
  const o = parsePacket(net.run(lb, packet(tcpSpec({ src: fresh.client!, sport: 43999, dst: fresh.vip, dport: 80 }))).out);
  t.equal(o.ipv4?.dst, ringBackendIn(bigger, fresh), 'a new connection follows the new ring');

  // Remove the backend of flows[0]: its connection is re-hashed to one that exists.
  const victim = flows[0]!;
  const without = bigger.map((s) => (s.vip === '10.0.1.1' && s.port === 80 ? { ...s, backends: s.backends.filter((b) => b.address !== victim.be) } : s));
  lb.dataplane.apply(without);
  const vo = parsePacket(net.run(lb, packet(tcpSpec({ src: victim.f.client!, sport: victim.f.clientPort, dst: victim.f.vip, dport: 80 }, ['ACK']))).out);
  t.not(vo.ipv4?.dst, victim.be, 'not sent to the removed backend');
  t.equal(vo.ipv4?.dst, ringBackendIn(without, victim.f), 'sent where the remaining ring says');
  lb.dataplane.apply(services);
});

/** ringBackend() for a desired state other than the applied `services` (ids by address, port 8080). */
function ringBackendIn(desired: DesiredService[], f: Flow): string {
  const svc = desired.find((s) => s.vip === f.vip && s.port === f.vipPort && s.proto === (f.proto ?? 'tcp'))!;
  const id = lb.dataplane.ring(svcId(f))![lbReduce(ringHash(tuple(f), SEED, false), RING)]!;
  const b = svc.backends.find((x) => lb.dataplane.backendId(svcId(f), x.address, x.port ?? 0) === id);
  if (!b) throw new Error(`unknown backend id ${id}`);
  return b.address;
}

// ---- full-NAT port allocation --------------------------------------------------------------------

t.test('full-NAT ports: a taken port is skipped, a full range drops, a freed port is reused', async (t) => {
  const VIP = '10.0.1.7';
  const BE = '10.2.0.31';
  const range = { sources: SOURCES, portMin: 30000, portMax: 30099 };
  lb.nat.configure(range);
  t.teardown(() => {
    lb.nat.configure({ sources: SOURCES, portMin: PORT_MIN, portMax: PORT_MAX });
  });

  // Another client's live connection holds this flow's first-choice port.
  const f: Flow = { vip: VIP, vipPort: 80, clientPort: 44000 };
  const first = fullNatFirstChoice(tuple(f), SEED, range);
  const taken: NatKey = { saddr: BE, daddr: first.source, sport: 8080, dport: first.port, proto: 6, dir: NAT_DIR.reverse };
  lb.maps.nat_conns.update(natKey.encode(taken), natEntry.encode({
    saddr: VIP, daddr: '198.51.100.99', sport: 80, dport: 1234, serviceId: svcId(f), backendId: 1, state: 2, flags: 1, lastSeen: monotonicNs(),
  }));
  const next = first.port === range.portMax ? range.portMin : first.port + 1;
  const syn = tcpSpec({ src: CLIENT, sport: 44000, dst: VIP, dport: 80 });
  runFixture(t, lb, net, { name: 'first port taken', in: packet(syn), verdict: 'TX', reason: 'TX_NAT', out: translated(syn, { src: first.source, sport: next, dst: BE, dport: 8080 }) });

  // The same port, held by an entry that has expired, is free for the taking.
  const g: Flow = { vip: VIP, vipPort: 80, clientPort: 44100 };
  const gf = fullNatFirstChoice(tuple(g), SEED, range);
  const stale: NatKey = { ...taken, daddr: gf.source, dport: gf.port };
  if (gf.port !== next || gf.source !== first.source) {
    lb.maps.nat_conns.update(natKey.encode(stale), natEntry.encode({
      saddr: VIP, daddr: '198.51.100.98', sport: 80, dport: 1235, serviceId: svcId(g), backendId: 1, state: 2, flags: 1, lastSeen: monotonicNs() - 400_000_000_000n,
    }));
    const gs = tcpSpec({ src: CLIENT, sport: 44100, dst: VIP, dport: 80 });
    runFixture(t, lb, net, { name: 'expired holder', in: packet(gs), verdict: 'TX', reason: 'TX_NAT', out: translated(gs, { src: gf.source, sport: gf.port, dst: BE, dport: 8080 }) });
  }
  lb.maps.nat_conns.delete(natKey.encode(taken));

  // Four ports, two addresses, one backend: eight connections fit, the ninth finds none.
  const tiny = { sources: SOURCES, portMin: 31000, portMax: 31003 };
  lb.nat.configure(tiny);
  const got = new Map<string, number>();
  let dropped = 0;
  let n = 0;
  for (let p = 0; p < 200 && dropped === 0; p++) {
    const h = tuple({ vip: VIP, vipPort: 80, clientPort: 45000 + p });
    const { verdict, out } = net.run(lb, packet(tcpSpec({ src: CLIENT, sport: h.clientPort, dst: VIP, dport: 80 })));
    if (verdict === XDP.DROP) {
      dropped++;
      break;
    }
    n++;
    const o = parsePacket(out);
    const k = `${o.ipv4?.src}:${o.tcp?.srcPort}`;
    got.set(k, (got.get(k) ?? 0) + 1);
  }
  t.equal(n, 8, 'eight connections got a source');
  t.equal(got.size, 8, 'no two share an address and port');
  t.ok([...got.keys()].every((k) => { const port = Number(k.split(':')[1]); return port >= 31000 && port <= 31003; }), 'all inside the range');
  const before = lb.reasons().DROP_NAT_NO_PORT ?? 0n;
  runFixture(t, lb, net, { name: 'range exhausted', in: packet(tcpSpec({ src: CLIENT, sport: 45999, dst: VIP, dport: 80 })), verdict: 'DROP', reason: 'DROP_NAT_NO_PORT' });
  t.equal((lb.reasons().DROP_NAT_NO_PORT ?? 0n) - before, 1n, 'counted once');

  // Sweeping one idle connection returns its port: the next connection gets exactly that one.
  const victim = lb.nat.connections().find((c) => c.vip === VIP && c.sourcePort >= 31000 && c.sourcePort <= 31003)!;
  age({ saddr: victim.client, daddr: VIP, sport: victim.clientPort, dport: 80, proto: 6, dir: NAT_DIR.forward }, 35);
  const swept = lb.nat.sweep();
  t.equal(swept.connections, 1, 'the sweeper deleted that one connection');
  // A client whose hash picks the freed port's address: that port is the only one left there.
  let sport = 45900;
  while (fullNatFirstChoice(tuple({ vip: VIP, vipPort: 80, clientPort: sport }), SEED, tiny).source !== victim.source) sport++;
  const o = parsePacket(runFixture(t, lb, net, { name: 'after sweep', in: packet(tcpSpec({ src: CLIENT, sport, dst: VIP, dport: 80 })), verdict: 'TX', reason: 'TX_NAT' }));
  t.equal(`${o.ipv4?.src}:${o.tcp?.srcPort}`, `${victim.source}:${victim.sourcePort}`, 'the freed address and port were reused');
});

t.test('full NAT without source addresses drops with its own reason', async (t) => {
  lb.nat.configure({ sources: [] });
  t.teardown(() => {
    lb.nat.configure({ sources: SOURCES });
  });
  runFixture(t, lb, net, { name: 'no source', in: packet(tcpSpec({ src: CLIENT, sport: 46000, dst: '10.0.1.2', dport: 80 })), verdict: 'DROP', reason: 'DROP_NAT_NO_SOURCE' });
});

t.test('gateway NAT: a reply tuple held by another VIP\'s connection is a counted conflict', async (t) => {
  const a = tcpSpec({ src: CLIENT, sport: 46100, dst: '10.0.1.8', dport: 80 });
  runFixture(t, lb, net, { name: 'first VIP', in: packet(a), verdict: 'TX', reason: 'TX_NAT' });
  // Same client address and port, other VIP, same backend:port: the backend could not tell them apart.
  runFixture(t, lb, net, { name: 'second VIP', in: packet(tcpSpec({ src: CLIENT, sport: 46100, dst: '10.0.1.9', dport: 80 })), verdict: 'DROP', reason: 'DROP_NAT_CONFLICT' });
});

// ---- expiry and state ---------------------------------------------------------------------------

t.test('expiry: an idle connection counts as gone; FIN/RST shorten the timeout; SYN reopens a closing tuple', async (t) => {
  const f: Flow = { vip: '10.0.1.1', vipPort: 53, clientPort: 34000, proto: 'udp' };
  const fk: NatKey = { saddr: CLIENT, daddr: f.vip, sport: 34000, dport: 53, proto: 17, dir: NAT_DIR.forward };
  const be = ringBackend(f);
  net.run(lb, packet(udpSpec({ src: CLIENT, sport: 34000, dst: f.vip, dport: 53 })));
  age(fk, 31);
  t.ok(lb.nat.count().expired >= 1, 'count() sees it expired');
  const answer = packet(udpSpec({ src: be.address, sport: 5353, dst: CLIENT, dport: 34000 }, 'late'));
  runFixture(t, lb, net, { name: 'reply to an expired connection', in: answer, verdict: 'PASS', reason: 'PASS_NOT_NAT', out: 'same' });
  const a = stats(f, be.id);
  runFixture(t, lb, net, { name: 'client again after the timeout', in: packet(udpSpec({ src: CLIENT, sport: 34000, dst: f.vip, dport: 53 })), verdict: 'TX', reason: 'TX_NAT' });
  t.equal(stats(f, be.id).svc.newFlows - a.svc.newFlows, 1n, 'counted as a new connection');
  const c = connOf(34000, f.vip);
  t.ok(c && c.idleMs < 5000, 'the entry is fresh again');

  // Established TCP lives 300 s; after a FIN, 10 s.
  const g: Flow = { vip: '10.0.1.1', vipPort: 80, clientPort: 34100 };
  const gk: NatKey = { saddr: CLIENT, daddr: g.vip, sport: 34100, dport: 80, proto: 6, dir: NAT_DIR.forward };
  const gb = ringBackend(g);
  net.run(lb, packet(tcpSpec({ src: CLIENT, sport: 34100, dst: g.vip, dport: 80 })));
  net.run(lb, packet(tcpSpec({ src: gb.address, sport: 8080, dst: CLIENT, dport: 34100 }, ['SYN', 'ACK'])));
  age(gk, 11);
  t.equal(connOf(34100, g.vip)?.state, 'tcpEstablished');
  t.ok((connOf(34100, g.vip)?.expiresInMs ?? 0) > 200_000, 'established and 11 s idle: far from expiry');
  net.run(lb, packet(tcpSpec({ src: gb.address, sport: 8080, dst: CLIENT, dport: 34100 }, ['FIN', 'ACK'])));
  t.equal(connOf(34100, g.vip)?.state, 'tcpClosing', 'a FIN from the backend closes it (both entries)');
  age(gk, 11);
  t.ok((connOf(34100, g.vip)?.expiresInMs ?? 1) < 0, 'closing and 11 s idle: expired');
  const b = stats(g, gb.id);
  runFixture(t, lb, net, { name: 'SYN on the old tuple', in: packet(tcpSpec({ src: CLIENT, sport: 34100, dst: g.vip, dport: 80 })), verdict: 'TX', reason: 'TX_NAT' });
  t.equal(stats(g, gb.id).svc.newFlows - b.svc.newFlows, 1n, 'a new connection, not the closed one');
  t.equal(connOf(34100, g.vip)?.state, 'tcpNew');

  // A SYN on a closing tuple that has not expired yet reopens it too (client reusing its port).
  net.run(lb, packet(tcpSpec({ src: CLIENT, sport: 34100, dst: g.vip, dport: 80 }, ['RST'])));
  t.equal(connOf(34100, g.vip)?.state, 'tcpClosing', 'RST closes');
  const c2 = stats(g, gb.id);
  net.run(lb, packet(tcpSpec({ src: CLIENT, sport: 34100, dst: g.vip, dport: 80 })));
  t.equal(stats(g, gb.id).svc.newFlows - c2.svc.newFlows, 1n, 'SYN after RST: a new connection');
  const ack = stats(g, gb.id);
  net.run(lb, packet(tcpSpec({ src: CLIENT, sport: 34100, dst: g.vip, dport: 80 }, ['ACK'])));
  t.equal(stats(g, gb.id).svc.newFlows - ack.svc.newFlows, 0n, 'an ACK of a live connection is not new');
});

// ---- counters -----------------------------------------------------------------------------------

t.test('per-service and per-backend counters: forward packets, bytes, new connections', async (t) => {
  const f: Flow = { vip: '10.0.1.1', vipPort: 80, clientPort: 47000 };
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

// ---- next hop -----------------------------------------------------------------------------------

t.test('next hop: another interface redirects through the devmap; what XDP cannot send goes to the kernel translated', async (t) => {
  const syn = tcpSpec({ src: CLIENT, sport: 48000, dst: '10.0.1.3', dport: 80 });
  const out = runFixture(t, lb, net, {
    name: 'egress on veth2', in: packet(syn), verdict: 'REDIRECT', reason: 'REDIRECT_NAT',
    out: translated(syn, { src: CLIENT, sport: 48000, dst: '10.5.0.1', dport: 8080 }, { smac: OUT2.mac, dmac: OUT2.gwMac }),
  });
  checksumsOk(t, out, 'redirected');

  inNetns(net.ns, () => lb.nat.setTxPorts([net.ifindex]));
  t.same(lb.nat.txPorts(), [net.ifindex], 'veth2 taken out of tx_ports');
  const ack = tcpSpec({ src: CLIENT, sport: 48000, dst: '10.0.1.3', dport: 80 }, ['ACK']);
  runFixture(t, lb, net, {
    name: 'egress not in tx_ports', in: packet(ack), verdict: 'PASS', reason: 'PASS_NAT_KERNEL',
    out: translated(ack, { src: CLIENT, sport: 48000, dst: '10.5.0.1', dport: 8080 }, { smac: ROUTER_MAC, dmac: net.mac }, 0),
  });
  inNetns(net.ns, () => lb.nat.setTxPorts([net.ifindex, bench.out2Index]));

  const unres = tcpSpec({ src: CLIENT, sport: 48001, dst: '10.0.1.5', dport: 80 });
  const uo = runFixture(t, lb, net, {
    name: 'neighbour unresolved', in: packet(unres), verdict: 'PASS', reason: 'PASS_NAT_KERNEL',
    // The kernel forwards it (and decrements the TTL itself); the MACs are the ones it came with.
    out: translated(unres, { src: CLIENT, sport: 48001, dst: '10.3.0.1', dport: 8080 }, { smac: ROUTER_MAC, dmac: net.mac }, 0),
  });
  checksumsOk(t, uo, 'to the kernel');
  runFixture(t, lb, net, { name: 'no route', in: packet(tcpSpec({ src: CLIENT, sport: 48002, dst: '10.0.1.6', dport: 80 })), verdict: 'DROP', reason: 'DROP_NAT_NO_ROUTE' });
  runFixture(t, lb, net, { name: 'TTL 1', in: packet(tcpSpec({ src: CLIENT, sport: 48003, dst: '10.0.1.1', dport: 80 }, ['SYN'], 1)), verdict: 'PASS', reason: 'PASS_NAT_TTL', out: 'same' });
  t.notOk(connOf(48003, '10.0.1.1'), 'no connection made for a packet that was not forwarded');
});

t.test('next-hop cache: NAT answers come from the per-CPU cache for its lifetime; the MTU still applies', async (t) => {
  const TTL_MS = 1000; // LB_NEXTHOP_TTL_NS
  const MOVED = '02:aa:00:00:00:99';
  const CLIENT_B = '192.0.2.20';
  const cases = [
    { vip: '10.0.1.10', backend: '10.2.0.51', full: false },
    { vip: '10.0.1.11', backend: '10.2.0.52', full: true },
  ];
  // The cache is per CPU: every packet of this test must run on one CPU. BPF_PROG_TEST_RUN runs
  // XDP on the calling thread's CPU, and this thread is the process's main one (tid = pid).
  const affinity = execFileSync('taskset', ['-pc', String(process.pid)], { encoding: 'utf8' }).trim().split(': ').pop()!;
  const cpu = affinity.split(/[,-]/)[0]!;
  const dmacOf = (out: Buffer) => parsePacket(out).eth?.dst;
  const ack = (c: { vip: string }, sport: number, payload?: number, src = CLIENT) => {
    const spec = tcpSpec({ src, sport, dst: c.vip, dport: 80 }, ['ACK']);
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
    for (const c of cases) ipn('route', 'replace', `${c.backend}/32`, 'via', net.gw, 'mtu', 'lock', '600');
    await sleep(TTL_MS + 200); // nothing cached before the routes changed is still answered

    for (const c of cases) {
      const name = c.full ? 'full NAT' : 'gateway NAT';
      t.equal(dmacOf(runFixture(t, lb, net, { name: `${name}: SYN`, in: packet(tcpSpec({ src: CLIENT, sport: 51000, dst: c.vip, dport: 80 })), verdict: 'TX', reason: 'TX_NAT' })), net.gwMac, `${name}: SYN to the gateway`);
      t.equal(dmacOf(runFixture(t, lb, net, { name: `${name}: reply`, in: reply(c, 51000), verdict: 'TX', reason: 'TX_NAT_REPLY' })), net.gwMac, `${name}: reply to the gateway`);
      // A hit answers only packets up to the longest the kernel let through: make that 540 bytes.
      runFixture(t, lb, net, { name: `${name}: 540 bytes`, in: ack(c, 51000, 500), verdict: 'TX', reason: 'TX_NAT' });
    }
    ipn('neigh', 'replace', net.gw, 'lladdr', MOVED, 'dev', net.ifname, 'nud', 'permanent');
    for (const c of cases) {
      const name = c.full ? 'full NAT' : 'gateway NAT';
      t.equal(dmacOf(runFixture(t, lb, net, { name: `${name}: ACK after the neighbour moved`, in: ack(c, 51000), verdict: 'TX', reason: 'TX_NAT' })), net.gwMac, `${name}: still the cached MAC within the lifetime`);
      t.equal(dmacOf(runFixture(t, lb, net, { name: `${name}: reply after the neighbour moved`, in: reply(c, 51000), verdict: 'TX', reason: 'TX_NAT_REPLY' })), net.gwMac, `${name}: reply, still the cached MAC`);
      if (!c.full) {
        // The client's address is not in the lookup: another client's connection shares the backend's entry.
        const out = runFixture(t, lb, net, { name: 'gateway NAT: another client\'s SYN', in: packet(tcpSpec({ src: CLIENT_B, sport: 51001, dst: c.vip, dport: 80 })), verdict: 'TX', reason: 'TX_NAT' });
        t.equal(dmacOf(out), net.gwMac, 'gateway NAT: another client uses the same cached answer');
        t.equal(parsePacket(out).ipv4?.src, CLIENT_B, 'gateway NAT: its source is kept');
      }
      // 20 + 20 + 600 bytes > the route's 600: the kernel is asked and says so, cached entry or not.
      runFixture(t, lb, net, { name: `${name}: 640 bytes on a 600-byte route`, in: ack(c, 51000, 600), verdict: 'DROP', reason: 'DROP_NAT_MTU' });
      t.equal(dmacOf(runFixture(t, lb, net, { name: `${name}: 540 bytes after a drop`, in: ack(c, 51000, 500), verdict: 'TX', reason: 'TX_NAT' })), net.gwMac, `${name}: the cached answer outlives the drop`);
      runFixture(t, lb, net, { name: `${name}: 640 bytes again`, in: ack(c, 51000, 600), verdict: 'DROP', reason: 'DROP_NAT_MTU' });
    }
    await sleep(TTL_MS + 200);
    for (const c of cases) {
      const name = c.full ? 'full NAT' : 'gateway NAT';
      t.equal(dmacOf(runFixture(t, lb, net, { name: `${name}: ACK after the lifetime`, in: ack(c, 51000), verdict: 'TX', reason: 'TX_NAT' })), MOVED, `${name}: the new MAC after the lifetime`);
      t.equal(dmacOf(runFixture(t, lb, net, { name: `${name}: reply after the lifetime`, in: reply(c, 51000), verdict: 'TX', reason: 'TX_NAT_REPLY' })), MOVED, `${name}: reply, the new MAC`);
    }
  } finally {
    ipn('neigh', 'replace', net.gw, 'lladdr', net.gwMac, 'dev', net.ifname, 'nud', 'permanent');
    for (const c of cases) {
      try {
        ipn('route', 'del', `${c.backend}/32`);
      } catch {
        // never added: the test failed before
      }
    }
    execFileSync('taskset', ['-pc', affinity, String(process.pid)], { stdio: 'pipe' });
    await sleep(TTL_MS + 200); // the tests after this one see the restored neighbour
  }
});

// ---- coexistence ----------------------------------------------------------------------------------

t.test('ICMP not about a live NAT connection is left to the kernel; DSR services beside NAT ones are unaffected', async (t) => {
  // No connection from client port 40999: nothing to translate.
  const reply = ipPacket({ ipv4: { src: '10.0.1.1', dst: CLIENT }, tcp: { srcPort: 80, dstPort: 40999, flags: ['ACK'] } });
  const icmp = packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: '198.51.100.1', dst: '10.0.1.1' }, icmp: icmpFragNeeded(1400, reply) });
  runFixture(t, lb, net, { name: 'frag needed about no NAT connection', in: icmp, verdict: 'PASS', reason: 'PASS_NAT_ICMP', out: 'same' });

  const l2 = packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: CLIENT, dst: '10.0.0.1' }, tcp: { srcPort: 49000, dstPort: 80 } });
  const want = Buffer.from(l2);
  Buffer.from('020000000101', 'hex').copy(want, 0);
  l2.copy(want, 6, 0, 6);
  runFixture(t, lb, net, { name: 'l2dsr SYN', in: l2, verdict: 'TX', reason: 'TX_L2DSR', out: want });
});

// ---- ICMP errors about NAT connections (PMTU discovery through NAT) -------------------------------

const ROUTER = '198.51.100.1';
const MTU = 1000;

/** Where an IPv4 packet starts in a frame from packet() (no VLAN tag). */
const L3 = 14;

/**
 * A frag-needed from the router on the client's side about `quoted` (an IPv4 packet the LB sent),
 * quoting `quoteLength` bytes of it (RFC 792's 28 by default; Linux quotes up to 576).
 */
function fragNeeded(quoted: Buffer, dst: string, quoteLength?: number, ttl = 64): Buffer {
  return packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: ROUTER, dst, ttl, id: 0x777 }, icmp: icmpFragNeeded(MTU, quoted, quoteLength) });
}

/**
 * The error as the backend must get it, built from scratch: outer source `src`, destination the
 * backend, TTL one less, the next hop's MACs; the quote is the packet the backend sent (`sent`, its
 * own header and ports) with the TTL the quoted copy had, and the quoted TCP/UDP checksum as the
 * router quoted it (the LB leaves that one alone). Every checksum is computed by the builder.
 */
function expectedError(sent: PacketSpec, quotedTtl: number, quote: Buffer, src: string, dst: string, via = { smac: net.mac, dmac: net.gwMac }, ttl = 63): Buffer {
  const inner = ipPacket({ ipv4: { ...sent.ipv4!, ttl: quotedTtl }, ...(sent.tcp ? { tcp: sent.tcp } : {}), ...(sent.udp ? { udp: sent.udp } : {}) });
  const q = Buffer.from(inner.subarray(0, quote.length));
  const ck = sent.tcp ? 20 + 16 : 20 + 6;
  if (quote.length >= ck + 2) quote.copy(q, ck, ck, ck + 2);
  return packet({ eth: { src: via.smac, dst: via.dmac }, ipv4: { src, dst, ttl, id: 0x777 }, icmp: { type: 3, code: 4, rest: MTU, payload: q } });
}

/** The quote of an ICMP frame from packet(): the bytes after the outer IPv4 and ICMP headers. */
const quoteOf = (icmpFrame: Buffer) => icmpFrame.subarray(L3 + 20 + 8);

function icmpChecksumsOk(t: Test, out: Buffer, what: string): void {
  const p = parsePacket(out);
  t.equal(p.ipv4?.checksumOk, true, `${what}: outer IPv4 header checksum valid (independent check)`);
  t.equal(p.icmp?.checksumOk, true, `${what}: ICMP checksum valid (independent check)`);
  t.equal(p.inner?.ipv4?.checksumOk, true, `${what}: quoted IPv4 header checksum valid (independent check)`);
  // The same sums once more without the parser: every 16-bit word of each header sums to 0xffff.
  const ihl = (out[L3]! & 0xf) * 4;
  const total = out.readUInt16BE(L3 + 2);
  t.equal(internetChecksum(out.subarray(L3, L3 + ihl)), 0, `${what}: outer header sums to zero`);
  t.equal(internetChecksum(out.subarray(L3 + ihl, L3 + total)), 0, `${what}: ICMP message sums to zero`);
  t.equal(internetChecksum(out.subarray(L3 + ihl + 8, L3 + ihl + 28)), 0, `${what}: quoted header sums to zero`);
}

/** Both entries of a connection, as raw map values: an error must leave them byte for byte. */
function entriesOf(fwd: NatKey): Buffer[] {
  const f = lb.maps.nat_conns.lookup(natKey.encode(fwd));
  if (!f) throw new Error('no forward entry');
  const e = natEntry.decode(f);
  const r = lb.maps.nat_conns.lookup(natKey.encode({ saddr: e.daddr, daddr: e.saddr, sport: e.dport, dport: e.sport, proto: fwd.proto, dir: NAT_DIR.reverse }));
  if (!r) throw new Error('no reverse entry');
  return [Buffer.from(f), Buffer.from(r)];
}

const natIcmpCases = [
  { name: 'gateway NAT, TCP', vip: '10.0.1.1', vport: 80, proto: 'tcp' as const, cport: 40501 },
  { name: 'full NAT, TCP', vip: '10.0.1.2', vport: 80, proto: 'tcp' as const, cport: 40502 },
  { name: 'gateway NAT, UDP', vip: '10.0.1.1', vport: 53, proto: 'udp' as const, cport: 40503 },
  { name: 'full NAT, UDP (backend port 0)', vip: '10.0.1.2', vport: 53, proto: 'udp' as const, cport: 40504 },
];

for (const c of natIcmpCases) {
  t.test(`${c.name}: frag-needed about the LB's reply goes to the connection's backend, translated`, async (t) => {
    const f: Flow = { vip: c.vip, vipPort: c.vport, clientPort: c.cport, proto: c.proto };
    const be = ringBackend(f);
    const first = { src: CLIENT, sport: c.cport, dst: c.vip, dport: c.vport };
    // The connection, made by a real first packet through the program.
    runFixture(t, lb, net, { name: 'first packet', in: packet(c.proto === 'tcp' ? tcpSpec(first) : udpSpec(first)), verdict: 'TX', reason: 'TX_NAT' });
    const conn = connOf(c.cport, c.vip)!;
    t.ok(conn, 'connection made');
    // The backend's reply, a full-size one, and the LB's translation of it toward the client.
    const back = { src: be.address, sport: be.port, dst: conn.source, dport: conn.sourcePort };
    const sent = c.proto === 'tcp' ? tcpSpec(back, ['ACK', 'PSH']) : udpSpec(back, 'x'.repeat(1200));
    if (sent.tcp) sent.tcp.payload = Buffer.alloc(1400, 0x62);
    const lbOut = runFixture(t, lb, net, { name: 'backend reply', in: packet(sent), verdict: 'TX', reason: 'TX_NAT_REPLY' });
    const quoted = lbOut.subarray(L3);
    t.equal(parsePacket(lbOut).ipv4?.src, c.vip, 'the reply left from the VIP');

    const fk: NatKey = { saddr: CLIENT, daddr: c.vip, sport: c.cport, dport: c.vport, proto: c.proto === 'tcp' ? 6 : 17, dir: NAT_DIR.forward };
    const entries = entriesOf(fk);
    const counters = stats(f, be.id);
    const src = conn.fullNat ? conn.source : ROUTER;
    for (const len of [28, 576]) {
      const err = fragNeeded(quoted, c.vip, len);
      const tooBig = lb.reasons().ICMP_TOO_BIG ?? 0n;
      const out = runFixture(t, lb, net, {
        name: `${len}-byte quote`, in: err, verdict: 'TX', reason: 'TX_NAT',
        out: expectedError(sent, 63, quoteOf(err), src, be.address),
      });
      t.equal((lb.reasons().ICMP_TOO_BIG ?? 0n) - tooBig, 1n, `${len}-byte quote: counted as ICMP too-big`);
      icmpChecksumsOk(t, out, `${len}-byte quote`);
      const p = parsePacket(out);
      t.equal(p.icmp?.mtu, MTU, `${len}-byte quote: the MTU field is untouched`);
      t.match(p.inner, { ipv4: { src: be.address, dst: conn.source } }, `${len}-byte quote: the quote is backend -> ${conn.fullNat ? 'LB source' : 'client'}`);
      // Read from the bytes: the parser leaves a TCP header cut off after 8 bytes unparsed.
      const q = quoteOf(out);
      t.same([q.readUInt16BE(20), q.readUInt16BE(22)], [be.port, conn.sourcePort], `${len}-byte quote: quoted ports ${be.port} -> ${conn.sourcePort}`);
    }
    t.same(entriesOf(fk), entries, 'both connection entries unchanged (state, last seen)');
    const after = stats(f, be.id);
    t.equal(after.svc.packets, counters.svc.packets, 'service packet counter unchanged: an error is not traffic');
    t.equal(after.be.packets, counters.be.packets, 'backend packet counter unchanged');

    // A TTL the router could not forward with: the kernel answers it.
    const ttl1 = fragNeeded(quoted, c.vip, 28, 1);
    runFixture(t, lb, net, { name: 'TTL 1', in: ttl1, verdict: 'PASS', reason: 'PASS_NAT_TTL', out: 'same' });

    // The quote of another client port: no such connection.
    const other = Buffer.from(quoted);
    other.writeUInt16BE(c.cport + 2, 20 + 2);
    runFixture(t, lb, net, { name: 'another client port', in: fragNeeded(other, c.vip), verdict: 'PASS', reason: 'PASS_NAT_ICMP', out: 'same' });

    // The same error once the connection has expired.
    age(fk, 400);
    runFixture(t, lb, net, { name: 'expired connection', in: fragNeeded(quoted, c.vip), verdict: 'PASS', reason: 'PASS_NAT_ICMP', out: 'same' });
  });
}

t.test('frag-needed about a NAT connection: cut-off and inconsistent quotes, other egress', async (t) => {
  const f: Flow = { vip: '10.0.1.1', vipPort: 80, clientPort: 40511 };
  net.run(lb, packet(tcpSpec({ src: CLIENT, sport: 40511, dst: f.vip, dport: 80 })));
  const quoted = ipPacket({ ipv4: { src: f.vip, dst: CLIENT, flags: ['DF'] }, tcp: { srcPort: 80, dstPort: 40511, flags: ['ACK'] } });
  runFixture(t, lb, net, { name: 'control: the quote is translated', in: fragNeeded(quoted, f.vip), verdict: 'TX', reason: 'TX_NAT' });
  // Cut off inside the ports: balance() drops it as malformed, whatever the service's mode.
  runFixture(t, lb, net, { name: 'quote cut in the ports', in: fragNeeded(quoted, f.vip, 22), verdict: 'DROP', reason: 'DROP_MALFORMED' });
  // The ports in the frame but their last byte past the IP packet's length, which the ICMP checksum ends with.
  const cut = fragNeeded(quoted, f.vip);
  cut.writeUInt16BE(20 + 8 + 20 + 3, L3 + 2);
  cut.writeUInt16BE(0, L3 + 10);
  cut.writeUInt16BE(internetChecksum(cut.subarray(L3, L3 + 20)), L3 + 10);
  runFixture(t, lb, net, { name: 'quote ports past the total length', in: cut, verdict: 'DROP', reason: 'DROP_MALFORMED' });
  // Sent to another VIP than the quoted packet's source: not an error about this connection.
  runFixture(t, lb, net, { name: 'outer destination is not the quoted source', in: fragNeeded(quoted, '10.0.1.2'), verdict: 'PASS', reason: 'PASS_NAT_ICMP', out: 'same' });
  // Other ICMP types to a NAT VIP are not service traffic, as before.
  const unreach = packet({ eth: { src: ROUTER_MAC, dst: net.mac }, ipv4: { src: ROUTER, dst: f.vip }, icmp: { type: 3, code: 3, rest: 0, payload: quoted.subarray(0, 28) } });
  runFixture(t, lb, net, { name: 'port unreachable', in: unreach, verdict: 'PASS', reason: 'PASS_NOT_SERVICE', out: 'same' });

  // The backend behind the second interface: the error leaves by the devmap, like the connection's packets.
  net.run(lb, packet(tcpSpec({ src: CLIENT, sport: 40512, dst: '10.0.1.3', dport: 80 })));
  const q3 = ipPacket({ ipv4: { src: '10.0.1.3', dst: CLIENT, flags: ['DF'], ttl: 63 }, tcp: { srcPort: 80, dstPort: 40512, flags: ['ACK'] } });
  const sent3: PacketSpec = { ipv4: { src: '10.5.0.1', dst: CLIENT, flags: ['DF'] }, tcp: { srcPort: 8080, dstPort: 40512, flags: ['ACK'] } };
  const e3 = fragNeeded(q3, '10.0.1.3');
  const o3 = runFixture(t, lb, net, {
    name: 'egress on veth2', in: e3, verdict: 'REDIRECT', reason: 'REDIRECT_NAT',
    out: expectedError(sent3, 63, quoteOf(e3), ROUTER, '10.5.0.1', { smac: OUT2.mac, dmac: OUT2.gwMac }),
  });
  icmpChecksumsOk(t, o3, 'redirected');
  // A backend whose neighbour is unresolved: translated, handed to the kernel, TTL left to it.
  net.run(lb, packet(tcpSpec({ src: CLIENT, sport: 40513, dst: '10.0.1.5', dport: 80 })));
  const q5 = ipPacket({ ipv4: { src: '10.0.1.5', dst: CLIENT, flags: ['DF'], ttl: 63 }, tcp: { srcPort: 80, dstPort: 40513, flags: ['ACK'] } });
  const sent5: PacketSpec = { ipv4: { src: '10.3.0.1', dst: CLIENT, flags: ['DF'] }, tcp: { srcPort: 8080, dstPort: 40513, flags: ['ACK'] } };
  const e5 = fragNeeded(q5, '10.0.1.5');
  const o5 = runFixture(t, lb, net, {
    name: 'neighbour unresolved', in: e5, verdict: 'PASS', reason: 'PASS_NAT_KERNEL',
    // The kernel forwards it and decrements the TTL itself; the MACs are the ones it came with.
    out: expectedError(sent5, 63, quoteOf(e5), ROUTER, '10.3.0.1', { smac: ROUTER_MAC, dmac: net.mac }, 64),
  });
  icmpChecksumsOk(t, o5, 'to the kernel');
});

t.test('a full table drops new connections with a counted verdict and keeps the established ones', async (t) => {
  const small = loadBalancer({ ringSize: RING, maxServices: 4, flowBuckets: 64, seed: SEED, natEntries: 4 });
  t.teardown(() => small.close());
  small.dataplane.apply([services[0]!]);
  const mk = (port: number, flags: TcpFlag[] = ['SYN']) => packet(tcpSpec({ src: CLIENT, sport: port, dst: '10.0.1.1', dport: 80 }, flags));
  for (const p of [50000, 50002]) t.equal(net.run(small, mk(p)).verdict, XDP.TX, `connection ${p} fits`);
  const before = small.reasons();
  const r = net.run(small, mk(50004));
  t.equal(r.verdict, XDP.DROP, 'the third does not');
  t.equal((small.reasons().DROP_NAT_TABLE_FULL ?? 0n) - (before.DROP_NAT_TABLE_FULL ?? 0n), 1n, 'counted as DROP_NAT_TABLE_FULL');
  t.equal(small.nat.count().entries, 4, 'no half-built pair left behind');
  t.equal(net.run(small, mk(50000, ['ACK'])).verdict, XDP.TX, 'an established connection still passes');
});
