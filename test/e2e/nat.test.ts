/**
 * NAT end to end in the namespace lab, real clients and servers, the balancer attached natively
 * to both of the LB's interfaces:
 *  - LB as the backends' gateway (nat segment, 10.200.100.3): TCP 80 -> 8080 with curl, UDP 53 ->
 *    9000 echo; the backends see the client's own address;
 *  - full NAT (routed backends, one-armed LB, 10.200.100.4): the same, and the backends see the
 *    LB's address.
 * 300 connections per topology, all answered, each backend 20-47%; the backends' kernels count no
 * checksum errors (nstat); the connection table lists the connections and the sweeper empties it.
 * Then a PMTU black hole: the router's leg to the client gets an MTU of 1000, so the backends'
 * full-size replies draw "fragmentation needed" from the router to the VIP; a 200 KB download
 * completes only if the balancer hands that error to the connection's backend, translated.
 */
import t from 'tap';
import { clientRequests, udpRequests, type Lab, type LabBalancer } from '../../src/lab/index.js';
import { SWEEP_GRACE_NS } from '../../src/dataplane/nat.js';
import { assertSpread, checkPmtuThroughNat, moved, nstat, startLab, stopLab } from './helpers.js';

const PREFIX = 'xnat-';
let lab: Lab;
let bal: LabBalancer;

t.before(async () => {
  // The test sweeps by hand, at the moments it checks.
  ({ lab, bal } = await startLab(PREFIX, { sweepIntervalMs: 0 }));
});
t.teardown(() => stopLab(PREFIX, bal));

const CSUM_COUNTERS = ['TcpInCsumErrors', 'UdpInCsumErrors', 'IpExtInCsumErrors'];

const topologies = [
  { name: 'LB as gateway', vip: '10.200.100.3', segment: 'nat', seen: () => lab.clientAddr, fwd: ['REDIRECT_NAT'], rev: ['REDIRECT_NAT_REPLY'] },
  { name: 'full NAT', vip: '10.200.100.4', segment: 'routed', seen: () => lab.lb.addr, fwd: ['TX_NAT'], rev: ['TX_NAT_REPLY'] },
] as const;

for (const topo of topologies) {
  t.test(`${topo.name}: 300 real TCP connections (80 -> 8080)`, async (t) => {
    const before = bal.lb.reasons();
    const res = await clientRequests(lab, topo.vip, 80, 300, { concurrency: 10 });
    assertSpread(t, res, lab.backends.filter((b) => b.segment === topo.segment).map((b) => b.name).sort());
    t.same(res.clientAddrs, { [topo.seen()]: 300 }, `backends saw ${topo.seen()} as the client`);
    const after = bal.lb.reasons();
    // Per connection at least SYN, ACK+request, FIN each way: the XDP program translated them.
    t.ok(moved(before, after, [...topo.fwd]) >= 900n, `forward packets translated by XDP (${topo.fwd.join('+')} +${moved(before, after, [...topo.fwd])})`);
    t.ok(moved(before, after, [...topo.rev]) >= 900n, `replies translated by XDP (${topo.rev.join('+')} +${moved(before, after, [...topo.rev])})`);
    t.equal(moved(before, after, ['DROP_NAT_NO_PORT', 'DROP_NAT_CONFLICT', 'DROP_NAT_TABLE_FULL', 'DROP_NAT_NO_ROUTE', 'DROP_NAT_MTU']), 0n, 'no NAT drops');
  });

  t.test(`${topo.name}: UDP echo (53 -> 9000)`, async (t) => {
    const res = await udpRequests(lab, topo.vip, 53, 90, { concurrency: 10 });
    t.equal(res.ok, 90, `all 90 answered from the VIP (failures: ${JSON.stringify(res.failures)})`);
    t.equal(Object.keys(res.byBackend).length, 3, `spread over the three backends: ${JSON.stringify(res.byBackend)}`);
    t.same(res.clientAddrs, { [topo.seen()]: 90 }, `backends saw ${topo.seen()} as the client`);
  });
}

t.test('the backends\' kernels count no checksum errors', async (t) => {
  const nat = lab.backends.filter((b) => b.segment === 'nat' || b.segment === 'routed');
  for (const b of nat) {
    const c = await nstat(b.ns, [...CSUM_COUNTERS, 'TcpInSegs', 'UdpInDatagrams']);
    t.ok((c.TcpInSegs ?? 0) > 0 && (c.UdpInDatagrams ?? 0) > 0, `${b.name} received TCP and UDP (${c.TcpInSegs} segments, ${c.UdpInDatagrams} datagrams)`);
    for (const k of CSUM_COUNTERS) t.equal(c[k], 0, `${b.name}: ${k} = 0`);
  }
});

t.test('the connection table lists the connections; the sweeper returns them (and the ports)', async (t) => {
  const count = bal.lb.nat.count();
  t.ok(count.connections >= 600, `${count.connections} connections tracked (${JSON.stringify(count.byState)})`);
  t.ok(count.byState.tcpClosing >= 600, 'the curl connections are closing (FIN seen)');
  // A client port the kernel hands out twice makes two queries one connection.
  t.ok(count.byState.udp >= 170 && count.byState.udp <= 180, `the UDP queries: ${count.byState.udp} of 180`);
  t.equal(count.orphans, 0, 'no half connections');
  const full = bal.lb.nat.connections().filter((c) => c.fullNat);
  t.ok(full.length >= 380 && full.every((c) => c.source === lab.lb.addr && c.sourcePort >= 10000 && c.sourcePort <= 32767), 'full-NAT connections use the LB address and ports of the range');
  t.equal(new Set(full.map((c) => `${c.backend}:${c.backendPort}|${c.sourcePort}|${c.proto}`)).size, full.length, 'no two share a source port toward the same backend');
  t.equal(bal.lb.nat.sweep().connections, 0, 'nothing expired yet');

  bal.lb.nat.configure({ timeouts: { tcpClosingSec: 0.001, udpSec: 0.001 } });
  t.teardown(() => {
    bal.lb.nat.configure({ timeouts: { tcpClosingSec: 10, udpSec: 30 } });
  });
  // The sweeper deletes a grace after the timeout (the data path's clock is coarse).
  await new Promise((r) => setTimeout(r, Number(SWEEP_GRACE_NS / 1_000_000n) + 200));
  const swept = bal.lb.nat.sweep();
  t.equal(swept.connections, count.connections, `swept ${swept.connections} connections`);
  t.equal(bal.lb.nat.count().connections, 0, 'table empty');
  const again = await clientRequests(lab, '10.200.100.4', 80, 30, { concurrency: 5 });
  t.equal(again.ok, 30, 'new connections work after the sweep');
});

t.test('PMTU discovery through NAT: the router\'s frag-needed reaches the backend, a 200 KB download completes', async (t) => {
  await checkPmtuThroughNat(t, lab, bal, topologies, 4, 1000);
});
