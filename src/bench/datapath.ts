/**
 * Data-path benchmark: ns/packet of the balancer's paths through BPF_PROG_TEST_RUN, each measured
 * beside the floor program (swap MACs, XDP_TX) in the same run, interleaved over many rounds.
 * Every case is checked against the balancer's own counters: a case whose iterations did not all
 * take the intended path fails the whole benchmark (ERR_LB_BPF_TEST_RUN).
 *
 * Statistic. On the VMs we run on, every program's per-packet time is bimodal from one test-run
 * to the next (the floor: 8 or ~15 ns, the established flow: 40 or ~70 ns, in no pattern we can
 * pair): the host's other load slows some samples by ~1.8x, all programs alike. A median then
 * depends on how many samples happened to fall in the slow mode, and a fixed low quantile sits
 * in the fast mode for one program and not another when the fast mode gets rare (seen: the
 * wrapper 11 ns off the direct run). So every figure, floor and cases alike, is the median of
 * that program's fast-mode samples (within 10% + 1 ns of its smallest, stats.ts), and rounds go
 * on (MIN_ROUNDS..MAX_ROUNDS) until every program of the phase has NEED_FAST of them. The
 * median over all samples is kept in the JSON beside it. A calibration off by more than
 * CALIBRATION_TOLERANCE_NS makes calibration.trustworthy false (the machine was too busy, run
 * again); phases that hit MAX_ROUNDS first are listed (memory-bound cases have a broad, not a
 * bimodal, spread and often do: their figure is then the median of their fastest samples).
 *
 * Harness cost. Test-run's own per-iteration cost (xdp_bench_empty, ~7 ns) is in the floor and
 * in every case alike: nothing subtracts it. VIP cases run through bpf/bench_balancer.bpf.c,
 * whose bookkeeping (tuple write, Ethernet restore) is measured alone (xdp_bench_null, same
 * mode) and subtracted; `calibration` checks that subtraction twice in the same run: the floor
 * through the wrapper minus the wrapper against the floor alone, and the established l2dsr flow
 * through the wrapper against the real program run directly. Undoing an encapsulation is not
 * subtracted: it stays charged to the ipip cases, and `undo_encap_ns` says how much it is.
 *
 * IPv6. The DSR cases again over IPv6 (modes l2dsr6 and ipip6: 6in6, a 40-byte outer header),
 * in the same phase beside their IPv4 twins, and the NAT cases over IPv6 (nat6, fullnat6: NAT66)
 * in the NAT phase. They run through the wrapper's IPv6 entry points (xdp_bench_balancer6 and
 * its own xdp_bench_null6, subtracted the same way; the IPv4 programs are unchanged), which vary
 * the last 32 bits of the client address and the source port, and restore 74 header bytes.
 *
 * NAT (natSpecs), a phase of its own with its own floor, for the LB-as-gateway mode (nat) and for
 * full NAT (fullnat): nat_new, a new connection per iteration (a never-seen client tuple: two
 * connection-table inserts, plus the port probe in full NAT); nat_forward, a client packet of an
 * established connection; nat_reply, its backend's answer. The wrapper restores the headers NAT
 * rewrites. New connections stay in the table (nothing sweeps during the run), so nat_new runs
 * fewer iterations per sample (natNewRepeat): the whole phase, at its most rounds, fills at most
 * NAT_FILL_MAX of the table and NAT_PORT_FILL_MAX of the full-NAT ports, far from
 * DROP_NAT_TABLE_FULL and DROP_NAT_NO_PORT. NAT66 has a table of its own, loaded here as large as
 * NAT44's, and full-NAT ports of its own (per source and backend), so the same bound holds for each.
 */
import { BpfObject, inNetns, ifIndex, testRun, XdpAction, type BpfProgram } from '../bpf/index.js';
import { LbError } from '../errors.js';
import { bpfObjectPath, DEFAULT_GEOMETRY, loadBalancer, type LoadedBalancer } from '../dataplane/loader.js';
import { FLOW_WAYS, u32Key } from '../dataplane/abi.js';
import { lbHash3, rawAddr4, rawPort } from '../dataplane/hash.js';
import { formatIp, packet, parseIp } from '../packet/index.js';
import { BENCH_DEV, BENCH_LOCAL4, BENCH_LOCAL6, BENCH_NS, createBenchNetns, destroyBenchNetns } from './netns.js';
import { fastMode, fastSamples, median, quantile, round } from './stats.js';

export const MIN_ROUNDS = 31;
export const MAX_ROUNDS = 121;
/** fast-mode samples every program of a phase must have before the phase stops */
export const NEED_FAST = 7;
/**
 * |through the wrapper - direct| beyond this many ns marks a run as too noisy to quote. On quiet
 * runs the wrapper figure sits 1-4 ns above the direct one (the balancer inlined into the wrapper
 * costs a little more than alone): the wrapper's figures err on the high side by that much.
 */
export const CALIBRATION_TOLERANCE_NS = 5;

export interface DatapathCase {
  case: string;
  mode: string;
  /** fast-mode median, wrapper subtracted */
  ns_per_packet: number;
  ratio_to_floor: number;
  /** the same from medians */
  ns_median: number;
  ratio_median: number;
  /** through the wrapper, before subtracting its cost (fast-mode median) */
  raw_ns?: number;
  wrapper_ns?: number;
  /** ipip, ipip6: part of ns_per_packet that is the wrapper undoing the encapsulation (estimate) */
  undo_encap_ns?: number;
  /** the floor the ratio is taken against: fast-mode median of this case's phase */
  floor_ns: number;
  tracked_flows?: number;
  /** samples of this case, and how many of them were in the fast mode */
  samples: number;
  fast_samples: number;
  /** flow-table buckets (x4 ways) during this case */
  flow_buckets: number;
  verified: boolean;
  counts: { iterations: number; expected_reason: string; reason_count: number; other_reasons: number; new_flows: number; undone_encaps?: number };
}

