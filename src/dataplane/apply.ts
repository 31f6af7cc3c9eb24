/**
 * Applies a desired set of services and backends to the balancer's maps as a minimal diff.
 *
 * The Dataplane keeps a mirror of what the maps hold (read back by adopt() after a restart), so
 * applying the same desired state twice writes nothing, and one backend change writes its entry
 * and the ring chunks whose slots moved. Writes are ordered so the data path never follows a
 * reference to something not yet written: backends -> rings -> services -> VIP filter on the way
 * in; VIP filter -> services -> rings -> backends on the way out.
 */
import { LbError } from '../errors.js';
import { buildMaglev, diffRings } from '../maglev/index.js';
import {
  type Counters,
  sumCounters,
  BE_F_VALID,

  IPPROTO,
  LB_MODE,
  MAX_BACKEND_ID,
  RING_CHUNK,
  SVC_F_DOWN_PASS,
  SVC_F_FULL_NAT,
  SVC_F_HASH_SRC_ONLY,
  backendValue,
  counters,
  ctlValue,
  ringChunk,
  serviceKey,
  serviceValue,
  u32Key,
  type CtlValue,
  type LbMode,
  type Proto,
  type ServiceKey,
} from './abi.js';
import { VIP_FILTER_WORDS, vipFilterBit } from './hash.js';
import { natBackendFilter } from './nat.js';
import type { ServiceIndex } from './svcindex.js';

/** The subset of a BPF map the applier needs; src/bpf's BpfMap provides it. */
export interface MapHandle {
  readonly maxEntries: number;
  lookup(key: Buffer): Buffer | undefined;
  update(key: Buffer, value: Buffer): void;
  delete(key: Buffer): boolean;
  keys(): Iterable<Buffer>;
}

export interface PerCpuMapHandle {
  updatePerCpu(key: Buffer, values: Buffer[]): void;
  lookupPerCpu(key: Buffer): Buffer[] | undefined;
}

export interface DataplaneMaps {
  services: MapHandle;
  rings: MapHandle;
  backends: MapHandle;
  vip_filter: MapHandle;
  ctl: MapHandle;
  backend_stats: PerCpuMapHandle;
  /** source-address filter of NAT backends (bpf/lib/nat.h); absent in objects without NAT */
  nat_filter?: MapHandle;
  /** the rings map's memory (BPF_F_MMAPABLE): when given, only changed slots are written */
  ringMemory?: Buffer;
  /** the data path's fast service lookup (bpf/lib/svcindex.h); without it, the hash map only */
  serviceIndex?: ServiceIndex;
}

export interface Geometry {
  /** Maglev table size M (prime) */
  ringSize: number;
  /** Maglev permutation seed: the same on every LB node */
  seed: number;
  /** number of CPUs the per-CPU maps have */
  cpus: number;
}

export interface DesiredBackend {
  address: string;
  /** next-hop MAC for l2dsr; ignored by other modes */
  mac?: string;
  weight: number;
  /** NAT target port; 0 or absent = the VIP's */
  port?: number;
  /** false takes it out of the ring; established flows are the health layer's business */
  healthy?: boolean;
}

export interface DesiredService {
  vip: string;
  port: number;
  proto: Proto;
  mode: LbMode;
  hashSrcOnly?: boolean;
  /** what to do with a new flow when no backend is usable */
  onAllDown?: 'drop' | 'pass';
  /** nat: rewrite the source to an LB address and port too (sources and ports: Nat.configure) */
  fullNat?: boolean;
  backends: DesiredBackend[];
}

export interface ApplyReport {
  /** map writes (updates and deletes) per map */
  writes: { services: number; backends: number; ringChunks: number; ringSlots: number; vipFilter: number; stats: number };
  services: { added: number; removed: number; changed: number };
  backends: { added: number; removed: number; changed: number };
  /** Maglev tables built (services whose members changed, or all after adopt()) */
  ringsBuilt: number;
}

interface MirrorService {
  id: number;
  key: ServiceKey;
  value: Buffer;
}

const ZERO_MAC = '00:00:00:00:00:00';

/** Where lb_backend.service_id sits: serviceCounters() reads it from the mirror without decoding. */
const BACKEND_SERVICE_ID_OFFSET = backendValue.fields.find((f) => f.name === 'service_id')?.offset ?? 28;

