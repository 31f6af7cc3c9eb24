/**
 * The lab's packets-per-second figure: the same frames, in the same namespaces and the same run,
 * through the XDP balancer and through the kernel's own forwarding in the LB namespace.
 *
 * Generator: bpf/labgen.bpf.c's xdp_lab_gen under BPF_PROG_TEST_RUN in live-frames mode (what
 * xdp-trafficgen does; Debian's xdp-trafficgen does not load on this kernel), run in the router
 * namespace with the router's port of the LB link (v-lb) as ingress: its XDP_TX frames leave
 * v-lb and arrive at the LB's eth0, TCP segments from the lab client to a VIP, 1024 source ports
 * (ACKs for DSR and plain forwarding, SYNs for NAT: see below).
 * Counter: xdp_lab_count on v-lb, where the LB's output first lands (the wire, before the
 * router's software bridge, whose skb path would otherwise be the figure for both), counting the
 * generator's flows and dropping them, so nothing goes further.
 *
 * Live frames are processed inline: the generator, the LB's receive path and the counter all run
 * on the CPU that makes the test-run call. So each case's rate is one CPU's worth of
 * generator + veth + LB + veth + counter, and `generator_only` (counted at the LB's eth0 instead)
 * and `xdp_floor` (swap MACs, XDP_TX at the LB) say how much of a packet's time is not the LB:
 * lb_ns_per_packet is a case's ns per packet minus generator_only's in the same round.
 *
 * The neighbours' load moves the whole chain's speed from one second to the next, every case
 * alike, so the derived figures are taken within a round (cases a second apart) and then the
 * median over rounds: the ratio of packets/s, and each case's difference to generator_only.
 *
 * DSR: ACKs, so that every measured packet is of an established flow (a flow-table hit, the path
 * most of a connection's packets take). A SYN would take the ring every time (flow.h: a SYN starts
 * a connection even when its tuple is known); an ACK that misses takes the ring once and records
 * its flow, which the warm-up round does for all 1024 (the check: no new flows after it). The
 * kernel's forwarding gets the same ACKs, as do generator_only and xdp_floor (whom the frame's
 * flags do not concern).
 *
 * NAT: the balancer's nat mode beside nftables DNAT (conntrack), TCP SYNs to a nat VIP.
 * Gateway NAT (the client's address kept) sends to the nat segment's backend through the LB's
 * eth1, so those cases are counted on the router's port of that link (v-lbnat); full NAT (the
 * LB's address as the source) leaves by eth0 toward the routed backend and is counted on v-lb.
 * The generator cycles 1024 flows and a warm-up round runs first, unrecorded: every measured
 * packet belongs to a connection the balancer's table (or conntrack) already holds. Each case's
 * path is checked in the same run: the balancer's verdict counters and new-flow counts for XDP
 * cases, conntrack's statistics and the kernel's forwarded-datagram count for the kernel's.
 *
 * The cases are a table (LAB_CASES); a case's frames, counter match and checks come with it.
 */
import { BpfObject, attachXdp, detachXdp, ifIndex, inNetns, testRun, TestRunFlags, type BpfProgram } from '../bpf/index.js';
import { LbError, isLbError } from '../errors.js';
import { bpfObjectPath, loadBalancer, type LoadedBalancer } from '../dataplane/loader.js';
import { u32Key } from '../dataplane/abi.js';
import { exec, labDown, labServices, labUp, type Lab, type LabHostInfo } from '../lab/index.js';
import type { TopoService } from '../lab/topology.js';
import { packet } from '../packet/index.js';
import { median, round } from './stats.js';

export const LAB_PREFIX = 'xbench-';
const ROUTER_PORT = 'v-lb';
/** the router's port of the LB's nat-segment link (eth1) */
const ROUTER_NAT_PORT = 'v-lbnat';
/** nftables table of the kernel NAT cases, in the LB's namespace, present only during them */
const NFT_TABLE = 'xbench_nat';
const WARMUP_SECONDS = 0.3;
const HDR_LEN = 54;
const CFG_SIZE = 68;
const FLOWS = 1024;
const PORT_BASE = 20000;

export interface LabCase {
  case: string;
  path: string;
  counted_at: string;
  /** frames the generator sent per second (median over rounds) */
  offered_pps: number;
  /** frames counted per second (median over rounds) */
  delivered_pps: number;
  /** 1e9 / delivered_pps: the whole chain, on one CPU */
  ns_per_packet: number;
  /** ns per packet minus generator_only's, per round, median: what going through the LB adds */
  lb_ns_per_packet?: number;
  samples_pps: number[];
  /** what the run saw of the case's path, over all measured rounds */
  verified?: BalancerCheck | KernelCheck;
}

