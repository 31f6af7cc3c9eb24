/**
 * Which parts of the ring map to rewrite. The map stores the ring 32 slots to a value
 * (`struct lb_ring_chunk` in bpf/lb_abi.h), and one backend joining or leaving moves only a
 * few percent of the slots, so writing just the changed chunks keeps an update to a few
 * hundred map writes instead of all 2049.
 */

/** Slots per ring map value; mirrors LB_RING_CHUNK in bpf/lb_abi.h. */
export const RING_CHUNK = 32;

export interface RingDiff {
  /** Indices of the chunks that differ, ascending. */
  readonly chunks: number[];
  /** How many slots differ, for reporting how much traffic a change moves. */
  readonly slots: number;
}

/**
 * Compare two tables. Without an old table, or when the size changed, every chunk is written
 * and every slot counts as changed, since the map's layout no longer lines up.
 */
export function ringDiff(old: Uint16Array | undefined, next: Uint16Array, chunk = RING_CHUNK): RingDiff {
  if (!Number.isInteger(chunk) || chunk < 1) throw new RangeError(`ringDiff: chunk ${chunk} is not a positive integer`);
  const nChunks = Math.ceil(next.length / chunk);
  const chunks: number[] = [];
  if (old === undefined || old.length !== next.length) {
    for (let c = 0; c < nChunks; c++) chunks.push(c);
    return { chunks, slots: next.length };
  }
  let slots = 0;
  for (let c = 0; c < nChunks; c++) {
    const end = Math.min(next.length, (c + 1) * chunk);
    let differs = 0;
    for (let i = c * chunk; i < end; i++) if (old[i] !== next[i]) differs++;
    if (differs > 0) {
      chunks.push(c);
      slots += differs;
    }
  }
  return { chunks, slots };
}

/** Indices of the `chunk`-slot chunks of `next` that differ from `old` (all of them without `old`). */
export function diffRings(old: Uint16Array | undefined, next: Uint16Array, chunk = RING_CHUNK): number[] {
  return ringDiff(old, next, chunk).chunks;
}
