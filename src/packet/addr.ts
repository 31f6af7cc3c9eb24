/**
 * Address text <-> bytes. Everything returns a fresh Buffer in network order. Bad input throws
 * LbError ERR_LB_USAGE: a typo in a fixture table should fail loudly, not build a packet to 0.0.0.0.
 */
import { isIP } from 'node:net';
import { LbError } from '../errors.js';

export function parseMac(s: string): Buffer {
  const parts = s.split(/[:-]/);
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{1,2}$/.test(p))) {
    throw new LbError('ERR_LB_USAGE', `not a MAC address: ${JSON.stringify(s)}`, {
      hint: "write it as six hex octets, e.g. 'aa:bb:cc:00:11:22'",
    });
  }
  return Buffer.from(parts.map((p) => parseInt(p, 16)));
}

export function formatMac(b: Uint8Array): string {
  return Array.from(b.subarray(0, 6), (x) => x.toString(16).padStart(2, '0')).join(':');
}

export function parseIpv4(s: string): Buffer {
  if (isIP(s) !== 4) {
    throw new LbError('ERR_LB_USAGE', `not an IPv4 address: ${JSON.stringify(s)}`);
  }
  return Buffer.from(s.split('.').map((p) => Number(p)));
}

export function formatIpv4(b: Uint8Array): string {
  return Array.from(b.subarray(0, 4)).join('.');
}

export function parseIpv6(s: string): Buffer {
  if (isIP(s) !== 6) {
    throw new LbError('ERR_LB_USAGE', `not an IPv6 address: ${JSON.stringify(s)}`);
  }
  // isIP accepts a zone id ('fe80::1%eth0'); it is not part of the on-wire address.
  let text = s.split('%')[0] ?? '';
  // A trailing dotted quad ('::ffff:192.0.2.1') stands for the last two groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted?.[1] !== undefined) {
    const v4 = parseIpv4(dotted[1]);
    text =
      text.slice(0, dotted.index) +
      `${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const tailGroups = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? 0 : 8 - headGroups.length - tailGroups.length;
  const groups = [...headGroups, ...Array<string>(fill).fill('0'), ...tailGroups];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** RFC 5952 text: lower case, leading zeros dropped, the longest run (>= 2) of zero groups as '::'. */
export function formatIpv6(b: Uint8Array): string {
  const buf = Buffer.from(b.buffer, b.byteOffset, 16);
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(i * 2));
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (gs: number[]): string => gs.map((g) => g.toString(16)).join(':');
  if (bestLen < 2) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/** Either family; the result's length (4 or 16) tells which. */
export function parseIp(s: string): Buffer {
  const family = isIP(s);
  if (family === 4) return parseIpv4(s);
  if (family === 6) return parseIpv6(s);
  throw new LbError('ERR_LB_USAGE', `not an IP address: ${JSON.stringify(s)}`);
}

export function formatIp(b: Uint8Array): string {
  return b.length === 4 ? formatIpv4(b) : formatIpv6(b);
}