/** The balancer's counters while a case ran (measured rounds only). */
export interface BalancerCheck {
  expected_reason: string;
  reason_count: number;
  other_reasons: Record<string, number>;
  /** flows or connections the balancer counted as new: 0 when every packet was established,
   * reason_count when every packet took the new-connection path */
  new_flows: number;
  expected_new_flows: 'all' | 'none';
  delivered: number;
}

/** The kernel's counters while a case ran (measured rounds only), in the LB's namespace. */
export interface KernelCheck {
  /** /proc/net/snmp Ip ForwDatagrams */
  forwarded: number;
  /** /proc/net/stat/nf_conntrack, summed over CPUs: entries inserted, packets found INVALID, dropped */
  conntrack?: { insert: number; invalid: number; drop: number; insert_failed: number };
  delivered: number;
}

export interface LabResult {
  unit: 'packets/s';
  cases: LabCase[];
  /** delivered pps of the XDP balancer over the kernel's forwarding, per round, median */
  xdp_l2dsr_over_kernel: number;
  /** kernel_forward's lb_ns_per_packet over xdp_l2dsr's, per round, median */
  xdp_l2dsr_over_kernel_lb_only: number;
  /** delivered pps of the balancer's gateway NAT over nftables DNAT, per round, median */
  xdp_nat_over_kernel_dnat: number;
  /** kernel_dnat's lb_ns_per_packet over xdp_nat's, per round, median */
  xdp_nat_over_kernel_dnat_lb_only: number;
  /** the same for full NAT (nftables DNAT + SNAT) */
  xdp_fullnat_over_kernel_fullnat: number;
  xdp_fullnat_over_kernel_fullnat_lb_only: number;
  limit: string;
  method: Record<string, unknown>;
}

export interface LabOptions {
  /** seconds per case per round */
  seconds?: number;
  rounds?: number;
  log?: (line: string) => void;
}

interface Env {
  lab: Lab;
  lb: LoadedBalancer;
  gen: BpfObject;
  counter: BpfProgram;
  floor: BpfObject;
  vipL2: string;
  vipIpip: string;
  /** gateway NAT (client kept) to natBe, and full NAT (LB source) to rtBe: TCP port 80 */
  vipNat: string;
  vipFullNat: string;
  natBe: LabHostInfo;
  rtBe: LabHostInfo;
}

/** Where a case's output is counted: the LB's eth0 itself, or the router's end of eth0's or eth1's link. */
type CountedAt = 'lb' | 'router' | 'router_nat';

interface CaseDef {
  name: string;
  path: string;
  countedAt: CountedAt;
  vip: (e: Env) => string;
  /** the addresses of the frames as they arrive at the counter; default client -> VIP */
  match?: (e: Env) => { src: string; dst: string };
  /** the balancer's verdict for every frame (XDP balancer cases) */
  reason?: string;
  /** the balancer's new flows (or connections) per frame after the warm-up: 'none' for DSR ACKs
   * (their flows recorded in the warm-up) and for NAT SYNs (the connection made in the warm-up);
   * 'all' would be DSR SYNs, which always take the ring */
  newFlows?: 'all' | 'none';
  /** the TCP flags of the generated frames: SYN for the NAT cases (their connections stay in the
   * "new" state, see benchLab), ACK for the rest */
  flags: 'SYN' | 'ACK';
  /** the kernel forwards: check its counters (and conntrack's, when it translates) */
  kernel?: { conntrack: boolean };
  setup: (e: Env) => Promise<void>;
  teardown: (e: Env) => Promise<void>;
}

const inLb = <T>(e: Env, fn: () => T): T => inNetns(e.lab.lb.ns, fn);

async function kernelRouteUp(e: Env): Promise<void> {
  const be = e.lab.backends.find((b) => b.segment === 'l2');
  if (!be) throw new LbError('ERR_LB_LAB', 'the lab has no l2 backend to route to');
  const ns = e.lab.lb.ns;
  // The kernel forwards the VIP to one backend; no XDP program on eth0, GRO on: the veth then
  // takes frames from its peer's XDP_TX through NAPI, as a NIC driver would.
  await exec(ns, ['ip', 'route', 'replace', `${e.vipL2}/32`, 'via', be.addr, 'dev', e.lab.lb.ifname], { code: 'ERR_LB_LAB' });
  await exec(ns, ['ip', 'neigh', 'replace', be.addr, 'lladdr', be.mac, 'dev', e.lab.lb.ifname, 'nud', 'permanent'], { code: 'ERR_LB_LAB' });
  await kernelPortUp(e);
}

