/**
 * The LB's own addresses the data path writes into packets: the outer source of ipip tunnels
 * (lb_ctl.src4 for IPv4 backends, lb_ctl.src6 for IPv6 backends) and the default full-NAT
 * sources. node.sourceAddress gives them; without it the daemon takes the first interface's
 * first address of the family (IPv6: the first global one, never link-local).
 *
 * An address is looked up only when the config needs one (an ipip service with a backend of that
 * family, a full-NAT service of that family without a listed source), and a config that needs one
 * the host does not have is refused, at start or at the change, with what to set. IPv4 is also
 * looked up at start when nothing needs it, as it always was, but its absence is no longer fatal:
 * an IPv6-only host can run IPv6 services.
 *
 * Synchronous (`ip -j addr`, a few milliseconds) so that a config change can be refused before
 * anything is written, inside the one synchronous commit.
 */
import { spawnSync } from 'node:child_process';
import { isIP } from 'node:net';
import { canonicalIpv6 } from '../config/addr.js';
import type { Config } from '../config/types.js';
import { LbError } from '../errors.js';

export type Family = 4 | 6;

interface AddrInfo {
  family?: string;
  local?: string;
  scope?: string;
  dadfailed?: boolean;
  deprecated?: boolean;
}

/**
 * The first usable address of `family` on `ifname` as `ip addr` lists it (IPv6: scope global,
 * DAD not failed, not deprecated), or undefined. `netns` runs `ip -n` (tests).
 */
export function interfaceAddress(ifname: string, family: Family, netns?: string): string | undefined {
  const argv = [...(netns === undefined ? [] : ['-n', netns]), '-j', `-${family}`, 'addr', 'show', 'dev', ifname];
  const r = spawnSync('ip', argv, { encoding: 'utf8', timeout: 5000 });
  if (r.status !== 0 || !r.stdout.trim()) return undefined;
  let links: { addr_info?: AddrInfo[] }[];
  try {
    links = JSON.parse(r.stdout) as { addr_info?: AddrInfo[] }[];
  } catch {
    return undefined;
  }
  for (const l of links) {
    for (const a of l.addr_info ?? []) {
      if (!a.local || isIP(a.local) !== family) continue;
      if (family === 6 && (a.scope !== 'global' || a.dadfailed || a.deprecated)) continue;
      return family === 6 ? canonicalIpv6(a.local) : a.local;
    }
  }
  return undefined;
}

/**
 * Why `cfg` needs an address of `family` that node.sourceAddress does not give (for the error
 * message), or undefined when it needs none.
 */
export function sourceNeed(cfg: Config, family: Family): string | undefined {
  if ((family === 4 ? cfg.node.sourceAddress?.ipv4 : cfg.node.sourceAddress?.ipv6) !== undefined) return undefined;
  const listed = (cfg.node.nat.sources ?? []).some((a) => isIP(a) === family);
  for (const s of cfg.services) {
    if (s.mode === 'ipip') {
      const b = s.backends.find((x) => isIP(x.address) === family);
      if (b) return `the outer source of ipip tunnels to IPv${family} backends (service ${s.name}, backend ${b.address})`;
    }
    if (s.mode === 'nat' && s.fullNat && !listed && isIP(s.vip) === family) return `the full-NAT source of service ${s.name}`;
  }
  return undefined;
}

export interface Sources {
  /** '' = none */
  src4: string;
  src6: string;
}

/**
 * The sources for `cfg`: node.sourceAddress, else what was picked before (`picked`, updated in
 * place), else a lookup on the first interface when the config needs one. Throws
 * ERR_LB_NO_INTERFACE when a needed address does not exist.
 */
export function resolveSources(cfg: Config, picked: { 4?: string; 6?: string }, lookup = interfaceAddress): Sources {
  const ifname = cfg.node.interfaces[0] ?? '';
  const one = (family: Family): string => {
    const configured = family === 4 ? cfg.node.sourceAddress?.ipv4 : cfg.node.sourceAddress?.ipv6;
    if (configured !== undefined) return configured;
    const need = sourceNeed(cfg, family);
    if (picked[family] === undefined && (need !== undefined || family === 4)) picked[family] = lookup(ifname, family);
    const got = picked[family];
    if (got !== undefined) return got;
    if (need === undefined) return '';
    const what = family === 4 ? 'IPv4 address' : 'global IPv6 address';
    const hint =
      family === 4
        ? 'set node.sourceAddress.ipv4 in the config, or check the interface name with `ip addr`'
        : `set node.sourceAddress.ipv6 in the config, or give ${ifname} a global IPv6 address (\`ip -6 addr\`)`;
    throw new LbError('ERR_LB_NO_INTERFACE', `interface ${ifname} has no ${what} for ${need}`, { hint });
  };
  return { src4: one(4), src6: one(6) };
}

/**
 * Full-NAT sources per family: those node.nat.sources lists, else the family's source address.
 * IPv6 ones only when an IPv6 full-NAT service exists or the list names some: nothing else reads them.
 */
export function natSources(cfg: Config, src: Sources): string[] {
  const listed = cfg.node.nat.sources ?? [];
  const v4 = listed.filter((a) => isIP(a) === 4);
  const v6 = listed.filter((a) => isIP(a) === 6);
  if (v4.length === 0 && src.src4 !== '') v4.push(src.src4);
  const full6 = cfg.services.some((s) => s.mode === 'nat' && s.fullNat && isIP(s.vip) === 6);
  if (v6.length === 0 && full6 && src.src6 !== '') v6.push(src.src6);
  return [...v4, ...v6];
}
