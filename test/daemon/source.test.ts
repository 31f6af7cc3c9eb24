// Source addresses (src/daemon/source.ts): which configs need one, what is picked, the errors when
// the host lacks one, the full-NAT sources per family; and the interface lookup for real, in a
// namespace made here (xh6-<random>).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { parseConfig } from '../../src/config/index.js';
import { interfaceAddress, natSources, resolveSources, sourceNeed } from '../../src/daemon/source.js';
import { run } from '../../src/lab/index.js';

const cfg = (services: string, node = '') => parseConfig(`node:\n  interfaces: [eth0]\n${node}services:\n${services}`, 'src.yaml');

const L2_V6 = '  - { name: l2, vip: "2001:db8::10", port: 80, mode: l2dsr, backends: [{ address: "2001:db8::11" }] }\n';
const IPIP_4IN6 = '  - { name: t46, vip: 10.0.0.10, port: 80, mode: ipip, backends: [{ address: 10.0.1.1 }, { address: "2001:db8:1::1" }] }\n';
const IPIP_V4 = '  - { name: t44, vip: 10.0.0.20, port: 80, mode: ipip, backends: [{ address: 10.0.1.2 }] }\n';
const FULLNAT_V6 = '  - { name: fn6, vip: "2001:db8::30", port: 80, mode: nat, fullNat: true, backends: [{ address: "2001:db8:2::1" }] }\n';
const NAT_V6 = '  - { name: n6, vip: "2001:db8::40", port: 80, mode: nat, backends: [{ address: "2001:db8:2::2" }] }\n';

t.test('sourceNeed: ipip backends of the family, full NAT of the family without a listed source', async (t) => {
  t.equal(sourceNeed(cfg(L2_V6 + NAT_V6), 6), undefined, 'l2dsr and plain NAT66 need no source');
  t.equal(sourceNeed(cfg(L2_V6 + NAT_V6), 4), undefined);
  t.equal(sourceNeed(cfg(IPIP_4IN6), 6), 'the outer source of ipip tunnels to IPv6 backends (service t46, backend 2001:db8:1::1)');
  t.equal(sourceNeed(cfg(IPIP_4IN6), 4), 'the outer source of ipip tunnels to IPv4 backends (service t46, backend 10.0.1.1)');
  t.equal(sourceNeed(cfg(IPIP_V4), 6), undefined, 'IPv4-only ipip needs no IPv6 source');
  t.equal(sourceNeed(cfg(FULLNAT_V6), 6), 'the full-NAT source of service fn6');
  t.equal(sourceNeed(cfg(FULLNAT_V6, '  nat: { sources: ["2001:db8::99"] }\n'), 6), undefined, 'a listed IPv6 source is enough');
  t.equal(sourceNeed(cfg(FULLNAT_V6, '  nat: { sources: [10.9.9.9] }\n'), 6), 'the full-NAT source of service fn6', 'an IPv4 source is not');
  t.equal(sourceNeed(cfg(IPIP_4IN6 + FULLNAT_V6, '  sourceAddress: { ipv6: "2001:db8::1" }\n'), 6), undefined, 'configured');
});