export interface Calibration {
  /** the floor program alone */
  floor_ns: number;
  /** the floor's code through the bench wrapper, minus the wrapper's cost */
  floor_via_wrapper_ns: number;
  /** the real xdp_balancer, run directly (l2dsr does not need the wrapper's undo) */
  established_l2dsr_direct_ns: number;
  /** the same through the wrapper, minus the wrapper's cost */
  established_l2dsr_via_wrapper_ns: number;
  /** test-run with a program that only returns */
  empty_ns: number;
  /** established_l2dsr_via_wrapper_ns - established_l2dsr_direct_ns */
  wrapper_error_ns: number;
  /** false when |wrapper_error_ns| > CALIBRATION_TOLERANCE_NS */
  trustworthy: boolean;
  /** phases that reached MAX_ROUNDS without NEED_FAST fast samples for every program */
  phases_short_of_fast_samples: string[];
}

export interface DatapathResult {
  cases: DatapathCase[];
  floor_ns: number;
  floor_median_ns: number;
  /** 10th, 25th, 50th, 75th, 90th percentile of all floor samples: how bimodal the machine was */
  floor_quantiles_ns: number[];
  floor_samples: number;
  calibration: Calibration;
  /** rounds each phase took */
  rounds: Record<string, number>;
  repeat: number;
  statistic: string;
}

export interface DatapathOptions {
  /** fixed number of rounds per phase (default: MIN_ROUNDS..MAX_ROUNDS, until NEED_FAST) */
  rounds?: number;
  repeat?: number;
  /** tracked-flow counts for the established-flow scaling cases */
  scaling?: number[];
  /** flow-table buckets (power of two); the default is the loader's */
  flowBuckets?: number;
  /** another build of the bench wrapper, for experiments (default build/bpf/bench_balancer.bpf.o) */
  objectPath?: string;
  log?: (line: string) => void;
}

const BENCH_FIXED = 0;
const BENCH_SEQ = 1;
const BENCH_TABLE = 2;
const BENCH_NET = 0x0a800000; // 10.128.0.0, as in the wrapper
const TUPLES_MAX = 1 << 20;
/** first tuple of the new-flow cases: clear of the tuples fillFlows() uses */
const SEQ_BASE = 0x10000000;

const VIP_L2 = '10.200.0.1';
const VIP_IPIP = '10.200.0.2';
const VIP_PORT = 80;
const CLIENT = '10.127.0.1';
const CLIENT_PORT = 40000;
const NON_VIP = '10.250.0.9';
const NON_VIP6 = '2001:db8:250::9';
const VIP_NAT = '10.200.0.3';
const VIP_FULLNAT = '10.200.0.4';
const NAT_BACKEND_PORT = 8080;
const NAT_BACKENDS = 10;
const NAT_PORT_MIN = 1024;
const NAT_PORT_MAX = 65535;
/** NAT replies need a route back to the client: the bench namespace routes BACKEND_NET4 only. */
const CLIENT_NAT = '203.0.113.200';
/** nat_new iterations per sample at most; fewer when the phase's rounds would fill the table (natNewRepeat) */
export const NAT_NEW_REPEAT = 2000;
/** nat_new never fills more than this part of the connection table over a whole phase */
export const NAT_FILL_MAX = 0.5;
/**
 * ... nor more than this part of the full-NAT ports of a backend: a new full-NAT connection
 * probes LB_NAT_PROBES (8) ports from a hashed start, so at 10% a DROP_NAT_NO_PORT is a
 * vanishing chance (linear-probing clusters included), where at 40% it would be a few per run.
 */
export const NAT_PORT_FILL_MAX = 0.1;
/** below this many nat_new iterations per sample the figure is mostly test-run's own overhead */
const NAT_NEW_REPEAT_MIN = 100;
/** first tuples of the nat_new cases: clear of SEQ_BASE's and of each other */
const NAT_SEQ_BASE = { nat: 0x20000000, fullnat: 0x30000000 } as const;
/** IPv6 twins of the above: VIPs, DSR client, NAT66 client (routed, in BACKEND_NET6) and backends */
const VIP6_L2 = 'fd00:200::1';
const VIP6_IPIP = 'fd00:200::2';
const VIP6_NAT = 'fd00:200::3';
const VIP6_FULLNAT = 'fd00:200::4';
const CLIENT6 = '2001:db8:127::1';
const CLIENT_NAT6 = '2001:db8:113::200';
const BACKEND_PREFIX6 = '2001:db8:113::';
const NAT_SEQ_BASE6 = { nat: 0x40000000, fullnat: 0x50000000 } as const;
const LB_MAC = '02:00:00:00:00:aa';
const CLIENT_MAC = '02:00:00:00:00:01';

interface WrapCfg {
  mode: number;
  n: number;
  base: number;
}

type Family = 4 | 6;

interface Spec {
  name: string;
  mode: string;
  /** the frame's family: which of the wrapper's entry points runs it (default 4) */
  family?: Family;
  /** 'direct': the real xdp_balancer (its rewrite leaves the path unchanged); 'wrap': through the wrapper */
  via: 'direct' | 'wrap';
  pkt: Buffer;
  cfg: WrapCfg;
  reason: string;
  retval: number;
  newFlows: boolean;
  encap: boolean;
  /** run once, untimed, before every sample: puts the case's flow (back) in the table */
  establish?: boolean;
  trackedFlows?: number;
  /** iterations per sample of the case and of its wrapper-alone run (default: the bench's repeat) */
  repeat?: number;
}

