/**
 * The lab's topology as plain data: which hosts exist, on which segment, with which address and
 * gateway, and which services (VIPs) the backends prepare for. `buildTopology()` is pure: it decides
 * every name and address; `labUp()` (lab.ts) only realises a `Topology` with network namespaces.
 * The same description can be pointed at VMs later (Vagrant): hosts become machines, segments
 * become networks, the router becomes a machine with forwarding on.
 *
 *   client --(client seg 10.200.1.0/24)-- router --br0 (l2 seg 10.200.2.0/24)-- lb, l2be1..N
 *                                                  --br1 (routed seg 10.200.3.0/24)-- rtbe1..M
 *                                                  --br2 (nat seg 10.200.4.0/24)-- lb eth1, natbe1..K
 *   router: route VIP range 10.200.100.0/24 via lb (10.200.2.10), nat seg via lb too
 *
 * The nat segment is a switch (br2 carries no router address): its gateway is the LB's second
 * interface (10.200.4.1), so the natbe hosts answer every client through the LB. That is NAT with
 * the LB as the backends' gateway (the client's address is kept). Full NAT uses the routed
 * backends, whose gateway is the router: the LB is one-armed there, and the backends see its
 * address (10.200.2.10) as the source.
 *
 * IPv6 (dual stack, every segment): a ULA /64 that mirrors each IPv4 /24, written so that a reader
 * can go from one to the other by eye: 10.200.S.H is fd00:200:S::H, the decimal digits of S and H
 * written as they are (10.200.2.11 -> fd00:200:2::11). So the segments are fd00:200:1::/64 (client)
 * ... fd00:200:4::/64 (nat), gateways fd00:200:S::1, the LB fd00:200:2::10 (and fd00:200:4::1 on the
 * nat segment), VIPs in fd00:200:100::/64, and the router routes that range and fd00:200:4::/64 via
 * the LB, as for IPv4. The IPv6 services mirror the IPv4 ones (fd00:200:100::1 l2dsr, ::2 ipip 6in6,
 * ::3 NAT66 with the LB as gateway, ::4 full NAT66), and 10.200.100.5 is an IPv4 VIP whose routed
 * backends are reached over IPv6 (ipip 4in6: `backendFamily: 6`).
 */
import { isIPv6 } from 'node:net';
import { LbError } from '../errors.js';

export type SegmentName = 'client' | 'l2' | 'routed' | 'nat';
export type HostRole = 'client' | 'lb' | 'backend';
export type ServiceMode = 'l2dsr' | 'ipip' | 'nat';
export type Proto = 'tcp' | 'udp';

export interface TopoService {
  vip: string;
  port: number;
  proto: Proto;
  mode: ServiceMode;
  /** nat: the port backends serve on (port translation); default the VIP's */
  backendPort?: number;
  /** nat: full NAT (routed backends, LB source address) instead of the LB as gateway */
  fullNat?: boolean;
  /** the address family the LB reaches the backends by; default the VIP's (6 with an IPv4 VIP: 4in6) */
  backendFamily?: 4 | 6;
}

/** An L3 segment behind the router. */
export interface TopoSegment {
  name: SegmentName;
  /** network address and length, e.g. 10.200.2.0/24 */
  subnet: string;
  prefixLen: number;
  /** the router's address on it, which is every member's default gateway */
  gateway: string;
  /** the router's interface on it: a bridge when the segment has several members, else the veth */
  routerIf: string;
  bridge: boolean;
  /** 'lb': the gateway address is the LB's (second) interface; the router only switches */
  gatewayHost?: 'lb';
  /** the IPv6 twin of subnet/prefixLen/gateway (see the top of this file) */
  subnet6: string;
  prefixLen6: number;
  gateway6: string;
}

/** A further interface of a host (the LB's leg on the nat segment). */
export interface TopoIf {
  segment: SegmentName;
  ifname: string;
  addr: string;
  addr6: string;
  routerPort: string;
}

/** A host with one interface (eth0) on one segment. */
export interface TopoHost {
  /** short name without the prefix: client, lb, l2be1, rtbe2 ... */
  name: string;
  role: HostRole;
  /** namespace (or machine) name: prefix + name */
  ns: string;
  segment: SegmentName;
  ifname: string;
  addr: string;
  /** its IPv6 address (the twin of addr) */
  addr6: string;
  /** the router-side veth peer (a bridge port, or the router's own interface for the client) */
  routerPort: string;
  /** VIPs this host holds on lo (backends only), with the server-prep mode */
  vips: string[];
  prepMode: 'l2dsr' | 'ipip' | null;
  /** further interfaces, each on another segment */
  extraIfs?: TopoIf[];
}

