/**
 * Packet builder for fixtures. One plain object describes a packet from the outside in; every field
 * has a sensible default, lengths and checksums are derived from what is actually built, and every
 * derived value can be overridden so a test can build the malformed packet it needs.
 *
 *   packet({ ipv4: { dst: '10.0.0.10' }, tcp: { dstPort: 443, flags: ['SYN'] } })
 *   packet({ ipv4: { src: lb, dst: real }, inner: { ipv4: { dst: vip }, udp: {} } })   // IPIP
 *
 * Defaults use the documentation ranges (RFC 5737, RFC 3849) and locally administered MACs, so a
 * fixture that forgets an address cannot collide with a real one.
 */
import { LbError } from '../errors.js';
import { parseIpv4, parseIpv6, parseMac } from './addr.js';
import {
  PROTO_ICMP,
  PROTO_ICMPV6,
  PROTO_IPIP,
  PROTO_IPV6,
  PROTO_TCP,
  PROTO_UDP,
  icmpChecksum,
  icmpv6Checksum,
  ipv4HeaderChecksum,
  ipv6PseudoDestination,
  tcpChecksum,
  udpChecksum,
} from './checksum.js';

export const DEFAULTS = {
  ethSrc: '02:00:00:00:00:01',
  ethDst: '02:00:00:00:00:02',
  ipv4Src: '192.0.2.1',
  ipv4Dst: '198.51.100.1',
  ipv6Src: '2001:db8::1',
  ipv6Dst: '2001:db8::2',
  srcPort: 40000,
  dstPort: 80,
  ttl: 64,
} as const;

export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
export const ETH_P_8021Q = 0x8100;
/** IEEE "local experimental" ethertype: what a frame carries when the spec names no IP layer. */
export const ETH_P_LOCAL_EXP = 0x88b5;
/** RFC 3692 experimental protocol number, for an IPv4 packet with neither L4 nor inner packet. */
export const PROTO_EXPERIMENTAL = 253;
export const PROTO_NONE_V6 = 59;
export const MIN_FRAME = 60;

export type Bytes = Uint8Array | string;

export interface EthSpec {
  dst?: string;
  src?: string;
  /** The type of what follows the MACs and the VLAN tag, if any. Default: from the IP layer. */
  ethertype?: number;
}

export interface VlanSpec {
  vid?: number;
  pcp?: number;
  dei?: boolean;
  /** 0x8100 by default; 0x88a8 for an S-tag. */
  tpid?: number;
}

export type Ipv4Flag = 'RF' | 'DF' | 'MF';

export interface Ipv4Spec {
  src?: string;
  dst?: string;
  /** Default: from the layer above (tcp 6, udp 17, icmp 1, inner IPv4 4, inner IPv6 41). */
  proto?: number;
  ttl?: number;
  tos?: number;
  id?: number;
  flags?: Ipv4Flag[] | number;
  /** In 8-byte units, as on the wire. */
  fragOffset?: number;
  /** Padded with zeros (EOL) to a multiple of 4; IHL follows. */
  options?: Uint8Array;
  ihl?: number;
  totalLength?: number;
  checksum?: number;
  version?: number;
}

interface ExtCommon {
  /** Default: the protocol number of the next extension or of the upper layer. */
  nextHeader?: number;
}

export interface OptionsExtSpec extends ExtCommon {
  type: 'hopByHop' | 'destOpts';
  /** TLV-encoded options; Pad1/PadN are added to reach a multiple of 8 bytes. */
  options?: Uint8Array;
  hdrExtLen?: number;
}

export interface RoutingExtSpec extends ExtCommon {
  type: 'routing';
  routingType?: number;
  segmentsLeft?: number;
  /** Written after 4 reserved bytes (types 0/2; for type 4 those are last entry, flags, tag). */
  addresses?: string[];
  /** Type-specific data after segments left; used instead of addresses. Zero-padded to 8n. */
  data?: Uint8Array;
  hdrExtLen?: number;
}

export interface FragmentExtSpec extends ExtCommon {
  type: 'fragment';
  /** In 8-byte units, as on the wire. */
  offset?: number;
  more?: boolean;
  id?: number;
}

export type Ipv6ExtSpec = OptionsExtSpec | RoutingExtSpec | FragmentExtSpec;