interface Acc {
  floor: number[];
  raw: number[];
  nul: number[];
  iterations: number;
  reasonCount: number;
  otherReasons: number;
  newFlows: number;
  undone: number;
  bad: number;
  retvals: Set<number>;
}

function newAcc(): Acc {
  return { floor: [], raw: [], nul: [], iterations: 0, reasonCount: 0, otherReasons: 0, newFlows: 0, undone: 0, bad: 0, retvals: new Set() };
}

const isV6 = (a: string): boolean => a.includes(':');

/** The same address however it is written. */
const sameAddr = (a: string, b: string): boolean => formatIp(parseIp(a)) === formatIp(parseIp(b));

function tcpSyn(dst: string, src = isV6(dst) ? CLIENT6 : CLIENT, srcPort = CLIENT_PORT): Buffer {
  return packet({
    eth: { src: CLIENT_MAC, dst: LB_MAC },
    ...(isV6(dst) ? { ipv6: { src, dst } } : { ipv4: { src, dst } }),
    tcp: { srcPort, dstPort: VIP_PORT, flags: ['SYN'] },
  });
}

/**
 * A packet of an established connection. Not a SYN: a SYN starts a new connection even when its
 * tuple is in the flow table (flow.h, pick_backend), so it would never take the established path.
 */
function tcpAck(dst: string, src = isV6(dst) ? CLIENT6 : CLIENT, srcPort = CLIENT_PORT): Buffer {
  return packet({
    eth: { src: CLIENT_MAC, dst: LB_MAC },
    ...(isV6(dst) ? { ipv6: { src, dst } } : { ipv4: { src, dst } }),
    tcp: { srcPort, dstPort: VIP_PORT, flags: ['ACK'] },
  });
}

function cfgValue(c: WrapCfg): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt32LE(c.mode, 0);
  b.writeUInt32LE(c.n, 4);
  b.writeUInt32LE(c.base >>> 0, 8);
  return b;
}

/** Client tuple j of the wrapper as the raw words the data path hashes. */
function tupleRaw(j: number): { client: number; ports: number } {
  const host = (BENCH_NET + Math.floor(j / 65536)) >>> 0;
  const client = (((host >>> 24) & 255) | (((host >>> 16) & 255) << 8) | (((host >>> 8) & 255) << 16) | ((host & 255) << 24)) >>> 0;
  const ports = ((rawPort(j & 0xffff) << 16) | rawPort(VIP_PORT)) >>> 0;
  return { client, ports };
}

/**
 * nat_new iterations per sample: every one adds a connection (two entries) that stays, in each of
 * the two NAT modes, for up to `maxRounds` samples; the few established connections need room too.
 */
export function natNewRepeat(natEntries: number, maxRounds: number): number {
  const modes = 2;
  const byTable = Math.floor((natEntries * NAT_FILL_MAX - 2 * modes) / (2 * modes * maxRounds));
  const byPorts = Math.floor((NAT_PORT_FILL_MAX * NAT_BACKENDS * (NAT_PORT_MAX - NAT_PORT_MIN + 1)) / maxRounds);
  const r = Math.min(NAT_NEW_REPEAT, byTable, byPorts);
  if (r < NAT_NEW_REPEAT_MIN) {
    throw new LbError('ERR_LB_USAGE', `${maxRounds} rounds leave nat_new ${r} iterations per sample in a ${natEntries}-entry NAT table (at least ${NAT_NEW_REPEAT_MIN})`, {
      hint: 'fewer rounds',
    });
  }
  return r;
}

/**
 * Picks `k` client tuples whose flows all get a way of their own in the (empty) flow table:
 * a 4-way bucket holds 4 flows, so random tuples would overflow some buckets long before the
 * table is full. Returns the tuple numbers in a random order, so walking them is not sequential
 * in memory.
 */
function chooseTuples(k: number, vip: string, buckets: number, seed: number): Uint32Array {
  const fill = new Uint8Array(buckets);
  const out = new Uint32Array(k);
  const vipRaw = rawAddr4(vip);
  const hseed = (seed ^ 6) >>> 0;
  let n = 0;
  for (let j = 0; n < k; j++) {
    if (j > 0x7fffffff) throw new LbError('ERR_LB_USAGE', `cannot place ${k} flows in ${buckets} buckets`);
    const t = tupleRaw(j);
    const b = lbHash3(t.client, vipRaw, t.ports, hseed).h1 & (buckets - 1);
    if ((fill[b] as number) >= FLOW_WAYS) continue;
    fill[b] = (fill[b] as number) + 1;
    out[n++] = j;
  }
  for (let i = k - 1; i > 0; i--) {
    const r = Math.floor(Math.random() * (i + 1));
    const x = out[i] as number;
    out[i] = out[r] as number;
    out[r] = x;
  }
  return out;
}

class Bench {
  readonly lb: LoadedBalancer;
  readonly floorObj: BpfObject;
  readonly floor: BpfProgram;
  readonly wrap: BpfProgram;
  readonly nul: BpfProgram;
  readonly wrapFloor: BpfProgram;
  readonly adjustPair: BpfProgram;
  readonly wrap6: BpfProgram;
  readonly nul6: BpfProgram;
  readonly adjustPair6: BpfProgram;
  readonly empty: BpfProgram;
  ctxIn = Buffer.alloc(24);
  serviceIds: number[] = [];
  repeat: number;

