/**
 * NAT mode, control-plane side (the data path is bpf/lib/nat.h): the node-wide settings (full-NAT
 * source addresses, port range, timeouts), the devmap of interfaces translated packets may be
 * redirected to, and the connection table: list it, count it, and sweep it.
 *
 * The data path only ever adds entries; the sweeper deletes them. A connection is two entries
 * (forward and reverse, lb_abi.h), which carry the same state and last-seen time; the sweeper
 * deletes a pair once it has been idle longer than its state's timeout, which returns a full-NAT
 * port to the pool (a port is free exactly when no reverse entry holds it). The data path already
 * treats such a pair as absent between sweeps, so the sweep interval only bounds how long a dead
 * connection occupies table space, never how long it lives.
 */
import { isIPv4 } from 'node:net';
import { LbError } from '../errors.js';
import {
  NAT_DIR,
  NAT_F_FULL,
  NAT_MAX_SOURCES,
  NAT_STATE_NAMES,
  PROTO_NAMES,
  natCfg,
  natEntry,
  natKey,
  u32Key,
  type NatEntry,
  type NatKey,
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
  /** full-NAT source addresses (IPv4, the LB's own), at most 4; a connection's is chosen by hash */
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

export function validateNatSettings(s: NatSettings): void {
  const bad: string[] = [];
  if (s.sources.length > NAT_MAX_SOURCES) bad.push(`sources: ${s.sources.length} given, at most ${NAT_MAX_SOURCES}`);
  s.sources.forEach((a, i) => {
    if (!isIPv4(a)) bad.push(`sources[${i}]: ${JSON.stringify(a)} is not an IPv4 address`);
  });
  if (new Set(s.sources).size !== s.sources.length) bad.push('sources: duplicate address');
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
      if (!isIPv4(b.address)) continue;
      const bit = vipFilterBit(b.address);
      filter[bit >> 6] = (filter[bit >> 6] ?? 0n) | (1n << BigInt(bit & 63));
    }
  }
  return filter;
}

/**
 * Where nat_forward() tries first for a new full-NAT connection: the source address index
 * (h1 mod n) and the first probed port (portMin + h2 reduced into the range). The next probes
 * are the following ports, wrapping inside the range.
 */
