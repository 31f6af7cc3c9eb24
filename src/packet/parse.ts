/**
 * Packet parser for checking what the XDP program emitted. It never throws on a short or odd
 * buffer: it reports what it could read, sets `truncated` where data ran out, and lists
 * inconsistencies (IHL < 5, length fields that disagree) in `malformed`.
 *
 * `checksumOk` is true or false when the checksum could be checked and null when it could not
 * (header cut short, or a fragment that does not hold the whole L4 datagram).
 */
import { formatIp, formatIpv4, formatIpv6, formatMac } from './addr.js';
import {
  PROTO_ICMP,
  PROTO_ICMPV6,
  PROTO_IPIP,
  PROTO_IPV6,
  PROTO_TCP,
  PROTO_UDP,
  ipv6PseudoDestination,
  verifyIcmp,
  verifyIcmpv6,
  verifyIpv4Header,
  verifyTcp,
  verifyUdp,
} from './checksum.js';
import { ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, EXT_PROTO, TCP_FLAGS, type TcpFlag } from './build.js';

export interface ParsedEth {
  dst: string;
  src: string;
  /** The type of the payload: after the VLAN tag when there is one. */
  ethertype: number;
}

export interface ParsedVlan {
  tpid: number;
  tci: number;
  pcp: number;
  dei: boolean;
  vid: number;
}

export interface ParsedIpv4 {
  version: number;
  ihl: number;
  tos: number;
  totalLength: number;
  id: number;
  flags: number;
  df: boolean;
  mf: boolean;
  /** In 8-byte units, as on the wire. */
  fragOffset: number;
  ttl: number;
  proto: number;
  checksum: number;
  src: string;
  dst: string;
  options: Buffer;
  checksumOk: boolean | null;
}

export type Ipv6ExtType = keyof typeof EXT_PROTO;

export interface ParsedIpv6Ext {
  type: Ipv6ExtType;
  nextHeader: number;
  /** Bytes on the wire. */
  length: number;
  hdrExtLen?: number;
  options?: Buffer;
  routingType?: number;
  segmentsLeft?: number;
  addresses?: string[];
  data?: Buffer;
  fragOffset?: number;
  more?: boolean;
  id?: number;
}

export interface ParsedIpv6 {
  version: number;
  trafficClass: number;
  flowLabel: number;
  payloadLength: number;
  nextHeader: number;
  hopLimit: number;
  src: string;
  dst: string;
  ext: ParsedIpv6Ext[];
  /** The protocol after the last extension header. */
  upperProto: number;
}

export interface ParsedTcp {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  dataOffset: number;
  flags: number;
  flagNames: TcpFlag[];
  window: number;
  checksum: number;
  urgent: number;
  options: Buffer;
  checksumOk: boolean | null;
}

export interface ParsedUdp {
  srcPort: number;
  dstPort: number;
  length: number;
  checksum: number;
  checksumOk: boolean | null;
}

export interface ParsedIcmp {
  type: number;
  code: number;
  checksum: number;
  rest: number;
  /** Next-hop MTU of a frag-needed (v4 type 3 code 4) or Packet Too Big (v6 type 2). */
  mtu?: number;
  checksumOk: boolean | null;
}

export interface ParsedL3 {
  ipv4?: ParsedIpv4;
  ipv6?: ParsedIpv6;
  tcp?: ParsedTcp;
  udp?: ParsedUdp;
  icmp?: ParsedIcmp;
  icmpv6?: ParsedIcmp;
  /** The encapsulated packet (IPIP, 4in6, 6in6) or the packet an ICMP error quotes. */
  inner?: ParsedL3;
  /** Whatever follows the last header understood. */
  payload: Buffer;
  /** This level ran out of bytes (an ICMP quote's inner packet normally does). */
  truncated: boolean;
}

export interface ParsedPacket extends ParsedL3 {
  eth?: ParsedEth;
  vlan?: ParsedVlan;
  /** Bytes after the IP datagram, e.g. Ethernet padding. */
  trailer: Buffer;
  /** Human-readable notes about fields that contradict each other, outermost first. */
  malformed: string[];
}