  constructor(repeat: number, flowBuckets: number | undefined, objectPath: string | undefined) {
    this.repeat = repeat;
    // NAT66's table as large as NAT44's: nat_new fills both alike (natNewRepeat)
    this.lb = loadBalancer({
      objectPath: objectPath ?? bpfObjectPath('bench_balancer'),
      nat6Entries: DEFAULT_GEOMETRY.natEntries,
      ...(flowBuckets ? { flowBuckets } : {}),
    });
    try {
      this.floorObj = BpfObject.open(bpfObjectPath('floor'));
      this.floorObj.load();
    } catch (e) {
      this.lb.close();
      throw e;
    }
    this.floor = this.floorObj.program('xdp_floor');
    this.wrap = this.lb.obj.program('xdp_bench_balancer');
    this.nul = this.lb.obj.program('xdp_bench_null');
    this.wrapFloor = this.lb.obj.program('xdp_bench_floor');
    this.adjustPair = this.lb.obj.program('xdp_bench_adjust_pair');
    this.wrap6 = this.lb.obj.program('xdp_bench_balancer6');
    this.nul6 = this.lb.obj.program('xdp_bench_null6');
    this.adjustPair6 = this.lb.obj.program('xdp_bench_adjust_pair6');
    this.empty = this.lb.obj.program('xdp_bench_empty');
  }

  close(): void {
    this.floorObj.close();
    this.lb.close();
  }

  setup(): void {
    const dp = this.lb.dataplane;
    dp.setCtl({ src4: BENCH_LOCAL4, src6: BENCH_LOCAL6, clock: 1 });
    const backends = (net: string) =>
      Array.from({ length: NAT_BACKENDS }, (_, i) => ({ address: `${net}.${i + 10}`, mac: `02:00:00:00:01:${(i + 16).toString(16)}`, weight: 1 }));
    // NAT backends in the routed BACKEND_NET4, so that both directions get a next hop (TX_NAT*)
    const natBackends = backends('203.0.113').map((b) => ({ address: b.address, port: NAT_BACKEND_PORT, weight: 1 }));
    const backends6 = (prefix: string) =>
      Array.from({ length: NAT_BACKENDS }, (_, i) => ({ address: `${prefix}${(i + 16).toString(16)}`, mac: `02:00:00:00:02:${(i + 16).toString(16)}`, weight: 1 }));
    const natBackends6 = backends6(BACKEND_PREFIX6).map((b) => ({ address: b.address, port: NAT_BACKEND_PORT, weight: 1 }));
    // before the first nat service: without timeouts every connection would count as expired
    this.lb.nat.configure({ sources: [BENCH_LOCAL4, BENCH_LOCAL6], portMin: NAT_PORT_MIN, portMax: NAT_PORT_MAX });
    dp.apply([
      { vip: VIP_L2, port: VIP_PORT, proto: 'tcp', mode: 'l2dsr', backends: backends('10.201.0') },
      { vip: VIP_IPIP, port: VIP_PORT, proto: 'tcp', mode: 'ipip', backends: backends('203.0.113') },
      { vip: VIP_NAT, port: VIP_PORT, proto: 'tcp', mode: 'nat', backends: natBackends },
      { vip: VIP_FULLNAT, port: VIP_PORT, proto: 'tcp', mode: 'nat', fullNat: true, backends: natBackends },
      { vip: VIP6_L2, port: VIP_PORT, proto: 'tcp', mode: 'l2dsr', backends: backends6('fd00:201::') },
      { vip: VIP6_IPIP, port: VIP_PORT, proto: 'tcp', mode: 'ipip', backends: backends6(BACKEND_PREFIX6) },
      { vip: VIP6_NAT, port: VIP_PORT, proto: 'tcp', mode: 'nat', backends: natBackends6 },
      { vip: VIP6_FULLNAT, port: VIP_PORT, proto: 'tcp', mode: 'nat', fullNat: true, backends: natBackends6 },
    ]);
    this.serviceIds = [VIP_L2, VIP_IPIP, VIP_NAT, VIP_FULLNAT, VIP6_L2, VIP6_IPIP, VIP6_NAT, VIP6_FULLNAT].map((v) => {
      const id = dp.serviceId(v, VIP_PORT, 'tcp');
      if (id === undefined) throw new LbError('ERR_LB_DATAPLANE', `service ${v}:${VIP_PORT} missing after apply`);
      return id;
    });
  }

  setCfg(c: WrapCfg): void {
    this.lb.obj.map('bench_cfg').update(u32Key(0), cfgValue(c));
  }

  resetState(): void {
    const m = this.lb.obj.map('bench_state');
    m.update(u32Key(0), Buffer.alloc(m.valueSize));
  }

  state(): { undone: number; bad: number } {
    const b = this.lb.obj.map('bench_state').lookup(u32Key(0)) ?? Buffer.alloc(32);
    return { undone: Number(b.readBigUInt64LE(16)), bad: Number(b.readBigUInt64LE(24)) };
  }

  newFlows(): number {
    let n = 0;
    for (const id of this.serviceIds) n += Number(this.lb.dataplane.serviceCounters(id).newFlows);
    return n;
  }

  snapshot(): { reasons: Record<string, bigint>; newFlows: number; st: { undone: number; bad: number } } {
    return { reasons: this.lb.reasons(), newFlows: this.newFlows(), st: this.state() };
  }

  run(prog: BpfProgram, pkt: Buffer, repeat = this.repeat): { ns: number; retval: number } {
    const r = testRun(prog, { data: pkt, repeat, ctxIn: this.ctxIn });
    return { ns: r.duration, retval: r.retval };
  }

  /** The wrapper's entry point for the case's family, and its bookkeeping alone. */
  wrapperOf(s: Spec): { wrap: BpfProgram; nul: BpfProgram } {
    return s.family === 6 ? { wrap: this.wrap6, nul: this.nul6 } : { wrap: this.wrap, nul: this.nul };
  }