export interface Topology {
  prefix: string;
  router: {
    name: string;
    ns: string;
    /** static routes in the router: the VIP range goes to the LB */
    routes: { dst: string; via: string }[];
    /** the same for IPv6 */
    routes6: { dst: string; via: string }[];
  };
  segments: TopoSegment[];
  hosts: TopoHost[];
  vipRange: string;
  vipRange6: string;
  services: TopoService[];
  /** ports the backend servers listen on */
  serverPorts: { tcp: number[]; udpEcho: number[] };
}

export interface TopologyOptions {
  /** namespace name prefix; lowercase letters/digits, ending in '-'. Default `xlb-`. */
  prefix?: string;
  /** number of backends on the LB's L2 segment. Default 3. */
  l2Backends?: number;
  /** number of backends on the routed segment (IPIP DSR, full NAT). Default 3. */
  routedBackends?: number;
  /** number of backends on the nat segment, behind the LB as their gateway. Default 3. */
  natBackends?: number;
  /** services; VIPs must lie in 10.200.100.0/24 or fd00:200:100::/64. Default: DEFAULT_SERVICES. */
  services?: TopoService[];
  /** UDP echo ports every backend serves in addition to the ports of udp services. Default [9000]. */
  udpEchoPorts?: number[];
}

export const DEFAULT_PREFIX = 'xlb-';
export const VIP_RANGE = '10.200.100.0/24';
export const VIP_RANGE6 = 'fd00:200:100::/64';
export const DEFAULT_UDP_ECHO_PORT = 9000;
export const MAX_BACKENDS_PER_SEGMENT = 32;

export const DEFAULT_SERVICES: readonly TopoService[] = Object.freeze([
  { vip: '10.200.100.1', port: 80, proto: 'tcp', mode: 'l2dsr' },
  { vip: '10.200.100.2', port: 80, proto: 'tcp', mode: 'ipip' },
  { vip: '10.200.100.3', port: 80, proto: 'tcp', mode: 'nat', backendPort: 8080 },
  { vip: '10.200.100.3', port: 53, proto: 'udp', mode: 'nat', backendPort: DEFAULT_UDP_ECHO_PORT },
  { vip: '10.200.100.4', port: 80, proto: 'tcp', mode: 'nat', fullNat: true, backendPort: 8080 },
  { vip: '10.200.100.4', port: 53, proto: 'udp', mode: 'nat', fullNat: true, backendPort: DEFAULT_UDP_ECHO_PORT },
  { vip: 'fd00:200:100::1', port: 80, proto: 'tcp', mode: 'l2dsr' },
  { vip: 'fd00:200:100::2', port: 80, proto: 'tcp', mode: 'ipip' },
  { vip: 'fd00:200:100::3', port: 80, proto: 'tcp', mode: 'nat', backendPort: 8080 },
  { vip: 'fd00:200:100::3', port: 53, proto: 'udp', mode: 'nat', backendPort: DEFAULT_UDP_ECHO_PORT },
  { vip: 'fd00:200:100::4', port: 80, proto: 'tcp', mode: 'nat', fullNat: true, backendPort: 8080 },
  { vip: 'fd00:200:100::4', port: 53, proto: 'udp', mode: 'nat', fullNat: true, backendPort: DEFAULT_UDP_ECHO_PORT },
  { vip: '10.200.100.5', port: 80, proto: 'tcp', mode: 'ipip', backendFamily: 6 },
] satisfies TopoService[]);

/** IPv4 services and their backends' family: what the Vagrant lab and older tools know. */
export function isIpv4Only(s: Pick<TopoService, 'vip' | 'backendFamily'>): boolean {
  return !s.vip.includes(':') && (s.backendFamily ?? 4) === 4;
}

/** The family the LB reaches a service's backends by. */
export function backendFamilyOf(s: Pick<TopoService, 'vip' | 'backendFamily'>): 4 | 6 {
  return s.backendFamily ?? (s.vip.includes(':') ? 6 : 4);
}

/** The IPv6 twin of a lab IPv4 address: 10.200.S.H -> fd00:200:S::H (digits kept as written). */
export function mirror6(addr4: string): string {
  const m = /^10\.200\.(\d{1,3})\.(\d{1,3})$/.exec(addr4);
  if (!m) throw new LbError('ERR_LB_USAGE', `${addr4} is not a lab address (10.200.S.H)`);
  return `fd00:200:${m[1]}::${m[2]}`;
}

function segment(name: SegmentName, s: number, routerIf: string, bridge: boolean, extra: Partial<TopoSegment> = {}): TopoSegment {
  return {
    name, subnet: `10.200.${s}.0/24`, prefixLen: 24, gateway: `10.200.${s}.1`, routerIf, bridge, ...extra,
    subnet6: `fd00:200:${s}::/64`, prefixLen6: 64, gateway6: `fd00:200:${s}::1`,
  };
}