export interface Ipv6Spec {
  src?: string;
  dst?: string;
  /** Default: the first extension header's protocol number, else the upper layer's. */
  nextHeader?: number;
  hopLimit?: number;
  trafficClass?: number;
  flowLabel?: number;
  payloadLength?: number;
  version?: number;
  ext?: Ipv6ExtSpec[];
}

export type TcpFlag = 'FIN' | 'SYN' | 'RST' | 'PSH' | 'ACK' | 'URG' | 'ECE' | 'CWR' | 'AE';

export const TCP_FLAGS: Readonly<Record<TcpFlag, number>> = {
  FIN: 0x001,
  SYN: 0x002,
  RST: 0x004,
  PSH: 0x008,
  ACK: 0x010,
  URG: 0x020,
  ECE: 0x040,
  CWR: 0x080,
  // RFC 9768 reuses the old NS bit, the low bit of the data offset byte.
  AE: 0x100,
};

export interface TcpSpec {
  srcPort?: number;
  dstPort?: number;
  seq?: number;
  ack?: number;
  /** Default ['SYN']: most balancer fixtures start a flow. */
  flags?: TcpFlag[] | number;
  window?: number;
  urgent?: number;
  /** Padded with zeros (EOL) to a multiple of 4; the data offset follows. */
  options?: Uint8Array;
  dataOffset?: number;
  checksum?: number;
  /** Default: the packet's `payload` (or its `inner` packet). */
  payload?: Bytes;
}

export interface UdpSpec {
  srcPort?: number;
  dstPort?: number;
  length?: number;
  /** Default computed. 0 means "no checksum" (valid over IPv4 only); any other value is written as is. */
  checksum?: number;
  payload?: Bytes;
}

/** ICMP and ICMPv6 share the layout: type, code, checksum, 4 bytes of "rest of header". */
export interface IcmpSpec {
  /** Default 8 (echo request) for ICMP, 128 for ICMPv6. */
  type?: number;
  code?: number;
  /** A 32-bit number or up to 4 bytes. */
  rest?: number | Uint8Array;
  checksum?: number;
  payload?: Bytes;
}

/** An IP packet and everything it carries: the unit that nests for encapsulation. */
export interface L3Spec {
  ipv4?: Ipv4Spec;
  ipv6?: Ipv6Spec;
  tcp?: TcpSpec;
  udp?: UdpSpec;
  icmp?: IcmpSpec;
  icmpv6?: IcmpSpec;
  /** An encapsulated IP packet: the IP payload (IPIP, 6in6, 4in6) or, under udp/tcp, their payload. */
  inner?: L3Spec;
  payload?: Bytes;
}

export interface PacketSpec extends L3Spec {
  eth?: EthSpec;
  vlan?: VlanSpec;
  /** Zero-pad the frame: true for the 60-byte Ethernet minimum (no FCS), or a minimum length. */
  pad?: boolean | number;
}

function bytes(b: Bytes | undefined): Buffer {
  if (b === undefined) return Buffer.alloc(0);
  return typeof b === 'string' ? Buffer.from(b, 'utf8') : Buffer.from(b);
}

function padTo(b: Buffer, multiple: number): Buffer {
  const rem = b.length % multiple;
  return rem === 0 ? b : Buffer.concat([b, Buffer.alloc(multiple - rem)]);
}

function usage(message: string): LbError {
  return new LbError('ERR_LB_USAGE', message);
}

function l4Count(spec: L3Spec): number {
  return [spec.tcp, spec.udp, spec.icmp, spec.icmpv6].filter((x) => x !== undefined).length;
}

/** The protocol number of what the IP header carries directly. */
export function upperProtocol(spec: L3Spec, v6: boolean): number {
  if (spec.tcp) return PROTO_TCP;
  if (spec.udp) return PROTO_UDP;
  if (spec.icmp) return PROTO_ICMP;
  if (spec.icmpv6) return PROTO_ICMPV6;
  if (spec.inner?.ipv4) return PROTO_IPIP;
  if (spec.inner?.ipv6) return PROTO_IPV6;
  return v6 ? PROTO_NONE_V6 : PROTO_EXPERIMENTAL;
}

