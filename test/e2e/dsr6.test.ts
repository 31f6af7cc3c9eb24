/**
 * DSR over IPv6 end to end in the namespace lab: real `curl -6` clients, the dual-stack HTTP servers
 * on three backends per mode, the balancer attached natively to the LB's veth.
 *  - l2dsr, fd00:200:100::1: MAC rewrite to the L2 segment's backends;
 *  - ipip 6in6, fd00:200:100::2: an outer IPv6 header to the routed backends, stripped there by
 *    the decap XDP program (this kernel has no ip6_tunnel driver);
 *  - ipip 4in6, 10.200.100.5: an IPv4 VIP whose routed backends are reached over IPv6.
 * For each: 300 connections all succeed, spread 20-47% per backend, the backends see the client's
 * own address (IPv6, or IPv4 for 4in6), and the XDP program forwarded every packet.
 */
import t from 'tap';
import { clientRequests, type Lab, type LabBalancer } from '../../src/lab/index.js';
import { assertSpread, startLab, stopLab } from './helpers.js';

const PREFIX = 'xe6-';
let lab: Lab;
let bal: LabBalancer;

t.before(async () => {
  ({ lab, bal } = await startLab(PREFIX));
});
t.teardown(() => stopLab(PREFIX, bal));

const cases = [
  { name: 'l2dsr (IPv6)', vip: 'fd00:200:100::1', segment: 'l2', seen: () => lab.clientAddr6, fwd: ['TX_L2DSR'] },
  { name: 'ipip 6in6', vip: 'fd00:200:100::2', segment: 'routed', seen: () => lab.clientAddr6, fwd: ['TX_IPIP', 'REDIRECT_IPIP'] },
  { name: 'ipip 4in6', vip: '10.200.100.5', segment: 'routed', seen: () => lab.clientAddr, fwd: ['TX_IPIP', 'REDIRECT_IPIP'] },
] as const;

for (const c of cases) {
  t.test(`${c.name}: 300 real TCP connections through the balancer`, async (t) => {
    const svc = lab.services.find((s) => s.vip === c.vip && s.proto === 'tcp');
    if (!svc) throw new Error(`lab has no service ${c.vip}`);
    const before = bal.lb.reasons();
    const res = await clientRequests(lab, svc.vip, svc.port, 300, { concurrency: 10 });
    assertSpread(t, res, lab.backends.filter((b) => b.segment === c.segment).map((b) => b.name).sort());
    t.same(res.clientAddrs, { [c.seen()]: 300 }, `backends saw the real client address ${c.seen()}`);
    const after = bal.lb.reasons();
    const moved = c.fwd.reduce((a, r) => a + ((after[r] ?? 0n) - (before[r] ?? 0n)), 0n);
    // Per connection at least SYN, ACK+request, FIN, ACK: all through XDP.
    t.ok(moved >= 300n * 3n, `the XDP program forwarded them (${c.fwd.join('+')} +${moved})`);
    const kernel = (after['PASS_IPIP_KERNEL'] ?? 0n) - (before['PASS_IPIP_KERNEL'] ?? 0n);
    t.ok(kernel <= 3n, `at most a next-hop lookup's worth left to the kernel (PASS_IPIP_KERNEL +${kernel})`);
  });
}
