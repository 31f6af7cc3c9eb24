import t from 'tap';
import { checkInterfaceName, checkIp, checkMac, checkUnicastIp } from '../../src/config/addr.js';
import { findBackend, findService, formatDuration, parseConfig, parseDuration, parseServiceKey } from '../../src/config/index.js';
import { closest, formatPath } from '../../src/config/violations.js';

t.test('durations', async (t) => {
  const ok: [unknown, number][] = [
    ['500ms', 500],
    ['2s', 2000],
    ['1.5s', 1500],
    ['1.1s', 1100],
    ['1m', 60000],
    ['60m', 3600000],
  ];
  for (const [v, ms] of ok) t.same(parseDuration(v), { ms }, String(v));
  const bad: [unknown, RegExp][] = [
    [2, /has no unit/],
    ['2', /is not a duration/],
    ['2 h', /is not a duration/],
    ['1h', /is not a duration/],
    ['0s', /longer than zero/],
    ['0.5ms', /whole number of milliseconds/],
    ['61m', /longer than the maximum 60m/],
    [true, /expected a duration/],
  ];
  for (const [v, re] of bad) {
    const r = parseDuration(v);
    t.ok('error' in r && re.test(r.error), `${String(v)} -> ${re}`);
  }
  t.same([500, 1000, 1500, 60000, 90000].map(formatDuration), ['500ms', '1s', '1.5s', '1m', '90s']);
  for (const ms of [1, 999, 1000, 1500, 59999, 60000, 3600000]) t.same(parseDuration(formatDuration(ms)), { ms }, `round trip ${ms}`);
});

t.test('addresses', async (t) => {
  t.same(checkIp('2001:DB8::0:1'), { value: { address: '2001:db8::1', family: 6 } });
  t.same(checkIp('10.0.0.1'), { value: { address: '10.0.0.1', family: 4 } });
  t.match(checkIp('010.0.0.1'), { error: /not an IP address/ }, 'leading zeros are ambiguous (octal?)');
  t.match(checkIp('0.0.0.0'), { value: { address: '0.0.0.0' } }, 'any address is fine to listen on');
  for (const [a, what] of [
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['::', 'unspecified'],
    ['127.1.2.3', 'loopback'],
    ['::1', 'loopback'],
    ['239.1.1.1', 'multicast'],
    ['ff05::2', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['fe80::1', 'link-local'],
    ['febf:ffff::1', 'link-local'],
  ] as const) {
    t.match(checkUnicastIp(a), { error: new RegExp(`^"${a}" is an? ${what} address$`) }, a);
  }
  t.equal((checkUnicastIp('::') as { error: string }).error, '"::" is an unspecified address', 'an, before a vowel');
  t.same(checkUnicastIp('fec0::1'), { value: { address: 'fec0::1', family: 6 } }, 'just above fe80::/10 is not link-local');
  t.same(checkUnicastIp('fd00::1'), { value: { address: 'fd00::1', family: 6 } }, 'unique local is fine');
  t.same(checkUnicastIp('192.168.1.1'), { value: { address: '192.168.1.1', family: 4 } });
  t.same(checkMac('02-AA-bb-00-00-01'), { value: '02:aa:bb:00:00:01' });
  t.match(checkMac('00:00:00:00:00:00'), { error: /all-zero/ });
  t.match(checkMac('ff:ff:ff:ff:ff:ff'), { error: /multicast/ });
  t.same(checkInterfaceName('enp0s31f6'), { value: 'enp0s31f6' });
  t.same(checkInterfaceName('eth0.100'), { value: 'eth0.100' });
  t.match(checkInterfaceName('..'), { error: /not an interface name/ });
  t.match(checkInterfaceName('a:b'), { error: /no '\/', ':'/ });
});

t.test('service and backend keys', async (t) => {
  t.same(parseServiceKey('10.0.0.1:80/tcp'), { vip: '10.0.0.1', port: 80, proto: 'tcp' });
  t.same(parseServiceKey('10.0.0.1:53/UDP'), { vip: '10.0.0.1', port: 53, proto: 'udp' });
  t.same(parseServiceKey('10.0.0.1:80'), { vip: '10.0.0.1', port: 80, proto: 'tcp' }, 'tcp when left out, as ipvsadm -t');
  t.same(parseServiceKey('[2001:DB8::0:10]:443/tcp'), { vip: '2001:db8::10', port: 443, proto: 'tcp' });
  t.equal(parseServiceKey('web'), undefined);
  t.equal(parseServiceKey('2001:db8::10:443/tcp'), undefined, 'IPv6 needs brackets');

  const c = parseConfig(`node: {interfaces: [eth0]}
services:
  - {name: web, vip: 10.0.0.10, port: 80, mode: l2dsr, backends: [{address: 10.0.0.11}]}
  - {vip: "2001:db8::10", port: 80, mode: l2dsr, backends: [{address: "2001:db8::11"}]}
`);
  t.equal(findService(c, 'web').index, 0);
  t.equal(findService(c, '10.0.0.10:80/tcp').index, 0);
  t.equal(findService(c, '[2001:db8:0::10]:80').index, 1);
  const v6 = findService(c, '[2001:db8::10]:80/tcp').service;
  t.equal(findBackend(v6, '2001:DB8::11').index, 0);
  t.equal(findBackend(v6, '[2001:db8::11]:80').index, 0);
  t.throws(() => findBackend(v6, '[2001:db8::11]:81'), { code: 'ERR_LB_CONFIG' });
});

t.test('paths and suggestions', async (t) => {
  t.equal(formatPath(['services', 2, 'backends', 0, 'address']), 'services[2].backends[0].address');
  t.equal(formatPath(['node', 'foo bar']), 'node["foo bar"]');
  t.equal(closest('intervall', ['interval', 'timeout']), 'interval');
  t.equal(closest('Interval', ['interval', 'timeout']), 'interval');
  t.equal(closest('icmp', ['tcp', 'udp']), undefined);
  t.equal(closest('colour', ['name', 'vip', 'port']), undefined);
});
