/**
 * A private network namespace for the data-path benchmark, so the IPIP path's FIB lookup has a
 * deterministic answer: a veth pair, forwarding on, and a route to the backends' network via a
 * permanent neighbour, for each family. Test-runs made inside it with ingress_ifindex = veth0 then take the
 * XDP_TX (TX_IPIP) path without touching the host's network or sending a single frame.
 */
import { spawnSync } from 'node:child_process';
import { LbError } from '../errors.js';

export const BENCH_NS = `xdplb-bench-${process.pid}`;
export const BENCH_DEV = 'bvlb0';
export const BENCH_LOCAL4 = '10.99.0.1';
const PEER = 'bvlb1';
const GATEWAY4 = '10.99.0.2';
const GATEWAY_MAC = '02:99:00:00:00:02';
/** Backends for IPIP live here (RFC 5737 TEST-NET-3), routed via the permanent neighbour. */
export const BACKEND_NET4 = '203.0.113.0/24';
export const BENCH_LOCAL6 = 'fd99::1';
const GATEWAY6 = 'fd99::2';
/** ... and those for 6in6 and NAT66 here (RFC 3849 documentation prefix). */
export const BACKEND_NET6 = '2001:db8:113::/64';

function ip(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) {
    throw new LbError('ERR_LB_EXEC', `ip ${args.join(' ')} failed: ${(r.stderr || r.error?.message || '').trim()}`, {
      hint: 'the benchmark needs root and iproute2 to make its own network namespace',
    });
  }
}

export function createBenchNetns(): void {
  destroyBenchNetns();
  ip(['netns', 'add', BENCH_NS]);
  try {
    const n = ['-n', BENCH_NS];
    ip([...n, 'link', 'add', BENCH_DEV, 'type', 'veth', 'peer', 'name', PEER]);
    ip([...n, 'link', 'set', 'lo', 'up']);
    ip([...n, 'link', 'set', BENCH_DEV, 'up']);
    ip([...n, 'link', 'set', PEER, 'up']);
    ip([...n, 'addr', 'add', `${BENCH_LOCAL4}/24`, 'dev', BENCH_DEV]);
    ip([...n, 'neigh', 'replace', GATEWAY4, 'lladdr', GATEWAY_MAC, 'dev', BENCH_DEV, 'nud', 'permanent']);
    ip([...n, 'route', 'add', BACKEND_NET4, 'via', GATEWAY4, 'dev', BENCH_DEV]);
    // nodad: usable at once, no duplicate address detection to wait for
    ip([...n, '-6', 'addr', 'add', `${BENCH_LOCAL6}/64`, 'dev', BENCH_DEV, 'nodad']);
    ip([...n, '-6', 'neigh', 'replace', GATEWAY6, 'lladdr', GATEWAY_MAC, 'dev', BENCH_DEV, 'nud', 'permanent']);
    ip([...n, '-6', 'route', 'add', BACKEND_NET6, 'via', GATEWAY6, 'dev', BENCH_DEV]);
    // bpf_fib_lookup() answers IPv6 only where forwarding is on
    const r = spawnSync('ip', ['netns', 'exec', BENCH_NS, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1'], { encoding: 'utf8' });
    if (r.status !== 0) throw new LbError('ERR_LB_EXEC', `cannot enable forwarding in ${BENCH_NS}: ${r.stderr.trim()}`);
  } catch (e) {
    destroyBenchNetns();
    throw e;
  }
}

export function destroyBenchNetns(): void {
  spawnSync('ip', ['netns', 'del', BENCH_NS], { encoding: 'utf8' });
}
