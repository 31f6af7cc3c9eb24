import t from 'tap';
import { HEALTH_DEFAULTS, parseConfig, serviceKeyString, type Config } from '../../src/config/index.js';

const MINIMAL = `node:
  interfaces: [eth0]
services:
  - vip: 10.0.0.10
    port: 80
    mode: l2dsr
    backends:
      - address: 10.0.0.11
  - vip: 10.0.0.53
    port: 53
    proto: udp
    mode: ipip
    backends:
  - vip: 10.0.0.90
    port: 8080
    mode: nat
`;

t.test('a minimal config gets every default', async (t) => {
  const c = parseConfig(MINIMAL, 'minimal.yaml');
  t.same(c.node, {
    interfaces: ['eth0'],
    xdpMode: 'native',
    bpffs: '/sys/fs/bpf/xdplb',
    ringSize: 65537,
    maxServices: 64,
    flowBuckets: 262144,
    seed: 0,
    flowIdleTimeoutMs: 30000,
    api: { socket: '/run/xdplb/lbctl.sock' },
    log: { level: 'info' },
    nat: { portMin: 10000, portMax: 32767, entries: 262144, entries6: 65536, sweepIntervalMs: 5000, timeoutsMs: { tcpNew: 30000, tcpEstablished: 300000, tcpClosing: 10000, udp: 30000 } },
  });
  t.notOk('metrics' in c.node, 'metrics off unless configured');
  t.notOk('sourceAddress' in c.node);
  const tcpCheck = { type: 'tcp', intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3, jitter: 0.1, datapath: true };
  const [web, dns, nat] = c.services;
  t.strictSame(web, {
    name: '10.0.0.10:80/tcp',
    vip: '10.0.0.10',
    port: 80,
    proto: 'tcp',
    mode: 'l2dsr',
    hashSourceOnly: false,
    fullNat: false,
    onAllDown: 'drop',
    healthCheck: tcpCheck,
    backends: [{ address: '10.0.0.11', weight: 1, healthCheck: tcpCheck }],
  });
  t.equal(dns?.name, '10.0.0.53:53/udp');
  t.same(dns?.backends, [], 'an empty "backends:" is an empty list');
  t.same(dns?.healthCheck, { ...tcpCheck, type: 'none', datapath: false }, 'udp services are not probed unless asked');
  t.same(nat?.healthCheck, { ...tcpCheck, datapath: false }, 'nat does not probe through the data path');
  t.equal(HEALTH_DEFAULTS.intervalMs, 2000);
});

const FULL = `# every key
node:
  interfaces: [eth0, eth1]
  xdpMode: generic
  bpffs: /sys/fs/bpf/lb1/
  ringSize: 257
  maxServices: 8
  flowBuckets: 1024
  seed: 42
  flowIdleTimeout: 10s
  sourceAddress: { ipv4: 10.0.0.1, ipv6: "2001:DB8::0:1" }
  api: { socket: /run/lb1.sock }
  metrics: { listen: "::", port: 9100 }
  log: { level: debug }
defaults:
  healthCheck: { rise: 4, fall: 5, jitter: 0.2 }
services:
  - name: web
    vip: 10.0.0.10
    port: 443
    proto: tcp
    mode: l2dsr
    hashSourceOnly: true
    onAllDown: pass
    healthCheck:
      type: https
      interval: 1.5s
      timeout: 500ms
      port: 8443
      method: HEAD
      path: /healthz
      host: www.example.com
      expect: [200, "300-302"]
      bodyContains: ok
      insecure: true
      datapath: false
    backends:
      - address: 10.0.0.11
        weight: 3
        mac: "02:AA:00:00:00:11"
      - address: 10.0.0.12
        weight: 0
        healthCheck: { interval: 1m, timeout: 10s }
  - name: dns
    vip: 10.0.0.53
    port: 53
    proto: udp
    mode: ipip
    healthCheck: { type: udp, payload: { hex: "0a0b" }, expect: no-unreachable }
    backends: [{ address: 192.168.1.53 }]
  - name: probe
    vip: 10.0.0.60
    port: 25
    mode: nat
    healthCheck: { type: exec, command: ["/usr/local/bin/check", "--fast"] }
    backends:
      - { address: 10.0.0.61, port: 2525 }
      - { address: 10.0.0.61, port: 2526 }
`;

