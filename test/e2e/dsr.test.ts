/**
 * End to end in the namespace lab: real curl clients, real HTTP servers on three backends per
 * mode, the balancer attached natively to the LB's veth. For l2dsr (backends on the LB's L2
 * segment) and ipip (backends behind the router, decapsulated by the decap XDP program):
 * 300 connections all succeed, spread 20-47% per backend, and backends see the client's address.
 */
import t from 'tap';
import { clientRequests, type Lab, type LabBalancer } from '../../src/lab/index.js';
import { assertSpread, startLab, stopLab } from './helpers.js';

const PREFIX = 'xe2e-';
let lab: Lab;
let bal: LabBalancer;

t.before(async () => {
  ({ lab, bal } = await startLab(PREFIX));
});
t.teardown(() => stopLab(PREFIX, bal));

for (const mode of ['l2dsr', 'ipip'] as const) {
  t.test(`${mode}: 300 real TCP connections through the balancer`, async (t) => {
    const svc = lab.services.find((s) => s.mode === mode);
    if (!svc) throw new Error(`lab has no ${mode} service`);
    const before = bal.lb.reasons();
    const res = await clientRequests(lab, svc.vip, svc.port, 300, { concurrency: 10 });
    assertSpread(t, res, lab.backends.filter((b) => b.segment === (mode === 'l2dsr' ? 'l2' : 'routed')).map((b) => b.name).sort());
    t.same(Object.keys(res.clientAddrs), [lab.clientAddr], 'backends saw the real client address');
    const after = bal.lb.reasons();
    const fwd = mode === 'l2dsr' ? 'TX_L2DSR' : 'TX_IPIP';
    t.ok((after[fwd] ?? 0n) - (before[fwd] ?? 0n) >= 300n * 3n, `the XDP program forwarded them (${fwd} +${(after[fwd] ?? 0n) - (before[fwd] ?? 0n)})`);
  });
}
