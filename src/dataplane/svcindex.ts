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
 * IPv6 keys do not fit a slot word: they get records of their own (svc_index6, struct
 * lb_svc_rec6: a first word, the full address, the value), direct-mapped by the same slot hash
 * over (lb_fold6(VIP), port, protocol). The data path compares the whole key with the record and
 * takes the value only if the record's first word did not change meanwhile, so a record can only
 * be trusted for its own key. What keeps it from answering differently from the hash map:
 *   retain(): before an IPv6 service leaves the hash map, its record is invalidated;
 *   publish(): a record is written only for a service already in the hash map;
 *   every store of a record's first word advances the sequence count in its high half: invalid
 *   first, then address and value, then valid; so a reader that overlapped the rewrite sees the
 *   word change and falls back to the hash map.
 *
 * The mapped memory is the only state: a restarted daemon that reuses the pinned maps sees what
 * the data path sees, with nothing to adopt (the sequence counts go on from the mapped words).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { IPPROTO, serviceValue, writeAddr, type ServiceKey } from './abi.js';
import { rawAddr, rawAddr4, rawPort } from './hash.js';

export const SVC_INDEX_SHIFT = 12;
export const SVC_INDEX_SLOTS = 1 << SVC_INDEX_SHIFT;
/** ids that fit the slot word; services with larger ids are looked up in the hash map only */
export const SVC_INDEX_IDS = 1 << 14;

const SLOT_VALID = 1n << 15n;
const SLOT_UDP = 1n << 14n;
const ID_MASK = BigInt(SVC_INDEX_IDS - 1);
const MULT = 0x9e3779b97f4a7c15n;
const U64 = (1n << 64n) - 1n;
const U32 = (1n << 32n) - 1n;

/** struct lb_svc_rec6 (bpf/lib/svcindex.h), in 64-bit words: word, addr[2], value */
export const REC6_WORDS = 4;
export const REC6_LAYOUT = [
  { name: 'word', offset: 0, size: 8 },
  { name: 'addr', offset: 8, size: 16 },
  { name: 'value', offset: 24, size: 8 },
] as const;
export const SVC_INDEX6_SLOTS = SVC_INDEX_SLOTS;

/** The slot word without its id: what the data path builds from a packet. */
export function keyWord(key: ServiceKey): bigint | undefined {
  if (!isIPv4(key.addr)) return undefined;
  if (key.proto !== IPPROTO.tcp && key.proto !== IPPROTO.udp) return undefined;
  return (BigInt(rawAddr4(key.addr)) << 32n) | (BigInt(rawPort(key.port)) << 16n) | SLOT_VALID | (key.proto === IPPROTO.udp ? SLOT_UDP : 0n);
}

/** An IPv6 key as the data path compares it with a record. */
export interface Key6 {
  /** the slot the data path probes */
  slot: number;
  /** the low half of the record's first word: port, valid, protocol */
  kw: bigint;
  /** the address's 16 raw bytes as two little-endian words */
  a0: bigint;
  a1: bigint;
}

export function key6(key: ServiceKey): Key6 | undefined {
  if (!isIPv6(key.addr)) return undefined;
  if (key.proto !== IPPROTO.tcp && key.proto !== IPPROTO.udp) return undefined;
  const kw = (BigInt(rawPort(key.port)) << 16n) | SLOT_VALID | (key.proto === IPPROTO.udp ? SLOT_UDP : 0n);
  const b = Buffer.alloc(16);
  writeAddr(b, 0, key.addr);
  return { slot: slotOf((BigInt(rawAddr(key.addr)) << 32n) | kw), kw, a0: b.readBigUInt64LE(0), a1: b.readBigUInt64LE(8) };
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
  /** IPv6 record words stored (records written or invalidated) */
  records: number;
  /** services this publish could not index (slot taken, id too large): hash map only */
  unindexed: number;
}

function key6String(k: { kw: bigint; a0: bigint; a1: bigint }): string {
  return `${k.kw}|${k.a0}|${k.a1}`;
}

export class ServiceIndex {
  private readonly slots: BigUint64Array;
  private readonly values: BigUint64Array;
  private readonly recs: BigUint64Array;

  /** slotMem, valueMem, rec6Mem: the mmapped svc_index, svc_by_id and svc_index6 maps. */
  constructor(slotMem: Buffer, valueMem: Buffer, rec6Mem: Buffer) {
    this.slots = new BigUint64Array(slotMem.buffer, slotMem.byteOffset, SVC_INDEX_SLOTS);
    this.values = new BigUint64Array(valueMem.buffer, valueMem.byteOffset, SVC_INDEX_IDS);
    this.recs = new BigUint64Array(rec6Mem.buffer, rec6Mem.byteOffset, SVC_INDEX6_SLOTS * REC6_WORDS);
  }

