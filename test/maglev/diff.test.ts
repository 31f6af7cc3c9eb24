import t from 'tap';
import { diffRings, ringDiff, RING_CHUNK } from '../../src/maglev/diff.js';
import { buildMaglev, type MaglevBackend } from '../../src/maglev/maglev.js';

const M = 65537;
const pool = (n: number): MaglevBackend[] =>
  Array.from({ length: n }, (_, i) => ({ id: i + 1, key: `10.2.0.${i}:443`, weight: 1 }));

/** The reference: compare slot by slot, collect the chunk of every differing slot. */
function slowDiff(a: Uint16Array, b: Uint16Array, chunk: number): { chunks: number[]; slots: number } {
  const set = new Set<number>();
  let slots = 0;
  for (let i = 0; i < b.length; i++) {
    if (a[i] !== b[i]) {
      set.add(Math.floor(i / chunk));
      slots++;
    }
  }
  return { chunks: [...set].sort((x, y) => x - y), slots };
}

t.test('RING_CHUNK mirrors LB_RING_CHUNK', async (t) => {
  t.equal(RING_CHUNK, 32);
});

t.test('a one-backend change touches exactly the chunks whose slots changed', async (t) => {
  const before = pool(20);
  const old = buildMaglev(before, { size: M });
  const cases: [string, MaglevBackend[]][] = [
    ['remove', before.filter((b) => b.id !== 7)],
    ['add', [...before, { id: 21, key: '10.2.0.20:443', weight: 1 }]],
    ['drain', before.map((b) => (b.id === 3 ? { ...b, weight: 0 } : b))],
    ['reweight', before.map((b) => (b.id === 3 ? { ...b, weight: 2 } : b))],
  ];
  for (const [name, after] of cases) {
    const next = buildMaglev(after, { size: M });
    for (const chunk of [RING_CHUNK, 7]) {
      const want = slowDiff(old, next, chunk);
      const got = ringDiff(old, next, chunk);
      t.same(got.chunks, want.chunks, `${name}, chunk ${chunk}: chunks`);
      t.equal(got.slots, want.slots, `${name}, chunk ${chunk}: slots`);
      t.same(diffRings(old, next, chunk), want.chunks, `${name}, chunk ${chunk}: diffRings`);
    }
    const total = Math.ceil(M / RING_CHUNK);
    const got = ringDiff(old, next);
    t.ok(got.chunks.length < total, `${name}: ${got.chunks.length} of ${total} chunks, ${got.slots} slots`);
    t.comment(`diff ${name} 1 of 20 backends: ${got.slots} slots changed, ${got.chunks.length}/${total} chunks to write`);
  }
});

t.test('identical tables give no chunks; the partial last chunk is covered', async (t) => {
  const a = buildMaglev(pool(5), { size: M });
  t.same(diffRings(a, a.slice()), []);
  t.equal(ringDiff(a, a.slice()).slots, 0);
  const b = a.slice();
  b[M - 1] = (b[M - 1] as number) === 1 ? 2 : 1;
  t.same(diffRings(a, b), [Math.floor((M - 1) / 32)]);
  t.equal(Math.floor((M - 1) / 32), 2048);
});

t.test('no old table or a different size means every chunk', async (t) => {
  const next = buildMaglev(pool(5), { size: 251 });
  const all = Array.from({ length: Math.ceil(251 / 32) }, (_, i) => i);
  t.same(diffRings(undefined, next), all);
  t.equal(ringDiff(undefined, next).slots, 251);
  t.same(diffRings(buildMaglev(pool(5), { size: 257 }), next), all);
});

t.test('a bad chunk size is a programming error', async (t) => {
  const a = new Uint16Array(7);
  t.throws(() => diffRings(a, a, 0), RangeError);
  t.throws(() => diffRings(a, a, 1.5), RangeError);
});
