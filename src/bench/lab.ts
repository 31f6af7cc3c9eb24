/**
 * The lab's packets-per-second figure: the same frames, in the same namespaces and the same run,
 * through the XDP balancer and through the kernel's own forwarding in the LB namespace.
 *
 * Generator: bpf/labgen.bpf.c's xdp_lab_gen under BPF_PROG_TEST_RUN in live-frames mode (what
 * xdp-trafficgen does; Debian's xdp-trafficgen does not load on this kernel), run in the router
 * namespace with the router's port of the LB link (v-lb) as ingress: its XDP_TX frames leave
 * v-lb and arrive at the LB's eth0, TCP SYNs from the lab client to a VIP, 1024 source ports.
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
 * The cases are a table: NAT's (the balancer's nat mode, nftables DNAT) are one entry each.
 */
import { BpfObject, attachXdp, detachXdp, ifIndex, inNetns, testRun, TestRunFlags, type BpfProgram } from '../bpf/index.js';
import { LbError, isLbError } from '../errors.js';
import { bpfObjectPath, loadBalancer, type LoadedBalancer } from '../dataplane/loader.js';
import { u32Key } from '../dataplane/abi.js';
import { exec, labDown, labServices, labUp, type Lab } from '../lab/index.js';
import { packet } from '../packet/index.js';
import { median, round } from './stats.js';

export const LAB_PREFIX = 'xbench-';
const ROUTER_PORT = 'v-lb';
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
}

export interface LabResult {
  unit: 'packets/s';
  cases: LabCase[];
  /** delivered pps of the XDP balancer over the kernel's forwarding, per round, median */
  xdp_l2dsr_over_kernel: number;
  /** kernel_forward's lb_ns_per_packet over xdp_l2dsr's, per round, median */
  xdp_l2dsr_over_kernel_lb_only: number;
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
}

interface CaseDef {
  name: string;
  path: string;
  countedAt: 'lb' | 'router';
  vip: (e: Env) => string;
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
  await exec(ns, ['sysctl', '-qw', 'net.ipv4.conf.all.send_redirects=0', `net.ipv4.conf.${e.lab.lb.ifname}.send_redirects=0`], { code: 'ERR_LB_LAB' });
  await exec(ns, ['ethtool', '-K', e.lab.lb.ifname, 'gro', 'on'], { code: 'ERR_LB_LAB' });
}

async function kernelRouteDown(e: Env): Promise<void> {
  const ns = e.lab.lb.ns;
  await exec(ns, ['ip', 'route', 'del', `${e.vipL2}/32`], { allowFail: true });
  await exec(ns, ['ethtool', '-K', e.lab.lb.ifname, 'gro', 'off'], { allowFail: true });
}

const attachBalancer = async (e: Env): Promise<void> => inLb(e, () => attachXdp(e.lab.lb.ifname, e.lb.prog, { replace: true }));
const detachLb = async (e: Env): Promise<void> => inLb(e, () => detachXdp(e.lab.lb.ifname));

export const LAB_CASES: readonly CaseDef[] = [
  {
    name: 'generator_only',
    path: 'generator -> veth -> counted and dropped at the LB eth0 (XDP)',
    countedAt: 'lb',
    vip: (e) => e.vipL2,
    setup: async (e) => inLb(e, () => attachXdp(e.lab.lb.ifname, e.counter, { replace: true })),
    teardown: detachLb,
  },
  {
    name: 'xdp_floor',
    path: 'LB eth0: swap MACs, XDP_TX (the data-path benchmark floor) -> veth -> counted',
    countedAt: 'router',
    vip: (e) => e.vipL2,
    setup: async (e) => inLb(e, () => attachXdp(e.lab.lb.ifname, e.floor.program('xdp_floor'), { replace: true })),
    teardown: detachLb,
  },
  {
    name: 'xdp_l2dsr',
    path: 'LB eth0: the XDP balancer, l2dsr (XDP_TX to a backend MAC) -> veth -> counted',
    countedAt: 'router',
    vip: (e) => e.vipL2,
    setup: attachBalancer,
    teardown: detachLb,
  },
  {
    name: 'xdp_ipip',
    path: 'LB eth0: the XDP balancer, ipip (encapsulate, XDP_TX to the gateway) -> veth -> counted',
    countedAt: 'router',
    vip: (e) => e.vipIpip,
    setup: attachBalancer,
    teardown: detachLb,
  },
  {
    name: 'kernel_forward',
    path: 'LB eth0 without XDP (GRO on): the kernel routes the VIP to one backend -> veth -> counted',
    countedAt: 'router',
    vip: (e) => e.vipL2,
    setup: kernelRouteUp,
    teardown: kernelRouteDown,
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

/** Runs the generator for `seconds`; returns offered and delivered frames per second. */
function drive(e: Env, frame: Buffer, seconds: number): { offered: number; delivered: number } {
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
    return { offered: sent / dt, delivered: (count(e) - c0) / dt };
  });
}