async function kernelRouteDown(e: Env): Promise<void> {
  const ns = e.lab.lb.ns;
  await exec(ns, ['ip', 'route', 'del', `${e.vipL2}/32`], { allowFail: true });
  await exec(ns, ['ethtool', '-K', e.lab.lb.ifname, 'gro', 'off'], { allowFail: true });
}

/** The LB's eth0 as a kernel router sees it: no XDP, GRO on (NAPI), no redirects for hairpins. */
async function kernelPortUp(e: Env): Promise<void> {
  const ns = e.lab.lb.ns;
  await exec(ns, ['sysctl', '-qw', 'net.ipv4.conf.all.send_redirects=0', `net.ipv4.conf.${e.lab.lb.ifname}.send_redirects=0`], { code: 'ERR_LB_LAB' });
  await exec(ns, ['ethtool', '-K', e.lab.lb.ifname, 'gro', 'on'], { code: 'ERR_LB_LAB' });
}

/**
 * nftables DNAT of the VIP's port 80 to the backend's 8080 (as the balancer's nat service does),
 * with SNAT to the LB's address for full NAT. The table exists only during the case: its nat
 * hooks would put every other case's packets through conntrack too. Conntrack's entries outlive
 * it, so the connections stay established from round to round (checked: no inserts).
 */
async function kernelNatUp(e: Env, full: boolean): Promise<void> {
  const vip = full ? e.vipFullNat : e.vipNat;
  const be = full ? e.rtBe : e.natBe;
  const rules = [
    `table ip ${NFT_TABLE} {`,
    '  chain pre {',
    '    type nat hook prerouting priority dstnat; policy accept;',
    `    ip daddr ${vip} tcp dport 80 dnat to ${be.addr}:8080`,
    '  }',
    ...(full
      ? ['  chain post {', '    type nat hook postrouting priority srcnat; policy accept;', `    ip daddr ${be.addr} tcp dport 8080 snat to ${e.lab.lb.addr}`, '  }']
      : []),
    '}',
  ];
  await kernelPortUp(e);
  await exec(e.lab.lb.ns, ['nft', '-f', '-'], { input: `${rules.join('\n')}\n`, code: 'ERR_LB_LAB' });
}

async function kernelNatDown(e: Env): Promise<void> {
  await exec(e.lab.lb.ns, ['nft', 'delete', 'table', 'ip', NFT_TABLE], { allowFail: true });
  await exec(e.lab.lb.ns, ['ethtool', '-K', e.lab.lb.ifname, 'gro', 'off'], { allowFail: true });
}

const attachBalancer = async (e: Env): Promise<void> => inLb(e, () => attachXdp(e.lab.lb.ifname, e.lb.prog, { replace: true }));
const detachLb = async (e: Env): Promise<void> => inLb(e, () => detachXdp(e.lab.lb.ifname));