export function ethHeader(eth: EthSpec = {}, vlan?: VlanSpec, defaultType = ETH_P_LOCAL_EXP): Buffer {
  const parts = [parseMac(eth.dst ?? DEFAULTS.ethDst), parseMac(eth.src ?? DEFAULTS.ethSrc)];
  if (vlan) {
    const tag = Buffer.alloc(4);
    tag.writeUInt16BE(vlan.tpid ?? ETH_P_8021Q, 0);
    tag.writeUInt16BE((((vlan.pcp ?? 0) & 7) << 13) | ((vlan.dei ? 1 : 0) << 12) | ((vlan.vid ?? 0) & 0xfff), 2);
    parts.push(tag);
  }
  const type = Buffer.alloc(2);
  type.writeUInt16BE(eth.ethertype ?? defaultType, 0);
  parts.push(type);
  return Buffer.concat(parts);
}

function ipv4FlagBits(flags: Ipv4Flag[] | number | undefined): number {
  if (typeof flags === 'number') return flags & 7;
  let bits = 0;
  for (const f of flags ?? []) bits |= f === 'RF' ? 4 : f === 'DF' ? 2 : 1;
  return bits;
}

export function ipv4Header(spec: Ipv4Spec, payloadLength: number, defaultProto: number): Buffer {
  const options = padTo(bytes(spec.options), 4);
  const headerLength = 20 + options.length;
  const h = Buffer.alloc(headerLength);
  h[0] = (((spec.version ?? 4) & 0xf) << 4) | ((spec.ihl ?? headerLength / 4) & 0xf);
  h[1] = spec.tos ?? 0;
  h.writeUInt16BE(spec.totalLength ?? headerLength + payloadLength, 2);
  h.writeUInt16BE(spec.id ?? 0, 4);
  h.writeUInt16BE((ipv4FlagBits(spec.flags) << 13) | ((spec.fragOffset ?? 0) & 0x1fff), 6);
  h[8] = spec.ttl ?? DEFAULTS.ttl;
  h[9] = spec.proto ?? defaultProto;
  parseIpv4(spec.src ?? DEFAULTS.ipv4Src).copy(h, 12);
  parseIpv4(spec.dst ?? DEFAULTS.ipv4Dst).copy(h, 16);
  options.copy(h, 20);
  h.writeUInt16BE(spec.checksum ?? ipv4HeaderChecksum(h), 10);
  return h;
}

export function ipv6Header(spec: Ipv6Spec, payloadLength: number, defaultNext: number): Buffer {
  const h = Buffer.alloc(40);
  const word0 =
    (((spec.version ?? 6) & 0xf) << 28) | (((spec.trafficClass ?? 0) & 0xff) << 20) | ((spec.flowLabel ?? 0) & 0xfffff);
  h.writeUInt32BE(word0 >>> 0, 0);
  h.writeUInt16BE(spec.payloadLength ?? payloadLength, 4);
  h[6] = spec.nextHeader ?? defaultNext;
  h[7] = spec.hopLimit ?? DEFAULTS.ttl;
  parseIpv6(spec.src ?? DEFAULTS.ipv6Src).copy(h, 8);
  parseIpv6(spec.dst ?? DEFAULTS.ipv6Dst).copy(h, 24);
  return h;
}

export const EXT_PROTO = { hopByHop: 0, routing: 43, fragment: 44, destOpts: 60 } as const;

/** Pad1 for a single byte, PadN otherwise (RFC 8200 section 4.2). */
function tlvPadding(n: number): Buffer {
  if (n === 0) return Buffer.alloc(0);
  if (n === 1) return Buffer.from([0]);
  const p = Buffer.alloc(n);
  p[0] = 1;
  p[1] = n - 2;
  return p;
}

export function ipv6Extension(ext: Ipv6ExtSpec, next: number): Buffer {
  const nh = ext.nextHeader ?? next;
  switch (ext.type) {
    case 'fragment': {
      const h = Buffer.alloc(8);
      h[0] = nh;
      h.writeUInt16BE((((ext.offset ?? 0) & 0x1fff) << 3) | (ext.more ? 1 : 0), 2);
      h.writeUInt32BE((ext.id ?? 0) >>> 0, 4);
      return h;
    }
    case 'routing': {
      const data = ext.data
        ? bytes(ext.data)
        : Buffer.concat([Buffer.alloc(4), ...(ext.addresses ?? []).map((a) => parseIpv6(a))]);
      const body = padTo(Buffer.concat([Buffer.from([nh, 0, ext.routingType ?? 0, ext.segmentsLeft ?? 0]), data]), 8);
      body[1] = ext.hdrExtLen ?? body.length / 8 - 1;
      return body;
    }
    case 'hopByHop':
    case 'destOpts': {
      const opts = bytes(ext.options);
      const rem = (2 + opts.length) % 8;
      const body = Buffer.concat([Buffer.from([nh, 0]), opts, tlvPadding(rem === 0 ? 0 : 8 - rem)]);
      body[1] = ext.hdrExtLen ?? body.length / 8 - 1;
      return body;
    }
  }
}

