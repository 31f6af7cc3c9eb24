import t from 'tap';
import {
  icmpFragNeeded,
  icmpv6PacketTooBig,
  ipPacket,
  packet,
  parseIpPacket,
  parsePacket,
} from '../../src/packet/index.js';
import { REFERENCE, hex } from './fixtures/vectors.js';

const e = { dst: '02:00:00:00:00:02', src: '02:00:00:00:00:01' };

t.test('the builder reproduces the scapy reference frames byte for byte', async (t) => {
  const cases: [string, Buffer, Buffer][] = [
    [
      'tcp_syn_v4',
      packet({
        eth: e,
        ipv4: { src: '192.0.2.1', dst: '198.51.100.1', id: 0x1234, flags: ['DF'] },
        tcp: { srcPort: 40000, dstPort: 80, seq: 1000, flags: ['SYN'], window: 64240, options: hex('020405b4 01 030307') },
      }),
      REFERENCE.tcp_syn_v4,
    ],
    [
      'udp_vlan_v4',
      packet({
        eth: e,
        vlan: { vid: 100, pcp: 3 },
        ipv4: { src: '10.0.0.1', dst: '10.0.0.2', ttl: 17, tos: 0x10, id: 1 },
        udp: { srcPort: 5353, dstPort: 53 },
        payload: 'hello, world',
      }),
      REFERENCE.udp_vlan_v4,
    ],
    [
      'icmpv6_echo',
      packet({
        eth: e,
        ipv6: { src: '2001:db8::1', dst: '2001:db8::2', flowLabel: 0x12345 },
        icmpv6: { type: 128, rest: 0x42420007, payload: 'ping' },
      }),
      REFERENCE.icmpv6_echo,
    ],
    [
      'ipip_udp',
      packet({
        eth: e,
        ipv4: { src: '10.0.0.100', dst: '10.0.0.5', id: 1 },
        inner: {
          ipv4: { src: '192.0.2.1', dst: '198.51.100.1', ttl: 63, id: 7 },
          udp: { srcPort: 12345, dstPort: 443 },
          payload: 'abc',
        },
      }),
      REFERENCE.ipip_udp,
    ],
    [
      'v6_routing_udp',
      packet({
        eth: e,
        ipv6: { ext: [{ type: 'routing', segmentsLeft: 1, addresses: ['2001:db8::99'] }] },
        udp: { srcPort: 1000, dstPort: 2000 },
        payload: 'xyz',
      }),
      REFERENCE.v6_routing_udp,
    ],
    [
      'icmp_frag_needed',
      packet({
        eth: e,
        ipv4: { src: '10.0.0.1', dst: '192.0.2.1', id: 1 },
        icmp: icmpFragNeeded(1400, REFERENCE.inner),
      }),
      REFERENCE.icmp_frag_needed,
    ],
  ];
  for (const [name, built, reference] of cases) t.equal(built.toString('hex'), reference.toString('hex'), name);
});

t.test('TCP round trip', async (t) => {
  const p = parsePacket(
    packet({
      ipv4: { src: '192.0.2.7', dst: '198.51.100.9', ttl: 9, tos: 0xb8, id: 0xbeef, flags: ['DF'] },
      tcp: { srcPort: 1, dstPort: 2, seq: 0xfffffffe, ack: 5, flags: ['ACK', 'PSH', 'AE'], window: 7, urgent: 3 },
      payload: 'data',
    }),
  );
  t.match(p, {
    truncated: false,
    malformed: [],
    eth: { dst: '02:00:00:00:00:02', src: '02:00:00:00:00:01', ethertype: 0x0800 },
    ipv4: { ihl: 5, tos: 0xb8, id: 0xbeef, df: true, mf: false, ttl: 9, proto: 6, totalLength: 44, checksumOk: true },
    tcp: { srcPort: 1, dstPort: 2, seq: 0xfffffffe, ack: 5, dataOffset: 5, window: 7, urgent: 3, checksumOk: true },
  });
  t.equal(p.ipv4?.src, '192.0.2.7');
  t.same(p.tcp?.flagNames, ['PSH', 'ACK', 'AE']);
  t.equal(p.payload.toString(), 'data');
});

