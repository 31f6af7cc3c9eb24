/**
 * TypeScript side of the map contract (bpf/lb_abi.h): one codec per key/value struct.
 *
 * Each codec declares its C name, size and field offsets; test/dataplane/abi.test.ts compares
 * those declarations with the BTF of the built object (the way Cilium's alignchecker does), so a
 * change to the header that is not mirrored here fails the tests instead of corrupting maps.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { LbError } from '../errors.js';

export const LB_MODE = { l2dsr: 1, ipip: 2, nat: 3 } as const;
export type LbMode = keyof typeof LB_MODE;
export const MODE_NAMES: Record<number, LbMode> = { 1: 'l2dsr', 2: 'ipip', 3: 'nat' };

export const SVC_F_HASH_SRC_ONLY = 1 << 0;
export const SVC_F_DOWN_PASS = 1 << 1;
export const SVC_F_FULL_NAT = 1 << 2;
export const BE_F_VALID = 1 << 0;
export const FAMILY_V4 = 4;
export const FAMILY_V6 = 6;
export const BACKEND_NONE = 0;
export const MAX_BACKEND_ID = 0xffff;
export const RING_CHUNK = 32;
export const FLOW_WAYS = 4;

export const IPPROTO = { tcp: 6, udp: 17 } as const;
export type Proto = keyof typeof IPPROTO;
export const PROTO_NAMES: Record<number, Proto> = { 6: 'tcp', 17: 'udp' };

/** A field as BTF will describe it: byte offset and size. */
export interface FieldLayout {
  name: string;
  offset: number;
  size: number;
}

export interface Codec<T> {
  /** the C struct's name in lb_abi.h */
  cName: string;
  size: number;
  fields: readonly FieldLayout[];
  encode(v: T): Buffer;
  decode(b: Buffer): T;
}

// ---- addresses -----------------------------------------------------------------------------

/** Writes an address into a 16-byte __be32[4] slot; IPv4 goes in the first word. */
export function writeAddr(b: Buffer, off: number, addr: string): number {
  if (isIPv4(addr)) {
    addr.split('.').forEach((p, i) => b.writeUInt8(Number(p), off + i));
    return FAMILY_V4;
  }
  if (isIPv6(addr)) {
    ipv6Bytes(addr).copy(b, off);
    return FAMILY_V6;
  }
  throw new LbError('ERR_LB_DATAPLANE', `not an IP address: ${JSON.stringify(addr)}`);
}

function putIpv4(b: Buffer, off: number, addr: string): void {
  if (!isIPv4(addr)) throw new LbError('ERR_LB_DATAPLANE', `not an IPv4 address: ${JSON.stringify(addr)}`);
  writeAddr(b, off, addr);
}

function putIpv6(b: Buffer, off: number, addr: string): void {
  if (!isIPv6(addr)) throw new LbError('ERR_LB_DATAPLANE', `not an IPv6 address: ${JSON.stringify(addr)}`);
  writeAddr(b, off, addr);
}

function ipv4At(b: Buffer, off: number): string {
  return readAddr(b, off, FAMILY_V4);
}

function ipv6At(b: Buffer, off: number): string {
  return readAddr(b, off, FAMILY_V6);
}

