/**
 * End to end in the namespace lab: real curl clients, real HTTP servers on three backends per
 * mode, the balancer attached natively to the LB's veth. For l2dsr (backends on the LB's L2
 * segment) and ipip (backends behind the router, decapsulated by the decap XDP program):
 * 300 connections all succeed, spread 20-47% per backend, and backends see the client's address.
 */
import t from 'tap';
import { clientRequests, labDown, labUp, startLabBalancer, type Lab, type LabBalancer } from '../../src/lab/index.js';

const PREFIX = 'xe2e-';
let lab: Lab;
let bal: LabBalancer;

t.before(async () => {
  await labDown(PREFIX);
  lab = await labUp({ prefix: PREFIX });
  bal = startLabBalancer(lab);
});
t.teardown(async () => {
  bal?.stop();
  await labDown(PREFIX);
});

for (const mode of ['l2dsr', 'ipip'] as const) {
  t.test(`${mode}: 300 real TCP connections through the balancer`, async (t) => {
    const svc = lab.services.find((s) => s.mode === mode);
    if (!svc) throw new Error(`lab has no ${mode} service`);
    const before = bal.lb.reasons();
    const res = await clientRequests(lab, svc.vip, svc.port, 300, { concurrency: 10 });
    t.equal(res.ok, 300, `all 300 answered (failures: ${JSON.stringify(res.failures)})`);
    const expected = lab.backends.filter((b) => b.segment === (mode === 'l2dsr' ? 'l2' : 'routed'));
    t.same(Object.keys(res.byBackend).sort(), expected.map((b) => b.name).sort(), 'every backend answered');
    for (const [name, n] of Object.entries(res.byBackend)) {
      t.ok(n >= 60 && n <= 141, `${name} got ${n} of 300 (${((n / 300) * 100).toFixed(0)}%, want 20-47%)`);
    }
    t.same(Object.keys(res.clientAddrs), [lab.clientAddr], 'backends saw the real client address');
    const after = bal.lb.reasons();
    const fwd = mode === 'l2dsr' ? 'TX_L2DSR' : 'TX_IPIP';
    t.ok((after[fwd] ?? 0n) - (before[fwd] ?? 0n) >= 300n * 3n, `the XDP program forwarded them (${fwd} +${(after[fwd] ?? 0n) - (before[fwd] ?? 0n)})`);
  });
}
