/**
 * NAT mode, control-plane side (the data path is bpf/lib/nat.h, and bpf/lib/nat6.h for NAT66): the
 * node-wide settings (full-NAT source addresses of both families, port range, timeouts), the
 * devmap of interfaces translated packets may be redirected to, and the connection tables
 * (nat_conns for IPv4, nat6_conns for IPv6, same scheme): list them, count them, and sweep them.
 *
 * The data path only ever adds entries; the sweeper deletes them. A connection is two entries
 * (forward and reverse, lb_abi.h), which carry the same state and last-seen time; the sweeper
 * deletes a pair once it has been idle longer than its state's timeout, which returns a full-NAT
 * port to the pool (a port is free exactly when no reverse entry holds it). The data path already
 * treats such a pair as absent between sweeps, so the sweep interval only bounds how long a dead
 * connection occupies table space, never how long it lives.
 */
import { isIP } from 'node:net';
import { LbError } from '../errors.js';
import {
  NAT_DIR,
  NAT_F_FULL,
  NAT_MAX_SOURCES,
  NAT_STATE_NAMES,
  PROTO_NAMES,
  natCfg,
  natEntry,
  nat6Entry,
  nat6Key,
  natKey,
  u32Key,
  writeAddr,
  type NatState,
  type Proto,
} from './abi.js';
import type { DesiredService, MapHandle } from './apply.js';
import { VIP_FILTER_WORDS, flowHash, lbReduce, vipFilterBit, type FlowTuple } from './hash.js';

export interface NatTimeouts {
  /** TCP until the backend answers (a SYN nobody takes) */
  tcpNewSec: number;
  tcpEstablishedSec: number;
  /** TCP after a FIN or RST in either direction */
  tcpClosingSec: number;
  /** UDP, since the last datagram either way */
  udpSec: number;
}

export interface NatSettings {
  /**
   * full-NAT source addresses (the LB's own), IPv4 and IPv6, at most 4 of each family; a
   * connection's is chosen by hash among those of its family (IPv4 for NAT, IPv6 for NAT66)
   */
  sources: string[];
  /** full-NAT source ports, inclusive. Keep them out of the kernel's ip_local_port_range when a
   * source is an address the LB's own sockets use (32768-60999 by default on Linux). */
  portMin: number;
  portMax: number;
  timeouts: NatTimeouts;
}

export const DEFAULT_NAT_TIMEOUTS: Readonly<NatTimeouts> = Object.freeze({
  tcpNewSec: 30,
  tcpEstablishedSec: 300,
  tcpClosingSec: 10,
  udpSec: 30,
});

export const DEFAULT_NAT_SETTINGS: Readonly<NatSettings> = Object.freeze({
  sources: [],
  portMin: 10000,
  portMax: 32767,
  timeouts: DEFAULT_NAT_TIMEOUTS,
});

/** A reverse entry whose forward entry is missing is half-built for this long (nat_forward inserts reverse first). */
export const ORPHAN_GRACE_NS = 2_000_000_000n;
/**
 * The sweeper deletes a connection this long after its timeout. By then the data path (whose
 * coarse clock may lag ours by a tick) has treated it as absent for a while and never touches it
 * again: it only rebuilds it, which the sweeper detects.
 */
export const SWEEP_GRACE_NS = 1_000_000_000n;

export function validateNatSettings(s: NatSettings): void {
  const bad: string[] = [];
  for (const family of [4, 6] as const) {
    const n = s.sources.filter((a) => isIP(a) === family).length;
    if (n > NAT_MAX_SOURCES) bad.push(`sources: ${n} IPv${family} addresses given, at most ${NAT_MAX_SOURCES}`);
  }
  s.sources.forEach((a, i) => {
    if (!isIP(a)) bad.push(`sources[${i}]: ${JSON.stringify(a)} is not an IP address`);
  });
  // The map holds bytes: two spellings of one IPv6 address are one address.
  if (new Set(s.sources.map(addrBytes)).size !== s.sources.length) bad.push('sources: duplicate address');
  const port = (p: number) => Number.isInteger(p) && p >= 1 && p <= 65535;
  if (!port(s.portMin)) bad.push(`portMin: ${s.portMin} is not a port`);
  if (!port(s.portMax)) bad.push(`portMax: ${s.portMax} is not a port`);
  if (port(s.portMin) && port(s.portMax) && s.portMax < s.portMin) bad.push(`portMax ${s.portMax} < portMin ${s.portMin}`);
  for (const [k, v] of Object.entries(s.timeouts)) {
    if (!(typeof v === 'number' && Number.isFinite(v) && v > 0 && v <= 7 * 86400)) bad.push(`timeouts.${k}: ${v} is not in (0, 604800] seconds`);
  }
  if (bad.length) {
    throw new LbError('ERR_LB_CONFIG', `bad NAT settings: ${bad.join('; ')}`, { detail: bad.join('\n') });
  }
}