export const LAB_CASES: readonly CaseDef[] = [
  {
    name: 'generator_only',
    flags: 'ACK',
    path: 'generator -> veth -> counted and dropped at the LB eth0 (XDP)',
    countedAt: 'lb',
    vip: (e) => e.vipL2,
    setup: async (e) => inLb(e, () => attachXdp(e.lab.lb.ifname, e.counter, { replace: true })),
    teardown: detachLb,
  },
  {
    name: 'xdp_floor',
    flags: 'ACK',
    path: 'LB eth0: swap MACs, XDP_TX (the data-path benchmark floor) -> veth -> counted',
    countedAt: 'router',
    vip: (e) => e.vipL2,
    setup: async (e) => inLb(e, () => attachXdp(e.lab.lb.ifname, e.floor.program('xdp_floor'), { replace: true })),
    teardown: detachLb,
  },
  {
    name: 'xdp_l2dsr',
    flags: 'ACK',
    path: 'LB eth0: the XDP balancer, l2dsr of established flows (flow-table hit, XDP_TX to a backend MAC) -> veth -> counted',
    countedAt: 'router',
    vip: (e) => e.vipL2,
    reason: 'TX_L2DSR',
    newFlows: 'none',
    setup: attachBalancer,
    teardown: detachLb,
  },
  {
    name: 'xdp_ipip',
    flags: 'ACK',
    path: 'LB eth0: the XDP balancer, ipip of established flows (flow-table hit, encapsulate, XDP_TX to the gateway) -> veth -> counted',
    countedAt: 'router',
    vip: (e) => e.vipIpip,
    reason: 'TX_IPIP',
    newFlows: 'none',
    setup: attachBalancer,
    teardown: detachLb,
  },
  {
    name: 'kernel_forward',
    flags: 'ACK',
    path: 'LB eth0 without XDP (GRO on): the kernel routes the VIP to one backend -> veth -> counted',
    countedAt: 'router',
    vip: (e) => e.vipL2,
    kernel: { conntrack: false },
    setup: kernelRouteUp,
    teardown: kernelRouteDown,
  },
  {
    name: 'xdp_nat',
    flags: 'SYN',
    path: 'LB eth0: the XDP balancer, gateway NAT of established connections (VIP:80 -> backend:8080, client kept; XDP_REDIRECT out eth1) -> veth -> counted',
    countedAt: 'router_nat',
    vip: (e) => e.vipNat,
    match: (e) => ({ src: e.lab.clientAddr, dst: e.natBe.addr }),
    reason: 'REDIRECT_NAT',
    newFlows: 'none',
    setup: attachBalancer,
    teardown: detachLb,
  },
  {
    name: 'kernel_dnat',
    flags: 'SYN',
    path: 'LB eth0 without XDP (GRO on): nftables DNAT VIP:80 -> backend:8080 (conntrack, established), routed out eth1 -> veth -> counted',
    countedAt: 'router_nat',
    vip: (e) => e.vipNat,
    match: (e) => ({ src: e.lab.clientAddr, dst: e.natBe.addr }),
    kernel: { conntrack: true },
    setup: (e) => kernelNatUp(e, false),
    teardown: kernelNatDown,
  },
  {
    name: 'xdp_fullnat',
    flags: 'SYN',
    path: 'LB eth0: the XDP balancer, full NAT of established connections (LB address as the source; XDP_TX to the gateway) -> veth -> counted',
    countedAt: 'router',
    vip: (e) => e.vipFullNat,
    match: (e) => ({ src: e.lab.lb.addr, dst: e.rtBe.addr }),
    reason: 'TX_NAT',
    newFlows: 'none',
    setup: attachBalancer,
    teardown: detachLb,
  },
  {
    name: 'kernel_fullnat',
    flags: 'SYN',
    path: 'LB eth0 without XDP (GRO on): nftables DNAT VIP:80 -> backend:8080 and SNAT to the LB address (conntrack, established), out eth0 -> veth -> counted',
    countedAt: 'router',
    vip: (e) => e.vipFullNat,
    match: (e) => ({ src: e.lab.lb.addr, dst: e.rtBe.addr }),
    kernel: { conntrack: true },
    setup: (e) => kernelNatUp(e, true),
    teardown: kernelNatDown,
  },
];

function addr4(a: string): Buffer {
  return Buffer.from(a.split('.').map(Number));
}

function cfgValue(hdr: Buffer, src: string, dst: string): Buffer {
  const b = Buffer.alloc(CFG_SIZE);
  hdr.copy(b, 0, 0, HDR_LEN);
  b.writeUInt16LE(PORT_BASE, 54);
  b.writeUInt32LE(FLOWS - 1, 56);
  addr4(src).copy(b, 60);
  addr4(dst).copy(b, 64);
  return b;
}

async function routerMac(lab: Lab): Promise<string> {
  const r = await exec(lab.router, ['ip', '-j', 'link', 'show', 'dev', 'br0'], { code: 'ERR_LB_LAB' });
  const mac = (JSON.parse(r.stdout) as { address?: string }[])[0]?.address;
  if (!mac) throw new LbError('ERR_LB_LAB', 'no MAC on the router bridge');
  return mac;
}

function count(e: Env): number {
  return (e.gen.map('lab_count').lookupPerCpu(u32Key(0)) ?? []).reduce((a, b) => a + Number(b.readBigUInt64LE(0)), 0);
}

/** Runs the generator for `seconds`; returns frames offered and delivered, and per second. */
function drive(e: Env, frame: Buffer, seconds: number): { offered: number; delivered: number; frames: number } {
  const ctx = Buffer.alloc(24);
  const repeat = 50_000;
  return inNetns(e.lab.router, () => {
    ctx.writeUInt32LE(ifIndex(ROUTER_PORT), 12); // ingress_ifindex: XDP_TX leaves through v-lb
    const c0 = count(e);
    const t0 = process.hrtime.bigint();
    const limit = BigInt(Math.round(seconds * 1e9));
    let sent = 0;
    // Bounded in time (and each call in count): at most one call past the deadline.
    while (process.hrtime.bigint() - t0 < limit) {
      testRun(e.gen.program('xdp_lab_gen'), { data: frame, repeat, ctxIn: ctx, flags: TestRunFlags.XDP_LIVE_FRAMES, batchSize: 64 });
      sent += repeat;
    }
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    const frames = count(e) - c0;
    return { offered: sent / dt, delivered: frames / dt, frames };
  });
}