function addCounters(a: Counters | undefined, b: Counters): Counters {
  return { packets: (a?.packets ?? 0n) + b.packets, bytes: (a?.bytes ?? 0n) + b.bytes, newFlows: (a?.newFlows ?? 0n) + b.newFlows };
}

function keyString(k: ServiceKey): string {
  return `${k.addr}|${k.port}|${k.proto}`;
}

function backendKeyString(serviceId: number, addr: string, port: number): string {
  return `${serviceId}|${addr}|${port}`;
}

export class Dataplane {
  private readonly maps: DataplaneMaps;
  private readonly geo: Geometry;
  private readonly chunksPerRing: number;
  private readonly maxServices: number;
  private services = new Map<string, MirrorService>();
  /** backend id -> encoded value, for valid entries */
  private backends = new Map<number, Buffer>();
  private backendIds = new Map<string, number>();
  private rings = new Map<number, Uint16Array>();
  /** service id -> the Maglev inputs its ring was last built from; an unchanged service is not rebuilt */
  private ringInputs = new Map<number, string>();
  private filter = new BigUint64Array(VIP_FILTER_WORDS);
  private natFilter = new BigUint64Array(VIP_FILTER_WORDS);
  private nextBackendId = 1;
  /**
   * What removed backends had counted, per service id: the data path counts per backend only,
   * so a service's counters are these plus its current backends' (serviceCounters()).
   */
  private retired = new Map<number, Counters>();

  constructor(maps: DataplaneMaps, geo: Geometry) {
    this.maps = maps;
    this.geo = geo;
    this.chunksPerRing = Math.ceil(geo.ringSize / RING_CHUNK);
    this.maxServices = Math.floor(maps.rings.maxEntries / this.chunksPerRing);
    if (this.maxServices < 1) {
      throw new LbError('ERR_LB_DATAPLANE', `rings map too small for ring size ${geo.ringSize}`);
    }
  }

  /** Reads what the maps hold (left by an earlier run), so the next apply writes only differences. */
  adopt(): { services: number; backends: number } {
    this.services.clear();
    this.backends.clear();
    this.backendIds.clear();
    this.rings.clear();
    this.ringInputs.clear();
    for (const k of this.maps.services.keys()) {
      const v = this.maps.services.lookup(k);
      if (!v) continue;
      const key = serviceKey.decode(k);
      const { id } = serviceValue.decode(v);
      this.services.set(keyString(key), { id, key, value: v });
      this.rings.set(id, this.readRing(id));
    }
    let maxId = 0;
    for (let id = 1; id <= Math.min(MAX_BACKEND_ID, this.maps.backends.maxEntries - 1); id++) {
      const v = this.maps.backends.lookup(u32Key(id));
      if (!v || !(backendValue.decode(v).flags & BE_F_VALID)) continue;
      const b = backendValue.decode(v);
      this.backends.set(id, v);
      this.backendIds.set(backendKeyString(b.serviceId, b.addr, b.port), id);
      maxId = id;
    }
    for (let w = 0; w < VIP_FILTER_WORDS; w++) {
      const v = this.maps.vip_filter.lookup(u32Key(w));
      this.filter[w] = v ? v.readBigUInt64LE(0) : 0n;
    }
    for (let w = 0; w < VIP_FILTER_WORDS && this.maps.nat_filter; w++) {
      const v = this.maps.nat_filter.lookup(u32Key(w));
      this.natFilter[w] = v ? v.readBigUInt64LE(0) : 0n;
    }
    this.nextBackendId = (maxId % MAX_BACKEND_ID) + 1;
    return { services: this.services.size, backends: this.backends.size };
  }

  /** Writes the slots (or, without the ring's memory, the 32-slot chunks) that differ. */
  private writeRing(id: number, next: Uint16Array, report: ApplyReport): void {
    const old = this.rings.get(id);
    if (old === next) return;
    const mem = this.maps.ringMemory;
    const base = id * this.chunksPerRing * RING_CHUNK;
    if (mem) {
      for (let i = 0; i < next.length; i++) {
        if ((old ? old[i] : 0) === next[i]) continue;
        mem.writeUInt16LE(next[i] ?? 0, (base + i) * 2);
        report.writes.ringSlots++;
      }
    } else {
      const chunks = diffRings(old, next, RING_CHUNK);
      for (const c of chunks) {
        this.maps.rings.update(
          u32Key(id * this.chunksPerRing + c),
          ringChunk.encode(next.subarray(c * RING_CHUNK, (c + 1) * RING_CHUNK)),
        );
      }
      report.writes.ringChunks += chunks.length;
    }
    this.rings.set(id, next);
  }