export async function benchLab(opts: LabOptions = {}): Promise<LabResult> {
  // Short and many: the neighbours' load moves within seconds, and interleaving spreads it over all cases.
  const seconds = opts.seconds ?? 1;
  const rounds = opts.rounds ?? 7;
  const log = opts.log ?? (() => {});
  await labDown(LAB_PREFIX);
  log(`lab: up (${LAB_PREFIX}*)`);
  const lab = await labUp({ prefix: LAB_PREFIX, l2Backends: 3, routedBackends: 1 });
  let lb: LoadedBalancer | undefined;
  let gen: BpfObject | undefined;
  let floor: BpfObject | undefined;
  try {
    const vipL2 = lab.services.find((s) => s.mode === 'l2dsr')?.vip;
    const vipIpip = lab.services.find((s) => s.mode === 'ipip')?.vip;
    if (!vipL2 || !vipIpip) throw new LbError('ERR_LB_LAB', 'the lab lacks an l2dsr or an ipip service');
    lb = loadBalancer({ maxServices: 16 });
    lb.dataplane.apply(labServices(lab));
    lb.dataplane.setCtl({ src4: lab.lb.addr, clock: 1 });
    gen = BpfObject.open(bpfObjectPath('labgen'));
    gen.load();
    floor = BpfObject.open(bpfObjectPath('floor'));
    floor.load();
    if (gen.map('lab_cfg').valueSize !== CFG_SIZE) throw new LbError('ERR_LB_LAB', `struct lab_cfg is ${gen.map('lab_cfg').valueSize} bytes, lab.ts writes ${CFG_SIZE}`);
    const e: Env = { lab, lb, gen, counter: gen.program('xdp_lab_count'), floor, vipL2, vipIpip };
    const mac = await routerMac(lab);
    // The counter replaces the lab's pass-through program on v-lb (quirk 1 needs some program there).
    inNetns(lab.router, () => attachXdp(ROUTER_PORT, e.counter, { replace: true }));

    const samples = new Map<string, { offered: number[]; delivered: number[] }>(LAB_CASES.map((c) => [c.name, { offered: [], delivered: [] }]));
    for (let r = 0; r < rounds; r++) {
      for (const c of LAB_CASES) {
        const dst = c.vip(e);
        const frame = packet({ eth: { src: mac, dst: lab.lb.mac }, ipv4: { src: lab.clientAddr, dst, ttl: 64 }, tcp: { srcPort: PORT_BASE, dstPort: 80, flags: ['SYN'] } });
        gen.map('lab_cfg').update(u32Key(0), cfgValue(frame, lab.clientAddr, dst));
        await c.setup(e);
        try {
          const s = drive(e, frame, seconds);
          const acc = samples.get(c.name) as { offered: number[]; delivered: number[] };
          acc.offered.push(s.offered);
          acc.delivered.push(s.delivered);
          log(`lab: round ${r + 1}/${rounds} ${c.name}: ${(s.delivered / 1e6).toFixed(2)} Mpps delivered of ${(s.offered / 1e6).toFixed(2)} offered`);
        } finally {
          await c.teardown(e);
        }
      }
    }

    const cases: LabCase[] = LAB_CASES.map((c) => {
      const s = samples.get(c.name) as { offered: number[]; delivered: number[] };
      const delivered = median(s.delivered);
      return {
        case: c.name,
        path: c.path,
        counted_at: c.countedAt === 'lb' ? `${lab.lb.ns} ${lab.lb.ifname}` : `${lab.router} ${ROUTER_PORT}`,
        offered_pps: Math.round(median(s.offered)),
        delivered_pps: Math.round(delivered),
        ns_per_packet: round(1e9 / delivered, 1),
        samples_pps: s.delivered.map(Math.round),
      };
    });
    const pps = (n: string) => (samples.get(n) as { delivered: number[] }).delivered;
    const perRound = (f: (r: number) => number) => median(Array.from({ length: rounds }, (_, r) => f(r)));
    const ns = (n: string, r: number) => 1e9 / (pps(n)[r] as number);
    const added = (n: string, r: number) => ns(n, r) - ns('generator_only', r);
    for (const c of cases) if (c.case !== 'generator_only') c.lb_ns_per_packet = round(perRound((r) => added(c.case, r)), 1);
    return {
      unit: 'packets/s',
      cases,
      xdp_l2dsr_over_kernel: round(perRound((r) => (pps('xdp_l2dsr')[r] as number) / (pps('kernel_forward')[r] as number))),
      xdp_l2dsr_over_kernel_lb_only: round(perRound((r) => added('kernel_forward', r) / added('xdp_l2dsr', r))),
      limit:
        'one CPU: live frames are processed inline, so generator, veth, LB and counter share the CPU of the test-run call; ' +
        'generator_only is that chain without the LB, and every case delivered what was offered unless offered_pps > delivered_pps',
      method: {
        generator: 'BPF_PROG_TEST_RUN live frames (BPF_F_TEST_XDP_LIVE_FRAMES), batch 64, xdp_lab_gen in the router namespace, ingress v-lb',
        frames: `TCP SYN ${lab.clientAddr} -> VIP:80, 54-byte frames, ${FLOWS} source ports`,
        counter: 'xdp_lab_count on the router port of the LB link (v-lb): counts the flows, drops them',
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