// --------------------------------------------------------------------------------------------
// What a case did: counters read before and after each drive.

interface KernelCounters {
  forwarded: number;
  ct: Record<'insert' | 'invalid' | 'drop' | 'insert_failed', number>;
}

/** Ip ForwDatagrams and conntrack's per-CPU statistics (summed), as the LB's namespace sees them. */
export function parseKernelCounters(snmp: string, ctStat: string): KernelCounters {
  const ipLines = snmp.split('\n').filter((l) => l.startsWith('Ip: '));
  const names = (ipLines[0] ?? '').split(/\s+/);
  const values = (ipLines[1] ?? '').split(/\s+/);
  const fwd = names.indexOf('ForwDatagrams');
  const [head, ...rows] = ctStat.trim().split('\n');
  const cols = (head ?? '').trim().split(/\s+/);
  const col = (name: string) => {
    const i = cols.indexOf(name);
    return i < 0 ? 0 : rows.reduce((a, r) => a + parseInt(r.trim().split(/\s+/)[i] ?? '0', 16), 0);
  };
  return {
    forwarded: fwd < 0 ? NaN : Number(values[fwd]),
    ct: { insert: col('insert'), invalid: col('invalid'), drop: col('drop'), insert_failed: col('insert_failed') },
  };
}

async function kernelCounters(e: Env): Promise<KernelCounters> {
  const ns = e.lab.lb.ns;
  const [snmp, ct] = await Promise.all([
    exec(ns, ['cat', '/proc/net/snmp'], { code: 'ERR_LB_LAB' }),
    exec(ns, ['cat', '/proc/net/stat/nf_conntrack'], { allowFail: true }),
  ]);
  return parseKernelCounters(snmp.stdout, ct.status === 0 ? ct.stdout : '');
}

function newFlows(e: Env, vip: string): number {
  const id = e.lb.dataplane.serviceId(vip, 80, 'tcp');
  if (id === undefined) return 0;
  return Number(e.lb.dataplane.serviceCounters(id).newFlows);
}

interface Snapshot {
  reasons?: Record<string, bigint>;
  newFlows?: number;
  kernel?: KernelCounters;
}

async function snapshot(e: Env, c: CaseDef): Promise<Snapshot> {
  if (c.reason) return { reasons: e.lb.reasons(), newFlows: newFlows(e, c.vip(e)) };
  if (c.kernel) return { kernel: await kernelCounters(e) };
  return {};
}

/** Adds what happened between two snapshots to the case's check. */
function accumulate(c: CaseDef, acc: BalancerCheck | KernelCheck | undefined, a: Snapshot, b: Snapshot, delivered: number): BalancerCheck | KernelCheck | undefined {
  if (c.reason && a.reasons && b.reasons) {
    const chk = (acc as BalancerCheck | undefined) ?? { expected_reason: c.reason, reason_count: 0, other_reasons: {}, new_flows: 0, expected_new_flows: c.newFlows ?? 'none', delivered: 0 };
    for (const [name, v] of Object.entries(b.reasons)) {
      const d = Number(v - (a.reasons[name] ?? 0n));
      if (name === c.reason) chk.reason_count += d;
      else if (d !== 0) chk.other_reasons[name] = (chk.other_reasons[name] ?? 0) + d;
    }
    chk.new_flows += (b.newFlows ?? 0) - (a.newFlows ?? 0);
    chk.delivered += delivered;
    return chk;
  }
  if (c.kernel && a.kernel && b.kernel) {
    const chk = (acc as KernelCheck | undefined) ?? { forwarded: 0, delivered: 0, ...(c.kernel.conntrack ? { conntrack: { insert: 0, invalid: 0, drop: 0, insert_failed: 0 } } : {}) };
    chk.forwarded += b.kernel.forwarded - a.kernel.forwarded;
    if (chk.conntrack) for (const k of ['insert', 'invalid', 'drop', 'insert_failed'] as const) chk.conntrack[k] += b.kernel.ct[k] - a.kernel.ct[k];
    chk.delivered += delivered;
    return chk;
  }
  return acc;
}