  /** The record at slot if it is valid: its key words and value. */
  private record(slot: number): { kw: bigint; a0: bigint; a1: bigint; value: bigint } | undefined {
    const i = slot * REC6_WORDS;
    const w = this.recs[i] as bigint;
    if ((w & SLOT_VALID) === 0n) return undefined;
    return { kw: w & U32, a0: this.recs[i + 1] as bigint, a1: this.recs[i + 2] as bigint, value: this.recs[i + 3] as bigint };
  }

  /**
   * Invalidates the record at slot, then (with next) writes next's address and value and makes it
   * valid. Each store of the first word advances its sequence count (svcindex.h says why).
   */
  private storeRecord(slot: number, next?: { kw: bigint; a0: bigint; a1: bigint; value: bigint }): void {
    const i = slot * REC6_WORDS;
    let seq = (this.recs[i] as bigint) >> 32n;
    seq = (seq + 1n) & U32;
    Atomics.store(this.recs, i, seq << 32n);
    if (!next) return;
    Atomics.store(this.recs, i + 1, next.a0);
    Atomics.store(this.recs, i + 2, next.a1);
    Atomics.store(this.recs, i + 3, next.value);
    seq = (seq + 1n) & U32;
    Atomics.store(this.recs, i, (seq << 32n) | next.kw);
  }

  /** Clears every slot whose key is not among `keep`. Call before services leave the hash map. */
  retain(keep: Iterable<ServiceKey>, report?: IndexReport): void {
    const kept = new Set<bigint>();
    const kept6 = new Set<string>();
    for (const k of keep) {
      const kw = keyWord(k);
      if (kw !== undefined) kept.add(kw);
      const k6 = key6(k);
      if (k6) kept6.add(key6String(k6));
    }
    for (let s = 0; s < SVC_INDEX6_SLOTS; s++) {
      const r = this.record(s);
      if (!r || kept6.has(key6String(r))) continue;
      this.storeRecord(s);
      if (report) report.records++;
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
    const report: IndexReport = { slots: 0, values: 0, records: 0, unindexed: 0 };
    // A slot may still name a key that is leaving, whose id one of `services` now reuses:
    // clear it before that id's value changes.
    this.retain(services.map((s) => s.key), report);

    const entries: { slot: number; word: bigint; id: number; value: bigint }[] = [];
    const entries6: (Key6 & { id: number; value: bigint })[] = [];
    for (const s of services) {
      const k6 = key6(s.key);
      if (k6) {
        entries6.push({ ...k6, id: s.id, value: s.value.readBigUInt64LE(0) });
        continue;
      }
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

    // IPv6: the same choice per slot. Every service here is in the hash map already.
    const want6 = new Map<number, (typeof entries6)[number]>();
    for (const e of entries6) {
      const r = this.record(e.slot);
      if (r && key6String(r) === key6String(e)) want6.set(e.slot, e);
    }
    for (const e of [...entries6].sort((a, b) => a.id - b.id)) if (!want6.has(e.slot)) want6.set(e.slot, e);
    report.unindexed += entries6.length - want6.size;
    for (let slot = 0; slot < SVC_INDEX6_SLOTS; slot++) {
      const e = want6.get(slot);
      const r = this.record(slot);
      if (!e) {
        if (!r) continue;
        this.storeRecord(slot);
      } else {
        if (r && key6String(r) === key6String(e) && r.value === e.value) continue;
        this.storeRecord(slot, e);
      }
      report.records++;
    }
    return report;
  }

  /** The service id the data path would find for key through the index, or undefined. */
  lookup(key: ServiceKey): number | undefined {
    const v = this.value6(key);
    if (v) return v.id;
    const kw = keyWord(key);
    if (kw === undefined) return undefined;
    const w = this.slots[slotOf(kw)] as bigint;
    return (w & ~ID_MASK) === kw ? Number(w & ID_MASK) : undefined;
  }

  /** The value the data path would copy from an IPv6 key's record, decoded, or undefined. */
  value6(key: ServiceKey): ReturnType<typeof serviceValue.decode> | undefined {
    const k = key6(key);
    const r = k && this.record(k.slot);
    if (!k || !r || key6String(r) !== key6String(k)) return undefined;
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(r.value, 0);
    return serviceValue.decode(b);
  }

  /** The value the data path would copy for id (struct lb_service), decoded. */
  value(id: number): ReturnType<typeof serviceValue.decode> {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(this.values[id] ?? 0n, 0);
    return serviceValue.decode(b);
  }
}