function addrBytes(a: string): string {
  if (!isIP(a)) return `?${a}`;
  const b = Buffer.alloc(16);
  writeAddr(b, 0, a);
  return `${isIP(a)}:${b.toString('hex')}`;
}

/** The sources of one family, in the order given: source[] or source6[] of lb_nat_cfg. */
export function sourcesOf(sources: readonly string[], family: 4 | 6): string[] {
  return sources.filter((a) => isIP(a) === family);
}

function timeoutNs(t: NatTimeouts): [bigint, bigint, bigint, bigint] {
  const ns = (sec: number) => BigInt(Math.round(sec * 1000)) * 1_000_000n;
  return [ns(t.tcpNewSec), ns(t.tcpEstablishedSec), ns(t.tcpClosingSec), ns(t.udpSec)];
}

/** The nat_filter bits: every backend address of every nat service (replies come from them). */
export function natBackendFilter(desired: readonly DesiredService[]): BigUint64Array {
  const filter = new BigUint64Array(VIP_FILTER_WORDS);
  for (const svc of desired) {
    if (svc.mode !== 'nat') continue;
    for (const b of svc.backends) {
      const bit = vipFilterBit(b.address);
      filter[bit >> 6] = (filter[bit >> 6] ?? 0n) | (1n << BigInt(bit & 63));
    }
  }
  return filter;
}

/**
 * Where nat_forward() (nat6_forward() for an IPv6 client) tries first for a new full-NAT
 * connection: the source address index (h1 mod n, among the sources of the client's family)
 * and the first probed port (portMin + h2 reduced into the range). The next probes are the
 * following ports, wrapping inside the range.
 */
export function fullNatFirstChoice(f: FlowTuple, seed: number, s: Pick<NatSettings, 'sources' | 'portMin' | 'portMax'>): { source: string; port: number } {
  const h = flowHash(f, seed);
  const family = isIP(f.client) === 6 ? 6 : 4;
  const sources = sourcesOf(s.sources, family);
  const n = sources.length;
  if (n === 0) throw new LbError('ERR_LB_USAGE', `no full-NAT IPv${family} source addresses`);
  return {
    source: sources[(h.h1 >>> 0) % n] as string,
    port: s.portMin + lbReduce(h.h2, s.portMax - s.portMin + 1),
  };
}

/** One connection, both entries merged: what `lbctl` lists. */
export interface NatConnection {
  proto: Proto;
  client: string;
  clientPort: number;
  vip: string;
  vipPort: number;
  backend: string;
  backendPort: number;
  /** what the backend sees as the source: an LB address and port in full NAT, else the client */
  source: string;
  sourcePort: number;
  fullNat: boolean;
  serviceId: number;
  backendId: number;
  state: NatState;
  idleMs: number;
  /** until the data path treats it as gone and the sweeper may delete it */
  expiresInMs: number;
}

export interface NatCount {
  connections: number;
  /** map entries, both directions, orphans included */
  entries: number;
  /** entries without their other half (being built, or left by a race) */
  orphans: number;
  fullNat: number;
  byState: Record<NatState, number>;
  /** connections past their timeout that the next sweep will delete */
  expired: number;
}

export interface SweepReport {
  /** connections (pairs) deleted */
  connections: number;
  /** lone entries deleted */
  orphans: number;
  /** entries left */
  remaining: number;
  elapsedMs: number;
}

/** src/bpf's BpfMap reads it in batches; without lookupBatch, one key at a time */
export type ConnMap = MapHandle & { lookupBatch?(chunk?: number): Iterable<{ keys: Buffer; values: Buffer; count: number }> };

