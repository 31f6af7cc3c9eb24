/**
 * The control plane's view of the flow table: counting flows per backend (for `lbctl list` and
 * drain) and clearing a dead backend's flows so its clients fail fast instead of hanging.
 *
 * The table is an mmapable array of 64-bit ways (fingerprint << 32 | backend << 16 | seen), the
 * same layout bpf/lib/flow.h writes. Reading goes straight through the mapping; clearing uses a
 * compare-and-swap per way, so a way the data path rewrote meanwhile (a new flow landing in that
 * slot) is left alone.
 */
import { FLOW_WAYS } from './abi.js';

export interface FlowCount {
  /** ways that point at the backend */
  total: number;
  /** of those, seen within the idle window */
  active: number;
}

const WAY_BYTES = 8;

function waysOf(mem: Buffer): BigUint64Array {
  return new BigUint64Array(mem.buffer, mem.byteOffset, Math.floor(mem.length / WAY_BYTES));
}

function backendOf(w: bigint): number {
  return Number((w >> 16n) & 0xffffn);
}

function seenOf(w: bigint): number {
  return Number(w & 0xffffn);
}

/**
 * Flows per backend id. `clock` is the current flow clock (ctl map); a flow whose last-seen tick
 * is more than `idleTicks` behind it counts as idle (DSR sees no FIN from the server side, so
 * idleness is the only end a flow table can observe).
 */
export function countFlows(mem: Buffer, clock: number, idleTicks: number): Map<number, FlowCount> {
  const out = new Map<number, FlowCount>();
  const ways = waysOf(mem);
  for (let i = 0; i < ways.length; i++) {
    const w = ways[i] ?? 0n;
    if (w === 0n) continue;
    const be = backendOf(w);
    let c = out.get(be);
    if (!c) out.set(be, (c = { total: 0, active: 0 }));
    c.total++;
    if (((clock - seenOf(w)) & 0xffff) <= idleTicks) c.active++;
  }
  return out;
}

/** Clears every way pointing at one of `backendIds`; returns how many were cleared. */
export function purgeFlows(mem: Buffer, backendIds: ReadonlySet<number>): number {
  if (backendIds.size === 0) return 0;
  const ways = waysOf(mem);
  let cleared = 0;
  for (let i = 0; i < ways.length; i++) {
    const w = ways[i] ?? 0n;
    if (w === 0n || !backendIds.has(backendOf(w))) continue;
    if (Atomics.compareExchange(ways, i, w, 0n) === w) cleared++;
  }
  return cleared;
}

/** Buckets times ways: how many flows the table can hold. */
export function flowCapacity(mem: Buffer): number {
  return Math.floor(mem.length / WAY_BYTES / FLOW_WAYS) * FLOW_WAYS;
}