/**
 * Why a case's figure is not of its intended path, or null. Balancer: every frame got the
 * expected verdict (others at most 1%: the lab's own ARP or ND), and none counted as new (after
 * the warm-up, DSR ACKs and NAT SYNs are all of known flows) or every one ('all', were a case to
 * send DSR SYNs). Kernel: it forwarded at least what was counted; with NAT, conntrack inserted
 * nothing (established) and found nothing INVALID (which it would leave untranslated).
 */
export function checkProblem(name: string, chk: BalancerCheck | KernelCheck | undefined): string | null {
  if (!chk) return null;
  if (chk.delivered <= 0) return `${name}: nothing arrived at the counter`;
  if ('expected_reason' in chk) {
    const others = Object.values(chk.other_reasons).reduce((a, b) => a + b, 0);
    if (chk.reason_count < chk.delivered) return `${name}: ${chk.delivered} frames counted, only ${chk.reason_count} ${chk.expected_reason} verdicts`;
    if (others > chk.reason_count / 100) return `${name}: other verdicts ${JSON.stringify(chk.other_reasons)} beside ${chk.reason_count} ${chk.expected_reason}`;
    const wantNew = chk.expected_new_flows === 'all' ? chk.reason_count : 0;
    if (chk.new_flows !== wantNew) return `${name}: ${chk.new_flows} new flows or connections, expected ${wantNew}`;
    return null;
  }
  if (!(chk.forwarded >= chk.delivered)) return `${name}: ${chk.delivered} frames counted, the kernel forwarded ${chk.forwarded}`;
  if (chk.conntrack && (chk.conntrack.insert !== 0 || chk.conntrack.invalid !== 0)) {
    return `${name}: conntrack inserted ${chk.conntrack.insert} and found ${chk.conntrack.invalid} INVALID after the warm-up`;
  }
  return null;
}

// --------------------------------------------------------------------------------------------

function natService(lab: Lab, fullNat: boolean): TopoService {
  const s = lab.services.find((x) => x.mode === 'nat' && !!x.fullNat === fullNat && x.proto === 'tcp' && x.port === 80);
  if (!s) throw new LbError('ERR_LB_LAB', `the lab lacks a ${fullNat ? 'full ' : ''}nat service on TCP port 80`);
  if ((s.backendPort ?? s.port) !== 8080) throw new LbError('ERR_LB_LAB', `the lab's ${fullNat ? 'full ' : ''}nat service does not translate to port 8080`);
  return s;
}

function backendOn(lab: Lab, segment: LabHostInfo['segment']): LabHostInfo {
  const be = lab.backends.find((b) => b.segment === segment);
  if (!be) throw new LbError('ERR_LB_LAB', `the lab has no ${segment} backend`);
  return be;
}