function tcpFlagBits(flags: TcpFlag[] | number | undefined): number {
  if (typeof flags === 'number') return flags & 0x1ff;
  let bits = 0;
  for (const f of flags ?? ['SYN']) bits |= TCP_FLAGS[f];
  return bits;
}

export function tcpSegment(spec: TcpSpec, payload: Buffer, src: Uint8Array, dst: Uint8Array): Buffer {
  const options = padTo(bytes(spec.options), 4);
  const headerLength = 20 + options.length;
  const h = Buffer.alloc(headerLength);
  h.writeUInt16BE(spec.srcPort ?? DEFAULTS.srcPort, 0);
  h.writeUInt16BE(spec.dstPort ?? DEFAULTS.dstPort, 2);
  h.writeUInt32BE((spec.seq ?? 0) >>> 0, 4);
  h.writeUInt32BE((spec.ack ?? 0) >>> 0, 8);
  const flags = tcpFlagBits(spec.flags);
  h[12] = (((spec.dataOffset ?? headerLength / 4) & 0xf) << 4) | (flags >> 8);
  h[13] = flags & 0xff;
  h.writeUInt16BE(spec.window ?? 65535, 14);
  h.writeUInt16BE(spec.urgent ?? 0, 18);
  options.copy(h, 20);
  const seg = Buffer.concat([h, payload]);
  seg.writeUInt16BE(spec.checksum ?? tcpChecksum(src, dst, seg), 16);
  return seg;
}

export function udpDatagram(spec: UdpSpec, payload: Buffer, src: Uint8Array, dst: Uint8Array): Buffer {
  const d = Buffer.concat([Buffer.alloc(8), payload]);
  d.writeUInt16BE(spec.srcPort ?? DEFAULTS.srcPort, 0);
  d.writeUInt16BE(spec.dstPort ?? DEFAULTS.dstPort, 2);
  d.writeUInt16BE(spec.length ?? d.length, 4);
  d.writeUInt16BE(spec.checksum ?? udpChecksum(src, dst, d), 6);
  return d;
}

function icmpCommon(spec: IcmpSpec, defaultType: number, payload: Buffer): Buffer {
  const m = Buffer.concat([Buffer.alloc(8), payload]);
  m[0] = spec.type ?? defaultType;
  m[1] = spec.code ?? 0;
  if (typeof spec.rest === 'number') m.writeUInt32BE(spec.rest >>> 0, 4);
  else if (spec.rest) Buffer.from(spec.rest).copy(m, 4, 0, 4);
  return m;
}

export function icmpMessage(spec: IcmpSpec, payload: Buffer): Buffer {
  const m = icmpCommon(spec, 8, payload);
  m.writeUInt16BE(spec.checksum ?? icmpChecksum(m), 2);
  return m;
}

export function icmpv6Message(spec: IcmpSpec, payload: Buffer, src: Uint8Array, dst: Uint8Array): Buffer {
  const m = icmpCommon(spec, 128, payload);
  m.writeUInt16BE(spec.checksum ?? icmpv6Checksum(src, dst, m), 2);
  return m;
}

function upperLayer(spec: L3Spec, body: Buffer, src: Uint8Array, dst: Uint8Array): Buffer {
  if (spec.tcp) return tcpSegment(spec.tcp, spec.tcp.payload === undefined ? body : bytes(spec.tcp.payload), src, dst);
  if (spec.udp) return udpDatagram(spec.udp, spec.udp.payload === undefined ? body : bytes(spec.udp.payload), src, dst);
  if (spec.icmp) return icmpMessage(spec.icmp, spec.icmp.payload === undefined ? body : bytes(spec.icmp.payload));
  if (spec.icmpv6) {
    return icmpv6Message(spec.icmpv6, spec.icmpv6.payload === undefined ? body : bytes(spec.icmpv6.payload), src, dst);
  }
  return body;
}