t.test('TCP options set the data offset; overrides build malformed headers', async (t) => {
  const withOpts = parsePacket(packet({ ipv4: {}, tcp: { options: hex('020405b4 0402') } }));
  t.equal(withOpts.tcp?.dataOffset, 7, '6 option bytes pad to 8');
  t.equal(withOpts.tcp?.options.toString('hex'), '020405b404020000');
  t.equal(withOpts.tcp?.checksumOk, true);

  const badDoff = parsePacket(packet({ ipv4: {}, tcp: { dataOffset: 4, flags: 0x12 } }));
  t.equal(badDoff.tcp?.dataOffset, 4);
  t.same(badDoff.tcp?.flagNames, ['SYN', 'ACK']);
  t.match(badDoff.malformed, [/dataOffset is 4/]);

  const badSum = parsePacket(packet({ ipv4: {}, tcp: { checksum: 0x1234 } }));
  t.equal(badSum.tcp?.checksum, 0x1234);
  t.equal(badSum.tcp?.checksumOk, false);
  t.equal(badSum.ipv4?.checksumOk, true);
});

t.test('UDP checksum: computed, none, or forced', async (t) => {
  t.equal(parsePacket(packet({ ipv4: {}, udp: {} })).udp?.checksumOk, true);
  const none = parsePacket(packet({ ipv4: {}, udp: { checksum: 0 } }));
  t.equal(none.udp?.checksum, 0);
  t.equal(none.udp?.checksumOk, true, 'zero means none over IPv4');
  t.equal(parsePacket(packet({ ipv6: {}, udp: { checksum: 0 } })).udp?.checksumOk, false, 'but not over IPv6');
  t.equal(parsePacket(packet({ ipv6: {}, udp: {}, payload: 'x' })).udp?.checksumOk, true);
  t.equal(parsePacket(packet({ ipv4: {}, udp: { checksum: 0xdead } })).udp?.checksumOk, false);
  const badLen = parsePacket(packet({ ipv4: {}, udp: { length: 99 } }));
  t.equal(badLen.udp?.length, 99);
  t.match(badLen.malformed, [/udp.length 99/]);
});

t.test('IPv4 options set IHL; explicit ihl/totalLength/checksum win', async (t) => {
  const p = parsePacket(packet({ ipv4: { options: hex('94040000 01') }, udp: {} }));
  t.equal(p.ipv4?.ihl, 7, '5 option bytes pad to 8');
  t.equal(p.ipv4?.options.toString('hex'), '9404000001000000');
  t.equal(p.ipv4?.checksumOk, true);
  t.equal(p.udp?.checksumOk, true);

  const forced = parsePacket(packet({ ipv4: { checksum: 0xffff }, udp: {} }));
  t.equal(forced.ipv4?.checksumOk, false);

  const shortIhl = parsePacket(packet({ ipv4: { ihl: 4 }, udp: {} }));
  t.equal(shortIhl.ipv4?.ihl, 4);
  t.equal(shortIhl.ipv4?.checksumOk, null);
  t.match(shortIhl.malformed, [/ihl is 4/]);

  const longTotal = parsePacket(packet({ ipv4: { totalLength: 200 }, udp: {} }));
  t.equal(longTotal.truncated, true);
  t.equal(longTotal.udp?.checksumOk, null, 'cannot check what is missing');
});

t.test('Ethernet padding becomes the trailer', async (t) => {
  const f = packet({ ipv4: {}, udp: {}, pad: true });
  t.equal(f.length, 60);
  const p = parsePacket(f);
  t.equal(p.trailer.length, 60 - 14 - 28);
  t.equal(p.udp?.checksumOk, true);
  t.equal(packet({ ipv4: {}, udp: {}, pad: 100 }).length, 100);
  t.equal(packet({ ipv4: {}, udp: {}, payload: Buffer.alloc(100), pad: true }).length, 142, 'never truncates');
});

t.test('VLAN tag', async (t) => {
  const f = packet({ vlan: { vid: 4094, pcp: 7, dei: true }, ipv6: {}, udp: {} });
  t.equal(f.readUInt16BE(12), 0x8100);
  t.equal(f.readUInt16BE(16), 0x86dd);
  const p = parsePacket(f);
  t.same(p.vlan, { tpid: 0x8100, tci: 0xfffe, pcp: 7, dei: true, vid: 4094 });
  t.equal(p.eth?.ethertype, 0x86dd);
  t.equal(p.udp?.checksumOk, true);
  t.equal(parsePacket(packet({ vlan: { tpid: 0x88a8, vid: 5 }, ipv4: {}, tcp: {} })).vlan?.vid, 5);
});

