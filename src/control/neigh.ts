/**
 * Next-hop MACs for l2dsr backends that the config gives by address only. The kernel already
 * does ARP and IPv6 neighbour discovery: we read its neighbour tables (`ip -4 neigh`, `ip -6
 * neigh`), and when an entry is missing we provoke resolution with one datagram to the discard
 * port (the reply, if any, does not matter: sending it makes the kernel ask) and look again.
 */
import { createSocket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import { canonicalIpv6 } from '../config/addr.js';
import { run } from '../lab/exec.js';

interface NeighEntry {
  dst: string;
  dev?: string;
  lladdr?: string;
  state?: string[];
}

const USABLE = new Set(['REACHABLE', 'STALE', 'DELAY', 'PROBE', 'PERMANENT', 'NOARP']);

/** What the neighbour table says now: address -> MAC, for usable entries only. */
export async function neighbourTable(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const family of ['-4', '-6']) {
    const r = await run(['ip', '-j', family, 'neigh', 'show'], { allowFail: true, timeoutMs: 5000 });
    if (r.status !== 0 || !r.stdout.trim()) continue;
    for (const e of JSON.parse(r.stdout) as NeighEntry[]) {
      if (!e.lladdr || !(e.state ?? []).some((s) => USABLE.has(s))) continue;
      // the config holds IPv6 in RFC 5952 form; iproute2's inet_ntop agrees, but a lookup must not depend on it
      out.set(isIPv6(e.dst) ? canonicalIpv6(e.dst) : e.dst, e.lladdr.toLowerCase());
    }
  }
  return out;
}

function poke(address: string): Promise<void> {
  return new Promise((resolve) => {
    const sock = createSocket(isIPv6(address) ? 'udp6' : 'udp4');
    sock.on('error', () => {
      sock.close();
      resolve();
    });
    // the callback comes once the kernel took the datagram (queued behind resolution) or refused it
    sock.send(Buffer.alloc(0), 9, address, () => {
      sock.close();
      resolve();
    });
  });
}

/**
 * MACs for `addresses`: those the table has, plus those that resolve within `timeoutMs` after a
 * poke. Missing ones are simply absent from the result; the caller keeps such a backend out of
 * the ring and says why.
 */
export async function resolveMacs(addresses: readonly string[], timeoutMs = 1000): Promise<Map<string, string>> {
  let table = await neighbourTable();
  const missing = addresses.filter((a) => !table.has(a));
  if (missing.length === 0) return table;
  await Promise.all(missing.map(poke));
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 20 && Date.now() < deadline; i++) {
    await new Promise((r) => setTimeout(r, 50));
    table = await neighbourTable();
    if (missing.every((a) => table.has(a))) break;
  }
  return table;
}