t.test('a full config normalizes every key', async (t) => {
  const c = parseConfig(FULL, 'full.yaml');
  t.same(c.node, {
    interfaces: ['eth0', 'eth1'],
    xdpMode: 'generic',
    bpffs: '/sys/fs/bpf/lb1',
    ringSize: 257,
    maxServices: 8,
    flowBuckets: 1024,
    seed: 42,
    flowIdleTimeoutMs: 10000,
    sourceAddress: { ipv4: '10.0.0.1', ipv6: '2001:db8::1' },
    api: { socket: '/run/lb1.sock' },
    metrics: { listen: '::', port: 9100 },
    log: { level: 'debug' },
    nat: { portMin: 10000, portMax: 32767, entries: 262144, entries6: 65536, sweepIntervalMs: 5000, timeoutsMs: { tcpNew: 30000, tcpEstablished: 300000, tcpClosing: 10000, udp: 30000 } },
  });
  const [web, dns, probe] = c.services;
  t.same(web?.healthCheck, {
    type: 'https',
    intervalMs: 1500,
    timeoutMs: 500,
    rise: 4,
    fall: 5,
    jitter: 0.2,
    port: 8443,
    datapath: false,
    http: {
      method: 'HEAD',
      path: '/healthz',
      host: 'www.example.com',
      expect: [
        { from: 200, to: 200 },
        { from: 300, to: 302 },
      ],
      bodyContains: 'ok',
      insecure: true,
    },
  });
  t.equal(web?.hashSourceOnly, true);
  t.equal(web?.onAllDown, 'pass');
  t.equal(web?.backends[0]?.mac, '02:aa:00:00:00:11', 'MACs are lower case');
  t.equal(web?.backends[0]?.weight, 3);
  t.equal(web?.backends[1]?.weight, 0, 'weight 0 (drain) is allowed');
  t.equal(web?.backends[1]?.healthCheck.intervalMs, 60000);
  t.equal(web?.backends[1]?.healthCheck.timeoutMs, 10000);
  t.equal(web?.backends[1]?.healthCheck.http?.path, '/healthz', 'the override keeps the rest of the service check');
  t.equal(dns?.healthCheck.type, 'udp');
  t.same(dns?.healthCheck.udp?.payload, Buffer.from([0x0a, 0x0b]));
  t.equal(dns?.healthCheck.udp?.expect, 'no-unreachable');
  t.equal(dns?.healthCheck.datapath, true);
  t.same(probe?.healthCheck.exec, { command: ['/usr/local/bin/check', '--fast'] });
  t.same(
    probe?.backends.map((b) => [b.address, b.port]),
    [
      ['10.0.0.61', 2525],
      ['10.0.0.61', 2526],
    ],
    'nat may use one address on two ports',
  );
});

t.test('JSON gives the same Config as YAML', async (t) => {
  const yaml = parseConfig(FULL, 'full.yaml');
  const json = JSON.stringify({
    node: {
      interfaces: ['eth0', 'eth1'],
      xdpMode: 'generic',
      bpffs: '/sys/fs/bpf/lb1/',
      ringSize: 257,
      maxServices: 8,
      flowBuckets: 1024,
      seed: 42,
      flowIdleTimeout: '10s',
      sourceAddress: { ipv4: '10.0.0.1', ipv6: '2001:DB8::0:1' },
      api: { socket: '/run/lb1.sock' },
      metrics: { listen: '::', port: 9100 },
      log: { level: 'debug' },
    },
    defaults: { healthCheck: { rise: 4, fall: 5, jitter: 0.2 } },
    services: [
      {
        name: 'web',
        vip: '10.0.0.10',
        port: 443,
        proto: 'tcp',
        mode: 'l2dsr',
        hashSourceOnly: true,
        onAllDown: 'pass',
        healthCheck: {
          type: 'https',
          interval: '1.5s',
          timeout: '500ms',
          port: 8443,
          method: 'HEAD',
          path: '/healthz',
          host: 'www.example.com',
          expect: [200, '300-302'],
          bodyContains: 'ok',
          insecure: true,
          datapath: false,
        },
        backends: [
          { address: '10.0.0.11', weight: 3, mac: '02:AA:00:00:00:11' },
          { address: '10.0.0.12', weight: 0, healthCheck: { interval: '1m', timeout: '10s' } },
        ],
      },
      {
        name: 'dns',
        vip: '10.0.0.53',
        port: 53,
        proto: 'udp',
        mode: 'ipip',
        healthCheck: { type: 'udp', payload: { hex: '0a0b' }, expect: 'no-unreachable' },
        backends: [{ address: '192.168.1.53' }],
      },
      {
        name: 'probe',
        vip: '10.0.0.60',
        port: 25,
        mode: 'nat',
        healthCheck: { type: 'exec', command: ['/usr/local/bin/check', '--fast'] },
        backends: [
          { address: '10.0.0.61', port: 2525 },
          { address: '10.0.0.61', port: 2526 },
        ],
      },
    ],
  }, null, 2);
  t.same(parseConfig(json, 'full.json'), yaml, 'by extension');
  t.same(parseConfig(json), yaml, 'by content');
  t.same(parseConfig(`\ufeff${json}`, 'full.conf'), yaml, 'with a byte-order mark');
});