export interface NatMaps {
  nat_conns: ConnMap;
  /** NAT66: the same scheme with IPv6 addresses (lb_nat6_key, lb_nat6_entry) */
  nat6_conns: ConnMap;
  nat_cfg: MapHandle;
  tx_ports: MapHandle;
}

/**
 * A table as read: keys and values back to back, as the map stores them, with 32-bit views. A
 * sweep of a million entries reads words straight out of these and pairs entries through an
 * open-addressing table of their key hashes, without an object or a string per entry.
 *
 * Both maps share one word layout, with an address taking aw words (1 for IPv4, 4 for IPv6):
 *   key   saddr, daddr, sport | dport << 16, proto | dir << 8                (raw, little-endian loads)
 *   value saddr, daddr, ports, service_id, backend_id | state << 16 | flags << 24, pad, last_seen lo, hi
 */
interface Table {
  keys: Buffer;
  values: Buffer;
  k32: Uint32Array;
  v32: Uint32Array;
  n: number;
  /** words per address */
  aw: number;
  /** words per key / value */
  kw: number;
  vw: number;
}

interface Family {
  map: 'nat_conns' | 'nat6_conns';
  aw: number;
  key: typeof natKey;
  entry: typeof natEntry;
}

const FAMILIES: readonly Family[] = [
  { map: 'nat_conns', aw: 1, key: natKey, entry: natEntry },
  { map: 'nat6_conns', aw: 4, key: nat6Key, entry: nat6Entry },
];

function words(b: Buffer): Uint32Array {
  const a = b.byteOffset % 4 === 0 ? b : Buffer.from(b);
  return new Uint32Array(a.buffer, a.byteOffset, a.length / 4);
}

/** murmur3's finaliser: the table takes the low bits, which multiplication alone leaves blind to high input bits. */
function fmix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function mix4(a: number, b: number, c: number, d: number): number {
  return fmix(Math.imul(fmix(Math.imul(fmix(a ^ 0x9e3779b9) ^ b, 0x01000193)) ^ c, 0x01000193) ^ d);
}

/** An address's words at w[o ..] as one word: the word itself for IPv4, all four mixed for IPv6. */
const addrWord = (w: Uint32Array, o: number, aw: number): number =>
  aw === 1 ? (w[o] ?? 0) : mix4(w[o] ?? 0, w[o + 1] ?? 0, w[o + 2] ?? 0, w[o + 3] ?? 0);

const rot16 = (x: number): number => ((x >>> 16) | (x << 16)) >>> 0;

const keyHash = (t: Table, i: number): number => {
  const o = t.kw * i;
  return mix4(addrWord(t.k32, o, t.aw), addrWord(t.k32, o + t.aw, t.aw), t.k32[o + 2 * t.aw] ?? 0, t.k32[o + 2 * t.aw + 1] ?? 0);
};

/** The hash of entry i's partner key: its value's tuple swapped, the direction flipped (nat_partner_key()). */
const partnerHash = (t: Table, i: number): number => {
  const v = t.vw * i;
  return mix4(
    addrWord(t.v32, v + t.aw, t.aw),
    addrWord(t.v32, v, t.aw),
    rot16(t.v32[v + 2 * t.aw] ?? 0),
    ((t.k32[t.kw * i + 2 * t.aw + 1] ?? 0) ^ 0x100) >>> 0,
  );
};

/** Whether entry j's key is entry i's partner key. */
function isPartnerKey(t: Table, i: number, j: number): boolean {
  const k = t.k32;
  const v = t.v32;
  const aw = t.aw;
  const kj = t.kw * j;
  const vi = t.vw * i;
  for (let w = 0; w < aw; w++) {
    if (k[kj + w] !== v[vi + aw + w] || k[kj + aw + w] !== v[vi + w]) return false;
  }
  return k[kj + 2 * aw] === rot16(v[vi + 2 * aw] ?? 0) && k[kj + 2 * aw + 1] === (((k[t.kw * i + 2 * aw + 1] ?? 0) ^ 0x100) >>> 0);
}

