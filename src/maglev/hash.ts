/**
 * XXH32, written from the xxHash specification (doc/xxhash_spec.md in Cyan4973/xxHash): four
 * 32-bit accumulators over 16-byte stripes, then 4-byte and 1-byte tails, then the avalanche.
 * Chosen over FNV-1a because its output passes SMHasher on its own, so the Maglev offset and
 * skip of two similar keys ("10.0.0.1:80", "10.0.0.2:80") come out unrelated, and because the
 * published test vectors let test/maglev/hash.test.ts pin the implementation.
 */

const P1 = 0x9e3779b1;
const P2 = 0x85ebca77;
const P3 = 0xc2b2ae3d;
const P4 = 0x27d4eb2f;
const P5 = 0x165667b1;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function round(acc: number, lane: number): number {
  return Math.imul(rotl((acc + Math.imul(lane, P2)) | 0, 13), P1);
}

function lane32(b: Uint8Array, i: number): number {
  // Indices are in bounds by construction; `?? 0` only satisfies noUncheckedIndexedAccess.
  return (b[i] ?? 0) | ((b[i + 1] ?? 0) << 8) | ((b[i + 2] ?? 0) << 16) | ((b[i + 3] ?? 0) << 24);
}

/** XXH32 of `data` with a 32-bit `seed`; returns an unsigned 32-bit integer. */
export function xxh32(data: Uint8Array, seed = 0): number {
  const len = data.length;
  let i = 0;
  let acc: number;
  if (len >= 16) {
    let v1 = (seed + P1 + P2) | 0;
    let v2 = (seed + P2) | 0;
    let v3 = seed | 0;
    let v4 = (seed - P1) | 0;
    const limit = len - 16;
    while (i <= limit) {
      v1 = round(v1, lane32(data, i));
      v2 = round(v2, lane32(data, i + 4));
      v3 = round(v3, lane32(data, i + 8));
      v4 = round(v4, lane32(data, i + 12));
      i += 16;
    }
    acc = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) | 0;
  } else {
    acc = (seed + P5) | 0;
  }
  // The specification adds the length modulo 2^32.
  acc = (acc + len) | 0;
  while (i + 4 <= len) {
    acc = Math.imul(rotl((acc + Math.imul(lane32(data, i), P3)) | 0, 17), P4);
    i += 4;
  }
  while (i < len) {
    acc = Math.imul(rotl((acc + Math.imul(data[i] ?? 0, P5)) | 0, 11), P1);
    i += 1;
  }
  acc ^= acc >>> 15;
  acc = Math.imul(acc, P2);
  acc ^= acc >>> 13;
  acc = Math.imul(acc, P3);
  acc ^= acc >>> 16;
  return acc >>> 0;
}

const utf8 = new TextEncoder();

/** XXH32 of the UTF-8 encoding of `s`. */
export function xxh32String(s: string, seed = 0): number {
  return xxh32(utf8.encode(s), seed);
}