t.test('a backend override merges over the service check', async (t) => {
  const c = parseConfig(`node: { interfaces: [eth0] }
services:
  - vip: 10.0.0.10
    port: 80
    mode: l2dsr
    healthCheck: { type: http, path: /ready, interval: 3s, rise: 5 }
    backends:
      - address: 10.0.0.11
        healthCheck: { interval: 5s, expect: ["200-204"] }
      - address: 10.0.0.12
        healthCheck: { type: tcp }
      - address: 10.0.0.13
`);
  const s = c.services[0];
  t.equal(s?.healthCheck.intervalMs, 3000, 'the service check is not touched by overrides');
  const [a, b, d] = s?.backends ?? [];
  t.same(
    [a?.healthCheck.type, a?.healthCheck.intervalMs, a?.healthCheck.rise, a?.healthCheck.http?.path, a?.healthCheck.http?.expect],
    ['http', 5000, 5, '/ready', [{ from: 200, to: 204 }]],
  );
  t.same(b?.healthCheck, { type: 'tcp', intervalMs: 3000, timeoutMs: 1000, rise: 5, fall: 3, jitter: 0.1, datapath: true }, 'changing the type drops the http keys');
  t.same(d?.healthCheck, s?.healthCheck);
  t.not(d?.healthCheck, s?.healthCheck, 'each backend has its own object');
});

t.test('defaults.healthCheck applies to every service unless it overrides', async (t) => {
  const c = parseConfig(`node: { interfaces: [eth0] }
defaults:
  healthCheck: { type: http, path: /healthz, fall: 6, timeout: 700ms }
services:
  - { name: a, vip: 10.0.0.1, port: 80, mode: l2dsr }
  - { name: b, vip: 10.0.0.2, port: 80, mode: l2dsr, healthCheck: { type: tcp } }
  - { name: c, vip: 10.0.0.3, port: 53, proto: udp, mode: ipip, healthCheck: { type: udp, payload: ping } }
  - { name: d, vip: 10.0.0.4, port: 80, mode: l2dsr, healthCheck: { path: /d } }
`);
  const [a, b, cc, d] = c.services;
  t.equal(a?.healthCheck.type, 'http');
  t.equal(a?.healthCheck.http?.path, '/healthz');
  t.equal(a?.healthCheck.fall, 6);
  t.equal(a?.healthCheck.timeoutMs, 700);
  t.same(a?.healthCheck.http?.expect, [{ from: 200, to: 399 }], 'expect defaults to 200-399');
  t.equal(a?.healthCheck.http?.method, 'GET');
  t.equal(a?.healthCheck.http?.insecure, false);
  t.equal(b?.healthCheck.type, 'tcp');
  t.equal(b?.healthCheck.http, undefined);
  t.equal(b?.healthCheck.fall, 6, 'generic keys are still inherited');
  t.equal(cc?.healthCheck.udp?.payload.toString(), 'ping');
  t.equal(cc?.healthCheck.udp?.expect, 'reply', 'udp expect defaults to reply');
  t.equal(d?.healthCheck.http?.path, '/d');
});

t.test('IPv6 addresses are canonical', async (t) => {
  const c = parseConfig(`node: { interfaces: [eth0] }
services:
  - vip: 2001:DB8:0:0:0:0:0:10
    port: 80
    mode: l2dsr
    backends:
      - address: "2001:0db8::0011"
      - address: 2001:db8:0:0:1:0:0:1
`);
  const s = c.services[0];
  t.equal(s?.vip, '2001:db8::10');
  t.equal(s?.name, '[2001:db8::10]:80/tcp');
  t.equal(s && serviceKeyString(s), '[2001:db8::10]:80/tcp');
  t.same(
    s?.backends.map((b) => b.address),
    ['2001:db8::11', '2001:db8::1:0:0:1'],
  );
});

t.test('the result is deeply frozen', async (t) => {
  const c: Config = parseConfig(FULL, 'full.yaml');
  const s = c.services[0];
  for (const o of [c, c.node, c.node.interfaces, c.services, s, s?.backends, s?.backends[0], s?.healthCheck, s?.healthCheck.http, s?.healthCheck.http?.expect[0]]) {
    t.ok(Object.isFrozen(o));
  }
  t.throws(() => (c.services as unknown as unknown[]).push({}), TypeError);
  t.throws(() => {
    (c.node as { seed: number }).seed = 1;
  }, TypeError);
});