export type FieldKind = 'num' | 'hex' | 'mac' | 'ip' | 'bytes';

export interface FieldSpan {
  offset: number;
  length: number;
  /** Dotted path as in the parsed object, e.g. 'inner.ipv4.dst'. */
  name: string;
  kind: FieldKind;
}

interface Ctx {
  buf: Buffer;
  spans: FieldSpan[] | undefined;
  malformed: string[];
}

function field(ctx: Ctx, offset: number, length: number, name: string, kind: FieldKind): void {
  ctx.spans?.push({ offset, length, name, kind });
}

const EMPTY = Buffer.alloc(0);

export function parsePacket(buf: Uint8Array): ParsedPacket {
  return parseFrame({ buf: toBuffer(buf), spans: undefined, malformed: [] });
}

/** An IP packet without a link-layer header; the family comes from the version nibble. */
export function parseIpPacket(buf: Uint8Array): ParsedPacket {
  const ctx: Ctx = { buf: toBuffer(buf), spans: undefined, malformed: [] };
  const { l3, end } = parseL3(ctx, 0, ctx.buf.length, versionFamily(ctx.buf, 0), '');
  return { ...l3, trailer: ctx.buf.subarray(end), malformed: ctx.malformed };
}

/** The named fields of an Ethernet frame, by offset: what hexDiff uses to name a differing byte. */
export function frameFields(buf: Uint8Array): FieldSpan[] {
  const spans: FieldSpan[] = [];
  parseFrame({ buf: toBuffer(buf), spans, malformed: [] });
  return spans;
}

function toBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function versionFamily(buf: Buffer, off: number): 4 | 6 | 0 {
  const v = (buf[off] ?? 0) >> 4;
  return v === 4 ? 4 : v === 6 ? 6 : 0;
}

function parseFrame(ctx: Ctx): ParsedPacket {
  const { buf } = ctx;
  const out: ParsedPacket = { payload: EMPTY, truncated: false, trailer: EMPTY, malformed: ctx.malformed };
  if (buf.length < 14) {
    out.truncated = true;
    out.payload = buf;
    return out;
  }
  field(ctx, 0, 6, 'eth.dst', 'mac');
  field(ctx, 6, 6, 'eth.src', 'mac');
  let off = 12;
  let type = buf.readUInt16BE(12);
  if (type === ETH_P_8021Q || type === 0x88a8) {
    if (buf.length < 18) {
      out.truncated = true;
      out.payload = buf.subarray(12);
      return out;
    }
    const tci = buf.readUInt16BE(14);
    out.vlan = { tpid: type, tci, pcp: tci >> 13, dei: ((tci >> 12) & 1) === 1, vid: tci & 0xfff };
    field(ctx, 12, 2, 'vlan.tpid', 'hex');
    field(ctx, 14, 2, 'vlan.tci', 'hex');
    off = 16;
    type = buf.readUInt16BE(16);
  }
  field(ctx, off, 2, 'eth.ethertype', 'hex');
  off += 2;
  out.eth = { dst: formatMac(buf.subarray(0, 6)), src: formatMac(buf.subarray(6, 12)), ethertype: type };
  if (type !== ETH_P_IP && type !== ETH_P_IPV6) {
    out.payload = buf.subarray(off);
    return out;
  }
  const { l3, end } = parseL3(ctx, off, buf.length, type === ETH_P_IP ? 4 : 6, '');
  Object.assign(out, l3);
  out.trailer = buf.subarray(end);
  if (out.trailer.length > 0) field(ctx, end, out.trailer.length, 'trailer', 'bytes');
  return out;
}

/** Parses one IP packet in buf[off, end); returns it and where the datagram ends. */
function parseL3(ctx: Ctx, off: number, end: number, family: 4 | 6 | 0, prefix: string): { l3: ParsedL3; end: number } {
  if (family === 4) return parseIpv4(ctx, off, end, prefix);
  if (family === 6) return parseIpv6(ctx, off, end, prefix);
  return { l3: { payload: ctx.buf.subarray(off, end), truncated: false }, end };
}

