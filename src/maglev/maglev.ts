/**
 * The Maglev lookup table (Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
 * Balancer", NSDI 2016, section 3.4), built here and copied into the ring map; the XDP program
 * sends a new flow to `ring[hash % M]`.
 *
 * Each backend owns a permutation of the M slots, `(offset + j * skip) % M`, derived from its
 * key alone, so a backend's preferences do not depend on who else is in the pool: that is what
 * keeps most slots in place when the pool changes. Backends take turns; on its turn a backend
 * claims the next slot in its permutation that is still empty.
 *
 * Weights: the paper gives every backend one turn per round. Here backends of equal weight
 * form a group that hands out its turns round robin in key order, and the groups take turns in
 * the Sainte-Laguë (Webster) divisor order: the next turn goes to the group with the smallest
 * (T + 1/2) / (n * w), where T is the turns the group has had, n its members and w their
 * weight; ties go to the heavier group. Every turn claims exactly one slot, so each group's
 * slot count is Webster's apportionment of M by total weight (within a slot or so of
 * proportional) and its members differ by at most one slot. With equal weights there is one
 * group and this is exactly the paper's round robin: floor(M/N) or ceil(M/N) slots each.
 * Grouping matters: ranking backends one by one, 999 tied light backends would all get their
 * next slot at the same divisor and leave a heavy one 200+ slots short at M = 65537.
 * Keys are doubles: near-ties closer than double precision are ordered by the (deterministic,
 * IEEE 754) rounding, which moves one turn by one position and nothing else.
 */

import { LbError } from '../errors.js';
import { xxh32 } from './hash.js';
import { isPrime } from './prime.js';

export interface MaglevBackend {
  /** Backend id written into the ring, 1..65535 (0 marks an empty slot). */
  readonly id: number;
  /** Stable identity, e.g. "10.0.0.5:80": the only input to this backend's permutation. */
  readonly key: string;
  /** Relative capacity, an integer 0..65535; 0 drains the backend (no slots). */
  readonly weight: number;
}

export interface MaglevOptions {
  /** Table size M, a prime; default 65537. */
  readonly size?: number;
  /** Unsigned 32-bit seed for the key hashes; default 0. */
  readonly seed?: number;
}

/** The paper's smaller suggested size; about 65 slots per backend at 1000 backends. */
export const DEFAULT_RING_SIZE = 65537;
/**
 * 2^24 slots is 32 MiB of ring map per service; a larger M is a typo, not a plan. The bound also
 * keeps every product in the turn order below 2^53, so doubles compare exactly.
 */
export const MAX_RING_SIZE = 1 << 24;
/** Backend ids are 16 bits because a flow entry packs one into a 64-bit word (bpf/lb_abi.h). */
export const MAX_BACKEND_ID = 0xffff;
/** ipvsadm's weight range, which operators already know. */
export const MAX_WEIGHT = 0xffff;

/** XORed into the seed for the skip hash, so offset and skip come from independent hashes. */
const SKIP_SEED_SALT = 0x9e3779b9;

/** A backend's permutation of the M slots: slot j of its preference list is (offset + j*skip) % M. */
export interface MaglevPermutation {
  /** 0..M-1 */
  readonly offset: number;
  /** 1..M-1; coprime with M because M is prime, so the list visits every slot once. */
  readonly skip: number;
}

const utf8 = new TextEncoder();

/** Offset from XXH32(key, seed), skip from XXH32(key, seed ^ 0x9e3779b9); key as UTF-8. */
export function permutationOf(key: string, size: number, seed = 0): MaglevPermutation {
  const bytes = utf8.encode(key);
  const s = seed >>> 0;
  const offset = xxh32(bytes, s) % size;
  const skip = (xxh32(bytes, (s ^ SKIP_SEED_SALT) >>> 0) % (size - 1)) + 1;
  return { offset, skip };
}

function validate(backends: readonly MaglevBackend[], opts: MaglevOptions): { size: number; seed: number } {
  const problems: string[] = [];
  const size = opts.size ?? DEFAULT_RING_SIZE;
  const seed = opts.seed ?? 0;
  if (!isPrime(size) || size > MAX_RING_SIZE) {
    problems.push(`size: ${String(size)} is not a prime between 2 and ${MAX_RING_SIZE}`);
  }
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    problems.push(`seed: ${String(seed)} is not an unsigned 32-bit integer`);
  }
  const keys = new Map<string, number>();
  const ids = new Map<number, number>();
  let active = 0;
  backends.forEach((b, i) => {
    const at = `backends[${i}]`;
    if (typeof b.key !== 'string' || b.key.length === 0) {
      problems.push(`${at}.key: must be a non-empty string`);
    } else {
      const first = keys.get(b.key);
      if (first !== undefined) problems.push(`${at}.key: duplicate of backends[${first}].key ("${b.key}")`);
      else keys.set(b.key, i);
    }
    if (!Number.isInteger(b.id) || b.id < 1 || b.id > MAX_BACKEND_ID) {
      problems.push(`${at}.id: ${String(b.id)} is not an integer in 1..${MAX_BACKEND_ID}`);
    } else {
      const first = ids.get(b.id);
      if (first !== undefined) problems.push(`${at}.id: ${b.id} duplicates backends[${first}].id`);
      else ids.set(b.id, i);
    }
    if (!Number.isInteger(b.weight) || b.weight < 0 || b.weight > MAX_WEIGHT) {
      problems.push(`${at}.weight: ${String(b.weight)} is not an integer in 0..${MAX_WEIGHT}`);
    } else if (b.weight > 0) {
      active += 1;
    }
  });
  if (problems.length === 0 && active > size) {
    problems.push(`size: ${size} slots cannot hold ${active} backends with a non-zero weight`);
  }
  if (problems.length > 0) {
    throw new LbError('ERR_LB_CONFIG', `invalid Maglev table input: ${problems.join('; ')}`, {
      detail: problems.join('\n'),
      hint: 'the table size must be prime (see nextPrime); keys and ids must be unique',
    });
  }
  return { size, seed };
}