t.test('non-IP frames carry raw payload', async (t) => {
  const p = parsePacket(packet({ eth: { ethertype: 0x0806 }, payload: hex('0001080006040001') }));
  t.equal(p.eth?.ethertype, 0x0806);
  t.equal(p.payload.toString('hex'), '0001080006040001');
  t.throws(() => packet({ tcp: {} }), { code: 'ERR_LB_USAGE' });
  t.throws(() => packet({ ipv4: {}, tcp: {}, udp: {} }), { code: 'ERR_LB_USAGE' });
});

t.test('IPv4 fragments', async (t) => {
  const first = parsePacket(packet({ ipv4: { flags: ['MF'], id: 42 }, udp: { length: 1008 }, payload: Buffer.alloc(16) }));
  t.match(first.ipv4, { mf: true, df: false, fragOffset: 0, id: 42, checksumOk: true });
  t.equal(first.udp?.srcPort, 40000, 'the first fragment still has the L4 header');
  t.equal(first.udp?.checksumOk, null, 'but not the whole datagram');

  const later = parsePacket(packet({ ipv4: { fragOffset: 3, proto: 17 }, payload: Buffer.alloc(16, 1) }));
  t.equal(later.ipv4?.fragOffset, 3);
  t.equal(later.udp, undefined, 'a later fragment has no L4 header');
  t.equal(later.payload.length, 16);

  t.equal(parsePacket(packet({ ipv4: { flags: 7 }, udp: {} })).ipv4?.flags, 7, 'RF can be set too');
});

t.test('IPv6 extension headers', async (t) => {
  const f = packet({
    ipv6: {
      hopLimit: 3,
      trafficClass: 0xb8,
      flowLabel: 0xfffff,
      ext: [
        { type: 'hopByHop', options: hex('0502 0000') },
        { type: 'destOpts' },
        { type: 'routing', routingType: 2, segmentsLeft: 0, addresses: ['2001:db8::99'] },
        { type: 'fragment', id: 0xdeadbeef },
      ],
    },
    tcp: {},
  });
  const p = parsePacket(f);
  t.match(p.ipv6, { hopLimit: 3, trafficClass: 0xb8, flowLabel: 0xfffff, nextHeader: 0, upperProto: 6 });
  t.same(
    p.ipv6?.ext.map((x) => [x.type, x.nextHeader, x.length]),
    [
      ['hopByHop', 60, 8],
      ['destOpts', 43, 8],
      ['routing', 44, 24],
      ['fragment', 6, 8],
    ],
  );
  t.equal(p.ipv6?.ext[0]?.options?.toString('hex'), '050200000100', 'PadN fills to 8 bytes');
  t.same(p.ipv6?.ext[2]?.addresses, ['2001:db8::99']);
  t.match(p.ipv6?.ext[3], { fragOffset: 0, more: false, id: 0xdeadbeef });
  t.equal(p.tcp?.checksumOk, true, 'no segments left: the pseudo header uses the IPv6 destination');

  const frag = parsePacket(packet({ ipv6: { ext: [{ type: 'fragment', offset: 100, more: true }] }, payload: 'tail' }));
  t.match(frag.ipv6?.ext[0], { fragOffset: 100, more: true });
  t.equal(frag.payload.toString(), 'tail');

  const sr = parsePacket(
    packet({ ipv6: { ext: [{ type: 'routing', routingType: 4, segmentsLeft: 1, addresses: ['2001:db8::f', '2001:db8::2'] }] }, udp: {} }),
  );
  t.equal(sr.udp?.checksumOk, true, 'SRH: the final destination is segment 0');
});