function parseIpv4(ctx: Ctx, off: number, end: number, prefix: string): { l3: ParsedL3; end: number } {
  const { buf } = ctx;
  const l3: ParsedL3 = { payload: EMPTY, truncated: false };
  const p = `${prefix}ipv4.`;
  if (end - off < 20) {
    l3.truncated = true;
    l3.payload = buf.subarray(off, end);
    return { l3, end };
  }
  const version = buf[off]! >> 4;
  const ihl = buf[off]! & 0xf;
  const flagsWord = buf.readUInt16BE(off + 6);
  const ipv4: ParsedIpv4 = {
    version,
    ihl,
    tos: buf[off + 1]!,
    totalLength: buf.readUInt16BE(off + 2),
    id: buf.readUInt16BE(off + 4),
    flags: flagsWord >> 13,
    df: (flagsWord & 0x4000) !== 0,
    mf: (flagsWord & 0x2000) !== 0,
    fragOffset: flagsWord & 0x1fff,
    ttl: buf[off + 8]!,
    proto: buf[off + 9]!,
    checksum: buf.readUInt16BE(off + 10),
    src: formatIpv4(buf.subarray(off + 12, off + 16)),
    dst: formatIpv4(buf.subarray(off + 16, off + 20)),
    options: EMPTY,
    checksumOk: null,
  };
  l3.ipv4 = ipv4;
  field(ctx, off, 1, `${p}version/ihl`, 'hex');
  field(ctx, off + 1, 1, `${p}tos`, 'hex');
  field(ctx, off + 2, 2, `${p}totalLength`, 'num');
  field(ctx, off + 4, 2, `${p}id`, 'hex');
  field(ctx, off + 6, 2, `${p}flags/fragOffset`, 'hex');
  field(ctx, off + 8, 1, `${p}ttl`, 'num');
  field(ctx, off + 9, 1, `${p}proto`, 'num');
  field(ctx, off + 10, 2, `${p}checksum`, 'hex');
  field(ctx, off + 12, 4, `${p}src`, 'ip');
  field(ctx, off + 16, 4, `${p}dst`, 'ip');
  if (version !== 4) ctx.malformed.push(`${p}version is ${version}`);
  if (ihl < 5) {
    ctx.malformed.push(`${p}ihl is ${ihl}, below the minimum of 5`);
    l3.payload = buf.subarray(off + 20, end);
    return { l3, end };
  }
  const hlen = ihl * 4;
  if (off + hlen > end) {
    l3.truncated = true;
    ipv4.options = buf.subarray(off + 20, end);
    return { l3, end };
  }
  ipv4.options = buf.subarray(off + 20, off + hlen);
  if (hlen > 20) field(ctx, off + 20, hlen - 20, `${p}options`, 'bytes');
  ipv4.checksumOk = verifyIpv4Header(buf.subarray(off, off + hlen));

  let dgEnd = off + ipv4.totalLength;
  if (ipv4.totalLength < hlen) {
    ctx.malformed.push(`${p}totalLength ${ipv4.totalLength} is shorter than the header (${hlen})`);
    dgEnd = end;
  } else if (dgEnd > end) {
    l3.truncated = true;
    dgEnd = end;
  }
  const start = off + hlen;
  if (ipv4.fragOffset > 0) {
    // A later fragment: its bytes are the middle of some L4 datagram, not a header.
    l3.payload = buf.subarray(start, dgEnd);
    return { l3, end: dgEnd };
  }
  const src = buf.subarray(off + 12, off + 16);
  const dst = buf.subarray(off + 16, off + 20);
  parseUpper(ctx, l3, start, dgEnd, ipv4.proto, src, dst, !ipv4.mf && !l3.truncated, prefix);
  return { l3, end: dgEnd };
}

const EXT_BY_PROTO = new Map<number, Ipv6ExtType>(
  Object.entries(EXT_PROTO).map(([name, proto]) => [proto, name as Ipv6ExtType]),
);

/** Far more than any sane packet carries; bounds the walk over a corrupt chain. */
const MAX_EXT_HEADERS = 16;