export function readAddr(b: Buffer, off: number, family: number): string {
  if (family === FAMILY_V6) {
    const parts: string[] = [];
    for (let i = 0; i < 8; i++) parts.push(b.readUInt16BE(off + 2 * i).toString(16));
    return compressV6(parts);
  }
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

function ipv6Bytes(addr: string): Buffer {
  const [head = '', tail] = addr.split('::');
  const words = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const h = words(head);
  const t = tail === undefined ? [] : words(tail);
  // An embedded IPv4 tail (::ffff:1.2.3.4) is two words.
  const expand = (ws: string[]): number[] =>
    ws.flatMap((w) => {
      if (w.includes('.')) {
        const o = w.split('.').map(Number) as [number, number, number, number];
        return [(o[0] << 8) | o[1], (o[2] << 8) | o[3]];
      }
      return [parseInt(w, 16)];
    });
  const hw = expand(h);
  const tw = expand(t);
  const fill = tail === undefined ? [] : new Array<number>(8 - hw.length - tw.length).fill(0);
  const all = [...hw, ...fill, ...tw];
  const out = Buffer.alloc(16);
  all.forEach((w, i) => out.writeUInt16BE(w, 2 * i));
  return out;
}

function compressV6(parts: string[]): string {
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (parts[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && parts[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return parts.join(':');
  return `${parts.slice(0, best).join(':')}::${parts.slice(best + bestLen).join(':')}`;
}

export function writeMac(b: Buffer, off: number, mac: string): void {
  const parts = mac.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{1,2}$/.test(p))) {
    throw new LbError('ERR_LB_DATAPLANE', `not a MAC address: ${JSON.stringify(mac)}`);
  }
  parts.forEach((p, i) => b.writeUInt8(parseInt(p, 16), off + i));
}

export function readMac(b: Buffer, off: number): string {
  return [...b.subarray(off, off + 6)].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

// ---- structs -------------------------------------------------------------------------------

export interface ServiceKey {
  addr: string;
  port: number;
  proto: number;
}

export const serviceKey: Codec<ServiceKey> = {
  cName: 'lb_service_key',
  size: 20,
  fields: [
    { name: 'addr', offset: 0, size: 16 },
    { name: 'port', offset: 16, size: 2 },
    { name: 'proto', offset: 18, size: 1 },
    { name: 'family', offset: 19, size: 1 },
  ],
  encode(v) {
    const b = Buffer.alloc(20);
    const family = writeAddr(b, 0, v.addr);
    b.writeUInt16BE(v.port, 16);
    b.writeUInt8(v.proto, 18);
    b.writeUInt8(family, 19);
    return b;
  },
  decode(b) {
    return { addr: readAddr(b, 0, b.readUInt8(19)), port: b.readUInt16BE(16), proto: b.readUInt8(18) };
  },
};

export interface ServiceValue {
  id: number;
  mode: number;
  flags: number;
}

export const serviceValue: Codec<ServiceValue> = {
  cName: 'lb_service',
  size: 8,
  fields: [
    { name: 'id', offset: 0, size: 4 },
    { name: 'mode', offset: 4, size: 1 },
    { name: 'flags', offset: 5, size: 1 },
    { name: 'pad', offset: 6, size: 2 },
  ],
  encode(v) {
    const b = Buffer.alloc(8);
    b.writeUInt32LE(v.id, 0);
    b.writeUInt8(v.mode, 4);
    b.writeUInt8(v.flags, 5);
    return b;
  },
  decode(b) {
    return { id: b.readUInt32LE(0), mode: b.readUInt8(4), flags: b.readUInt8(5) };
  },
};

export const ringChunk: Codec<Uint16Array> = {
  cName: 'lb_ring_chunk',
  size: 64,
  fields: [{ name: 'backend', offset: 0, size: 64 }],
  encode(v) {
    const b = Buffer.alloc(64);
    for (let i = 0; i < RING_CHUNK; i++) b.writeUInt16LE(v[i] ?? 0, 2 * i);
    return b;
  },
  decode(b) {
    const out = new Uint16Array(RING_CHUNK);
    for (let i = 0; i < RING_CHUNK; i++) out[i] = b.readUInt16LE(2 * i);
    return out;
  },
};

export interface BackendValue {
  addr: string;
  mac: string;
  flags: number;
  /** NAT target port, 0 = the VIP's */
  port: number;
  serviceId: number;
}

export const backendValue: Codec<BackendValue> = {
  cName: 'lb_backend',
  size: 32,
  fields: [
    { name: 'addr', offset: 0, size: 16 },
    { name: 'mac', offset: 16, size: 6 },
    { name: 'family', offset: 22, size: 1 },
    { name: 'flags', offset: 23, size: 1 },
    { name: 'port', offset: 24, size: 2 },
    { name: 'pad', offset: 26, size: 2 },
    { name: 'service_id', offset: 28, size: 4 },
  ],
  encode(v) {
    const b = Buffer.alloc(32);
    const family = writeAddr(b, 0, v.addr);
    writeMac(b, 16, v.mac);
    b.writeUInt8(family, 22);
    b.writeUInt8(v.flags, 23);
    b.writeUInt16BE(v.port, 24);
    b.writeUInt32LE(v.serviceId, 28);
    return b;
  },
  decode(b) {
    return {
      addr: readAddr(b, 0, b.readUInt8(22)),
      mac: readMac(b, 16),
      flags: b.readUInt8(23),
      port: b.readUInt16BE(24),
      serviceId: b.readUInt32LE(28),
    };
  },
};

/** One flow-table way, unpacked. */
export interface FlowWay {
  fingerprint: number;
  backend: number;
  seen: number;
}

export const flowBucket: Codec<FlowWay[]> = {
  cName: 'lb_flow_bucket',
  size: 32,
  fields: [{ name: 'way', offset: 0, size: 32 }],
  encode(ways) {
    const b = Buffer.alloc(32);
    ways.slice(0, FLOW_WAYS).forEach((w, i) => {
      b.writeUInt16LE(w.seen, 8 * i);
      b.writeUInt16LE(w.backend, 8 * i + 2);
      b.writeUInt32LE(w.fingerprint >>> 0, 8 * i + 4);
    });
    return b;
  },
  decode(b) {
    const out: FlowWay[] = [];
    for (let i = 0; i < FLOW_WAYS; i++) {
      out.push({
        seen: b.readUInt16LE(8 * i),
        backend: b.readUInt16LE(8 * i + 2),
        fingerprint: b.readUInt32LE(8 * i + 4),
      });
    }
    return out;
  },
};

export interface CtlValue {
  /** outer source for tunnels to IPv4 backends; '' = none */
  src4: string;
  /** outer source for tunnels to IPv6 backends; '' or absent = none */
  src6?: string;
  clock: number;
}

export const ctlValue: Codec<CtlValue> = {
  cName: 'lb_ctl',
  size: 24,
  fields: [
    { name: 'src4', offset: 0, size: 4 },
    { name: 'clock', offset: 4, size: 2 },
    { name: 'pad', offset: 6, size: 2 },
    { name: 'src6', offset: 8, size: 16 },
  ],
  encode(v) {
    const b = Buffer.alloc(24);
    if (v.src4 !== '') putIpv4(b, 0, v.src4);
    b.writeUInt16LE(v.clock & 0xffff, 4);
    if (v.src6) putIpv6(b, 8, v.src6);
    return b;
  },
  decode(b) {
    const src6 = b.subarray(8, 24).some((x) => x !== 0) ? readAddr(b, 8, FAMILY_V6) : '';
    return { src4: b.readUInt32LE(0) === 0 ? '' : readAddr(b, 0, FAMILY_V4), src6, clock: b.readUInt16LE(4) };
  },
};

export interface Counters {
  packets: bigint;
  bytes: bigint;
  newFlows: bigint;
}

export const counters: Codec<Counters> = {
  cName: 'lb_counters',
  size: 24,
  fields: [
    { name: 'packets', offset: 0, size: 8 },
    { name: 'bytes', offset: 8, size: 8 },
    { name: 'new_flows', offset: 16, size: 8 },
  ],
  encode(v) {
    const b = Buffer.alloc(24);
    b.writeBigUInt64LE(v.packets, 0);
    b.writeBigUInt64LE(v.bytes, 8);
    b.writeBigUInt64LE(v.newFlows, 16);
    return b;
  },
  decode(b) {
    return { packets: b.readBigUInt64LE(0), bytes: b.readBigUInt64LE(8), newFlows: b.readBigUInt64LE(16) };
  },
};

/** Sums per-CPU copies of a counters value. */
export function sumCounters(perCpu: readonly Buffer[]): Counters {
  const total: Counters = { packets: 0n, bytes: 0n, newFlows: 0n };
  for (const b of perCpu) {
    const c = counters.decode(b);
    total.packets += c.packets;
    total.bytes += c.bytes;
    total.newFlows += c.newFlows;
  }
  return total;
}

// ---- NAT (bpf/lib/nat.h) -------------------------------------------------------------------

export const NAT_DIR = { forward: 0, reverse: 1 } as const;
export const NAT_STATE = { tcpNew: 1, tcpEstablished: 2, tcpClosing: 3, udp: 4 } as const;
export type NatState = keyof typeof NAT_STATE;
export const NAT_STATE_NAMES: Record<number, NatState> = { 1: 'tcpNew', 2: 'tcpEstablished', 3: 'tcpClosing', 4: 'udp' };
export const NAT_F_FULL = 1 << 0;
export const NAT_MAX_SOURCES = 4;

/** A packet's 5-tuple as it arrives in one direction; ports in host order here, network order in the map. */
export interface NatKey {
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  proto: number;
  /** NAT_DIR */
  dir: number;
}

/**
 * The NAT key and entry codecs of one address family: lb_nat_key/lb_nat_entry (IPv4, 4-byte
 * addresses) and lb_nat6_key/lb_nat6_entry (IPv6, 16-byte) lay out the same fields, the addresses
 * first, so every offset follows from the address size.
 */
function natKeyCodec(cName: string, family: typeof FAMILY_V4 | typeof FAMILY_V6): Codec<NatKey> {
  const a = family === FAMILY_V4 ? 4 : 16;
  const put = family === FAMILY_V4 ? putIpv4 : putIpv6;
  const size = 2 * a + 8;
  return {
    cName,
    size,
    fields: [
      { name: 'saddr', offset: 0, size: a },
      { name: 'daddr', offset: a, size: a },
      { name: 'sport', offset: 2 * a, size: 2 },
      { name: 'dport', offset: 2 * a + 2, size: 2 },
      { name: 'proto', offset: 2 * a + 4, size: 1 },
      { name: 'dir', offset: 2 * a + 5, size: 1 },
      { name: 'pad', offset: 2 * a + 6, size: 2 },
    ],
    encode(v) {
      const b = Buffer.alloc(size);
      put(b, 0, v.saddr);
      put(b, a, v.daddr);
      b.writeUInt16BE(v.sport, 2 * a);
      b.writeUInt16BE(v.dport, 2 * a + 2);
      b.writeUInt8(v.proto, 2 * a + 4);
      b.writeUInt8(v.dir, 2 * a + 5);
      return b;
    },
    decode(b) {
      return {
        saddr: readAddr(b, 0, family),
        daddr: readAddr(b, a, family),
        sport: b.readUInt16BE(2 * a),
        dport: b.readUInt16BE(2 * a + 2),
        proto: b.readUInt8(2 * a + 4),
        dir: b.readUInt8(2 * a + 5),
      };
    },
  };
}

/** What a packet of that direction is rewritten to, and the connection's bookkeeping. */
export interface NatEntry {
  saddr: string;
  daddr: string;
  sport: number;
  dport: number;
  serviceId: number;
  backendId: number;
  /** NAT_STATE */
  state: number;
  flags: number;
  /** ns of CLOCK_MONOTONIC, the clock of process.hrtime.bigint() */
  lastSeen: bigint;
}

function natEntryCodec(cName: string, family: typeof FAMILY_V4 | typeof FAMILY_V6): Codec<NatEntry> {
  const a = family === FAMILY_V4 ? 4 : 16;
  const put = family === FAMILY_V4 ? putIpv4 : putIpv6;
  const o = 2 * a; // first field after the addresses
  const size = o + 24;
  return {
    cName,
    size,
    fields: [
      { name: 'saddr', offset: 0, size: a },
      { name: 'daddr', offset: a, size: a },
      { name: 'sport', offset: o, size: 2 },
      { name: 'dport', offset: o + 2, size: 2 },
      { name: 'service_id', offset: o + 4, size: 4 },
      { name: 'backend_id', offset: o + 8, size: 2 },
      { name: 'state', offset: o + 10, size: 1 },
      { name: 'flags', offset: o + 11, size: 1 },
      { name: 'pad', offset: o + 12, size: 4 },
      { name: 'last_seen', offset: o + 16, size: 8 },
    ],
    encode(v) {
      const b = Buffer.alloc(size);
      put(b, 0, v.saddr);
      put(b, a, v.daddr);
      b.writeUInt16BE(v.sport, o);
      b.writeUInt16BE(v.dport, o + 2);
      b.writeUInt32LE(v.serviceId, o + 4);
      b.writeUInt16LE(v.backendId, o + 8);
      b.writeUInt8(v.state, o + 10);
      b.writeUInt8(v.flags, o + 11);
      b.writeBigUInt64LE(v.lastSeen, o + 16);
      return b;
    },
    decode(b) {
      return {
        saddr: readAddr(b, 0, family),
        daddr: readAddr(b, a, family),
        sport: b.readUInt16BE(o),
        dport: b.readUInt16BE(o + 2),
        serviceId: b.readUInt32LE(o + 4),
        backendId: b.readUInt16LE(o + 8),
        state: b.readUInt8(o + 10),
        flags: b.readUInt8(o + 11),
        lastSeen: b.readBigUInt64LE(o + 16),
      };
    },
  };
}

export const natKey = natKeyCodec('lb_nat_key', FAMILY_V4);
export const natEntry = natEntryCodec('lb_nat_entry', FAMILY_V4);
export const nat6Key = natKeyCodec('lb_nat6_key', FAMILY_V6);
export const nat6Entry = natEntryCodec('lb_nat6_entry', FAMILY_V6);

export interface NatCfgValue {
  /** full-NAT source addresses (IPv4), at most NAT_MAX_SOURCES */
  sources: string[];
  /** full-NAT66 source addresses (IPv6), at most NAT_MAX_SOURCES; absent = none */
  sources6?: string[];
  portMin: number;
  portMax: number;
  /** idle timeouts by state, ns: tcpNew, tcpEstablished, tcpClosing, udp */
  timeoutNs: [bigint, bigint, bigint, bigint];
}

export const natCfg: Codec<NatCfgValue> = {
  cName: 'lb_nat_cfg',
  size: 128,
  fields: [
    { name: 'source', offset: 0, size: 16 },
    { name: 'n_sources', offset: 16, size: 4 },
    { name: 'port_min', offset: 20, size: 2 },
    { name: 'port_max', offset: 22, size: 2 },
    { name: 'timeout_ns', offset: 24, size: 32 },
    { name: 'source6', offset: 56, size: 64 },
    { name: 'n_sources6', offset: 120, size: 4 },
    { name: 'pad', offset: 124, size: 4 },
  ],
  encode(v) {
    const sources6 = v.sources6 ?? [];
    for (const [n, what] of [[v.sources.length, 'full-NAT'], [sources6.length, 'full-NAT66']] as const) {
      if (n > NAT_MAX_SOURCES) throw new LbError('ERR_LB_DATAPLANE', `${n} ${what} source addresses, at most ${NAT_MAX_SOURCES}`);
    }
    const b = Buffer.alloc(128);
    v.sources.forEach((a, i) => putIpv4(b, 4 * i, a));
    b.writeUInt32LE(v.sources.length, 16);
    b.writeUInt16LE(v.portMin, 20);
    b.writeUInt16LE(v.portMax, 22);
    v.timeoutNs.forEach((t, i) => b.writeBigUInt64LE(t, 24 + 8 * i));
    sources6.forEach((a, i) => putIpv6(b, 56 + 16 * i, a));
    b.writeUInt32LE(sources6.length, 120);
    return b;
  },
  decode(b) {
    const n = Math.min(b.readUInt32LE(16), NAT_MAX_SOURCES);
    const n6 = Math.min(b.readUInt32LE(120), NAT_MAX_SOURCES);
    const t = (i: number) => b.readBigUInt64LE(24 + 8 * i);
    return {
      sources: Array.from({ length: n }, (_, i) => ipv4At(b, 4 * i)),
      sources6: Array.from({ length: n6 }, (_, i) => ipv6At(b, 56 + 16 * i)),
      portMin: b.readUInt16LE(20),
      portMax: b.readUInt16LE(22),
      timeoutNs: [t(0), t(1), t(2), t(3)],
    };
  },
};

export const ALL_CODECS: readonly Codec<unknown>[] = [
  serviceKey,
  serviceValue,
  ringChunk,
  backendValue,
  flowBucket,
  ctlValue,
  counters,
  natKey,
  natEntry,
  nat6Key,
  nat6Entry,
  natCfg,
] as Codec<unknown>[];

/** u32 array keys, host order. */
export function u32Key(i: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(i >>> 0, 0);
  return b;
}
