import t from 'tap';
import { hexDiff, packet } from '../../src/packet/index.js';

const base = packet({ ipv4: { ttl: 64 }, tcp: { dstPort: 80 }, payload: 'x'.repeat(100) });

t.test('identical frames', async (t) => {
  t.equal(hexDiff(base, Buffer.from(base)), `packets are identical (${base.length} bytes)`);
});

t.test('names the differing fields with both values', async (t) => {
  const other = packet({ ipv4: { ttl: 63, dst: '203.0.113.1' }, tcp: { dstPort: 80 }, payload: 'x'.repeat(100) });
  const d = hexDiff(base, other);
  t.match(d, /^packets differ in \d+ byte\(s\); expected 154 bytes, actual 154 bytes/);
  t.match(d, /0x0016 ipv4\.ttl: 64 -> 63/);
  t.match(d, /0x0018 ipv4\.checksum: 0x[0-9a-f]{4} -> 0x[0-9a-f]{4}/);
  t.match(d, /0x001e ipv4\.dst: 198\.51\.100\.1 -> 203\.0\.113\.1/);
  t.match(d, /0x0032 tcp\.checksum/);
  t.notMatch(d, /payload/);
  t.notMatch(d, /eth\./);
  // The row holding the TTL, expected over actual, with carets under the changed bytes.
  t.match(d, /0010  - 00 8c 00 00 00 00 40 06 [0-9a-f ]+\n      \+ 00 8c 00 00 00 00 3f 06 [0-9a-f ]+\n {8}( {3}){6}\^\^/);
  t.match(d, /\n  \.\.\.\n/, 'rows far from any difference are elided');
});

t.test('a payload difference is shown where it is, not as the whole payload', async (t) => {
  const other = Buffer.from(base);
  other[other.length - 10] = 0x79;
  const d = hexDiff(base, other);
  t.match(d, /payload\[90\]: 78 -> 79/);
  t.match(d, /tcp\.checksum|payload/);
});

t.test('different lengths', async (t) => {
  const d = hexDiff(base, base.subarray(0, 32));
  t.match(d, /expected 154 bytes, actual 32 bytes/);
  t.match(d, /ipv4\.dst: 198\.51\.100\.1 -> c633 \(cut short\)/);
  t.match(d, /tcp\.srcPort: 40000 -> \(missing\)/);

  const longer = hexDiff(base, Buffer.concat([base, Buffer.from('abcd', 'hex')]));
  t.match(longer, /0x009a trailer\[0\]: \(missing\) -> abcd/, 'extra bytes past the IP length are the trailer');
});

t.test('unparseable frames still get a byte diff', async (t) => {
  const d = hexDiff(Buffer.from('0102', 'hex'), Buffer.from('0103', 'hex'));
  t.match(d, /0000  - 01 02\n      \+ 01 03\n           \^\^/);
  t.match(d, /0x0001 \(1 byte\(s\) outside any known header\): 02 -> 03/);
});