t.test('nulls read as absent keys; YAML 1.2 booleans only', async (t) => {
  const c = parseConfig(`node:
  interfaces: [eth0]
  metrics:
  log:
defaults:
services:
  - vip: 10.0.0.10
    port: 80
    mode: l2dsr
    healthCheck:
`);
  t.equal(c.node.metrics, undefined);
  t.equal(c.node.log.level, 'info');
  t.equal(c.services[0]?.healthCheck.type, 'tcp');
  t.throws(() => parseConfig(`node: { interfaces: [eth0] }\nservices: [{ vip: 10.0.0.1, port: 80, mode: l2dsr, hashSourceOnly: yes }]`), {
    code: 'ERR_LB_CONFIG',
  });
});

t.test('metrics: {} turns metrics on with its defaults', async (t) => {
  const c = parseConfig('node: { interfaces: [eth0], metrics: {} }\n');
  t.same(c.node.metrics, { listen: '127.0.0.1', port: 9723 });
  t.same(c.services, []);
});

t.test('the examples in docs/config.md are valid', async (t) => {
  const { readFileSync } = await import('node:fs');
  const md = readFileSync(new URL('../../docs/config.md', import.meta.url), 'utf8');
  const blocks = [...md.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
  t.equal(blocks.length, 3);
  for (const b of blocks) t.doesNotThrow(() => parseConfig(b, 'docs.yaml'));
  const full = parseConfig(blocks[1] ?? '', 'docs.yaml');
  t.equal(full.services[0]?.backends[1]?.healthCheck.intervalMs, 5000);
  t.equal(full.services[0]?.backends[1]?.healthCheck.http?.path, '/healthz');
  const v6 = parseConfig(blocks[2] ?? '', 'docs.yaml');
  t.same(v6.services.map((s) => s.backends.map((b) => b.address)), [['2001:db8::11', '2001:db8::12'], ['2001:db8:1::53'], ['2001:db8:2::21']], 'the IPv6 example');
});

t.test('IPv6 wherever IPv4 is accepted: every mode, ipip IPv4-in-IPv6, mixed NAT sources', async (t) => {
  const c = parseConfig(`node:
  interfaces: [eth0]
  sourceAddress: { ipv6: "2001:DB8::1" }
  nat: { sources: [10.0.0.1, "2001:db8::a", 10.0.0.2, "fd00::b", 10.0.0.3, 10.0.0.4, "2001:db8::c", "2001:db8::d"], entries6: 4096 }
services:
  - { name: l2, vip: "2001:db8::10", port: 80, mode: l2dsr, backends: [{ address: "2001:db8::11" }, { address: "fd00::12", mac: "02:00:00:00:00:12" }] }
  - { name: six, vip: "2001:db8::20", port: 80, mode: ipip, backends: [{ address: "2001:db8:1::21" }] }
  - { name: four-in-six, vip: 10.0.0.30, port: 80, mode: ipip, backends: [{ address: 10.0.1.31 }, { address: "2001:db8:1::31" }] }
  - { name: nat66, vip: "2001:db8::40", port: 80, mode: nat, backends: [{ address: "2001:db8:2::41", port: 8080 }] }
  - { name: fullnat66, vip: "2001:db8::50", port: 80, mode: nat, fullNat: true, backends: [{ address: "2001:db8:2::51" }] }
`, 'v6.yaml');
  t.same(c.node.sourceAddress, { ipv6: '2001:db8::1' }, 'canonical IPv6');
  t.same(c.node.nat.sources, ['10.0.0.1', '2001:db8::a', '10.0.0.2', 'fd00::b', '10.0.0.3', '10.0.0.4', '2001:db8::c', '2001:db8::d'], '4 of each family');
  t.equal(c.node.nat.entries6, 4096);
  t.same(
    c.services.map((s) => [s.name, s.mode, s.backends.map((b) => b.address)]),
    [
      ['l2', 'l2dsr', ['2001:db8::11', 'fd00::12']],
      ['six', 'ipip', ['2001:db8:1::21']],
      ['four-in-six', 'ipip', ['10.0.1.31', '2001:db8:1::31']],
      ['nat66', 'nat', ['2001:db8:2::41']],
      ['fullnat66', 'nat', ['2001:db8:2::51']],
    ],
  );
  t.equal(c.services[0]?.healthCheck.datapath, true, 'l2dsr IPv6 probes through the data path by default');
  t.equal(c.services[4]?.fullNat, true);
  t.equal(serviceKeyString(c.services[3]!), '[2001:db8::40]:80/tcp');
});
