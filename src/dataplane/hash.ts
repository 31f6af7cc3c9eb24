/**
 * The data path's hashes, computed the same way in TypeScript (bpf/lib/hash.h, and the VIP filter
 * fold in bpf/balancer.bpf.c). The control plane needs them to fill the VIP filter, to predict a
 * flow's backend in tests, and to find a flow's bucket in the flow table.
 *
 * The BPF side mixes the raw 32-bit words it loads from the packet on a little-endian host:
 * an address's four bytes read little-endian, a port's two bytes read little-endian.
 */
import { isIPv4 } from 'node:net';

const INIT = 0xdeadbeef;

function rol(w: number, s: number): number {
  return ((w << s) | (w >>> (32 - s))) >>> 0;
}

export interface FlowHash {
  h1: number;
  h2: number;
}

/** lookup3's final mix over three words, as lb_hash3(). */
export function lbHash3(a: number, b: number, c: number, seed: number): FlowHash {
  a = (a + INIT + 12 + seed) >>> 0;
  b = (b + INIT + 12 + seed) >>> 0;
  c = (c + INIT + 12 + seed) >>> 0;
  c = ((c ^ b) - rol(b, 14)) >>> 0;
  a = ((a ^ c) - rol(c, 11)) >>> 0;
  b = ((b ^ a) - rol(a, 25)) >>> 0;
  c = ((c ^ b) - rol(b, 16)) >>> 0;
  a = ((a ^ c) - rol(c, 4)) >>> 0;
  b = ((b ^ a) - rol(a, 14)) >>> 0;
  c = ((c ^ b) - rol(b, 24)) >>> 0;
  return { h1: c, h2: b };
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
  return lbHash3(rawAddr4(f.client), rawAddr4(f.vip), ports, (seed ^ f.proto) >>> 0);
}

/** The hash that picks the ring slot: the whole flow, or the client address alone. */
export function ringHash(f: FlowTuple, seed: number, srcOnly: boolean): number {
  return srcOnly ? lbHash3(rawAddr4(f.client), 0, 0, seed).h1 : flowHash(f, seed).h1;
}

export const VIP_FILTER_SHIFT = 16;
export const VIP_FILTER_WORDS = 1024;

/** Bit index of an address in the VIP filter, as vip_filter_hit(). */
export function vipFilterBit(addr: string): number {
  return Math.imul(rawAddr4(addr), 0x9e3779b1) >>> (32 - VIP_FILTER_SHIFT);
}
