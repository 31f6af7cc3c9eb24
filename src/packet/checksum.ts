/**
 * Internet checksums, written to be read: these judge the XDP program's output, so they must not
 * share any cleverness (incremental updates, folding tricks) with the C helpers they check.
 *
 * `*Checksum()` functions compute the value to store (the checksum field in the input is ignored).
 * `verify*()` functions do what a receiver does: sum everything, checksum field included, and
 * expect 0xffff. That accepts a stored 0x0000 and 0xffff alike where they are equivalent in one's
 * complement, which is what the kernel accepts too.
 */
import { LbError } from '../errors.js';
import { parseIp } from './addr.js';

export const PROTO_ICMP = 1;
export const PROTO_IPIP = 4;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_IPV6 = 41;
export const PROTO_ICMPV6 = 58;

export type AddrInput = string | Uint8Array;

/** RFC 1071: one's-complement sum of big-endian 16-bit words, an odd last byte padded with zero. */
export function onesComplementSum(data: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < data.length; i += 2) sum += data[i]! * 256 + data[i + 1]!;
  if (data.length % 2 === 1) sum += data[data.length - 1]! * 256;
  // Plain arithmetic rather than >>> so sums beyond 32 bits (jumbo buffers) still fold right.
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * The checksum of the parts laid end to end. Parts are joined before summing because an odd-length
 * part would otherwise shift the word alignment of the ones after it.
 */
export function internetChecksum(...parts: Uint8Array[]): number {
  return ~onesComplementSum(Buffer.concat(parts)) & 0xffff;
}

function addr(a: AddrInput): Buffer {
  return typeof a === 'string' ? parseIp(a) : Buffer.from(a);
}

/** RFC 793/768 (IPv4, 12 bytes) or RFC 8200 section 8.1 (IPv6, 40 bytes), chosen by address size. */
export function pseudoHeader(src: AddrInput, dst: AddrInput, proto: number, length: number): Buffer {
  const s = addr(src);
  const d = addr(dst);
  if (s.length === 4 && d.length === 4) {
    const ph = Buffer.alloc(12);
    s.copy(ph, 0);
    d.copy(ph, 4);
    ph[9] = proto;
    ph.writeUInt16BE(length, 10);
    return ph;
  }
  if (s.length === 16 && d.length === 16) {
    const ph = Buffer.alloc(40);
    s.copy(ph, 0);
    d.copy(ph, 16);
    ph.writeUInt32BE(length, 32);
    ph[39] = proto;
    return ph;
  }
  throw new LbError(
    'ERR_LB_USAGE',
    `pseudo header needs two IPv4 or two IPv6 addresses, got ${s.length} and ${d.length} bytes`,
  );
}

function withZeroedField(data: Uint8Array, offset: number): Buffer {
  const copy = Buffer.from(data);
  if (copy.length >= offset + 2) copy.writeUInt16BE(0, offset);
  return copy;
}

export function ipv4HeaderChecksum(header: Uint8Array): number {
  return internetChecksum(withZeroedField(header, 10));
}

export function verifyIpv4Header(header: Uint8Array): boolean {
  return onesComplementSum(header) === 0xffff;
}

export function tcpChecksum(src: AddrInput, dst: AddrInput, segment: Uint8Array): number {
  return internetChecksum(pseudoHeader(src, dst, PROTO_TCP, segment.length), withZeroedField(segment, 16));
}

export function verifyTcp(src: AddrInput, dst: AddrInput, segment: Uint8Array): boolean {
  return onesComplementSum(Buffer.concat([pseudoHeader(src, dst, PROTO_TCP, segment.length), segment])) === 0xffff;
}

/** A computed 0 goes on the wire as 0xffff, because 0 means "no checksum" (RFC 768). */
export function udpChecksum(src: AddrInput, dst: AddrInput, datagram: Uint8Array): number {
  const c = internetChecksum(pseudoHeader(src, dst, PROTO_UDP, datagram.length), withZeroedField(datagram, 6));
  return c === 0 ? 0xffff : c;
}

/** A zero checksum is "none" and fine over IPv4, but not allowed over IPv6 (RFC 8200 section 8.1). */
export function verifyUdp(src: AddrInput, dst: AddrInput, datagram: Uint8Array): boolean {
  const stored = datagram.length >= 8 ? Buffer.from(datagram).readUInt16BE(6) : -1;
  if (stored === 0) return addr(src).length === 4;
  return onesComplementSum(Buffer.concat([pseudoHeader(src, dst, PROTO_UDP, datagram.length), datagram])) === 0xffff;
}

/** ICMP for IPv4 has no pseudo header (RFC 792). */
export function icmpChecksum(message: Uint8Array): number {
  return internetChecksum(withZeroedField(message, 2));
}

export function verifyIcmp(message: Uint8Array): boolean {
  return onesComplementSum(message) === 0xffff;
}

/** ICMPv6 does have one (RFC 4443 section 2.3). */
export function icmpv6Checksum(src: AddrInput, dst: AddrInput, message: Uint8Array): number {
  return internetChecksum(pseudoHeader(src, dst, PROTO_ICMPV6, message.length), withZeroedField(message, 2));
}

export function verifyIcmpv6(src: AddrInput, dst: AddrInput, message: Uint8Array): boolean {
  return onesComplementSum(Buffer.concat([pseudoHeader(src, dst, PROTO_ICMPV6, message.length), message])) === 0xffff;
}

/**
 * The destination the IPv6 pseudo header uses (RFC 8200 section 8.1): with a routing header that
 * still has segments left, the final destination is in the routing header, not the IPv6 header.
 * Types 0 and 2 list it last; a segment routing header (type 4, RFC 8754) lists it first.
 */
export function ipv6PseudoDestination(
  dst: Uint8Array,
  routing?: { routingType: number; segmentsLeft: number; addresses: Uint8Array[] },
): Uint8Array {
  if (routing === undefined || routing.segmentsLeft === 0 || routing.addresses.length === 0) return dst;
  const final = routing.routingType === 4 ? routing.addresses[0] : routing.addresses[routing.addresses.length - 1];
  return final ?? dst;
}