t.test('resolveSources: configured wins, a needed address is looked up once and kept, a missing one refused', async (t) => {
  const calls: string[] = [];
  const lookup = (table: Record<string, string | undefined>) => (ifname: string, family: 4 | 6) => {
    calls.push(`${ifname}/${family}`);
    return table[family];
  };
  const picked: { 4?: string; 6?: string } = {};
  t.same(resolveSources(cfg(L2_V6), picked, lookup({ 4: '10.0.0.1', 6: '2001:db8::1' })), { src4: '10.0.0.1', src6: '' }, 'IPv6 not looked up unless needed');
  t.same(calls, ['eth0/4']);
  t.same(resolveSources(cfg(IPIP_4IN6), picked, lookup({ 4: '10.0.0.99', 6: '2001:db8::1' })), { src4: '10.0.0.1', src6: '2001:db8::1' }, 'picked IPv4 kept');
  t.same(calls, ['eth0/4', 'eth0/6']);
  t.same(resolveSources(cfg(IPIP_4IN6), picked, lookup({})), { src4: '10.0.0.1', src6: '2001:db8::1' }, 'no lookup once picked');
  t.equal(calls.length, 2);
  const configured = cfg(IPIP_4IN6, '  sourceAddress: { ipv4: 192.0.2.1, ipv6: "2001:db8::aa" }\n');
  t.same(resolveSources(configured, {}, lookup({})), { src4: '192.0.2.1', src6: '2001:db8::aa' });

  t.same(resolveSources(cfg(L2_V6), {}, lookup({})), { src4: '', src6: '' }, 'an IPv6-only host without IPv4 runs IPv6 services');
  t.throws(() => resolveSources(cfg(IPIP_4IN6), {}, lookup({ 4: '10.0.0.1' })), {
    code: 'ERR_LB_NO_INTERFACE',
    message: 'interface eth0 has no global IPv6 address for the outer source of ipip tunnels to IPv6 backends (service t46, backend 2001:db8:1::1)',
    hint: 'set node.sourceAddress.ipv6 in the config, or give eth0 a global IPv6 address (`ip -6 addr`)',
  });
  t.throws(() => resolveSources(cfg(FULLNAT_V6), {}, lookup({ 4: '10.0.0.1' })), {
    code: 'ERR_LB_NO_INTERFACE',
    message: 'interface eth0 has no global IPv6 address for the full-NAT source of service fn6',
  });
  t.throws(() => resolveSources(cfg(IPIP_V4), {}, lookup({ 6: '2001:db8::1' })), {
    code: 'ERR_LB_NO_INTERFACE',
    message: 'interface eth0 has no IPv4 address for the outer source of ipip tunnels to IPv4 backends (service t44, backend 10.0.1.2)',
    hint: 'set node.sourceAddress.ipv4 in the config, or check the interface name with `ip addr`',
  });
});

t.test('natSources: listed per family, else the source address; IPv6 only where a full-NAT IPv6 service is', async (t) => {
  const src = { src4: '10.0.0.1', src6: '2001:db8::1' };
  t.same(natSources(cfg(L2_V6), src), ['10.0.0.1'], 'IPv4 as before: the source address');
  t.same(natSources(cfg(FULLNAT_V6), src), ['10.0.0.1', '2001:db8::1']);
  t.same(natSources(cfg(FULLNAT_V6, '  nat: { sources: ["2001:db8::5", 10.0.0.5, "2001:db8::6"] }\n'), src), ['10.0.0.5', '2001:db8::5', '2001:db8::6']);
  t.same(natSources(cfg(FULLNAT_V6, '  nat: { sources: [10.0.0.5] }\n'), src), ['10.0.0.5', '2001:db8::1'], 'a family the list lacks falls back');
  t.same(natSources(cfg(L2_V6), { src4: '', src6: '' }), [], 'nothing known, nothing needed');
});

const skip = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : undefined;

t.test('interfaceAddress: the first IPv4, the first global IPv6 (never link-local), none', { skip }, async (t) => {
  const ns = `xh6-${randomBytes(3).toString('hex')}-src`;
  t.teardown(() => run(['ip', 'netns', 'del', ns], { allowFail: true }).then(() => {}));
  const ip = (...a: string[]) => run(['ip', '-n', ns, ...a]);
  await run(['ip', 'netns', 'add', ns]);
  await ip('link', 'add', 'e0', 'type', 'veth', 'peer', 'name', 'e1');
  await ip('link', 'set', 'e0', 'up');
  await ip('link', 'set', 'e1', 'up');
  t.equal(interfaceAddress('e0', 4, ns), undefined, 'no IPv4');
  t.equal(interfaceAddress('e0', 6, ns), undefined, 'only a link-local IPv6 (or none yet): none');
  await ip('addr', 'add', 'fe80::99/64', 'dev', 'e0', 'nodad');
  t.equal(interfaceAddress('e0', 6, ns), undefined, 'link-local is not a tunnel source');
  await ip('addr', 'add', '192.0.2.7/24', 'dev', 'e0');
  await ip('addr', 'add', '2001:DB8:0::7/64', 'dev', 'e0', 'nodad');
  t.equal(interfaceAddress('e0', 4, ns), '192.0.2.7');
  t.equal(interfaceAddress('e0', 6, ns), '2001:db8::7', 'canonical form');
  t.equal(interfaceAddress('nonexistent0', 6, ns), undefined, 'no such interface');
});