function parseIpv6(ctx: Ctx, off: number, end: number, prefix: string): { l3: ParsedL3; end: number } {
  const { buf } = ctx;
  const l3: ParsedL3 = { payload: EMPTY, truncated: false };
  const p = `${prefix}ipv6.`;
  if (end - off < 40) {
    l3.truncated = true;
    l3.payload = buf.subarray(off, end);
    return { l3, end };
  }
  const word0 = buf.readUInt32BE(off);
  const ipv6: ParsedIpv6 = {
    version: word0 >>> 28,
    trafficClass: (word0 >>> 20) & 0xff,
    flowLabel: word0 & 0xfffff,
    payloadLength: buf.readUInt16BE(off + 4),
    nextHeader: buf[off + 6]!,
    hopLimit: buf[off + 7]!,
    src: formatIpv6(buf.subarray(off + 8, off + 24)),
    dst: formatIpv6(buf.subarray(off + 24, off + 40)),
    ext: [],
    upperProto: buf[off + 6]!,
  };
  l3.ipv6 = ipv6;
  field(ctx, off, 4, `${p}version/trafficClass/flowLabel`, 'hex');
  field(ctx, off + 4, 2, `${p}payloadLength`, 'num');
  field(ctx, off + 6, 1, `${p}nextHeader`, 'num');
  field(ctx, off + 7, 1, `${p}hopLimit`, 'num');
  field(ctx, off + 8, 16, `${p}src`, 'ip');
  field(ctx, off + 24, 16, `${p}dst`, 'ip');
  if (ipv6.version !== 6) ctx.malformed.push(`${p}version is ${ipv6.version}`);

  let dgEnd = off + 40 + ipv6.payloadLength;
  if (dgEnd > end) {
    l3.truncated = true;
    dgEnd = end;
  }
  let pos = off + 40;
  let next = ipv6.nextHeader;
  let fragment: ParsedIpv6Ext | undefined;
  let routing: { routingType: number; segmentsLeft: number; addresses: Uint8Array[] } | undefined;
  for (let i = 0; i < MAX_EXT_HEADERS; i++) {
    const type = EXT_BY_PROTO.get(next);
    if (type === undefined) break;
    const e = `${p}ext[${i}].`;
    if (dgEnd - pos < 8) {
      l3.truncated = true;
      l3.payload = buf.subarray(pos, dgEnd);
      return { l3, end: dgEnd };
    }
    const nh = buf[pos]!;
    field(ctx, pos, 1, `${e}nextHeader`, 'num');
    let ext: ParsedIpv6Ext;
    if (type === 'fragment') {
      const w = buf.readUInt16BE(pos + 2);
      ext = { type, nextHeader: nh, length: 8, fragOffset: w >> 3, more: (w & 1) === 1, id: buf.readUInt32BE(pos + 4) };
      field(ctx, pos + 2, 2, `${e}fragOffset/more`, 'hex');
      field(ctx, pos + 4, 4, `${e}id`, 'hex');
      fragment = ext;
    } else {
      const hdrExtLen = buf[pos + 1]!;
      const length = (hdrExtLen + 1) * 8;
      field(ctx, pos + 1, 1, `${e}hdrExtLen`, 'num');
      if (pos + length > dgEnd) {
        l3.truncated = true;
        l3.payload = buf.subarray(pos, dgEnd);
        return { l3, end: dgEnd };
      }
      ext = { type, nextHeader: nh, length, hdrExtLen };
      if (type === 'routing') {
        ext.routingType = buf[pos + 2]!;
        ext.segmentsLeft = buf[pos + 3]!;
        ext.data = buf.subarray(pos + 4, pos + length);
        field(ctx, pos + 2, 1, `${e}routingType`, 'num');
        field(ctx, pos + 3, 1, `${e}segmentsLeft`, 'num');
        field(ctx, pos + 4, length - 4, `${e}data`, 'bytes');
        const addrs = routingAddresses(ext.routingType, buf.subarray(pos + 8, pos + length));
        ext.addresses = addrs.map((a) => formatIpv6(a));
        routing = { routingType: ext.routingType, segmentsLeft: ext.segmentsLeft, addresses: addrs };
      } else {
        ext.options = buf.subarray(pos + 2, pos + length);
        field(ctx, pos + 2, length - 2, `${e}options`, 'bytes');
      }
    }
    ipv6.ext.push(ext);
    pos += ext.length;
    next = nh;
  }
  ipv6.upperProto = next;
  if (fragment !== undefined && (fragment.fragOffset ?? 0) > 0) {
    l3.payload = buf.subarray(pos, dgEnd);
    return { l3, end: dgEnd };
  }
  const src = buf.subarray(off + 8, off + 24);
  const dst = ipv6PseudoDestination(buf.subarray(off + 24, off + 40), routing);
  const whole = fragment?.more !== true && !l3.truncated;
  parseUpper(ctx, l3, pos, dgEnd, next, src, dst, whole, prefix);
  return { l3, end: dgEnd };
}