  /** Runs the case once, timed, and adds what the counters say it did to acc. */
  measure(s: Spec, acc: Acc, repeat = this.repeat): void {
    const prog = s.via === 'direct' ? this.lb.prog : this.wrapperOf(s).wrap;
    if (s.via === 'wrap') this.setCfg(s.cfg);
    if (s.establish) this.run(prog, s.pkt, 1);
    const before = this.snapshot();
    const r = this.run(prog, s.pkt, repeat);
    const after = this.snapshot();
    acc.raw.push(r.ns);
    acc.retvals.add(r.retval);
    acc.iterations += repeat;
    for (const [name, v] of Object.entries(after.reasons)) {
      const d = Number(v - (before.reasons[name] ?? 0n));
      if (name === s.reason) acc.reasonCount += d;
      else acc.otherReasons += d;
    }
    acc.newFlows += after.newFlows - before.newFlows;
    acc.undone += after.st.undone - before.st.undone;
    acc.bad += after.st.bad - before.st.bad;
  }

  /**
   * The floor, the case and (for wrapped cases) the wrapper alone, in turn, round after round until
   * every series (and the caller's `more`) has NEED_FAST fast-mode samples, within the plan.
   */
  measureAll(
    specs: Spec[],
    plan: RoundPlan,
    extra: (round: number) => void = () => {},
    more: () => number[][] = () => [],
  ): { accs: Map<Spec, Acc>; rounds: number; enough: boolean } {
    const accs = new Map<Spec, Acc>(specs.map((s) => [s, newAcc()]));
    // warm-up: caches, branch predictors, the dispatcher
    const fl = tcpSyn(VIP_L2);
    this.run(this.floor, fl);
    const enough = () =>
      [...[...accs.values()].flatMap((a) => [a.floor, a.raw, ...(a.nul.length ? [a.nul] : [])]), ...more()].every(
        (xs) => fastSamples(xs).length >= NEED_FAST,
      );
    let r = 0;
    while (r < plan.max && (r < plan.min || !enough())) {
      extra(r);
      for (const s of specs) {
        const acc = accs.get(s) as Acc;
        acc.floor.push(this.run(this.floor, s.pkt).ns);
        this.measure(s, acc, s.repeat ?? this.repeat);
        if (s.via === 'wrap') {
          this.setCfg(s.cfg);
          acc.nul.push(this.run(this.wrapperOf(s).nul, s.pkt, s.repeat ?? this.repeat).ns);
        }
      }
      r++;
    }
    return { accs, rounds: r, enough: enough() };
  }

  /** Zeroes the whole flow table in one batch. */
  clearFlows(): void {
    const m = this.lb.maps.flows;
    const n = m.maxEntries;
    const keys = Buffer.alloc(4 * n);
    for (let i = 0; i < n; i++) keys.writeUInt32LE(i, 4 * i);
    m.updateBatch(keys, Buffer.alloc(m.valueSize * n), n);
  }

  /** Puts k established l2dsr flows in the table through the data path itself; checks it did. */
  fillFlows(k: number): void {
    if (k > TUPLES_MAX) throw new LbError('ERR_LB_USAGE', `at most ${TUPLES_MAX} tracked flows`);
    const tuples = chooseTuples(k, VIP_L2, this.lb.geometry.flowBuckets, this.lb.geometry.seed);
    const keys = Buffer.alloc(4 * k);
    for (let i = 0; i < k; i++) keys.writeUInt32LE(i, 4 * i);
    this.lb.obj.map('bench_tuples').updateBatch(keys, Buffer.from(tuples.buffer, tuples.byteOffset, 4 * k), k);
    this.clearFlows();
    this.resetState();
    const spec: Spec = {
      name: 'fill', mode: 'l2dsr', via: 'wrap', pkt: tcpSyn(VIP_L2), cfg: { mode: BENCH_TABLE, n: k, base: 0 },
      reason: 'TX_L2DSR', retval: XdpAction.TX, newFlows: true, encap: false,
    };
    const acc = newAcc();
    this.measure(spec, acc, k);
    if (acc.reasonCount !== k || acc.newFlows !== k || acc.otherReasons !== 0 || acc.bad !== 0) {
      throw new LbError('ERR_LB_BPF_TEST_RUN', `filling the flow table with ${k} flows went wrong: ${acc.reasonCount} TX_L2DSR, ${acc.newFlows} new flows, ${acc.otherReasons} other verdicts, ${acc.bad} wrapper errors`);
    }
    this.resetState(); // the next walk starts at tuple 0 again
  }
}

/**
 * The NAT cases of both modes and both families (NAT44: nat, fullnat; NAT66: nat6, fullnat6).
 * Each one's established connection is opened here, untimed, by one pass of its client's SYN
 * through the wrapper and one of the backend's SYN-ACK (so it is established, and its packets
 * only read the table); the timed packets are ACKs. The reply's tuple (in full NAT the LB's
 * source address and port) is read back from the connection table. The client is CLIENT_NAT (or
 * CLIENT_NAT6), whose replies have a route; nat_new's clients are the wrapper's tuples, which
 * only ever send forward.
 */