const dirAt = (t: Table, i: number): number => ((t.k32[t.kw * i + 2 * t.aw + 1] ?? 0) >>> 8) & 0xff;
const stateAt = (t: Table, i: number): number => ((t.v32[t.vw * i + 2 * t.aw + 2] ?? 0) >>> 16) & 0xff;
const flagsAt = (t: Table, i: number): number => (t.v32[t.vw * i + 2 * t.aw + 2] ?? 0) >>> 24;
/** last seen as a Number of ns: exact to 2^53 ns (104 days of uptime), a few ns coarse after, which no timeout notices */
const seenAt = (t: Table, i: number): number => {
  const o = t.vw * i + 2 * t.aw + 4;
  return (t.v32[o + 1] ?? 0) * 4294967296 + (t.v32[o] ?? 0);
};
const keyAt = (t: Table, i: number): Buffer => Buffer.from(t.keys.subarray(i * 4 * t.kw, (i + 1) * 4 * t.kw));
const valueAt = (t: Table, i: number): Buffer => t.values.subarray(i * 4 * t.vw, (i + 1) * 4 * t.vw);

/** CLOCK_MONOTONIC in ns: the clock bpf_ktime_get_coarse_ns() reads (coarse: up to a tick behind). */
export function monotonicNs(): bigint {
  return process.hrtime.bigint();
}

export class Nat {
  private readonly maps: NatMaps;
  private current: NatSettings = structuredClone(DEFAULT_NAT_SETTINGS) as NatSettings;
  /** current.timeouts in ns, by state - 1 */
  private timeouts: [number, number, number, number] | undefined;

  constructor(maps: NatMaps) {
    this.maps = maps;
    const v = maps.nat_cfg.lookup(u32Key(0));
    const d = v ? natCfg.decode(v) : undefined;
    if (d && d.timeoutNs[0] > 0n) {
      // A restarted control plane finds the settings the data path runs with (IPv4 sources first).
      const sec = (ns: bigint) => Number(ns / 1_000_000n) / 1000;
      this.current = {
        sources: [...d.sources, ...(d.sources6 ?? [])],
        portMin: d.portMin,
        portMax: d.portMax,
        timeouts: { tcpNewSec: sec(d.timeoutNs[0]), tcpEstablishedSec: sec(d.timeoutNs[1]), tcpClosingSec: sec(d.timeoutNs[2]), udpSec: sec(d.timeoutNs[3]) },
      };
    }
  }

  settings(): NatSettings {
    return structuredClone(this.current);
  }

  /**
   * Writes the settings (missing fields: the current ones, at first the defaults). Returns whether
   * the map changed. Must run before the first nat service is applied: without timeouts every
   * entry would count as expired at once.
   */
  configure(s: Partial<Omit<NatSettings, 'timeouts'>> & { timeouts?: Partial<NatTimeouts> } = {}): boolean {
    const next: NatSettings = {
      sources: s.sources ?? this.current.sources,
      portMin: s.portMin ?? this.current.portMin,
      portMax: s.portMax ?? this.current.portMax,
      timeouts: { ...this.current.timeouts, ...s.timeouts },
    };
    validateNatSettings(next);
    const buf = natCfg.encode({
      sources: sourcesOf(next.sources, 4),
      sources6: sourcesOf(next.sources, 6),
      portMin: next.portMin,
      portMax: next.portMax,
      timeoutNs: timeoutNs(next.timeouts),
    });
    this.current = next;
    this.timeouts = undefined;
    const cur = this.maps.nat_cfg.lookup(u32Key(0));
    if (cur && cur.equals(buf)) return false;
    this.maps.nat_cfg.update(u32Key(0), buf);
    return true;
  }

  /**
   * The interfaces translated packets may leave by through XDP_REDIRECT (every interface the
   * balancer is attached to that NAT traffic crosses). Egress elsewhere goes to the kernel.
   */
  setTxPorts(ifindexes: readonly number[]): void {
    const want = new Set(ifindexes);
    for (const i of want) {
      if (!Number.isInteger(i) || i < 1) throw new LbError('ERR_LB_USAGE', `not an ifindex: ${i}`);
    }
    for (const k of [...this.maps.tx_ports.keys()]) {
      if (!want.has(k.readUInt32LE(0))) this.maps.tx_ports.delete(k);
    }
    for (const i of want) this.maps.tx_ports.update(u32Key(i), u32Key(i));
  }

  txPorts(): number[] {
    return [...this.maps.tx_ports.keys()].map((k) => k.readUInt32LE(0)).sort((a, b) => a - b);
  }