const SEGMENTS: readonly TopoSegment[] = [
  segment('client', 1, 'eth-client', false),
  segment('l2', 2, 'br0', true),
  segment('routed', 3, 'br1', true),
  segment('nat', 4, 'br2', true, { gatewayHost: 'lb' }),
];

export const LB_ADDR = '10.200.2.10';
export const LB_ADDR6 = mirror6(LB_ADDR);
/** The LB's interface on the nat segment: the nat backends' gateway. */
export const LB_NAT_IF: TopoIf = { segment: 'nat', ifname: 'eth1', addr: '10.200.4.1', addr6: mirror6('10.200.4.1'), routerPort: 'v-lbnat' };

/** The segment whose backends serve a service. */
export function serviceSegment(s: Pick<TopoService, 'mode' | 'fullNat'>): Exclude<SegmentName, 'client'> {
  if (s.mode === 'l2dsr') return 'l2';
  if (s.mode === 'nat' && !s.fullNat) return 'nat';
  return 'routed';
}

/** A prefix is safe to match namespaces with: short, lowercase, ends with '-'. */
export function validatePrefix(prefix: string): string {
  if (!/^[a-z][a-z0-9]{0,9}-$/.test(prefix)) {
    throw new LbError('ERR_LB_USAGE', `invalid lab prefix ${JSON.stringify(prefix)}`, {
      hint: "use 1-10 lowercase letters or digits followed by '-', e.g. xlb-",
    });
  }
  return prefix;
}

function ipv4ToInt(a: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(a);
  if (!m) return null;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const o = Number(m[i]);
    if (o > 255) return null;
    n = n * 256 + o;
  }
  return n;
}

function inSubnet(addr: string, cidr: string): boolean {
  const [net, len] = cidr.split('/');
  const a = ipv4ToInt(addr);
  const n = ipv4ToInt(net ?? '');
  const l = Number(len);
  if (a === null || n === null) return false;
  const size = 2 ** (32 - l);
  return Math.floor(a / size) === Math.floor(n / size);
}

/** In fd00:200:100::/64: the first four groups, as the lab writes them. */
function inVipRange6(addr: string): boolean {
  return isIPv6(addr) && /^fd00:200:100::[0-9a-f]{1,4}$/.test(addr);
}

function count(v: number | undefined, dflt: number, what: string): number {
  const n = v ?? dflt;
  if (!Number.isInteger(n) || n < 0 || n > MAX_BACKENDS_PER_SEGMENT) {
    throw new LbError('ERR_LB_USAGE', `${what}: ${String(v)} is not an integer in 0..${MAX_BACKENDS_PER_SEGMENT}`);
  }
  return n;
}

function validPort(p: number): boolean {
  return Number.isInteger(p) && p >= 1 && p <= 65535;
}

