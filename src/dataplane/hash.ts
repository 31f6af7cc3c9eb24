/**
 * The data path's hashes, computed the same way in TypeScript (bpf/lib/hash.h, and the VIP filter
 * fold in bpf/balancer.bpf.c). The control plane needs them to fill the VIP filter, to predict a
 * flow's backend in tests, and to find a flow's bucket in the flow table.
 *
 * The BPF side mixes the raw 32-bit words it loads from the packet on a little-endian host:
 * an address's four bytes read little-endian, a port's two bytes read little-endian.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { writeAddr } from './abi.js';

/** 64-bit values as [high, low] 32-bit halves: exact, and far cheaper than BigInt in a loop. */
type U64 = [number, number];

const FOLD: U64 = [0x9e3779b9, 0x7f4a7c15];
const FMIX_C1: U64 = [0xff51afd7, 0xed558ccd];
const FMIX_C2: U64 = [0xc4ceb9fe, 0x1a85ec53];

/** The full 64-bit product of two u32, in 16-bit pieces so that no partial product loses bits. */
function mul32(a: number, b: number): U64 {
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  const p00 = a0 * b0;
  const p01 = a0 * b1;
  const p10 = a1 * b0;
  const mid = (p00 >>> 16) + (p01 & 0xffff) + (p10 & 0xffff);
  const lo = (((mid & 0xffff) << 16) | (p00 & 0xffff)) >>> 0;
  const hi = (a1 * b1 + (p01 >>> 16) + (p10 >>> 16) + (mid >>> 16)) >>> 0;
  return [hi, lo];
}

/** x * c mod 2^64. */
function mul64(x: U64, c: U64): U64 {
  const [h, l] = mul32(x[1], c[1]);
  return [(h + Math.imul(x[0], c[1]) + Math.imul(x[1], c[0])) >>> 0, l];
}

/** x ^= x >> 33, as a [high, low] pair. */
function xorShift33(x: U64): U64 {
  return [x[0], (x[1] ^ (x[0] >>> 1)) >>> 0];
}

/** MurmurHash3's 64-bit finalizer, as lb_fmix64(). */
function fmix64(x: U64): U64 {
  x = xorShift33(x);
  x = mul64(x, FMIX_C1);
  x = xorShift33(x);
  x = mul64(x, FMIX_C2);
  return xorShift33(x);
}

export interface FlowHash {
  h1: number;
  h2: number;
}

/** The flow hash over three words, as lb_hash3(): fold to 64 bits, then fmix64. */
export function lbHash3(a: number, b: number, c: number, seed: number): FlowHash {
  const m = mul64([0, (b ^ seed) >>> 0], FOLD);
  const x = fmix64([(a ^ m[0]) >>> 0, (c ^ m[1]) >>> 0]);
  return { h1: x[1], h2: x[0] };
}

/** lb_reduce(): multiply-shift into [0, size). */
export function lbReduce(h: number, size: number): number {
  return Number((BigInt(h >>> 0) * BigInt(size)) >> 32n);
}

/** An IPv4 address as the raw word the BPF program loads. */
export function rawAddr4(addr: string): number {
  if (!isIPv4(addr)) throw new TypeError(`not an IPv4 address: ${addr}`);
  const b = addr.split('.').map(Number) as [number, number, number, number];
  return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
}

/** lb_fold6(): an IPv6 address (as four raw words) folded to the word that stands for it. */
export function fold6(w: readonly [number, number, number, number]): number {
  const lo: U64 = [w[1] >>> 0, w[0] >>> 0];
  const hi: U64 = [w[3] >>> 0, w[2] >>> 0];
  const inner = fmix64([(hi[0] ^ FOLD[0]) >>> 0, (hi[1] ^ FOLD[1]) >>> 0]);
  const x = fmix64([(lo[0] ^ inner[0]) >>> 0, (lo[1] ^ inner[1]) >>> 0]);
  return (x[0] ^ x[1]) >>> 0;
}

function words6(addr: string): [number, number, number, number] {
  if (!isIPv6(addr)) throw new TypeError(`not an IP address: ${addr}`);
  const b = Buffer.alloc(16);
  writeAddr(b, 0, addr);
  return [b.readUInt32LE(0), b.readUInt32LE(4), b.readUInt32LE(8), b.readUInt32LE(12)];
}

/** The word the data path hashes for an address: the raw word for IPv4, lb_fold6() for IPv6. */
export function rawAddr(addr: string): number {
  return isIPv4(addr) ? rawAddr4(addr) : fold6(words6(addr));
}

/** The word the filters see for an address: the raw word for IPv4, lb_filter6() (XOR) for IPv6. */
export function filterWord(addr: string): number {
  if (isIPv4(addr)) return rawAddr4(addr);
  const w = words6(addr);
  return (w[0] ^ w[1] ^ w[2] ^ w[3]) >>> 0;
}

/** A port (host order number) as the raw 16-bit value the BPF program loads. */
export function rawPort(port: number): number {
  return ((port & 0xff) << 8) | ((port >> 8) & 0xff);
}

export interface FlowTuple {
  client: string;
  clientPort: number;
  vip: string;
  vipPort: number;
  /** IP protocol number */
  proto: number;
}

export function flowHash(f: FlowTuple, seed: number): FlowHash {
  const ports = ((rawPort(f.clientPort) << 16) | rawPort(f.vipPort)) >>> 0;
  return lbHash3(rawAddr(f.client), rawAddr(f.vip), ports, (seed ^ f.proto) >>> 0);
}

/** The hash that picks the ring slot: the whole flow, or the client address alone. */
export function ringHash(f: FlowTuple, seed: number, srcOnly: boolean): number {
  return srcOnly ? lbHash3(rawAddr(f.client), 0, 0, seed).h1 : flowHash(f, seed).h1;
}

export const VIP_FILTER_SHIFT = 16;
export const VIP_FILTER_WORDS = 1024;

/** Bit index of an address in the VIP filter (and the NAT reply filter), as vip_filter_hit(). */
export function vipFilterBit(addr: string): number {
  return Math.imul(filterWord(addr), 0x9e3779b1) >>> (32 - VIP_FILTER_SHIFT);
}