function natSpecs(bench: Bench, natRepeat: number): Spec[] {
  const fixed: WrapCfg = { mode: BENCH_FIXED, n: 0, base: 0 };
  const out: Spec[] = [];
  const all = [
    { mode: 'nat', vip: VIP_NAT, client: CLIENT_NAT, family: 4, base: NAT_SEQ_BASE.nat },
    { mode: 'fullnat', vip: VIP_FULLNAT, client: CLIENT_NAT, family: 4, base: NAT_SEQ_BASE.fullnat },
    { mode: 'nat6', vip: VIP6_NAT, client: CLIENT_NAT6, family: 6, base: NAT_SEQ_BASE6.nat },
    { mode: 'fullnat6', vip: VIP6_FULLNAT, client: CLIENT_NAT6, family: 6, base: NAT_SEQ_BASE6.fullnat },
  ] as const;
  for (const { mode, vip, client, family, base } of all) {
    const wrap = family === 6 ? bench.wrap6 : bench.wrap;
    const conn = () => bench.lb.nat.connections().find((x) => sameAddr(x.vip, vip) && sameAddr(x.client, client) && x.clientPort === CLIENT_PORT);
    bench.setCfg(fixed);
    const opened = bench.run(wrap, tcpSyn(vip, client), 1);
    const c = conn();
    if (!c || opened.retval !== XdpAction.TX) {
      throw new LbError('ERR_LB_BPF_TEST_RUN', `the ${mode} connection for the forward and reply cases was not created (verdict ${opened.retval}): ${JSON.stringify(bench.lb.reasons())}`);
    }
    const fromBackend = (flags: Array<'SYN' | 'ACK'>) =>
      packet({
        eth: { src: CLIENT_MAC, dst: LB_MAC },
        ...(family === 6 ? { ipv6: { src: c.backend, dst: c.source } } : { ipv4: { src: c.backend, dst: c.source } }),
        tcp: { srcPort: c.backendPort, dstPort: c.sourcePort, flags },
      });
    const answered = bench.run(wrap, fromBackend(['SYN', 'ACK']), 1);
    const est = conn();
    if (answered.retval !== XdpAction.TX || est?.state !== 'tcpEstablished') {
      throw new LbError('ERR_LB_BPF_TEST_RUN', `the ${mode} backend's reply did not establish the connection (verdict ${answered.retval}, state ${est?.state ?? 'gone'})`);
    }
    // timed: ACKs both ways, as on an established connection
    const fwd = tcpAck(vip, client);
    const reply = fromBackend(['ACK']);
    out.push(
      { name: 'nat_new', mode, family, via: 'wrap', pkt: tcpSyn(vip), cfg: { mode: BENCH_SEQ, n: 0, base }, repeat: natRepeat, reason: 'TX_NAT', retval: XdpAction.TX, newFlows: true, encap: false },
      { name: 'nat_forward', mode, family, via: 'wrap', pkt: fwd, cfg: fixed, reason: 'TX_NAT', retval: XdpAction.TX, newFlows: false, encap: false, trackedFlows: 1 },
      { name: 'nat_reply', mode, family, via: 'wrap', pkt: reply, cfg: fixed, reason: 'TX_NAT_REPLY', retval: XdpAction.TX, newFlows: false, encap: false, trackedFlows: 1 },
    );
  }
  return out;
}

function verify(s: Spec, acc: Acc): { ok: boolean; why: string[] } {
  const why: string[] = [];
  const n = acc.iterations;
  if (acc.reasonCount !== n) why.push(`${acc.reasonCount}/${n} iterations counted as ${s.reason}`);
  if (acc.otherReasons !== 0) why.push(`${acc.otherReasons} iterations with another verdict`);
  const wantNew = s.newFlows ? n : 0;
  if (acc.newFlows !== wantNew) why.push(`${acc.newFlows} new flows, expected ${wantNew}`);
  if (s.via === 'wrap') {
    if (acc.undone !== (s.encap ? n : 0)) why.push(`${acc.undone} encapsulations undone, expected ${s.encap ? n : 0}`);
    if (acc.bad !== 0) why.push(`${acc.bad} wrapper errors`);
  }
  if (acc.retvals.size !== 1 || !acc.retvals.has(s.retval)) why.push(`verdicts ${[...acc.retvals].join(',')}, expected ${s.retval}`);
  return { ok: why.length === 0, why };
}

interface RoundPlan {
  min: number;
  max: number;
}

interface Context {
  emptyNs: number;
  floorNs: number;
  floorMedianNs: number;
  undoNs: number;
  /** the same for a 6in6 header (40 bytes), from the IPv6 entry points */
  undoNs6: number;
  flowBuckets: number;
}

function report(s: Spec, acc: Acc, c: Context): DatapathCase {
  const v = verify(s, acc);
  if (!v.ok) {
    throw new LbError('ERR_LB_BPF_TEST_RUN', `data-path case ${s.name}/${s.mode} did not take the intended path: ${v.why.join('; ')}`, {
      hint: 'the figure would measure another path; fix the case or the wrapper before quoting it',
    });
  }
  const raw = fastMode(acc.raw);
  const rawMed = median(acc.raw);
  let ns = raw;
  let nsMed = rawMed;
  const out: Partial<DatapathCase> = {};
  if (s.via === 'wrap') {
    const wrapper = Math.max(0, fastMode(acc.nul) - c.emptyNs);
    ns = raw - wrapper;
    nsMed = rawMed - Math.max(0, median(acc.nul) - c.emptyNs);
    out.raw_ns = round(raw);
    out.wrapper_ns = round(wrapper);
    if (s.encap) out.undo_encap_ns = round(s.family === 6 ? c.undoNs6 : c.undoNs);
  }
  return {
    case: s.name,
    mode: s.mode,
    ns_per_packet: round(ns),
    ratio_to_floor: round(ns / c.floorNs),
    ns_median: round(nsMed),
    ratio_median: round(nsMed / c.floorMedianNs),
    ...out,
    floor_ns: round(c.floorNs),
    ...(s.trackedFlows !== undefined ? { tracked_flows: s.trackedFlows } : {}),
    samples: acc.raw.length,
    fast_samples: fastSamples(acc.raw).length,
    flow_buckets: c.flowBuckets,
    verified: true,
    counts: {
      iterations: acc.iterations,
      expected_reason: s.reason,
      reason_count: acc.reasonCount,
      other_reasons: acc.otherReasons,
      new_flows: acc.newFlows,
      ...(s.via === 'wrap' ? { undone_encaps: acc.undone } : {}),
    },
  };
}

