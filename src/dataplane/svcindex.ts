/**
 * The control plane's half of the service index (bpf/lib/svcindex.h): a direct-mapped array of
 * one 64-bit word per slot (the whole IPv4 key and the service id) and the services' values by
 * id, both written through mmap with one atomic 8-byte store each, so the data path never sees a
 * half-written word.
 *
 * The services hash map stays the source of truth; the index only lets the data path skip it.
 * What keeps it from ever answering differently, in the order the Dataplane calls us:
 *   retain(): before any service leaves the hash map (or its id is handed to another key), its
 *             slot is cleared, so its packets fall back to the hash map until it is gone there;
 *   publish(): after the services are in the hash map, each value goes to svc_by_id[id] before
 *             any slot names that id.
 * The data path re-reads the slot after copying the value (see svcindex.h), which closes the
 * window between its two loads.
 *
 * The mapped memory is the only state: a restarted daemon that reuses the pinned maps sees what
 * the data path sees, with nothing to adopt.
 */
import { isIPv4 } from 'node:net';
import { IPPROTO, serviceValue, type ServiceKey } from './abi.js';
import { rawAddr4, rawPort } from './hash.js';

export const SVC_INDEX_SHIFT = 12;
export const SVC_INDEX_SLOTS = 1 << SVC_INDEX_SHIFT;
/** ids that fit the slot word; services with larger ids are looked up in the hash map only */
export const SVC_INDEX_IDS = 1 << 14;

const SLOT_VALID = 1n << 15n;
const SLOT_UDP = 1n << 14n;
const ID_MASK = BigInt(SVC_INDEX_IDS - 1);
const MULT = 0x9e3779b97f4a7c15n;
const U64 = (1n << 64n) - 1n;

/** The slot word without its id: what the data path builds from a packet. */
export function keyWord(key: ServiceKey): bigint | undefined {
  if (!isIPv4(key.addr)) return undefined;
  if (key.proto !== IPPROTO.tcp && key.proto !== IPPROTO.udp) return undefined;
  return (BigInt(rawAddr4(key.addr)) << 32n) | (BigInt(rawPort(key.port)) << 16n) | SLOT_VALID | (key.proto === IPPROTO.udp ? SLOT_UDP : 0n);
}

export function slotOf(kw: bigint): number {
  return Number(((kw * MULT) & U64) >> BigInt(64 - SVC_INDEX_SHIFT));
}

export interface IndexedService {
  key: ServiceKey;
  id: number;
  /** the encoded struct lb_service, as the hash map holds it */
  value: Buffer;
}

export interface IndexReport {
  /** slot words stored (set or cleared) */
  slots: number;
  /** svc_by_id values stored */
  values: number;
  /** services this publish could not index (slot taken, IPv6, id too large): hash map only */
  unindexed: number;
}

export class ServiceIndex {
  private readonly slots: BigUint64Array;
  private readonly values: BigUint64Array;

  /** slotMem and valueMem: the mmapped svc_index and svc_by_id maps. */
  constructor(slotMem: Buffer, valueMem: Buffer) {
    this.slots = new BigUint64Array(slotMem.buffer, slotMem.byteOffset, SVC_INDEX_SLOTS);
    this.values = new BigUint64Array(valueMem.buffer, valueMem.byteOffset, SVC_INDEX_IDS);
  }

  /** Clears every slot whose key is not among `keep`. Call before services leave the hash map. */
  retain(keep: Iterable<ServiceKey>, report?: IndexReport): void {
    const kept = new Set<bigint>();
    for (const k of keep) {
      const kw = keyWord(k);
      if (kw !== undefined) kept.add(kw);
    }
    for (let s = 0; s < SVC_INDEX_SLOTS; s++) {
      const w = this.slots[s] as bigint;
      if (w === 0n || kept.has(w & ~ID_MASK)) continue;
      Atomics.store(this.slots, s, 0n);
      if (report) report.slots++;
    }
  }

  /**
   * Indexes `services` (the whole desired set: slots of other keys are cleared first). Call after
   * they are in the hash map. When two keys fold to one slot, the one already there keeps it,
   * else the lower id gets it; the other is served by the hash map.
   */
  publish(services: readonly IndexedService[]): IndexReport {
    const report: IndexReport = { slots: 0, values: 0, unindexed: 0 };
    // A slot may still name a key that is leaving, whose id one of `services` now reuses:
    // clear it before that id's value changes.
    this.retain(services.map((s) => s.key), report);

    const entries: { slot: number; word: bigint; id: number; value: bigint }[] = [];
    for (const s of services) {
      const kw = keyWord(s.key);
      if (kw === undefined || s.id >= SVC_INDEX_IDS) {
        report.unindexed++;
        continue;
      }
      entries.push({ slot: slotOf(kw), word: kw | BigInt(s.id), id: s.id, value: s.value.readBigUInt64LE(0) });
    }
    const want = new Map<number, (typeof entries)[number]>();
    for (const e of entries) if (this.slots[e.slot] === e.word) want.set(e.slot, e);
    for (const e of [...entries].sort((a, b) => a.id - b.id)) if (!want.has(e.slot)) want.set(e.slot, e);
    report.unindexed += entries.length - want.size;

    for (const e of want.values()) {
      if (this.values[e.id] === e.value) continue;
      Atomics.store(this.values, e.id, e.value);
      report.values++;
    }
    for (let slot = 0; slot < SVC_INDEX_SLOTS; slot++) {
      const w = want.get(slot)?.word ?? 0n;
      if (this.slots[slot] === w) continue;
      Atomics.store(this.slots, slot, w);
      report.slots++;
    }
    return report;
  }

  /** The service id the data path would find for key through the index, or undefined. */
  lookup(key: ServiceKey): number | undefined {
    const kw = keyWord(key);
    if (kw === undefined) return undefined;
    const w = this.slots[slotOf(kw)] as bigint;
    return (w & ~ID_MASK) === kw ? Number(w & ID_MASK) : undefined;
  }

  /** The value the data path would copy for id (struct lb_service), decoded. */
  value(id: number): ReturnType<typeof serviceValue.decode> {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(this.values[id] ?? 0n, 0);
    return serviceValue.decode(b);
  }
}
