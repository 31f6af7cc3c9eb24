export { buildMaglev, permutationOf, slotCounts, DEFAULT_RING_SIZE, MAX_RING_SIZE, MAX_BACKEND_ID, MAX_WEIGHT } from './maglev.js';
export type { MaglevBackend, MaglevOptions, MaglevPermutation } from './maglev.js';
export { diffRings, ringDiff, RING_CHUNK } from './diff.js';
export type { RingDiff } from './diff.js';
export { isPrime, nextPrime } from './prime.js';
export { xxh32, xxh32String } from './hash.js';
export { benchMaglev } from './bench.js';
export type { MaglevBenchResult } from './bench.js';