/** Decide every name and address of a lab. Pure; throws ERR_LB_USAGE on bad options. */
export function buildTopology(opts: TopologyOptions = {}): Topology {
  const prefix = validatePrefix(opts.prefix ?? DEFAULT_PREFIX);
  const nL2 = count(opts.l2Backends, 3, 'l2Backends');
  const nRouted = count(opts.routedBackends, 3, 'routedBackends');
  const nNat = count(opts.natBackends, 3, 'natBackends');
  const services = (opts.services ?? DEFAULT_SERVICES).map((s) => ({ ...s }));

  const problems: string[] = [];
  services.forEach((s, i) => {
    if (!(ipv4ToInt(s.vip) !== null && inSubnet(s.vip, VIP_RANGE)) && !inVipRange6(s.vip)) {
      problems.push(`services[${i}].vip: ${s.vip} is not in ${VIP_RANGE} or ${VIP_RANGE6} (written fd00:200:100::N)`);
    }
    if (s.backendFamily !== undefined && (![4, 6].includes(s.backendFamily) || (s.backendFamily === 4 && s.vip.includes(':')))) {
      problems.push(`services[${i}].backendFamily: ${String(s.backendFamily)} (IPv6 VIPs have IPv6 backends; IPv4 VIPs 4 or 6)`);
    }
    if (s.backendFamily === 6 && !s.vip.includes(':') && s.mode !== 'ipip') problems.push(`services[${i}]: IPv6 backends for an IPv4 VIP need ipip (4in6)`);
    if (!validPort(s.port)) problems.push(`services[${i}].port: ${s.port} is not a port`);
    if (s.proto !== 'tcp' && s.proto !== 'udp') problems.push(`services[${i}].proto: ${String(s.proto)} is not tcp or udp`);
    if (!['l2dsr', 'ipip', 'nat'].includes(s.mode)) problems.push(`services[${i}].mode: ${String(s.mode)} is not l2dsr, ipip or nat`);
    if (s.backendPort !== undefined && !validPort(s.backendPort)) problems.push(`services[${i}].backendPort: ${s.backendPort} is not a port`);
    if ((s.backendPort !== undefined || s.fullNat) && s.mode !== 'nat') problems.push(`services[${i}]: backendPort and fullNat are for nat services`);
  });
  const udpExtra = opts.udpEchoPorts ?? [DEFAULT_UDP_ECHO_PORT];
  udpExtra.forEach((p, i) => {
    if (!validPort(p)) problems.push(`udpEchoPorts[${i}]: ${p} is not a port`);
  });
  if (problems.length > 0) {
    throw new LbError('ERR_LB_USAGE', `invalid lab services: ${problems.join('; ')}`, { detail: problems.join('\n') });
  }

  const vipsOf = (mode: ServiceMode): string[] => [...new Set(services.filter((s) => s.mode === mode).map((s) => s.vip))];
  const l2Vips = vipsOf('l2dsr');
  const routedVips = vipsOf('ipip');

  const hosts: TopoHost[] = [
    { name: 'client', role: 'client', ns: `${prefix}client`, segment: 'client', ifname: 'eth0', addr: '10.200.1.2', addr6: mirror6('10.200.1.2'), routerPort: 'eth-client', vips: [], prepMode: null },
    {
      name: 'lb', role: 'lb', ns: `${prefix}lb`, segment: 'l2', ifname: 'eth0', addr: LB_ADDR, addr6: LB_ADDR6, routerPort: 'v-lb', vips: [], prepMode: null,
      ...(nNat > 0 ? { extraIfs: [{ ...LB_NAT_IF }] } : {}),
    },
  ];
  for (let i = 1; i <= nL2; i++) {
    hosts.push({
      name: `l2be${i}`, role: 'backend', ns: `${prefix}l2be${i}`, segment: 'l2', ifname: 'eth0',
      addr: `10.200.2.${10 + i}`, addr6: mirror6(`10.200.2.${10 + i}`), routerPort: `v-l2be${i}`, vips: [...l2Vips], prepMode: 'l2dsr',
    });
  }
  for (let i = 1; i <= nRouted; i++) {
    hosts.push({
      name: `rtbe${i}`, role: 'backend', ns: `${prefix}rtbe${i}`, segment: 'routed', ifname: 'eth0',
      addr: `10.200.3.${10 + i}`, addr6: mirror6(`10.200.3.${10 + i}`), routerPort: `v-rtbe${i}`, vips: [...routedVips], prepMode: 'ipip',
    });
  }

  for (let i = 1; i <= nNat; i++) {
    hosts.push({
      name: `natbe${i}`, role: 'backend', ns: `${prefix}natbe${i}`, segment: 'nat', ifname: 'eth0',
      addr: `10.200.4.${10 + i}`, addr6: mirror6(`10.200.4.${10 + i}`), routerPort: `v-natbe${i}`, vips: [], prepMode: null,
    });
  }

  const served = (s: TopoService): number => s.backendPort ?? s.port;
  const tcp = [...new Set([80, ...services.filter((s) => s.proto === 'tcp').map(served)])].sort((a, b) => a - b);
  const udpEcho = [...new Set([...udpExtra, ...services.filter((s) => s.proto === 'udp').map(served)])].sort((a, b) => a - b);
  const natSeg = SEGMENTS.find((s) => s.name === 'nat');
  const routes = [{ dst: VIP_RANGE, via: LB_ADDR }];
  const routes6 = [{ dst: VIP_RANGE6, via: LB_ADDR6 }];
  // The nat segment is reachable from the client side only through the LB (as a plain router).
  if (nNat > 0 && natSeg) {
    routes.push({ dst: natSeg.subnet, via: LB_ADDR });
    routes6.push({ dst: natSeg.subnet6, via: LB_ADDR6 });
  }

  return {
    prefix,
    router: { name: 'router', ns: `${prefix}router`, routes, routes6 },
    segments: SEGMENTS.filter((s) => s.name !== 'nat' || nNat > 0).map((s) => ({ ...s })),
    hosts,
    vipRange: VIP_RANGE,
    vipRange6: VIP_RANGE6,
    services,
    serverPorts: { tcp, udpEcho },
  };
}

/** Every namespace name a topology uses, router first. */
export function namespacesOf(topo: Topology): string[] {
  return [topo.router.ns, ...topo.hosts.map((h) => h.ns)];
}

export function segmentOf(topo: Topology, name: SegmentName): TopoSegment {
  const s = topo.segments.find((x) => x.name === name);
  if (!s) throw new LbError('ERR_LB_LAB', `topology has no segment ${name}`);
  return s;
}
