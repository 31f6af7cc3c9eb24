import t from 'tap';
import { frameFields, icmpFragNeeded, ipPacket, packet, parsePacket } from '../../src/packet/index.js';

const frames = {
  v4tcp: packet({ vlan: { vid: 9 }, ipv4: { options: Buffer.from([1, 1, 1, 1]) }, tcp: { options: Buffer.from([1, 1, 1, 0]) }, payload: 'abcdef' }),
  v6ext: packet({ ipv6: { ext: [{ type: 'hopByHop' }, { type: 'routing', segmentsLeft: 1, addresses: ['2001:db8::9'] }] }, udp: {}, payload: 'xy' }),
  ipip: packet({ ipv4: {}, inner: { ipv6: {}, icmpv6: {} } }),
  icmpErr: packet({ ipv4: {}, icmp: icmpFragNeeded(1200, ipPacket({ ipv4: {}, udp: {}, payload: Buffer.alloc(50) })) }),
};

t.test('every prefix of every frame parses without throwing', async (t) => {
  for (const [name, f] of Object.entries(frames)) {
    const full = parsePacket(f);
    t.equal(full.truncated, false, `${name} whole`);
    for (let n = 0; n < f.length; n++) {
      const p = parsePacket(f.subarray(0, n));
      const anyTruncated = p.truncated || p.inner?.truncated === true;
      if (!anyTruncated) t.fail(`${name} cut to ${n} bytes is not marked truncated`);
    }
  }
});

t.test('what a short frame still tells', async (t) => {
  t.same(parsePacket(Buffer.alloc(0)), { payload: Buffer.alloc(0), truncated: true, trailer: Buffer.alloc(0), malformed: [] });
  const ethOnly = parsePacket(frames.v4tcp.subarray(0, 17));
  t.equal(ethOnly.truncated, true);
  t.equal(ethOnly.vlan, undefined, 'a VLAN tag cut short is not reported');

  const ipHeaderOnly = parsePacket(frames.v4tcp.subarray(0, 18 + 24 + 10));
  t.equal(ipHeaderOnly.truncated, true);
  t.equal(ipHeaderOnly.ipv4?.checksumOk, true, 'the IP header is whole and can be checked');
  t.equal(ipHeaderOnly.tcp, undefined);
  t.equal(ipHeaderOnly.payload.length, 10);

  const tcpCut = parsePacket(frames.v4tcp.subarray(0, 18 + 24 + 22));
  t.equal(tcpCut.tcp?.dataOffset, 6);
  t.equal(tcpCut.tcp?.checksumOk, null);

  const ipCut = parsePacket(frames.v4tcp.subarray(0, 18 + 22));
  t.equal(ipCut.ipv4?.ihl, 6);
  t.equal(ipCut.ipv4?.checksumOk, null);

  const v6Cut = parsePacket(frames.v6ext.subarray(0, 14 + 40 + 12));
  t.equal(v6Cut.truncated, true);
  t.same(v6Cut.ipv6?.ext.map((x) => x.type), ['hopByHop']);
});

t.test('trailing bytes past the IP length are not payload', async (t) => {
  const f = Buffer.concat([packet({ ipv4: {}, udp: {}, payload: 'p' }), Buffer.from('ffff', 'hex')]);
  const p = parsePacket(f);
  t.equal(p.payload.toString(), 'p');
  t.equal(p.trailer.toString('hex'), 'ffff');
  t.equal(p.udp?.checksumOk, true);
});

t.test('frameFields names every header byte', async (t) => {
  const f = frames.ipip;
  const spans = frameFields(f);
  const covered = new Set<number>();
  for (const s of spans) for (let i = s.offset; i < s.offset + s.length; i++) covered.add(i);
  t.equal(covered.size, f.length);
  t.ok(spans.some((s) => s.name === 'inner.ipv6.dst' && s.offset === 14 + 20 + 24));
  t.ok(spans.some((s) => s.name === 'inner.icmpv6.checksum'));
});
