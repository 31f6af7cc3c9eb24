/**
 * Address, MAC and interface-name checks for the config. Each check returns the normalized value
 * or a message (and maybe a hint) for the violation list; none of them throws.
 */
import { BlockList, isIP } from 'node:net';

export type Family = 4 | 6;
export type Checked<T> = { value: T } | { error: string; hint?: string };

export interface Ip {
  address: string;
  family: Family;
}

/**
 * Any IP address, IPv6 in its canonical text (RFC 5952: lower case, zeros compressed), so that
 * two spellings of one address compare equal in duplicate checks and service keys.
 */
export function checkIp(s: string): Checked<Ip> {
  if (s.includes('%')) {
    return { error: `${JSON.stringify(s)} has a zone index`, hint: 'a VIP or backend is a global address; drop the %zone' };
  }
  const family = isIP(s);
  if (family === 4) return { value: { address: s, family } };
  if (family === 6) return { value: { address: canonicalIpv6(s), family } };
  return { error: `${JSON.stringify(s)} is not an IP address` };
}

export function canonicalIpv6(s: string): string {
  // The WHATWG URL parser serializes IPv6 hosts exactly the RFC 5952 way; no need for our own.
  return new URL(`http://[${s}]/`).hostname.slice(1, -1);
}

function blockList(v4: [string, number][], v6: [string, number][]): BlockList {
  const b = new BlockList();
  for (const [net, len] of v4) b.addSubnet(net, len, 'ipv4');
  for (const [net, len] of v6) b.addSubnet(net, len, 'ipv6');
  return b;
}

// Addresses that can never be a VIP, a backend or a source: the data path would either never see
// them (loopback), could not answer from them (multicast, broadcast) or they mean "any" (unspecified).
const SPECIAL: [string, BlockList][] = [
  ['unspecified', blockList([['0.0.0.0', 8]], [['::', 128]])],
  ['loopback', blockList([['127.0.0.0', 8]], [['::1', 128]])],
  ['multicast', blockList([['224.0.0.0', 4]], [['ff00::', 8]])],
  ['broadcast', blockList([['255.255.255.255', 32]], [])],
];
const V4_MAPPED = blockList([], [['::ffff:0:0', 96]]);
// IPv6 link-local only: it needs a zone to mean anything, and the data path has none. (IPv4's
// 169.254/16 has been accepted all along and stays so.)
const LINK_LOCAL6 = blockList([], [['fe80::', 10]]);

/** An address a service can use: a VIP, a backend or a source address. */
export function checkUnicastIp(s: string): Checked<Ip> {
  const r = checkIp(s);
  if (!('value' in r)) return r;
  const { address, family } = r.value;
  const type = family === 4 ? 'ipv4' : 'ipv6';
  if (family === 6 && V4_MAPPED.check(address, 'ipv6')) {
    return { error: `${JSON.stringify(s)} is an IPv4-mapped IPv6 address`, hint: 'write the IPv4 address itself' };
  }
  if (family === 6 && LINK_LOCAL6.check(address, 'ipv6')) {
    return {
      error: `${JSON.stringify(s)} is a link-local address`,
      hint: 'a VIP, backend or source needs a global (or unique local, fc00::/7) IPv6 address',
    };
  }
  for (const [what, list] of SPECIAL) {
    if (list.check(address, type)) return { error: `${JSON.stringify(s)} is ${/^[aeiou]/.test(what) ? 'an' : 'a'} ${what} address` };
  }
  return r;
}

/** A unicast MAC in colon form, lower case. Dashes are accepted because `ip` and Windows differ. */
export function checkMac(s: string): Checked<string> {
  if (!/^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$/.test(s)) {
    return { error: `${JSON.stringify(s)} is not a MAC address`, hint: 'six hex octets, e.g. "02:00:00:00:00:11"' };
  }
  const mac = s.toLowerCase().replaceAll('-', ':');
  if (parseInt(mac.slice(0, 2), 16) & 1) {
    return { error: `${JSON.stringify(s)} is a multicast MAC; a backend needs a unicast one` };
  }
  if (mac === '00:00:00:00:00:00') return { error: `${JSON.stringify(s)} is the all-zero MAC` };
  return { value: mac };
}

/** What the kernel's dev_valid_name() accepts: under IFNAMSIZ (16) bytes, no '/', ':' or whitespace. */
export function checkInterfaceName(s: string): Checked<string> {
  const q = JSON.stringify(s);
  if (s === '') return { error: 'an interface name cannot be empty' };
  if (Buffer.byteLength(s) > 15) return { error: `${q} is longer than 15 bytes (IFNAMSIZ)` };
  if (/[/:\s]/.test(s)) return { error: `${q} is not an interface name: no '/', ':' or whitespace` };
  if (s === '.' || s === '..') return { error: `${q} is not an interface name` };
  return { value: s };
}
