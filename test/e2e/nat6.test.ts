/**
 * NAT66 end to end in the namespace lab, real clients and servers over IPv6, the balancer attached
 * natively to both of the LB's interfaces:
 *  - NAT66 with the LB as the backends' gateway (nat segment, fd00:200:100::3): TCP 80 -> 8080 with
 *    `curl -6`, UDP 53 -> 9000 echo; the backends see the client's own IPv6 address;
 *  - full NAT66 (routed backends, one-armed LB, fd00:200:100::4): the same, and the backends see the
 *    LB's IPv6 address.
 * 300 connections per topology, all answered, each backend 20-47%; the backends' kernels count no
 * checksum errors (nstat: TCP's counter is shared by both families, UDP and ICMP have IPv6 ones).
 * Then a PMTU black hole: the router's leg to the client gets an MTU of 1280, so the backends'
 * full-size replies draw ICMPv6 packet-too-big from the router to the VIP; a 200 KB download
 * completes only if the balancer hands that error to the connection's backend, translated.
 */
import t from 'tap';
import { clientRequests, udpRequests, type Lab, type LabBalancer } from '../../src/lab/index.js';
import { assertSpread, checkPmtuThroughNat, moved, nstat, startLab, stopLab } from './helpers.js';

const PREFIX = 'xn6-';
let lab: Lab;
let bal: LabBalancer;

t.before(async () => {
  ({ lab, bal } = await startLab(PREFIX, { sweepIntervalMs: 0 }));
});
t.teardown(() => stopLab(PREFIX, bal));

const CSUM_COUNTERS = ['TcpInCsumErrors', 'Udp6InCsumErrors', 'Icmp6InCsumErrors'];

const topologies = [
  { name: 'NAT66, LB as gateway', vip: 'fd00:200:100::3', segment: 'nat', seen: () => lab.clientAddr6, fwd: ['REDIRECT_NAT'], rev: ['REDIRECT_NAT_REPLY'] },
  { name: 'full NAT66', vip: 'fd00:200:100::4', segment: 'routed', seen: () => lab.lb.addr6, fwd: ['TX_NAT'], rev: ['TX_NAT_REPLY'] },
] as const;

for (const topo of topologies) {
  t.test(`${topo.name}: 300 real TCP connections over IPv6 (80 -> 8080)`, async (t) => {
    const before = bal.lb.reasons();
    const res = await clientRequests(lab, topo.vip, 80, 300, { concurrency: 10 });
    assertSpread(t, res, lab.backends.filter((b) => b.segment === topo.segment).map((b) => b.name).sort());
    t.same(res.clientAddrs, { [topo.seen()]: 300 }, `backends saw ${topo.seen()} as the client`);
    const after = bal.lb.reasons();
    t.ok(moved(before, after, topo.fwd) >= 900n, `forward packets translated by XDP (${topo.fwd.join('+')} +${moved(before, after, topo.fwd)})`);
    t.ok(moved(before, after, topo.rev) >= 900n, `replies translated by XDP (${topo.rev.join('+')} +${moved(before, after, topo.rev)})`);
    t.equal(moved(before, after, ['DROP_NAT_NO_PORT', 'DROP_NAT_NO_SOURCE', 'DROP_NAT_CONFLICT', 'DROP_NAT_TABLE_FULL', 'DROP_NAT_NO_ROUTE', 'DROP_NAT_MTU']), 0n, 'no NAT drops');
  });

  t.test(`${topo.name}: UDP echo over IPv6 (53 -> 9000)`, async (t) => {
    const res = await udpRequests(lab, topo.vip, 53, 90, { concurrency: 10 });
    t.equal(res.ok, 90, `all 90 answered from the VIP (failures: ${JSON.stringify(res.failures)})`);
    t.equal(Object.keys(res.byBackend).length, 3, `spread over the three backends: ${JSON.stringify(res.byBackend)}`);
    t.same(res.clientAddrs, { [topo.seen()]: 90 }, `backends saw ${topo.seen()} as the client`);
  });
}

t.test("the backends' kernels count no checksum errors", async (t) => {
  for (const b of lab.backends.filter((x) => x.segment === 'nat' || x.segment === 'routed')) {
    const c = await nstat(b.ns, [...CSUM_COUNTERS, 'TcpInSegs', 'Udp6InDatagrams']);
    t.ok((c.TcpInSegs ?? 0) > 0 && (c.Udp6InDatagrams ?? 0) > 0, `${b.name} received TCP and UDP over IPv6 (${c.TcpInSegs} segments, ${c.Udp6InDatagrams} datagrams)`);
    for (const k of CSUM_COUNTERS) t.equal(c[k], 0, `${b.name}: ${k} = 0`);
  }
});

t.test('the NAT66 connections are in the table, with the LB\'s IPv6 address for full NAT66', async (t) => {
  const conns = bal.lb.nat.connections().filter((c) => c.vip.includes(':'));
  // A client port the kernel hands out twice makes two UDP queries one connection.
  t.ok(conns.length >= 770 && conns.length <= 780, `${conns.length} IPv6 connections tracked (600 TCP + up to 180 UDP)`);
  const full = conns.filter((c) => c.fullNat);
  // 300 TCP + 90 UDP, less the UDP queries that shared a client port (as in the total above).
  t.ok(full.length >= 380, `${full.length} full-NAT66 connections (300 TCP + up to 90 UDP)`);
  t.ok(full.every((c) => c.source === lab.lb.addr6), 'full-NAT66 connections use the LB\'s IPv6 address');
});

t.test('PMTU discovery through NAT66: the router\'s packet-too-big reaches the backend, a 200 KB download completes', async (t) => {
  await checkPmtuThroughNat(t, lab, bal, topologies, 6, 1280); // IPv6's minimum: a link below it loses IPv6 altogether
});
