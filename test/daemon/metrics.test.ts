// Prometheus labels with IPv6 VIPs and backends: the registry over a fixed snapshot (the daemon's
// own metricsSnapshot() is exercised against real maps in daemon.test.ts). Addresses are label
// values as the config writes them (RFC 5952), so they match what lbctl prints, without brackets.
import t from 'tap';
import { parseConfig } from '../../src/config/index.js';
import type { Daemon } from '../../src/daemon/daemon.js';
import { metricsRegistry } from '../../src/daemon/metrics.js';

t.test('IPv6 addresses as label values', async (t) => {
  const cfg = parseConfig(
    `node: { interfaces: [eth0] }
services:
  - { name: web6, vip: "2001:DB8::10", port: 443, mode: l2dsr, backends: [{ address: "2001:db8:0::11" }] }
  - { name: t46, vip: 10.0.0.10, port: 80, mode: ipip, backends: [{ address: "fd00::12" }] }
`,
    'm.yaml',
  );
  const [web6, t46] = cfg.services;
  const counters = { packets: 7n, bytes: 700n, newFlows: 1n };
  const snap = {
    services: [
      { svc: web6!, stats: counters, usable: 1 },
      { svc: t46!, stats: counters, usable: 1 },
    ],
    backends: [
      { svc: web6!, b: web6!.backends[0]!, stats: counters, state: 'up', weight: 1, flows: { total: 1, active: 1 } },
      { svc: t46!, b: t46!.backends[0]!, stats: counters, state: 'down', weight: 1, flows: { total: 0, active: 0 } },
    ],
    reasons: {},
  };
  const reg = metricsRegistry({ metricsSnapshot: () => snap } as unknown as Daemon);
  const text = await reg.metrics();
  t.match(text, /^xdplb_service_packets_total\{service="web6",vip="2001:db8::10",port="443",proto="tcp",mode="l2dsr"\} 7$/m);
  t.match(text, /^xdplb_backend_up\{service="web6",vip="2001:db8::10",port="443",proto="tcp",mode="l2dsr",backend="2001:db8::11"\} 1$/m);
  t.match(text, /^xdplb_backend_up\{service="t46",vip="10\.0\.0\.10",port="80",proto="tcp",mode="ipip",backend="fd00::12"\} 0$/m, 'an IPv6 backend of an IPv4 VIP');
  t.match(text, /^xdplb_backend_active_flows\{[^}]*backend="2001:db8::11"\} 1$/m);
});
