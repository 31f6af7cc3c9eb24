import t from 'tap';
import {
  icmpChecksum,
  internetChecksum,
  ipv4HeaderChecksum,
  onesComplementSum,
  pseudoHeader,
  tcpChecksum,
  udpChecksum,
  verifyIcmp,
  verifyIcmpv6,
  verifyIpv4Header,
  verifyTcp,
  verifyUdp,
} from '../../src/packet/checksum.js';
import { REFERENCE, hex } from './fixtures/vectors.js';

t.test('RFC 1071 section 3 worked example', async (t) => {
  const data = hex('0001f203f4f5f6f7');
  t.equal(onesComplementSum(data), 0xddf2);
  t.equal(internetChecksum(data), 0x220d);
});

t.test('odd lengths pad the last byte with zero, also across parts', async (t) => {
  t.equal(onesComplementSum(hex('01')), 0x0100);
  t.equal(internetChecksum(hex('01'), hex('02')), internetChecksum(hex('0102')));
});

t.test('carries fold back in', async (t) => {
  t.equal(onesComplementSum(hex('ffff0001')), 0x0001);
  t.equal(onesComplementSum(Buffer.alloc(200000, 0xff)), 0xffff);
});

t.test('pseudo headers', async (t) => {
  t.equal(pseudoHeader('192.0.2.1', '198.51.100.1', 6, 20).toString('hex'), 'c0000201c63364010006' + '0014');
  const v6 = pseudoHeader('2001:db8::1', '2001:db8::2', 17, 11);
  t.equal(v6.length, 40);
  t.equal(v6.subarray(32).toString('hex'), '0000000b00000011');
  t.throws(() => pseudoHeader('192.0.2.1', '2001:db8::1', 6, 0), { code: 'ERR_LB_USAGE' });
});

// Byte offsets below are into the scapy-made frames in vectors.ts (Ethernet header: 14 bytes).
t.test('IPv4 header checksum matches the reference packets', async (t) => {
  for (const [name, frame, l3] of [
    ['tcp_syn_v4', REFERENCE.tcp_syn_v4, 14],
    ['udp_vlan_v4', REFERENCE.udp_vlan_v4, 18],
    ['ipip_udp outer', REFERENCE.ipip_udp, 14],
    ['ipip_udp inner', REFERENCE.ipip_udp, 34],
  ] as const) {
    const header = frame.subarray(l3, l3 + 20);
    t.equal(ipv4HeaderChecksum(header), header.readUInt16BE(10), name);
    t.ok(verifyIpv4Header(header), name);
    const broken = Buffer.from(header);
    broken[8] = (broken[8] ?? 0) - 1;
    t.notOk(verifyIpv4Header(broken), `${name}: a changed TTL breaks it`);
  }
});

t.test('TCP over IPv4 matches scapy', async (t) => {
  const seg = REFERENCE.tcp_syn_v4.subarray(34);
  t.equal(tcpChecksum('192.0.2.1', '198.51.100.1', seg), 0xfc78);
  t.ok(verifyTcp('192.0.2.1', '198.51.100.1', seg));
  t.notOk(verifyTcp('192.0.2.2', '198.51.100.1', seg), 'the pseudo header covers the addresses');
});

t.test('UDP over IPv4 and IPv6 (with a routing header) matches scapy', async (t) => {
  const v4 = REFERENCE.udp_vlan_v4.subarray(38);
  t.equal(udpChecksum('10.0.0.1', '10.0.0.2', v4), 0x9659);
  t.ok(verifyUdp('10.0.0.1', '10.0.0.2', v4));

  // The routing header has a segment left, so the pseudo header uses its last address.
  const v6 = REFERENCE.v6_routing_udp.subarray(14 + 40 + 24);
  t.equal(udpChecksum('2001:db8::1', '2001:db8::99', v6), 0xa59a);
  t.ok(verifyUdp('2001:db8::1', '2001:db8::99', v6));
  t.notOk(verifyUdp('2001:db8::1', '2001:db8::2', v6));
});

t.test('UDP zero checksum means none over IPv4 only', async (t) => {
  const d = hex('303901bb000b0000616263');
  t.ok(verifyUdp('192.0.2.1', '198.51.100.1', d));
  t.notOk(verifyUdp('2001:db8::1', '2001:db8::2', d));
});

t.test('a computed UDP checksum of 0 is sent as 0xffff', async (t) => {
  // Pick the payload word that makes the one's-complement sum 0xffff.
  const d = Buffer.alloc(10);
  d.writeUInt16BE(10, 4);
  const partial = onesComplementSum(Buffer.concat([pseudoHeader('0.0.0.0', '0.0.0.0', 17, 10), d]));
  d.writeUInt16BE(0xffff - partial, 8);
  t.equal(internetChecksum(pseudoHeader('0.0.0.0', '0.0.0.0', 17, 10), d), 0);
  t.equal(udpChecksum('0.0.0.0', '0.0.0.0', d), 0xffff);
  d.writeUInt16BE(0xffff, 6);
  t.ok(verifyUdp('0.0.0.0', '0.0.0.0', d));
});

t.test('ICMP and ICMPv6 match scapy', async (t) => {
  const icmp = REFERENCE.icmp_frag_needed.subarray(34);
  t.equal(icmpChecksum(icmp), 0x5af2);
  t.ok(verifyIcmp(icmp));
  const icmpv6 = REFERENCE.icmpv6_echo.subarray(54);
  t.ok(verifyIcmpv6('2001:db8::1', '2001:db8::2', icmpv6));
  t.notOk(verifyIcmp(icmpv6), 'ICMPv6 needs its pseudo header');
});
