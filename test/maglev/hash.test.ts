import t from 'tap';
import { xxh32, xxh32String } from '../../src/maglev/hash.js';

// Published XXH32 vectors (xxHash's own and its ports' test suites); they cover the <16-byte
// path, the 4-byte and 1-byte tails, the 16-byte stripe loop (the 39-byte string) and seeds.
const vectors: [string, number, number][] = [
  ['', 0, 0x02cc5d05],
  ['', 1, 0x0b2cb792],
  ['', 0x12345678, 0xbd209070],
  ['', 0x9e3779b1, 0x36b78ae7],
  ['a', 0, 0x550d7456],
  ['1', 0, 0xb6ecc8b2],
  ['abc', 0, 0x32d153ff],
  ['ABC', 0, 0x80712ed5],
  ['test', 0, 0x3e2023cf],
  ['0123', 0x12345678, 0x405c9efd],
  ['12345678', 0, 0x89f05aa5],
  ['123456789ABCDEF', 0, 0x576e3cf9],
  ['Nobody inspects the spammish repetition', 0, 0xe2293b2f],
];

t.test('XXH32 matches the published vectors', async (t) => {
  for (const [s, seed, want] of vectors) {
    t.equal(xxh32String(s, seed), want, `${JSON.stringify(s)} seed ${seed.toString(16)}`);
  }
});

t.test('bytes and string forms agree, output is unsigned 32-bit', async (t) => {
  const bytes = new TextEncoder().encode('10.0.0.1:80 ünïcode');
  const h = xxh32(bytes, 7);
  t.equal(h, xxh32String('10.0.0.1:80 ünïcode', 7));
  t.ok(Number.isInteger(h) && h >= 0 && h <= 0xffffffff);
});