  private readRing(id: number): Uint16Array {
    const ring = new Uint16Array(this.chunksPerRing * RING_CHUNK);
    const mem = this.maps.ringMemory;
    if (mem) {
      const base = id * this.chunksPerRing * RING_CHUNK * 2;
      ring.set(new Uint16Array(mem.buffer.slice(mem.byteOffset + base, mem.byteOffset + base + ring.length * 2)));
      return ring;
    }
    for (let c = 0; c < this.chunksPerRing; c++) {
      const v = this.maps.rings.lookup(u32Key(id * this.chunksPerRing + c));
      if (v) ring.set(ringChunk.decode(v), c * RING_CHUNK);
    }
    return ring;
  }

  /** Node-wide settings: the IPIP source address and the flow clock. */
  setCtl(v: CtlValue): boolean {
    const next = ctlValue.encode(v);
    const cur = this.maps.ctl.lookup(u32Key(0));
    if (cur && cur.equals(next)) return false;
    this.maps.ctl.update(u32Key(0), next);
    return true;
  }

  /** A backend's counters, summed over CPUs. */
  backendCounters(id: number): Counters {
    return sumCounters(this.maps.backend_stats.lookupPerCpu(u32Key(id)) ?? []);
  }

  /**
   * A service's counters: the sum of its backends' and of what its removed backends had counted
   * (since this process started: a restarted daemon's service totals start from its backends').
   */
  serviceCounters(serviceId: number): Counters {
    let total = this.retired.get(serviceId) ?? { packets: 0n, bytes: 0n, newFlows: 0n };
    for (const [id, v] of this.backends) {
      if (v.readUInt32LE(BACKEND_SERVICE_ID_OFFSET) === serviceId) total = addCounters(total, this.backendCounters(id));
    }
    return total;
  }

  /** Id of a service in the maps, for counters and tests. */
  serviceId(vip: string, port: number, proto: Proto): number | undefined {
    return this.services.get(keyString({ addr: vip, port, proto: IPPROTO[proto] }))?.id;
  }

  backendId(serviceId: number, address: string, port = 0): number | undefined {
    return this.backendIds.get(backendKeyString(serviceId, address, port));
  }

  /** What the backends map holds for an id (the mirror, no syscall). */
  backendEntry(id: number): { addr: string; mac: string; port: number; serviceId: number } | undefined {
    const v = this.backends.get(id);
    if (!v) return undefined;
    const b = backendValue.decode(v);
    return { addr: b.addr, mac: b.mac, port: b.port, serviceId: b.serviceId };
  }

  /** Ring slots per backend id for a service: its real share of new flows. */
  slotCounts(serviceId: number): Map<number, number> {
    const out = new Map<number, number>();
    const ring = this.ring(serviceId);
    if (!ring) return out;
    for (const id of ring) if (id !== 0) out.set(id, (out.get(id) ?? 0) + 1);
    return out;
  }

  /** The ring as the data path sees it (slot -> backend id), trimmed to the ring size. */
  ring(serviceId: number): Uint16Array | undefined {
    return this.rings.get(serviceId)?.subarray(0, this.geo.ringSize);
  }