/** Types 0 and 2 and segment routing (4) carry a list of 16-byte addresses after 4 bytes. */
function routingAddresses(routingType: number, list: Buffer): Buffer[] {
  if (routingType !== 0 && routingType !== 2 && routingType !== 4) return [];
  const out: Buffer[] = [];
  for (let i = 0; i + 16 <= list.length; i += 16) out.push(list.subarray(i, i + 16));
  return out;
}

const ICMP_ERRORS = new Set([3, 4, 5, 11, 12]);
const ICMPV6_ERRORS = new Set([1, 2, 3, 4]);

/**
 * The L4 header (or inner packet) in buf[off, end). `whole` says the range holds the entire L4
 * datagram, the precondition for checking its checksum.
 */
function parseUpper(
  ctx: Ctx,
  l3: ParsedL3,
  off: number,
  end: number,
  proto: number,
  src: Uint8Array,
  dst: Uint8Array,
  whole: boolean,
  prefix: string,
): void {
  const { buf } = ctx;
  const seg = buf.subarray(off, end);
  const avail = end - off;
  switch (proto) {
    case PROTO_TCP: {
      const p = `${prefix}tcp.`;
      if (avail < 20) break;
      const dataOffset = buf[off + 12]! >> 4;
      const flags = ((buf[off + 12]! & 1) << 8) | buf[off + 13]!;
      const tcp: ParsedTcp = {
        srcPort: buf.readUInt16BE(off),
        dstPort: buf.readUInt16BE(off + 2),
        seq: buf.readUInt32BE(off + 4),
        ack: buf.readUInt32BE(off + 8),
        dataOffset,
        flags,
        flagNames: (Object.keys(TCP_FLAGS) as TcpFlag[]).filter((f) => (flags & TCP_FLAGS[f]) !== 0),
        window: buf.readUInt16BE(off + 14),
        checksum: buf.readUInt16BE(off + 16),
        urgent: buf.readUInt16BE(off + 18),
        options: EMPTY,
        checksumOk: whole ? verifyTcp(src, dst, seg) : null,
      };
      l3.tcp = tcp;
      field(ctx, off, 2, `${p}srcPort`, 'num');
      field(ctx, off + 2, 2, `${p}dstPort`, 'num');
      field(ctx, off + 4, 4, `${p}seq`, 'num');
      field(ctx, off + 8, 4, `${p}ack`, 'num');
      field(ctx, off + 12, 2, `${p}dataOffset/flags`, 'hex');
      field(ctx, off + 14, 2, `${p}window`, 'num');
      field(ctx, off + 16, 2, `${p}checksum`, 'hex');
      field(ctx, off + 18, 2, `${p}urgent`, 'num');
      if (dataOffset < 5) {
        ctx.malformed.push(`${p}dataOffset is ${dataOffset}, below the minimum of 5`);
        setPayload(ctx, l3, off + 20, end, prefix);
        return;
      }
      const hlen = dataOffset * 4;
      if (hlen > avail) {
        l3.truncated = true;
        tcp.options = buf.subarray(off + 20, end);
        return;
      }
      tcp.options = buf.subarray(off + 20, off + hlen);
      if (hlen > 20) field(ctx, off + 20, hlen - 20, `${p}options`, 'bytes');
      setPayload(ctx, l3, off + hlen, end, prefix);
      return;
    }
    case PROTO_UDP: {
      const p = `${prefix}udp.`;
      if (avail < 8) break;
      const udp: ParsedUdp = {
        srcPort: buf.readUInt16BE(off),
        dstPort: buf.readUInt16BE(off + 2),
        length: buf.readUInt16BE(off + 4),
        checksum: buf.readUInt16BE(off + 6),
        checksumOk: whole ? verifyUdp(src, dst, seg) : null,
      };
      l3.udp = udp;
      field(ctx, off, 2, `${p}srcPort`, 'num');
      field(ctx, off + 2, 2, `${p}dstPort`, 'num');
      field(ctx, off + 4, 2, `${p}length`, 'num');
      field(ctx, off + 6, 2, `${p}checksum`, 'hex');
      if (whole && udp.length !== avail) ctx.malformed.push(`${p}length ${udp.length} but the IP layer carries ${avail}`);
      setPayload(ctx, l3, off + 8, end, prefix);
      return;
    }
    case PROTO_ICMP:
    case PROTO_ICMPV6: {
      const v6 = proto === PROTO_ICMPV6;
      const p = `${prefix}${v6 ? 'icmpv6' : 'icmp'}.`;
      if (avail < 8) break;
      const type = buf[off]!;
      const code = buf[off + 1]!;
      const rest = buf.readUInt32BE(off + 4);
      const icmp: ParsedIcmp = {
        type,
        code,
        checksum: buf.readUInt16BE(off + 2),
        rest,
        checksumOk: whole ? (v6 ? verifyIcmpv6(src, dst, seg) : verifyIcmp(seg)) : null,
      };
      if (!v6 && type === 3 && code === 4) icmp.mtu = rest & 0xffff;
      if (v6 && type === 2) icmp.mtu = rest;
      if (v6) l3.icmpv6 = icmp;
      else l3.icmp = icmp;
      field(ctx, off, 1, `${p}type`, 'num');
      field(ctx, off + 1, 1, `${p}code`, 'num');
      field(ctx, off + 2, 2, `${p}checksum`, 'hex');
      field(ctx, off + 4, 4, `${p}rest`, 'hex');
      l3.payload = buf.subarray(off + 8, end);
      if ((v6 ? ICMPV6_ERRORS : ICMP_ERRORS).has(type) && avail > 8) {
        l3.inner = parseL3(ctx, off + 8, end, versionFamily(buf, off + 8), `${prefix}inner.`).l3;
      }
      return;
    }
    case PROTO_IPIP:
    case PROTO_IPV6:
      l3.payload = seg;
      l3.inner = parseL3(ctx, off, end, proto === PROTO_IPIP ? 4 : 6, `${prefix}inner.`).l3;
      return;
    default:
      setPayload(ctx, l3, off, end, prefix);
      return;
  }
  // Too short for the L4 header it announces.
  l3.truncated = true;
  l3.payload = seg;
}

function setPayload(ctx: Ctx, l3: ParsedL3, off: number, end: number, prefix: string): void {
  l3.payload = ctx.buf.subarray(off, end);
  if (end > off) field(ctx, off, end - off, `${prefix}payload`, 'bytes');
}

/** A field's value as text, for diffs. */
export function formatField(kind: FieldKind, bytes: Buffer): string {
  switch (kind) {
    case 'mac':
      return formatMac(bytes);
    case 'ip':
      return formatIp(bytes);
    case 'num':
      return bytes.length <= 6 ? String(bytes.readUIntBE(0, bytes.length)) : bytes.toString('hex');
    case 'hex':
      return bytes.length <= 6 ? `0x${bytes.toString('hex')}` : bytes.toString('hex');
    case 'bytes':
      return bytes.length <= 24 ? bytes.toString('hex') : `${bytes.subarray(0, 24).toString('hex')}... (${bytes.length} bytes)`;
  }
}