t.test('IP-in-IP, 6in6 and 4in6 nest generically', async (t) => {
  const ipip = parsePacket(
    packet({ ipv4: { src: '10.0.0.100', dst: '10.0.0.5' }, inner: { ipv4: { dst: '203.0.113.10' }, tcp: { dstPort: 443 } } }),
  );
  t.equal(ipip.ipv4?.proto, 4);
  t.equal(ipip.ipv4?.checksumOk, true);
  t.match(ipip.inner, { ipv4: { dst: '203.0.113.10', checksumOk: true }, tcp: { dstPort: 443, checksumOk: true } });
  t.equal(ipip.ipv4?.totalLength, 20 + 20 + 20);

  const sixInSix = parsePacket(packet({ ipv6: { dst: '2001:db8::5' }, inner: { ipv6: { dst: '2001:db8::10' }, udp: {} } }));
  t.equal(sixInSix.ipv6?.nextHeader, 41);
  t.match(sixInSix.inner, { ipv6: { dst: '2001:db8::10' }, udp: { checksumOk: true } });

  const fourInSix = parsePacket(packet({ ipv6: {}, inner: { ipv4: {}, icmp: { payload: 'hi' } } }));
  t.equal(fourInSix.ipv6?.nextHeader, 4);
  t.match(fourInSix.inner, { ipv4: { checksumOk: true }, icmp: { type: 8, checksumOk: true } });

  const twice = parsePacket(packet({ ipv4: {}, inner: { ipv4: {}, inner: { ipv6: {}, udp: {} } } }));
  t.equal(twice.inner?.inner?.udp?.checksumOk, true);
});

t.test('ICMP frag-needed quotes the IP header and 8 bytes', async (t) => {
  const inner = ipPacket({ ipv4: { src: '192.0.2.1', dst: '203.0.113.10', flags: ['DF'] }, tcp: { dstPort: 443 }, payload: Buffer.alloc(1400) });
  const p = parsePacket(packet({ ipv4: { src: '10.0.0.1', dst: '192.0.2.1' }, icmp: icmpFragNeeded(1280, inner) }));
  t.match(p.icmp, { type: 3, code: 4, mtu: 1280, checksumOk: true });
  t.equal(p.payload.length, 28);
  t.equal(p.inner?.truncated, true);
  t.match(p.inner?.ipv4, { dst: '203.0.113.10', totalLength: 1440, checksumOk: true, df: true });
  t.equal(p.inner?.tcp, undefined, '8 bytes are not a TCP header');
  t.equal(p.inner?.payload.readUInt16BE(2), 443, 'but they hold the ports');

  const more = parsePacket(packet({ ipv4: {}, icmp: icmpFragNeeded(1280, inner, 60) }));
  t.match(more.inner?.tcp, { dstPort: 443, checksumOk: null });

  const withOptions = ipPacket({ ipv4: { options: hex('01010101') }, udp: {} });
  t.equal(icmpFragNeeded(1000, withOptions).payload?.length, 24 + 8, 'the quote follows the inner IHL');
});

t.test('ICMPv6 Packet Too Big', async (t) => {
  const inner = ipPacket({ ipv6: { dst: '2001:db8::10' }, udp: {}, payload: Buffer.alloc(1400) });
  const f = packet({ ipv6: { src: '2001:db8::fe', dst: '2001:db8::1' }, icmpv6: icmpv6PacketTooBig(1400, inner) });
  t.equal(f.length, 14 + 1280, 'the error fits the IPv6 minimum MTU');
  const p = parsePacket(f);
  t.match(p.icmpv6, { type: 2, code: 0, mtu: 1400, checksumOk: true });
  t.match(p.inner, { truncated: true, ipv6: { dst: '2001:db8::10' }, udp: { checksumOk: null } });

  const whole = ipPacket({ ipv6: {}, udp: {}, payload: 'small' });
  const q = parsePacket(packet({ ipv6: {}, icmpv6: icmpv6PacketTooBig(1280, whole) }));
  t.equal(q.inner?.udp?.checksumOk, true, 'a quote of the whole packet can be checked');
});

t.test('parseIpPacket takes bare IP packets', async (t) => {
  const p = parseIpPacket(ipPacket({ ipv6: {}, tcp: {} }));
  t.equal(p.eth, undefined);
  t.equal(p.tcp?.checksumOk, true);
  t.equal(parseIpPacket(ipPacket({ ipv4: {}, udp: {} })).udp?.checksumOk, true);
});