export function fullNatFirstChoice(f: FlowTuple, seed: number, s: Pick<NatSettings, 'sources' | 'portMin' | 'portMax'>): { source: string; port: number } {
  const h = flowHash(f, seed);
  const n = s.sources.length;
  if (n === 0) throw new LbError('ERR_LB_USAGE', 'no full-NAT source addresses');
  return {
    source: s.sources[(h.h1 >>> 0) % n] as string,
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

export interface NatMaps {
  nat_conns: MapHandle;
  nat_cfg: MapHandle;
  tx_ports: MapHandle;
}

interface RawEntry {
  keyBuf: Buffer;
  key: NatKey;
  value: NatEntry;
  valueBuf: Buffer;
}

function partnerKey(k: NatKey, v: NatEntry): NatKey {
  return { saddr: v.daddr, daddr: v.saddr, sport: v.dport, dport: v.sport, proto: k.proto, dir: k.dir ^ 1 };
}

function pointsTo(p: NatEntry, k: NatKey): boolean {
  return p.saddr === k.daddr && p.daddr === k.saddr && p.sport === k.dport && p.dport === k.sport;
}

function keyId(b: Buffer): string {
  return b.toString('hex');
}

/** CLOCK_MONOTONIC in ns: the clock bpf_ktime_get_coarse_ns() reads (coarse: up to a tick behind). */
export function monotonicNs(): bigint {
  return process.hrtime.bigint();
}

export class Nat {
  private readonly maps: NatMaps;
  private current: NatSettings = structuredClone(DEFAULT_NAT_SETTINGS) as NatSettings;

  constructor(maps: NatMaps) {
    this.maps = maps;
    const v = maps.nat_cfg.lookup(u32Key(0));
    const d = v ? natCfg.decode(v) : undefined;
    if (d && d.timeoutNs[0] > 0n) {
      // A restarted control plane finds the settings the data path runs with.
      const sec = (ns: bigint) => Number(ns / 1_000_000n) / 1000;
      this.current = {
        sources: d.sources,
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
    const buf = natCfg.encode({ sources: next.sources, portMin: next.portMin, portMax: next.portMax, timeoutNs: timeoutNs(next.timeouts) });
    this.current = next;
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

  /** Every entry as the map holds it (a snapshot: one key walk, then the values). */
  private snapshot(): Map<string, RawEntry> {
    const out = new Map<string, RawEntry>();
    const keys = [...this.maps.nat_conns.keys()];
    for (const keyBuf of keys) {
      const id = keyId(keyBuf);
      if (out.has(id)) continue; // a walk that restarted after a concurrent delete repeats keys
      const valueBuf = this.maps.nat_conns.lookup(keyBuf);
      if (!valueBuf) continue;
      out.set(id, { keyBuf, key: natKey.decode(keyBuf), value: natEntry.decode(valueBuf), valueBuf });
    }
    return out;
  }

  private timeoutOf(state: number): bigint {
    const t = timeoutNs(this.current.timeouts);
    return t[(state - 1) & 3] ?? 0n;
  }

  /** Pairs forward entries with their reverse ones; what is left over is an orphan. */
  private pairs(snap: Map<string, RawEntry>): { pairs: [RawEntry, RawEntry][]; orphans: RawEntry[] } {
    const pairs: [RawEntry, RawEntry][] = [];
    const paired = new Set<string>();
    for (const [id, e] of snap) {
      if (e.key.dir !== NAT_DIR.forward) continue;
      const pk = natKey.encode(partnerKey(e.key, e.value));
      const p = snap.get(keyId(pk));
      if (p && pointsTo(p.value, e.key) && pointsTo(e.value, p.key)) {
        pairs.push([e, p]);
        paired.add(id);
        paired.add(keyId(pk));
      }
    }
    const orphans = [...snap].filter(([id]) => !paired.has(id)).map(([, e]) => e);
    return { pairs, orphans };
  }

  private merged(a: NatEntry, b: NatEntry): { state: number; lastSeen: bigint } {
    return { state: Math.max(a.state, b.state), lastSeen: a.lastSeen > b.lastSeen ? a.lastSeen : b.lastSeen };
  }

  /** Active connections, both directions merged, oldest activity first. */
  connections(now: bigint = monotonicNs()): NatConnection[] {
    const { pairs } = this.pairs(this.snapshot());
    const out: NatConnection[] = [];
    for (const [f, r] of pairs) {
      const m = this.merged(f.value, r.value);
      const idle = now - m.lastSeen;
      out.push({
        proto: PROTO_NAMES[f.key.proto] ?? 'tcp',
        client: f.key.saddr,
        clientPort: f.key.sport,
        vip: f.key.daddr,
        vipPort: f.key.dport,
        backend: f.value.daddr,
        backendPort: f.value.dport,
        source: f.value.saddr,
        sourcePort: f.value.sport,
        fullNat: (f.value.flags & NAT_F_FULL) !== 0,
        serviceId: f.value.serviceId,
        backendId: f.value.backendId,
        state: NAT_STATE_NAMES[m.state] ?? 'tcpNew',
        idleMs: Math.max(0, Number(idle / 1_000_000n)),
        expiresInMs: Number((this.timeoutOf(m.state) - idle) / 1_000_000n),
      });
    }
    return out.sort((a, b) => b.idleMs - a.idleMs);
  }

  count(now: bigint = monotonicNs()): NatCount {
    const snap = this.snapshot();
    const { pairs, orphans } = this.pairs(snap);
    const byState: Record<NatState, number> = { tcpNew: 0, tcpEstablished: 0, tcpClosing: 0, udp: 0 };
    let expired = 0;
    let fullNat = 0;
    for (const [f, r] of pairs) {
      const m = this.merged(f.value, r.value);
      const name = NAT_STATE_NAMES[m.state];
      if (name) byState[name]++;
      if (now - m.lastSeen > this.timeoutOf(m.state)) expired++;
      if (f.value.flags & NAT_F_FULL) fullNat++;
    }
    return { connections: pairs.length, entries: snap.size, orphans: orphans.length, fullNat, byState, expired };
  }

  /**
   * Deletes connections idle past their state's timeout, forward entries whose reverse half is
   * gone, and reverse entries left without a forward one for longer than ORPHAN_GRACE_NS. Each
   * entry is read again right before its delete, and kept if the data path touched it meanwhile.
   */
  sweep(now: bigint = monotonicNs()): SweepReport {
    const started = Date.now();
    const snap = this.snapshot();
    const { pairs, orphans } = this.pairs(snap);
    let connections = 0;
    let lone = 0;
    let deleted = 0;
    const unchanged = (e: RawEntry): boolean => {
      const v = this.maps.nat_conns.lookup(e.keyBuf);
      return v !== undefined && v.equals(e.valueBuf);
    };
    for (const [f, r] of pairs) {
      const m = this.merged(f.value, r.value);
      if (now - m.lastSeen <= this.timeoutOf(m.state)) continue;
      // Reverse first, then the forward entry only if it is still the expired one: a client packet
      // that comes in between finds it stale and builds a new pair (nat_forward), which must stay.
      // The other order could delete the reverse half of such a new pair, with nothing to repair it.
      if (!unchanged(f) || !unchanged(r)) continue;
      if (this.maps.nat_conns.delete(r.keyBuf)) deleted++;
      if (unchanged(f) && this.maps.nat_conns.delete(f.keyBuf)) deleted++;
      connections++;
    }
    for (const e of orphans) {
      const idle = now - e.value.lastSeen;
      if (e.key.dir === NAT_DIR.reverse && idle <= ORPHAN_GRACE_NS) continue;
      if (!unchanged(e)) continue;
      if (this.maps.nat_conns.delete(e.keyBuf)) {
        deleted++;
        lone++;
      }
    }
    return { connections, orphans: lone, remaining: snap.size - deleted, elapsedMs: Date.now() - started };
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