  /** Every entry of a family's map as it holds them: batches of a few thousand per system call where possible. */
  private read(f: Family): Table {
    const m = this.maps[f.map];
    const ks: Buffer[] = [];
    const vs: Buffer[] = [];
    let n = 0;
    if (m.lookupBatch) {
      for (const b of m.lookupBatch()) {
        ks.push(b.keys);
        vs.push(b.values);
        n += b.count;
      }
    } else {
      const seen = new Set<string>();
      for (const k of [...m.keys()]) {
        const id = k.toString('latin1');
        if (seen.has(id)) continue; // a walk that restarted after a concurrent delete repeats keys
        seen.add(id);
        const v = m.lookup(k);
        if (!v) continue;
        ks.push(k);
        vs.push(v);
        n++;
      }
    }
    const keys = Buffer.concat(ks);
    const values = Buffer.concat(vs);
    return { keys, values, k32: words(keys), v32: words(values), n, aw: f.aw, kw: f.key.size / 4, vw: f.entry.size / 4 };
  }

  private timeoutOf(state: number): number {
    this.timeouts ??= timeoutNs(this.current.timeouts).map(Number) as [number, number, number, number];
    return this.timeouts[(state - 1) & 3] ?? 0;
  }

  /**
   * partner[i] = j when entries i and j are the two halves of one connection (each is the
   * other's swapped tuple), else -1: an orphan.
   */
  private pair(t: Table): Int32Array {
    // Open addressing over a typed array (slot = entry index + 1, linear probing, load <= 1/2):
    // a JS Map of a million keys costs several times more.
    let size = 2;
    while (size < 2 * t.n) size *= 2;
    const mask = size - 1;
    const slots = new Int32Array(size);
    for (let i = 0; i < t.n; i++) {
      let s = keyHash(t, i) & mask;
      while (slots[s] !== 0) s = (s + 1) & mask;
      slots[s] = i + 1;
    }
    const partner = new Int32Array(t.n).fill(-1);
    for (let i = 0; i < t.n; i++) {
      if (dirAt(t, i) !== NAT_DIR.forward) continue;
      for (let s = partnerHash(t, i) & mask; slots[s] !== 0; s = (s + 1) & mask) {
        const j = (slots[s] ?? 0) - 1;
        if (isPartnerKey(t, i, j) && isPartnerKey(t, j, i)) {
          partner[i] = j;
          partner[j] = i;
          break;
        }
      }
    }
    return partner;
  }

  /** A connection's state and last-seen: the later of its halves (they differ only mid-update). */
  private merged(t: Table, i: number, j: number): { state: number; seen: number } {
    return { state: Math.max(stateAt(t, i), stateAt(t, j)), seen: Math.max(seenAt(t, i), seenAt(t, j)) };
  }

  /** Active connections of both families, both directions merged, longest idle first. */
  connections(now: bigint = monotonicNs()): NatConnection[] {
    const nowN = Number(now);
    const out: NatConnection[] = [];
    for (const f of FAMILIES) {
      const t = this.read(f);
      const partner = this.pair(t);
      for (let i = 0; i < t.n; i++) {
        const j = partner[i] ?? -1;
        if (j < 0 || dirAt(t, i) !== NAT_DIR.forward) continue;
        const m = this.merged(t, i, j);
        const idle = nowN - m.seen;
        const k = f.key.decode(keyAt(t, i));
        const v = f.entry.decode(valueAt(t, i));
        out.push({
          proto: PROTO_NAMES[k.proto] ?? 'tcp',
          client: k.saddr,
          clientPort: k.sport,
          vip: k.daddr,
          vipPort: k.dport,
          backend: v.daddr,
          backendPort: v.dport,
          source: v.saddr,
          sourcePort: v.sport,
          fullNat: (v.flags & NAT_F_FULL) !== 0,
          serviceId: v.serviceId,
          backendId: v.backendId,
          state: NAT_STATE_NAMES[m.state] ?? 'tcpNew',
          idleMs: Math.max(0, Math.round(idle / 1e6)),
          expiresInMs: Math.round((this.timeoutOf(m.state) - idle) / 1e6),
        });
      }
    }
    return out.sort((a, b) => b.idleMs - a.idleMs);
  }

