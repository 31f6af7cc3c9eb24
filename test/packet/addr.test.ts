import t from 'tap';
import { formatIpv6, formatMac, parseIp, parseIpv4, parseIpv6, parseMac } from '../../src/packet/addr.js';

t.test('MAC', async (t) => {
  t.equal(parseMac('aa:bb:cc:00:11:22').toString('hex'), 'aabbcc001122');
  t.equal(parseMac('AA-BB-CC-0-1-2').toString('hex'), 'aabbcc000102');
  t.equal(formatMac(Buffer.from('aabbcc000102', 'hex')), 'aa:bb:cc:00:01:02');
  for (const bad of ['', 'aa:bb:cc:00:11', 'aa:bb:cc:00:11:22:33', 'gg:bb:cc:00:11:22', 'aab:b:cc:00:11:22']) {
    t.throws(() => parseMac(bad), { code: 'ERR_LB_USAGE' }, bad);
  }
});

t.test('IPv4', async (t) => {
  t.equal(parseIpv4('192.0.2.255').toString('hex'), 'c00002ff');
  t.throws(() => parseIpv4('192.0.2.256'), { code: 'ERR_LB_USAGE' });
  t.throws(() => parseIpv4('2001:db8::1'), { code: 'ERR_LB_USAGE' });
});

t.test('IPv6 parse and RFC 5952 format', async (t) => {
  const cases: [string, string, string][] = [
    ['2001:db8::1', '20010db8000000000000000000000001', '2001:db8::1'],
    ['::', '00000000000000000000000000000000', '::'],
    ['::1', '00000000000000000000000000000001', '::1'],
    ['fe80::', 'fe800000000000000000000000000000', 'fe80::'],
    ['2001:DB8:0:0:1:0:0:1', '20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
    ['2001:db8:0:1:1:1:1:1', '20010db8000000010001000100010001', '2001:db8:0:1:1:1:1:1'],
    ['::ffff:192.0.2.1', '00000000000000000000ffffc0000201', '::ffff:c000:201'],
    ['fe80::1%eth0', 'fe800000000000000000000000000001', 'fe80::1'],
  ];
  for (const [text, bytes, canonical] of cases) {
    const b = parseIpv6(text);
    t.equal(b.toString('hex'), bytes, text);
    t.equal(formatIpv6(b), canonical, text);
  }
  t.throws(() => parseIpv6('2001:db8:::1'), { code: 'ERR_LB_USAGE' });
  t.throws(() => parseIp('not-an-ip'), { message: /not an IP address/ });
  t.equal(parseIp('10.0.0.1').length, 4);
  t.equal(parseIp('::1').length, 16);
});