export function benchDatapath(opts: DatapathOptions = {}): DatapathResult {
  const plan: RoundPlan = opts.rounds ? { min: opts.rounds, max: opts.rounds } : { min: MIN_ROUNDS, max: MAX_ROUNDS };
  const roundsUsed: Record<string, number> = {};
  const short: string[] = [];
  const phase = (name: string, m: { rounds: number; enough: boolean }) => {
    roundsUsed[name] = m.rounds;
    if (!m.enough) short.push(name);
  };
  const repeat = opts.repeat ?? 20000;
  const scaling = opts.scaling ?? [10_000, 1_000_000];
  const log = opts.log ?? (() => {});
  createBenchNetns();
  try {
    const bench = new Bench(repeat, opts.flowBuckets, opts.objectPath);
    try {
      bench.setup();
      const flowBuckets = bench.lb.geometry.flowBuckets;
      return inNetns(BENCH_NS, () => {
        bench.ctxIn.writeUInt32LE(ifIndex(BENCH_DEV), 12); // ingress_ifindex
        const floors: number[] = [];
        const cases: DatapathCase[] = [];
        const fixed: WrapCfg = { mode: BENCH_FIXED, n: 0, base: 0 };
        const seq: WrapCfg = { mode: BENCH_SEQ, n: 0, base: SEQ_BASE };
        const l2 = tcpSyn(VIP_L2);
        const l2est = tcpAck(VIP_L2);
        const main: Spec[] = [
          { name: 'non_vip_pass', mode: '-', via: 'direct', pkt: tcpSyn(NON_VIP), cfg: fixed, reason: 'PASS_NOT_VIP', retval: XdpAction.PASS, newFlows: false, encap: false },
          { name: 'new_flow', mode: 'l2dsr', via: 'wrap', pkt: l2, cfg: seq, reason: 'TX_L2DSR', retval: XdpAction.TX, newFlows: true, encap: false },
          { name: 'established', mode: 'l2dsr', via: 'wrap', pkt: l2est, cfg: fixed, reason: 'TX_L2DSR', retval: XdpAction.TX, newFlows: false, encap: false, establish: true, trackedFlows: 1 },
          { name: 'new_flow', mode: 'ipip', via: 'wrap', pkt: tcpSyn(VIP_IPIP), cfg: seq, reason: 'TX_IPIP', retval: XdpAction.TX, newFlows: true, encap: true },
          { name: 'established', mode: 'ipip', via: 'wrap', pkt: tcpAck(VIP_IPIP), cfg: fixed, reason: 'TX_IPIP', retval: XdpAction.TX, newFlows: false, encap: true, establish: true, trackedFlows: 1 },
          // IPv6 twins, same phase and floor
          { name: 'non_vip_pass', mode: '-6', family: 6, via: 'direct', pkt: tcpSyn(NON_VIP6), cfg: fixed, reason: 'PASS_NOT_VIP', retval: XdpAction.PASS, newFlows: false, encap: false },
          { name: 'new_flow', mode: 'l2dsr6', family: 6, via: 'wrap', pkt: tcpSyn(VIP6_L2), cfg: seq, reason: 'TX_L2DSR', retval: XdpAction.TX, newFlows: true, encap: false },
          { name: 'established', mode: 'l2dsr6', family: 6, via: 'wrap', pkt: tcpAck(VIP6_L2), cfg: fixed, reason: 'TX_L2DSR', retval: XdpAction.TX, newFlows: false, encap: false, establish: true, trackedFlows: 1 },
          { name: 'new_flow', mode: 'ipip6', family: 6, via: 'wrap', pkt: tcpSyn(VIP6_IPIP), cfg: seq, reason: 'TX_IPIP', retval: XdpAction.TX, newFlows: true, encap: true },
          { name: 'established', mode: 'ipip6', family: 6, via: 'wrap', pkt: tcpAck(VIP6_IPIP), cfg: fixed, reason: 'TX_IPIP', retval: XdpAction.TX, newFlows: false, encap: true, establish: true, trackedFlows: 1 },
        ];
        // Calibration, in the same rounds: the l2dsr flow run directly, the floor through the
        // wrapper (and the wrapper alone, FIXED), an adjust_head pair of each family's size (with
        // its own wrapper alone), the empty program.
        const direct: Spec = { name: 'established_direct', mode: 'l2dsr', via: 'direct', pkt: l2est, cfg: fixed, reason: 'TX_L2DSR', retval: XdpAction.TX, newFlows: false, encap: false, establish: true };
        const cal = { empty: [] as number[], floorWrap: [] as number[], nulFixed: [] as number[], pair: [] as number[], nulFixed6: [] as number[], pair6: [] as number[] };
        const l2v6 = tcpSyn(VIP6_L2);
        const directAcc = newAcc();
        const extra = () => {
          cal.empty.push(bench.run(bench.empty, l2).ns);
          bench.setCfg(fixed);
          cal.floorWrap.push(bench.run(bench.wrapFloor, l2).ns);
          cal.nulFixed.push(bench.run(bench.nul, l2).ns);
          cal.pair.push(bench.run(bench.adjustPair, l2).ns);
          cal.nulFixed6.push(bench.run(bench.nul6, l2v6).ns);
          cal.pair6.push(bench.run(bench.adjustPair6, l2v6).ns);
          bench.measure(direct, directAcc);
        };
        log(`data path: ${main.length} cases x ${plan.min}-${plan.max} rounds x ${repeat} packets, beside the floor (flow table ${flowBuckets} buckets)`);
        const m = bench.measureAll(main, plan, extra, () => [cal.empty, cal.floorWrap, cal.nulFixed, cal.pair, cal.nulFixed6, cal.pair6, directAcc.raw]);
        phase('main', m);
        const accs = m.accs;
        const floorMain = main.flatMap((s) => (accs.get(s) as Acc).floor);
        floors.push(...floorMain);
        const emptyNs = fastMode(cal.empty);
        const nulFixed = fastMode(cal.nulFixed);
        const ctx: Context = {
          emptyNs,
          floorNs: fastMode(floorMain),
          floorMedianNs: median(floorMain),
          undoNs: Math.max(0, (fastMode(cal.pair) - nulFixed) / 2),
          undoNs6: Math.max(0, (fastMode(cal.pair6) - fastMode(cal.nulFixed6)) / 2),
          flowBuckets,
        };
        for (const s of main) cases.push(report(s, accs.get(s) as Acc, ctx));
        const v = verify(direct, directAcc);
        if (!v.ok) throw new LbError('ERR_LB_BPF_TEST_RUN', `calibration case established_direct/l2dsr did not take the intended path: ${v.why.join('; ')}`);
        const wrapper = Math.max(0, nulFixed - emptyNs);
        const viaWrap = cases.find((c) => c.case === 'established' && c.mode === 'l2dsr');
        const directNs = fastMode(directAcc.raw);
        const viaNs = viaWrap?.ns_per_packet ?? NaN;
        const calibration: Calibration = {
          floor_ns: round(ctx.floorNs),
          floor_via_wrapper_ns: round(fastMode(cal.floorWrap) - wrapper),
          established_l2dsr_direct_ns: round(directNs),
          established_l2dsr_via_wrapper_ns: viaNs,
          empty_ns: round(emptyNs),
          wrapper_error_ns: round(viaNs - directNs),
          trustworthy: Math.abs(viaNs - directNs) <= CALIBRATION_TOLERANCE_NS,
          phases_short_of_fast_samples: short,
        };
        if (!calibration.trustworthy) {
          log(`data path: calibration off by ${calibration.wrapper_error_ns} ns (tolerance ${CALIBRATION_TOLERANCE_NS}): the machine was busy, figures are noisy`);
        }

        {
          const natRepeat = natNewRepeat(bench.lb.geometry.natEntries, plan.max);
          const nat = natSpecs(bench, natRepeat);
          log(`data path: NAT, ${nat.length} cases x ${plan.min}-${plan.max} rounds x ${repeat} packets (nat_new ${natRepeat}: its connections stay in the ${bench.lb.geometry.natEntries}-entry table), beside the floor`);
          const mn = bench.measureAll(nat, plan);
          phase('nat', mn);
          const floorNat = nat.flatMap((s) => (mn.accs.get(s) as Acc).floor);
          floors.push(...floorNat);
          const natCtx: Context = { ...ctx, floorNs: fastMode(floorNat), floorMedianNs: median(floorNat) };
          for (const s of nat) cases.push(report(s, mn.accs.get(s) as Acc, natCtx));
        }

        for (const k of scaling) {
          log(`data path: established l2dsr flows at ${k} tracked flows`);
          bench.fillFlows(k);
          const s: Spec = {
            name: `established_${k}_flows`, mode: 'l2dsr', via: 'wrap', pkt: l2est,
            cfg: { mode: BENCH_TABLE, n: k, base: 0 }, reason: 'TX_L2DSR', retval: XdpAction.TX,
            newFlows: false, encap: false, trackedFlows: k,
          };
          const ms = bench.measureAll([s], plan);
          phase(s.name, ms);
          const acc = ms.accs.get(s) as Acc;
          floors.push(...acc.floor);
          cases.push(report(s, acc, { ...ctx, floorNs: fastMode(acc.floor), floorMedianNs: median(acc.floor) }));
        }
        // Diagnostic, not a goal: the new-flow path with a table that fits in L1 (1024 buckets,
        // 32 KiB), to tell the path's own cost from its bucket's cache and TLB miss above.
        log('data path: new flow into a cache-resident flow table (diagnostic)');
        const small = new Bench(repeat, 1024, opts.objectPath);
        try {
          small.setup();
          small.ctxIn = bench.ctxIn;
          const s: Spec = { ...main[1] as Spec, name: 'new_flow_cache_resident' };
          const ms = small.measureAll([s], plan);
          phase(s.name, ms);
          const acc = ms.accs.get(s) as Acc;
          floors.push(...acc.floor);
          cases.push(report(s, acc, { ...ctx, floorNs: fastMode(acc.floor), floorMedianNs: median(acc.floor), flowBuckets: 1024 }));
        } finally {
          small.close();
        }
        if (short.length) log(`data path: phases ${short.join(', ')} ran out of rounds before every program had ${NEED_FAST} fast-mode samples`);
        return {
          cases,
          floor_ns: round(fastMode(floors)),
          floor_median_ns: round(median(floors)),
          floor_quantiles_ns: [0.1, 0.25, 0.5, 0.75, 0.9].map((q) => quantile(floors, q)),
          floor_samples: floors.length,
          calibration,
          rounds: roundsUsed,
          repeat,
          statistic: `median of each program's fast-mode samples (within 10% + 1 ns of its smallest); rounds per phase ${plan.min}..${plan.max}, until every program has ${NEED_FAST} such samples`,
        };
      });
    } finally {
      bench.close();
    }
  } finally {
    destroyBenchNetns();
  }
}