/**
 * Build the Maglev table: slot -> backend id, 0 where there is no backend (only when every weight
 * is 0 or the list is empty). The result depends only on the set of (key, id, weight), the size
 * and the seed, never on the order of `backends`. Throws LbError ERR_LB_CONFIG on bad input.
 */
export function buildMaglev(backends: readonly MaglevBackend[], opts: MaglevOptions = {}): Uint16Array {
  const { size: m, seed } = validate(backends, opts);
  const ring = new Uint16Array(m);

  // Code-unit order rather than localeCompare: the table must not depend on the host's locale.
  // Heaviest first, so the backends of one weight form one contiguous group (see below).
  const live = backends
    .filter((b) => b.weight > 0)
    .sort((a, b) => b.weight - a.weight || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const n = live.length;
  if (n === 0) return ring;

  const ids = new Uint16Array(n);
  const next = new Uint32Array(n); // the slot this backend tries first on its next turn
  const skip = new Uint32Array(n);
  // Groups of equal weight: [groupStart[g], groupStart[g + 1]) in `live`, heaviest group first.
  const groupStart: number[] = [];
  const groupWeight: number[] = [];
  for (let i = 0; i < n; i++) {
    const b = live[i] as MaglevBackend;
    const p = permutationOf(b.key, m, seed);
    ids[i] = b.id;
    next[i] = p.offset;
    skip[i] = p.skip;
    if (i === 0 || b.weight !== groupWeight[groupWeight.length - 1]) {
      groupStart.push(i);
      groupWeight.push(b.weight);
    }
  }
  const groups = groupWeight.length;
  groupStart.push(n);

  // One heap entry per group of equal weight, keyed by the group's Webster divisor
  // (T + 1/2) / (n * w) for its T-th turn, with n members of weight w; the group hands its turns
  // to its members in key order, round robin. Ties go to the heavier group (lower index).
  const key = new Float64Array(groups);
  const turns = new Float64Array(groups);
  const cursor = new Uint32Array(groups); // member whose turn the group's next turn is
  const heap = new Uint32Array(groups);
  const total = new Float64Array(groups); // n * w
  for (let g = 0; g < groups; g++) {
    total[g] = ((groupStart[g + 1] as number) - (groupStart[g] as number)) * (groupWeight[g] as number);
    key[g] = 0.5 / (total[g] as number);
    cursor[g] = groupStart[g] as number;
    heap[g] = g;
  }
  const siftDown = (start: number): void => {
    let at = start;
    const item = heap[at] as number;
    const itemKey = key[item] as number;
    for (;;) {
      const l = 2 * at + 1;
      if (l >= groups) break;
      let c = l;
      let child = heap[l] as number;
      let childKey = key[child] as number;
      if (l + 1 < groups) {
        const rc = heap[l + 1] as number;
        const rk = key[rc] as number;
        if (rk < childKey || (rk === childKey && rc < child)) {
          c = l + 1;
          child = rc;
          childKey = rk;
        }
      }
      if (childKey > itemKey || (childKey === itemKey && child > item)) break;
      heap[at] = child;
      at = c;
    }
    heap[at] = item;
  };
  for (let i = (groups >> 1) - 1; i >= 0; i--) siftDown(i);

  for (let filled = 0; ; ) {
    const g = heap[0] as number;
    const i = cursor[g] as number;
    const s = skip[i] as number;
    let p = next[i] as number;
    // Terminates: the permutation visits every slot and at least one is still empty.
    while (ring[p] !== 0) {
      p += s;
      if (p >= m) p -= m;
    }
    ring[p] = ids[i] as number;
    if (++filled === m) return ring;
    p += s;
    if (p >= m) p -= m;
    next[i] = p;
    cursor[g] = i + 1 === groupStart[g + 1] ? (groupStart[g] as number) : i + 1;
    const tg = (turns[g] as number) + 1;
    turns[g] = tg;
    key[g] = (tg + 0.5) / (total[g] as number);
    siftDown(0);
  }
}

/** Slots per backend id in a table, for reporting (`lbctl` shows each backend's share). */
export function slotCounts(ring: Uint16Array): Map<number, number> {
  const counts = new Uint32Array(MAX_BACKEND_ID + 1);
  for (let i = 0; i < ring.length; i++) counts[ring[i] as number] = (counts[ring[i] as number] as number) + 1;
  const out = new Map<number, number>();
  for (let id = 1; id <= MAX_BACKEND_ID; id++) {
    const c = counts[id] as number;
    if (c > 0) out.set(id, c);
  }
  return out;
}