export async function benchLab(opts: LabOptions = {}): Promise<LabResult> {
  // Short and many: the neighbours' load moves within seconds, and interleaving spreads it over all cases.
  const seconds = opts.seconds ?? 1;
  const rounds = opts.rounds ?? 7;
  const log = opts.log ?? (() => {});
  await labDown(LAB_PREFIX);
  log(`lab: up (${LAB_PREFIX}*)`);
  // One backend per NAT segment: the counter matches the translated destination address.
  const lab = await labUp({ prefix: LAB_PREFIX, l2Backends: 3, routedBackends: 1, natBackends: 1 });
  let lb: LoadedBalancer | undefined;
  let gen: BpfObject | undefined;
  let floor: BpfObject | undefined;
  try {
    const vipL2 = lab.services.find((s) => s.mode === 'l2dsr')?.vip;
    const vipIpip = lab.services.find((s) => s.mode === 'ipip')?.vip;
    if (!vipL2 || !vipIpip) throw new LbError('ERR_LB_LAB', 'the lab lacks an l2dsr or an ipip service');
    const natIf = lab.lb.natIf;
    if (!natIf) throw new LbError('ERR_LB_LAB', 'the lab has no nat segment');
    const natBe = backendOn(lab, 'nat');
    const rtBe = backendOn(lab, 'routed');
    lb = loadBalancer({ maxServices: 16 });
    // The bench's connections only ever send SYNs (the counter drops them before any backend),
    // so they stay in the "new" state: its timeout is raised so that they last the whole run.
    lb.nat.configure({ sources: [lab.lb.addr], timeouts: { tcpNewSec: 3600 } });
    inNetns(lab.lb.ns, () => lb?.nat.setTxPorts([ifIndex(lab.lb.ifname), ifIndex(natIf.ifname)]));
    lb.dataplane.apply(labServices(lab));
    lb.dataplane.setCtl({ src4: lab.lb.addr, clock: 1 });
    gen = BpfObject.open(bpfObjectPath('labgen'));
    gen.load();
    floor = BpfObject.open(bpfObjectPath('floor'));
    floor.load();
    if (gen.map('lab_cfg').valueSize !== CFG_SIZE) throw new LbError('ERR_LB_LAB', `struct lab_cfg is ${gen.map('lab_cfg').valueSize} bytes, lab.ts writes ${CFG_SIZE}`);
    const e: Env = {
      lab, lb, gen, counter: gen.program('xdp_lab_count'), floor, vipL2, vipIpip,
      vipNat: natService(lab, false).vip, vipFullNat: natService(lab, true).vip, natBe, rtBe,
    };
    const mac = await routerMac(lab);
    // The nat backend's neighbour entry, so that neither the balancer's fib lookup nor the
    // kernel's forwarding waits for ARP (the backend never sees a frame: the counter drops them).
    await exec(lab.lb.ns, ['ip', 'neigh', 'replace', natBe.addr, 'lladdr', natBe.mac, 'dev', natIf.ifname, 'nud', 'permanent'], { code: 'ERR_LB_LAB' });
    // The counter replaces the lab's pass-through programs on v-lb and v-lbnat (quirk 1 needs some
    // program there).
    inNetns(lab.router, () => {
      attachXdp(ROUTER_PORT, e.counter, { replace: true });
      attachXdp(ROUTER_NAT_PORT, e.counter, { replace: true });
    });

    type Acc = { offered: number[]; delivered: number[]; check?: BalancerCheck | KernelCheck };
    const samples = new Map<string, Acc>(LAB_CASES.map((c) => [c.name, { offered: [], delivered: [] }]));
    // Round -1 is the warm-up, not recorded: it opens the NAT connections (the balancer's and
    // conntrack's) and records the DSR flows (an ACK that misses takes the ring once and is then
    // a flow-table hit), so every measured packet is of an established flow.
    for (let r = -1; r < rounds; r++) {
      for (const c of LAB_CASES) {
        const dst = c.vip(e);
        const m = c.match?.(e) ?? { src: lab.clientAddr, dst };
        const frame = packet({ eth: { src: mac, dst: lab.lb.mac }, ipv4: { src: lab.clientAddr, dst, ttl: 64 }, tcp: { srcPort: PORT_BASE, dstPort: 80, flags: [c.flags] } });
        gen.map('lab_cfg').update(u32Key(0), cfgValue(frame, m.src, m.dst));
        await c.setup(e);
        try {
          const before = await snapshot(e, c);
          const s = drive(e, frame, r < 0 ? WARMUP_SECONDS : seconds);
          const after = await snapshot(e, c);
          if (r < 0) {
            log(`lab: warm-up ${c.name}: ${s.frames} frames delivered`);
            continue;
          }
          const acc = samples.get(c.name) as Acc;
          acc.offered.push(s.offered);
          acc.delivered.push(s.delivered);
          acc.check = accumulate(c, acc.check, before, after, s.frames);
          log(`lab: round ${r + 1}/${rounds} ${c.name}: ${(s.delivered / 1e6).toFixed(2)} Mpps delivered of ${(s.offered / 1e6).toFixed(2)} offered`);
        } finally {
          await c.teardown(e);
        }
      }
    }

    const portOf: Record<CountedAt, string> = {
      lb: `${lab.lb.ns} ${lab.lb.ifname}`,
      router: `${lab.router} ${ROUTER_PORT}`,
      router_nat: `${lab.router} ${ROUTER_NAT_PORT}`,
    };
    const cases: LabCase[] = LAB_CASES.map((c) => {
      const s = samples.get(c.name) as Acc;
      const delivered = median(s.delivered);
      return {
        case: c.name,
        path: c.path,
        counted_at: portOf[c.countedAt],
        offered_pps: Math.round(median(s.offered)),
        delivered_pps: Math.round(delivered),
        ns_per_packet: round(1e9 / delivered, 1),
        samples_pps: s.delivered.map(Math.round),
        ...(s.check ? { verified: s.check } : {}),
      };
    });
    const problems = LAB_CASES.map((c) => checkProblem(c.name, samples.get(c.name)?.check)).filter((p): p is string => p !== null);
    if (problems.length > 0) {
      throw new LbError('ERR_LB_LAB', `lab: a case did not take its path, its figure would be of another: ${problems.join('; ')}`);
    }
    const pps = (n: string) => (samples.get(n) as Acc).delivered;
    const perRound = (f: (r: number) => number) => median(Array.from({ length: rounds }, (_, r) => f(r)));
    const ns = (n: string, r: number) => 1e9 / (pps(n)[r] as number);
    const added = (n: string, r: number) => ns(n, r) - ns('generator_only', r);
    for (const c of cases) if (c.case !== 'generator_only') c.lb_ns_per_packet = round(perRound((r) => added(c.case, r)), 1);
    const over = (xdp: string, kernel: string) => round(perRound((r) => (pps(xdp)[r] as number) / (pps(kernel)[r] as number)));
    const overLbOnly = (xdp: string, kernel: string) => round(perRound((r) => added(kernel, r) / added(xdp, r)));
    return {
      unit: 'packets/s',
      cases,
      xdp_l2dsr_over_kernel: over('xdp_l2dsr', 'kernel_forward'),
      xdp_l2dsr_over_kernel_lb_only: overLbOnly('xdp_l2dsr', 'kernel_forward'),
      xdp_nat_over_kernel_dnat: over('xdp_nat', 'kernel_dnat'),
      xdp_nat_over_kernel_dnat_lb_only: overLbOnly('xdp_nat', 'kernel_dnat'),
      xdp_fullnat_over_kernel_fullnat: over('xdp_fullnat', 'kernel_fullnat'),
      xdp_fullnat_over_kernel_fullnat_lb_only: overLbOnly('xdp_fullnat', 'kernel_fullnat'),
      limit:
        'one CPU: live frames are processed inline, so generator, veth, LB and counter share the CPU of the test-run call; ' +
        'generator_only is that chain without the LB, and every case delivered what was offered unless offered_pps > delivered_pps. ' +
        'DSR cases send ACKs of flows the warm-up round recorded, so every packet is a flow-table hit (`verified` shows no new flows), ' +
        'the path of most of a connection\'s packets; the kernel\'s forwarding gets the same ACKs. ' +
        'NAT cases: established connections only (a warm-up round opens them; `verified` shows no new ones), so the figures are the ' +
        'table-hit path of the balancer and conntrack\'s lookup of an existing entry with its NAT binding, not connection setup. ' +
        'Gateway NAT leaves by the LB\'s other veth (eth1, XDP_REDIRECT through the devmap, or the kernel routing there) and is counted ' +
        'on its peer; full NAT hairpins out eth0 like l2dsr. *_lb_only ratios compare what each path adds to generator_only per packet',
      method: {
        generator: 'BPF_PROG_TEST_RUN live frames (BPF_F_TEST_XDP_LIVE_FRAMES), batch 64, xdp_lab_gen in the router namespace, ingress v-lb',
        frames: `TCP ${lab.clientAddr} -> VIP:80, 54-byte frames, ${FLOWS} source ports, TCP checksum right for each port (conntrack checks it); ACKs for the DSR cases, the kernel's forwarding, generator_only and xdp_floor, SYNs for the NAT cases`,
        counter: 'xdp_lab_count on the router port of the LB link the case leaves by (v-lb for eth0, v-lbnat for eth1): counts the frames with the case\'s addresses after translation, drops them',
        nat: `the balancer's nat services (gateway NAT ${e.vipNat}:80 -> ${natBe.addr}:8080, full NAT ${e.vipFullNat}:80 -> ${rtBe.addr}:8080 from ${lab.lb.addr}); ` +
          `the kernel's: nftables table ${NFT_TABLE} in the LB namespace (prerouting dnat; postrouting snat for full NAT), present only during its case, conntrack entries kept across rounds`,
        verified: 'per case over the measured rounds: the balancer\'s verdict counters and its service\'s new-flow count; for the kernel, Ip ForwDatagrams and /proc/net/stat/nf_conntrack (insert, invalid) in the LB namespace',
        warmup: `one unrecorded round of ${WARMUP_SECONDS} s per case before the measured ones`,
        seconds_per_case: seconds,
        rounds,
        statistic: 'cases interleaved within each round; pps: median over rounds; ratios and differences: taken within each round, then the median',
      },
    };
  } finally {
    floor?.close();
    gen?.close();
    lb?.close();
    try {
      await labDown(LAB_PREFIX);
    } catch (err) {
      log(`lab: teardown failed: ${isLbError(err) ? err.message : String(err)}`);
    }
  }
}