  apply(desired: readonly DesiredService[]): ApplyReport {
    const report: ApplyReport = {
      writes: { services: 0, backends: 0, ringChunks: 0, ringSlots: 0, vipFilter: 0, stats: 0 },
      services: { added: 0, removed: 0, changed: 0 },
      backends: { added: 0, removed: 0, changed: 0 },
      ringsBuilt: 0,
    };
    const plan = this.plan(desired);
    report.ringsBuilt = plan.ringsBuilt;
    // Service id -> key before this apply: a removed backend's counts go to its service only if
    // that service is still there (its id may have been given to a newcomer meanwhile).
    const ownerBefore = new Map([...this.services].map(([ks, s]) => [s.id, ks]));

    // In: backends, rings, services, filter.
    // NAT backends' source filter first: a reply must be recognised as soon as its connection exists.
    report.writes.vipFilter += this.writeNatFilter(natBackendFilter(desired));
    for (const [id, value] of plan.backends) {
      const cur = this.backends.get(id);
      if (cur && cur.equals(value)) continue;
      if (!cur) {
        this.zeroStats(this.maps.backend_stats, id);
        report.writes.stats++;
        report.backends.added++;
      } else {
        report.backends.changed++;
      }
      this.maps.backends.update(u32Key(id), value);
      this.backends.set(id, value);
      report.writes.backends++;
    }
    for (const s of plan.services) {
      this.writeRing(s.id, s.ring, report);
      this.ringInputs.set(s.id, s.inputs);
    }
    for (const s of plan.services) {
      const ks = keyString(s.key);
      const cur = this.services.get(ks);
      if (cur && cur.value.equals(s.value)) continue;
      if (!cur) {
        report.services.added++;
      } else {
        report.services.changed++;
      }
      this.maps.services.update(serviceKey.encode(s.key), s.value);
      this.services.set(ks, { id: s.id, key: s.key, value: s.value });
      report.writes.services++;
    }
    // After the services are in the hash map, before any leaves it (svcindex.ts says why).
    this.maps.serviceIndex?.publish(plan.services);
    report.writes.vipFilter += this.writeFilter(plan.filter);

    // Out: services, rings, backends.
    const keep = new Set(plan.services.map((s) => keyString(s.key)));
    const idsInUse = new Set(plan.services.map((s) => s.id));
    for (const [ks, cur] of [...this.services]) {
      if (keep.has(ks)) continue;
      this.maps.services.delete(serviceKey.encode(cur.key));
      this.services.delete(ks);
      this.retired.delete(cur.id);
      report.writes.services++;
      report.services.removed++;
      // A service added above may have been given this id: the ring is the newcomer's now.
      if (idsInUse.has(cur.id)) continue;
      this.writeRing(cur.id, new Uint16Array(this.chunksPerRing * RING_CHUNK), report);
      this.rings.delete(cur.id);
      this.ringInputs.delete(cur.id);
    }
    for (const [id, cur] of [...this.backends]) {
      if (plan.backends.has(id)) continue;
      // Cleared, not deleted (arrays cannot delete): flows that pointed here re-hash on the ring.
      this.maps.backends.update(u32Key(id), Buffer.alloc(backendValue.size));
      this.backends.delete(id);
      const b = backendValue.decode(cur);
      // Its service keeps what it counted (read after the clear: nothing counts it any more).
      const owner = ownerBefore.get(b.serviceId);
      if (owner !== undefined && this.services.get(owner)?.id === b.serviceId) {
        this.retired.set(b.serviceId, addCounters(this.retired.get(b.serviceId), this.backendCounters(id)));
      }
      this.backendIds.delete(backendKeyString(b.serviceId, b.addr, b.port));
      report.writes.backends++;
      report.backends.removed++;
    }
    return report;
  }