  /** Both tables together. */
  count(now: bigint = monotonicNs()): NatCount {
    const nowN = Number(now);
    const byState: Record<NatState, number> = { tcpNew: 0, tcpEstablished: 0, tcpClosing: 0, udp: 0 };
    let connections = 0;
    let entries = 0;
    let orphans = 0;
    let expired = 0;
    let fullNat = 0;
    for (const f of FAMILIES) {
      const t = this.read(f);
      const partner = this.pair(t);
      entries += t.n;
      for (let i = 0; i < t.n; i++) {
        const j = partner[i] ?? -1;
        if (j < 0) {
          orphans++;
          continue;
        }
        if (dirAt(t, i) !== NAT_DIR.forward) continue;
        connections++;
        const m = this.merged(t, i, j);
        const name = NAT_STATE_NAMES[m.state];
        if (name) byState[name]++;
        if (nowN - m.seen > this.timeoutOf(m.state)) expired++;
        if (flagsAt(t, i) & NAT_F_FULL) fullNat++;
      }
    }
    return { connections, entries, orphans, fullNat, byState, expired };
  }

  /**
   * Deletes connections idle past their state's timeout (plus SWEEP_GRACE_NS), forward entries
   * whose reverse half is gone, and reverse entries left without a forward one for longer than
   * ORPHAN_GRACE_NS, in both tables. A forward entry is read again right before its delete and
   * kept if the data path rebuilt it meanwhile (a new connection on the same tuple).
   */
  sweep(now: bigint = monotonicNs()): SweepReport {
    const started = Date.now();
    const r = { connections: 0, orphans: 0, remaining: 0 };
    for (const f of FAMILIES) {
      const one = this.sweepTable(f, now);
      r.connections += one.connections;
      r.orphans += one.orphans;
      r.remaining += one.remaining;
    }
    return { ...r, elapsedMs: Date.now() - started };
  }

  private sweepTable(f: Family, now: bigint): Omit<SweepReport, 'elapsedMs'> {
    const t = this.read(f);
    const partner = this.pair(t);
    const nowN = Number(now);
    const grace = Number(SWEEP_GRACE_NS);
    const m = this.maps[f.map];
    let connections = 0;
    let lone = 0;
    let deleted = 0;
    const unchanged = (i: number): Buffer | undefined => {
      const k = keyAt(t, i);
      const v = m.lookup(k);
      return v !== undefined && v.equals(valueAt(t, i)) ? k : undefined;
    };
    for (let i = 0; i < t.n; i++) {
      const j = partner[i] ?? -1;
      if (j >= 0) {
        if (dirAt(t, i) !== NAT_DIR.forward) continue;
        const mg = this.merged(t, i, j);
        if (nowN - mg.seen <= this.timeoutOf(mg.state) + grace) continue;
        // Reverse first, then the forward entry only if it is still the expired one: a client
        // packet that comes in between finds it stale and builds a new pair (nat_forward), which
        // must stay. The other order could delete the reverse half of such a new pair, with
        // nothing to repair it.
        if (m.delete(keyAt(t, j))) deleted++;
        const fk = unchanged(i);
        if (fk && m.delete(fk)) deleted++;
        connections++;
        continue;
      }
      if (dirAt(t, i) === NAT_DIR.reverse && nowN - seenAt(t, i) <= Number(ORPHAN_GRACE_NS)) continue;
      const k = unchanged(i);
      if (k && m.delete(k)) {
        deleted++;
        lone++;
      }
    }
    return { connections, orphans: lone, remaining: t.n - deleted };
  }

  /** Sweeps every intervalMs until stop(); the timer does not keep the process alive. */
  startSweeper(intervalMs = 5000, onResult?: (r: SweepReport | Error) => void): { stop(): void } {
    if (!(Number.isInteger(intervalMs) && intervalMs >= 100)) throw new LbError('ERR_LB_USAGE', `sweep interval ${intervalMs} ms is below 100 ms`);
    const timer = setInterval(() => {
      try {
        const r = this.sweep();
        onResult?.(r);
      } catch (e) {
        onResult?.(e instanceof Error ? e : new Error(String(e)));
      }
    }, intervalMs);
    timer.unref();
    return { stop: () => clearInterval(timer) };
  }
}