/** An IP packet without a link-layer header: for IPIP inner packets, ICMP quotes, or L3 test runs. */
export function ipPacket(spec: L3Spec): Buffer {
  if (spec.ipv4 && spec.ipv6) throw usage('a packet layer has both ipv4 and ipv6; nest one in `inner`');
  if (l4Count(spec) > 1) throw usage('a packet layer has more than one of tcp/udp/icmp/icmpv6');
  const body = spec.inner ? ipPacket(spec.inner) : bytes(spec.payload);

  if (spec.ipv4) {
    const src = parseIpv4(spec.ipv4.src ?? DEFAULTS.ipv4Src);
    const dst = parseIpv4(spec.ipv4.dst ?? DEFAULTS.ipv4Dst);
    const upper = upperLayer(spec, body, src, dst);
    return Buffer.concat([ipv4Header(spec.ipv4, upper.length, upperProtocol(spec, false)), upper]);
  }

  if (spec.ipv6) {
    const src = parseIpv6(spec.ipv6.src ?? DEFAULTS.ipv6Src);
    const dst = parseIpv6(spec.ipv6.dst ?? DEFAULTS.ipv6Dst);
    const exts = spec.ipv6.ext ?? [];
    const upperProto = upperProtocol(spec, true);
    const extBytes = exts.map((e, i) => {
      const following = exts[i + 1];
      return ipv6Extension(e, following ? EXT_PROTO[following.type] : upperProto);
    });
    const routing = exts.find((e): e is RoutingExtSpec => e.type === 'routing');
    const pseudoDst = ipv6PseudoDestination(
      dst,
      routing && {
        routingType: routing.routingType ?? 0,
        segmentsLeft: routing.segmentsLeft ?? 0,
        addresses: routing.data ? [] : (routing.addresses ?? []).map((a) => parseIpv6(a)),
      },
    );
    const upper = upperLayer(spec, body, src, pseudoDst);
    const payloadLength = extBytes.reduce((n, b) => n + b.length, 0) + upper.length;
    const first = exts[0];
    const header = ipv6Header(spec.ipv6, payloadLength, first ? EXT_PROTO[first.type] : upperProto);
    return Buffer.concat([header, ...extBytes, upper]);
  }

  if (l4Count(spec) > 0) throw usage('tcp/udp/icmp need an ipv4 or ipv6 layer for their checksum');
  return body;
}

/** A whole Ethernet frame. */
export function packet(spec: PacketSpec): Buffer {
  const l3 = ipPacket(spec);
  const type = spec.ipv4 ? ETH_P_IP : spec.ipv6 ? ETH_P_IPV6 : ETH_P_LOCAL_EXP;
  const frame = Buffer.concat([ethHeader(spec.eth, spec.vlan, type), l3]);
  const min = spec.pad === true ? MIN_FRAME : typeof spec.pad === 'number' ? spec.pad : 0;
  return frame.length >= min ? frame : Buffer.concat([frame, Buffer.alloc(min - frame.length)]);
}

/**
 * ICMP "fragmentation needed" (type 3 code 4, RFC 1191) for a packet that was too big: quotes its IP
 * header and the first 8 bytes after it (RFC 792) unless `quoteLength` asks for more or less.
 */
export function icmpFragNeeded(mtu: number, innerPacket: Uint8Array, quoteLength?: number): IcmpSpec {
  const ihl = (innerPacket[0] ?? 0x45) & 0xf;
  const quote = Buffer.from(innerPacket.subarray(0, quoteLength ?? ihl * 4 + 8));
  return { type: 3, code: 4, rest: mtu & 0xffff, payload: quote };
}

/**
 * ICMPv6 Packet Too Big (type 2, RFC 4443 section 3.2): quotes as much of the packet as keeps the
 * error within the IPv6 minimum MTU of 1280, unless `quoteLength` says otherwise.
 */
export function icmpv6PacketTooBig(mtu: number, innerPacket: Uint8Array, quoteLength?: number): IcmpSpec {
  const quote = Buffer.from(innerPacket.subarray(0, quoteLength ?? 1280 - 40 - 8));
  return { type: 2, code: 0, rest: mtu >>> 0, payload: quote };
}