  private plan(desired: readonly DesiredService[]): {
    services: { id: number; key: ServiceKey; value: Buffer; ring: Uint16Array; inputs: string }[];
    backends: Map<number, Buffer>;
    filter: BigUint64Array;
    ringsBuilt: number;
  } {
    let ringsBuilt = 0;
    const seen = new Set<string>();
    const usedServiceIds = new Set<number>();
    const pending: { key: ServiceKey; svc: DesiredService }[] = [];
    for (const svc of desired) {
      const key: ServiceKey = { addr: svc.vip, port: svc.port, proto: IPPROTO[svc.proto] };
      const ks = keyString(key);
      if (seen.has(ks)) {
        throw new LbError('ERR_LB_DATAPLANE', `duplicate service ${svc.vip}:${svc.port}/${svc.proto}`);
      }
      seen.add(ks);
      const cur = this.services.get(ks);
      if (cur) usedServiceIds.add(cur.id);
      pending.push({ key, svc });
    }
    if (pending.length > this.maxServices) {
      throw new LbError('ERR_LB_DATAPLANE', `${pending.length} services, but the maps hold ${this.maxServices}`, {
        hint: 'raise node.maxServices in the config',
      });
    }

    const services: { id: number; key: ServiceKey; value: Buffer; ring: Uint16Array; inputs: string }[] = [];
    const backends = new Map<number, Buffer>();
    const filter = new BigUint64Array(VIP_FILTER_WORDS);
    const claimedBackendIds = new Set<number>();
    let nextServiceId = 0;
    for (const { key, svc } of pending) {
      let id = this.services.get(keyString(key))?.id;
      if (id === undefined) {
        while (usedServiceIds.has(nextServiceId)) nextServiceId++;
        id = nextServiceId;
        usedServiceIds.add(id);
      }
      let flags = 0;
      if (svc.hashSrcOnly) flags |= SVC_F_HASH_SRC_ONLY;
      if (svc.onAllDown === 'pass') flags |= SVC_F_DOWN_PASS;
      if (svc.fullNat) flags |= SVC_F_FULL_NAT;
      const value = serviceValue.encode({ id, mode: LB_MODE[svc.mode], flags });

      const members: { id: number; key: string; weight: number }[] = [];
      for (const b of svc.backends) {
        const port = b.port ?? 0;
        const bid = this.claimBackendId(id, b.address, port, claimedBackendIds);
        backends.set(
          bid,
          backendValue.encode({ addr: b.address, mac: b.mac ?? ZERO_MAC, flags: BE_F_VALID, port, serviceId: id }),
        );
        if (b.healthy !== false && b.weight > 0) members.push({ id: bid, key: `${b.address}:${port}`, weight: b.weight });
      }
      // The table depends only on the members (ids, keys, weights): Maglev is order-independent,
      // so a sorted signature says whether the last build still holds. This keeps a health flap
      // in one service from rebuilding a thousand others.
      const inputs = members
        .map((m) => `${m.id}|${m.key}|${m.weight}`)
        .sort()
        .join(',');
      let ring = this.ringInputs.get(id) === inputs ? this.rings.get(id) : undefined;
      if (!ring) {
        ring = new Uint16Array(this.chunksPerRing * RING_CHUNK);
        ring.set(buildMaglev(members, { size: this.geo.ringSize, seed: this.geo.seed }));
        ringsBuilt++;
      }
      services.push({ id, key, value, ring, inputs });
      const bit = vipFilterBit(svc.vip); // IPv6: the bit of its lb_filter6()
      filter[bit >> 6] = (filter[bit >> 6] ?? 0n) | (1n << BigInt(bit & 63));
    }
    return { services, backends, filter, ringsBuilt };
  }

  /**
   * Stable ids: a (service, address, port) keeps its id for as long as it is configured. New ones
   * rotate through the id space, so an id is rarely reused soon after it was freed, and stale
   * flow-table entries pointing to it meet an empty slot rather than a stranger.
   */
  private claimBackendId(serviceId: number, addr: string, port: number, claimed: Set<number>): number {
    const ks = backendKeyString(serviceId, addr, port);
    const existing = this.backendIds.get(ks);
    if (existing !== undefined) {
      claimed.add(existing);
      return existing;
    }
    for (let n = 0; n < MAX_BACKEND_ID; n++) {
      const id = this.nextBackendId;
      this.nextBackendId = (this.nextBackendId % MAX_BACKEND_ID) + 1;
      if (this.backends.has(id) || claimed.has(id) || id >= this.maps.backends.maxEntries) continue;
      claimed.add(id);
      this.backendIds.set(ks, id);
      return id;
    }
    throw new LbError('ERR_LB_DATAPLANE', `more than ${MAX_BACKEND_ID} backends`);
  }

  private writeFilter(next: BigUint64Array): number {
    let writes = 0;
    for (let w = 0; w < VIP_FILTER_WORDS; w++) {
      if (next[w] === this.filter[w]) continue;
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(next[w] ?? 0n, 0);
      this.maps.vip_filter.update(u32Key(w), b);
      this.filter[w] = next[w] ?? 0n;
      writes++;
    }
    return writes;
  }

  private writeNatFilter(next: BigUint64Array): number {
    const map = this.maps.nat_filter;
    if (!map) return 0;
    let writes = 0;
    for (let w = 0; w < VIP_FILTER_WORDS; w++) {
      if (next[w] === this.natFilter[w]) continue;
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(next[w] ?? 0n, 0);
      map.update(u32Key(w), b);
      this.natFilter[w] = next[w] ?? 0n;
      writes++;
    }
    return writes;
  }

  private zeroStats(map: PerCpuMapHandle, id: number): void {
    const zero = Buffer.alloc(counters.size);
    map.updatePerCpu(u32Key(id), Array.from({ length: this.geo.cpus }, () => zero));
  }
}

