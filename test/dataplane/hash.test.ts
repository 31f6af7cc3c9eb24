/**
 * The flow hash's TypeScript mirror (src/dataplane/hash.ts) against a plain BigInt statement of
 * bpf/lib/hash.h, and the properties the data path relies on: the Linux even-port pattern spreads
 * over buckets and ring thirds, flows sharing a bucket have distinct fingerprints, every input
 * bit moves every output bit. (That the BPF side computes the same is checked by the test-run
 * fixtures, which predict each flow's backend with this code.)
 */
import t from 'tap';
import { lbHash3, lbReduce, rawAddr4, rawPort } from '../../src/dataplane/hash.js';

const M64 = (1n << 64n) - 1n;
function reference(a: number, b: number, c: number, seed: number): { h1: number; h2: number } {
  let x = ((BigInt(a) << 32n) | BigInt(c)) ^ ((BigInt((b ^ seed) >>> 0) * 0x9e3779b97f4a7c15n) & M64);
  x ^= x >> 33n;
  x = (x * 0xff51afd7ed558ccdn) & M64;
  x ^= x >> 33n;
  x = (x * 0xc4ceb9fe1a85ec53n) & M64;
  x ^= x >> 33n;
  return { h1: Number(x & 0xffffffffn), h2: Number(x >> 32n) };
}

/** A small deterministic generator, so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s;
  };
}

function linuxFlows(n: number): { a: number; b: number; c: number }[] {
  const vip = rawAddr4('10.0.0.1');
  const out = [];
  for (let i = 0; i < n; i++) {
    const client = rawAddr4(`192.0.2.${1 + (i % 7)}`);
    const port = 32768 + 2 * Math.floor(i / 7); // Linux connect(): even ephemeral ports
    out.push({ a: client, b: vip, c: ((rawPort(port) << 16) | rawPort(80)) >>> 0 });
  }
  return out;
}

t.test('the mirror equals a BigInt statement of hash.h', async (t) => {
  const r = rng(1);
  let bad = 0;
  for (let i = 0; i < 20000; i++) {
    const [a, b, c, s] = [r(), r(), r(), i % 5 === 0 ? 0 : r()];
    const x = lbHash3(a, b, c, s);
    const y = reference(a, b, c, s);
    if (x.h1 !== y.h1 || x.h2 !== y.h2) bad++;
  }
  t.equal(bad, 0, '20000 random inputs agree');
  t.same(lbHash3(0, 0, 0, 0), reference(0, 0, 0, 0), 'all zero');
  t.same(lbHash3(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff), reference(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff), 'all ones');
});

t.test('even ephemeral ports spread over buckets and ring thirds', async (t) => {
  const flows = linuxFlows(28000);
  const buckets = new Array<number>(1024).fill(0);
  const thirds = [0, 0, 0];
  for (const f of flows) {
    const h = lbHash3(f.a, f.b, f.c, 6);
    buckets[h.h1 & 1023]!++;
    thirds[Math.floor((lbReduce(h.h1, 65537) * 3) / 65537)]!++;
  }
  const mean = flows.length / 1024;
  const chi2 = buckets.reduce((s, n) => s + (n - mean) ** 2 / mean, 0);
  // 1023 degrees of freedom: mean 1023, sd ~45; 1250 is 5 sd out.
  t.ok(chi2 < 1250, `bucket chi-square ${chi2.toFixed(0)} (1023 expected)`);
  for (const n of thirds) t.ok(Math.abs(n / flows.length - 1 / 3) < 0.01, `a ring third gets ${((n / flows.length) * 100).toFixed(2)}%`);
});

t.test('flows that share a bucket have distinct fingerprints', async (t) => {
  const flows = linuxFlows(50000);
  const seen = new Map<number, Set<number>>();
  let dup = 0;
  for (const f of flows) {
    const h = lbHash3(f.a, f.b, f.c, 6);
    const b = h.h1 & 255;
    const fps = seen.get(b) ?? new Set<number>();
    if (fps.has(h.h2)) dup++;
    fps.add(h.h2);
    seen.set(b, fps);
  }
  t.equal(dup, 0, 'no two of 50000 flows in 256 buckets share a fingerprint');
});

t.test('every input bit flips about half of the output bits', async (t) => {
  const r = rng(7);
  const popcount = (x: number) => {
    let n = 0;
    for (let v = x >>> 0; v; v &= v - 1) n++;
    return n;
  };
  for (const [name, which] of [['client', 0], ['vip', 1], ['ports', 2], ['seed', 3]] as const) {
    let flips = 0;
    let trials = 0;
    for (let i = 0; i < 200; i++) {
      const w = [r(), r(), r(), r()];
      const base = lbHash3(w[0]!, w[1]!, w[2]!, w[3]!);
      for (let bit = 0; bit < 32; bit++) {
        const v = [...w];
        v[which] = (v[which]! ^ (1 << bit)) >>> 0;
        const h = lbHash3(v[0]!, v[1]!, v[2]!, v[3]!);
        flips += popcount(h.h1 ^ base.h1) + popcount(h.h2 ^ base.h2);
        trials += 64;
      }
    }
    const p = flips / trials;
    t.ok(p > 0.49 && p < 0.51, `${name}: ${(p * 100).toFixed(2)}% of output bits flip per input bit`);
  }
});
