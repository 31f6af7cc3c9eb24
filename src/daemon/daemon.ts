/**
 * The daemon: owns the config file, the pinned maps and the XDP attachment, and runs the one
 * control loop that writes maps. Data flows one way: config edits and health transitions ->
 * desired state -> minimal map diff.
 *
 * Restart safety: the maps are pinned under node.bpffs and the XDP program stays attached when
 * the daemon exits (SIGTERM or SIGKILL alike). A new daemon reuses the pins, adopts what they
 * hold, counts backends that were in a ring as up until their checks say otherwise, and only then
 * swaps in its own program (an atomic replace). Same config in, zero map writes out.
 */
import { attachXdp, detachXdp, ensurePinDir, ifIndex, queryXdp, removePinDir } from '../bpf/index.js';
import { ConfigFile, findBackend, findService } from '../config/index.js';
import { serviceKeyString, type Backend, type Config, type Service } from '../config/types.js';
import { backendKey, desiredServices, judge, type DesiredInputs } from '../control/desired.js';
import { resolveMacs } from '../control/neigh.js';
import { ctlValue, sumCounters, u32Key, type Counters } from '../dataplane/abi.js';
import type { ApplyReport } from '../dataplane/apply.js';
import { countFlows, purgeFlows, type FlowCount } from '../dataplane/flows.js';
import { loadBalancer, type LoadedBalancer } from '../dataplane/loader.js';
import { LbError } from '../errors.js';
import { HealthMonitor, type HealthTarget, type HealthTransition } from '../health/index.js';
import { prepareBackends, type HostOutcome } from '../serverprep/index.js';
import type { Logger } from './logger.js';
import { natSources, resolveSources, type Sources } from './source.js';
import { VERSION } from '../version.js';

/** The flow clock's period: flows' last-seen stamps and node.flowIdleTimeout are in these ticks. */
const CLOCK_TICK_MS = 1000;
const RATE_SAMPLE_MS = 2000;
const NEIGH_REFRESH_MS = 30_000;
const FLOW_COUNT_CACHE_MS = 250;

export interface BackendView {
  address: string;
  port?: number;
  weight: number;
  mac?: string;
  id?: number;
  health: { state: 'up' | 'down' | 'unknown'; check: string; detail?: string; since?: string; history?: unknown[] };
  /** in the ring (takes new flows) and why not */
  inRing: boolean;
  excluded?: string;
  slots: number;
  /** share of the ring, 0..1 */
  share: number;
  flows: FlowCount;
  stats?: CountersView;
  rate?: RateView;
}

export interface ServiceView {
  name: string;
  key: string;
  vip: string;
  port: number;
  proto: 'tcp' | 'udp';
  mode: string;
  hashSourceOnly: boolean;
  onAllDown: 'drop' | 'pass';
  id?: number;
  usableBackends: number;
  backends: BackendView[];
  stats?: CountersView;
  rate?: RateView;
}

export interface CountersView {
  packets: number;
  bytes: number;
  newFlows: number;
}
export interface RateView {
  pps: number;
  bps: number;
  newFlowsPerSec: number;
}

export interface StatusView {
  version: string;
  pid: number;
  startedAt: string;
  uptimeSec: number;
  config: string;
  bpffs: string;
  interfaces: { name: string; attached: boolean; progId: number; mode: string }[];
  xdpMode: string;
  services: number;
  backends: number;
  adopted: { services: number; backends: number };
  lastApply?: { at: string; reason: string; writes: ApplyReport['writes']; ringsBuilt: number };
  /** the last automatic server prep (node.serverPrep.auto) */
  serverPrep?: { at: string; reason: string; running: boolean; hosts: Pick<HostOutcome, 'host' | 'mode' | 'ok' | 'status' | 'detail'>[] };
  clock: number;
}

interface Sample {
  at: number;
  services: Map<number, Counters>;
  backends: Map<number, Counters>;
}

export interface DaemonOptions {
  configPath: string;
  log: Logger;
  /** the BPF object, for tests; default build/bpf/balancer.bpf.o */
  objectPath?: string;
}

function toView(c: Counters): CountersView {
  return { packets: Number(c.packets), bytes: Number(c.bytes), newFlows: Number(c.newFlows) };
}

export class Daemon {
  readonly startedAt = new Date();
  private cfgFile: ConfigFile;
  private readonly log: Logger;
  private readonly lb: LoadedBalancer;
  private readonly health: HealthMonitor;
  private readonly adoptedUp = new Set<string>();
  private readonly adopted: { services: number; backends: number };
  private macs = new Map<string, string>();
  private clock: number;
  /** the ctl sources in force, and the addresses picked from the interface so far (kept once picked) */
  private src: Sources;
  private readonly picked: { 4?: string; 6?: string };
  private attached: string[] = [];
  private lastApply?: StatusView['lastApply'];
  private timers: NodeJS.Timeout[] = [];
  private samples: Sample[] = [];
  private flowCache?: { at: number; counts: Map<number, FlowCount> };
  private serviceDown = new Set<string>();
  private reconcileQueued = false;
  private prep?: StatusView['serverPrep'];
  private sweeper?: { stop(): void };
  private prepRunning?: Promise<void>;
  private stopping = false;

  private constructor(opts: DaemonOptions, cfgFile: ConfigFile, lb: LoadedBalancer, picked: { 4?: string; 6?: string }, src: Sources) {
    this.cfgFile = cfgFile;
    this.log = opts.log;
    this.lb = lb;
    this.picked = picked;
    this.src = src;
    const ctl = lb.maps.ctl.lookup(u32Key(0));
    this.clock = ctl ? ctlValue.decode(ctl).clock || 1 : 1;
    this.adopted = lb.dataplane.adopt();
    this.health = new HealthMonitor();
  }

  get config(): Config {
    return this.cfgFile.config;
  }

  static async start(opts: DaemonOptions): Promise<Daemon> {
    const log = opts.log.child({ component: 'daemon' });
    const cfgFile = ConfigFile.load(opts.configPath);
    const node = cfgFile.config.node;
    // before anything is loaded: a config that needs a source address the host lacks fails here
    const picked: { 4?: string; 6?: string } = {};
    const src = resolveSources(cfgFile.config, picked);
    ensurePinDir(node.bpffs);
    let lb: LoadedBalancer;
    try {
      const geometry = {
        ringSize: node.ringSize,
        maxServices: node.maxServices,
        flowBuckets: node.flowBuckets,
        seed: node.seed,
        natEntries: node.nat.entries,
        nat6Entries: node.nat.entries6,
        pinDir: node.bpffs,
        ...(opts.objectPath ? { objectPath: opts.objectPath } : {}),
      };
      lb = loadBalancer(geometry);
    } catch (e) {
      if (e instanceof LbError && /reuse|pin/i.test(`${e.message} ${e.detail ?? ''}`)) {
        throw new LbError('ERR_LB_BPF_PIN', `the maps pinned in ${node.bpffs} do not match this config's table sizes`, {
          cause: e,
          hint: 'table sizes (ringSize, maxServices, flowBuckets, nat.entries, nat.entries6) cannot change on a running data path: `lbctl stop --detach` removes it (traffic stops), then start again',
        });
      }
      throw e;
    }
    let d: Daemon;
    try {
      d = new Daemon(opts, cfgFile, lb, picked, src);
      await d.init();
    } catch (e) {
      lb.close();
      throw e;
    }
    log.info(
      { config: opts.configPath, bpffs: node.bpffs, interfaces: node.interfaces, sources: d.src, adopted: d.adopted, version: VERSION },
      d.adopted.services ? 'started: adopted the pinned data path' : 'started: fresh data path',
    );
    return d;
  }

  private async init(): Promise<void> {
    // Backends that were in a ring keep serving while their first probes run: a restart must not
    // empty the rings. Their MACs come from the map too, so nothing needs rewriting.
    for (const svc of this.config.services) {
      const sid = this.lb.dataplane.serviceId(svc.vip, svc.port, svc.proto);
      if (sid === undefined) continue;
      const slots = this.lb.dataplane.slotCounts(sid);
      for (const b of svc.backends) {
        const bid = this.lb.dataplane.backendId(sid, b.address, b.port ?? 0);
        if (bid === undefined) continue;
        if ((slots.get(bid) ?? 0) > 0 || b.weight === 0) this.adoptedUp.add(backendKey(svc, b));
        const e = this.lb.dataplane.backendEntry(bid);
        if (e && e.mac !== '00:00:00:00:00:00' && svc.mode === 'l2dsr') this.macs.set(b.address, e.mac);
      }
    }
    await this.refreshMacs();
    this.configureNat();
    this.sweeper = this.lb.nat.startSweeper(this.config.node.nat.sweepIntervalMs, (r) => {
      if (r instanceof Error) this.log.error({ component: 'nat', err: r }, 'NAT sweep failed');
      else if (r.connections || r.orphans) this.log.debug({ component: 'nat', ...r }, 'NAT sweep');
    });
    this.health.on('transition', (ev: HealthTransition) => this.onTransition(ev));
    this.health.on('notice', (n) => this.log.child({ component: 'health' }).warn({ key: n.key }, n.message));
    void this.health.set(this.healthTargets()).catch((e: unknown) => this.log.error({ component: 'health', err: e }, 'health targets not applied'));
    this.reconcile('start');
    this.attachAll();
    this.timers.push(setInterval(() => this.tick(), CLOCK_TICK_MS));
    this.timers.push(setInterval(() => this.sample(), RATE_SAMPLE_MS));
    this.timers.push(
      setInterval(() => {
        this.refreshMacs().then(
          (changed) => changed && this.queueReconcile('neighbour change'),
          (e: unknown) => this.log.warn({ component: 'neigh', err: e }, 'neighbour refresh failed'),
        );
      }, NEIGH_REFRESH_MS),
    );
    for (const t of this.timers) t.unref();
    this.sample();
    this.prepBackends('start');
  }

  /**
   * node.serverPrep.auto: run server-prep.sh over SSH on every DSR backend. Idempotent on the
   * hosts, so it simply runs again after each config change; never blocks the control loop, and a
   * host that fails is logged (its data-path check keeps it out of the ring meanwhile).
   */
  private prepBackends(reason: string): void {
    const sp = this.config.node.serverPrep;
    if (!sp?.auto || this.stopping) return;
    const services = this.config.services;
    const log = this.log.child({ component: 'serverprep' });
    const previous = this.prepRunning ?? Promise.resolve();
    this.prepRunning = previous.then(async () => {
      this.prep = { at: new Date().toISOString(), reason, running: true, hosts: [] };
      try {
        const out = await prepareBackends(services, {
          ...(sp.user ? { user: sp.user } : {}),
          ...(sp.identityFile ? { identityFiles: [sp.identityFile] } : {}),
          ...(sp.knownHosts ? { knownHostsFiles: [sp.knownHosts] } : {}),
          acceptNew: sp.acceptNew,
          connectTimeoutMs: sp.connectTimeoutMs,
          commandTimeoutMs: sp.timeoutMs,
          concurrency: sp.concurrency,
        });
        const hosts = out.map((o) => ({ host: o.host, ...(o.mode ? { mode: o.mode } : {}), ok: o.ok, status: o.status, detail: o.detail }));
        this.prep = { at: this.prep.at, reason, running: false, hosts };
        for (const h of hosts) log[h.ok ? 'info' : 'error']({ host: h.host, mode: h.mode, status: h.status, detail: h.detail }, h.ok ? 'backend prepared' : 'backend prep failed');
      } catch (e) {
        this.prep = { at: this.prep.at, reason, running: false, hosts: [] };
        log.error({ err: e }, 'server prep did not run');
      }
    });
  }

  /** NAT settings and the interfaces translated packets may be redirected to (ifindexes of our netns). */
  private configureNat(): void {
    const n = this.config.node.nat;
    const t = n.timeoutsMs;
    const sec = (ms: number): number => Math.max(1, Math.ceil(ms / 1000));
    this.lb.nat.configure({
      sources: natSources(this.config, this.src),
      portMin: n.portMin,
      portMax: n.portMax,
      timeouts: { tcpNewSec: sec(t.tcpNew), tcpEstablishedSec: sec(t.tcpEstablished), tcpClosingSec: sec(t.tcpClosing), udpSec: sec(t.udp) },
    });
    this.lb.nat.setTxPorts(this.config.node.interfaces.map((i) => ifIndex(i)));
  }

  private healthTargets(): HealthTarget[] {
    const out: HealthTarget[] = [];
    for (const svc of this.config.services) {
      for (const b of svc.backends) {
        if (b.healthCheck.type === 'none') continue;
        out.push({
          key: backendKey(svc, b),
          service: { name: svc.name, vip: svc.vip, port: svc.port, proto: svc.proto, mode: svc.mode },
          backend: { address: b.address, ...(b.port !== undefined ? { port: b.port } : {}) },
          check: b.healthCheck,
        });
      }
    }
    return out;
  }

  private inputs(): DesiredInputs {
    return {
      health: (key) => this.health.stateOf(key),
      adoptedUp: this.adoptedUp,
      macs: this.macs,
    };
  }

  /** Recompute the desired state and write the difference. The only place that writes the maps. */
  reconcile(reason: string): ApplyReport {
    const desired = desiredServices(this.config, this.inputs());
    const report = this.lb.dataplane.apply(desired);
    this.lb.dataplane.setCtl({ ...this.src, clock: this.clock });
    const writes = Object.values(report.writes).reduce((a, b) => a + b, 0);
    this.lastApply = { at: new Date().toISOString(), reason, writes: report.writes, ringsBuilt: report.ringsBuilt };
    this.log.child({ component: 'reconcile' })[writes ? 'info' : 'debug'](
      { reason, writes: report.writes, services: report.services, backends: report.backends, ringsBuilt: report.ringsBuilt },
      writes ? 'applied' : 'no change',
    );
    this.flowCache = undefined;
    this.checkAllDown();
    return report;
  }

  private queueReconcile(reason: string): void {
    if (this.reconcileQueued || this.stopping) return;
    this.reconcileQueued = true;
    // Coalesce bursts (many checks failing together after a switch reboot) into one apply.
    setImmediate(() => {
      this.reconcileQueued = false;
      try {
        this.reconcile(reason);
      } catch (e) {
        this.log.error({ component: 'reconcile', err: e }, 'apply failed');
      }
    });
  }

  private checkAllDown(): void {
    const inp = this.inputs();
    for (const svc of this.config.services) {
      const usable = svc.backends.filter((b) => judge(svc, b, inp).usable).length;
      const was = this.serviceDown.has(svc.name);
      if (usable === 0 && !was) {
        this.serviceDown.add(svc.name);
        this.log.child({ component: 'reconcile' }).warn(
          { service: svc.name, onAllDown: svc.onAllDown },
          `no usable backend: new flows are ${svc.onAllDown === 'pass' ? 'passed to the local stack' : 'dropped'}`,
        );
      } else if (usable > 0 && was) {
        this.serviceDown.delete(svc.name);
        this.log.child({ component: 'reconcile' }).info({ service: svc.name, usable }, 'service has usable backends again');
      }
    }
  }

  private onTransition(ev: HealthTransition): void {
    const [svcName, address, port] = ev.key.split('|');
    this.log.child({ component: 'health' })[ev.to === 'down' ? 'warn' : 'info'](
      { service: svcName, backend: address, port: port || undefined, from: ev.from, to: ev.to, detail: ev.detail },
      `backend ${ev.to}`,
    );
    if (ev.to === 'down') this.adoptedUp.delete(ev.key);
    try {
      this.reconcile(`health ${address} ${ev.to}`);
    } catch (e) {
      this.log.error({ component: 'reconcile', err: e }, 'apply failed');
      return;
    }
    if (ev.to !== 'down') return;
    // Out of the ring now; clearing its flows makes their next packet re-hash to a live backend,
    // so clients get a RST from a real server quickly instead of retransmitting into the void.
    const svc = this.config.services.find((s) => s.name === svcName);
    const sid = svc && this.lb.dataplane.serviceId(svc.vip, svc.port, svc.proto);
    const bid = sid !== undefined && svc ? this.lb.dataplane.backendId(sid, address ?? '', port ? Number(port) : 0) : undefined;
    if (bid === undefined) return;
    const cleared = purgeFlows(this.lb.flowMemory, new Set([bid]));
    this.log.child({ component: 'flows' }).info({ service: svcName, backend: address, cleared }, 'cleared flows of a down backend');
  }

  private tick(): void {
    this.clock = (this.clock % 0xffff) + 1;
    this.lb.dataplane.setCtl({ ...this.src, clock: this.clock });
  }

  private readCounters(): Sample {
    const s: Sample = { at: Date.now(), services: new Map(), backends: new Map() };
    for (const svc of this.config.services) {
      const sid = this.lb.dataplane.serviceId(svc.vip, svc.port, svc.proto);
      if (sid === undefined) continue;
      s.services.set(sid, this.lb.dataplane.serviceCounters(sid));
      for (const b of svc.backends) {
        const bid = this.lb.dataplane.backendId(sid, b.address, b.port ?? 0);
        if (bid !== undefined) s.backends.set(bid, sumCounters(this.lb.maps.backend_stats.lookupPerCpu(u32Key(bid)) ?? []));
      }
    }
    return s;
  }

  private sample(): void {
    if (this.stopping) return;
    this.samples.push(this.readCounters());
    if (this.samples.length > 2) this.samples.shift();
  }

  private rate(kind: 'services' | 'backends', id: number): RateView | undefined {
    const [a, b] = this.samples;
    if (!a || !b) return { pps: 0, bps: 0, newFlowsPerSec: 0 };
    const x = a[kind].get(id);
    const y = b[kind].get(id);
    if (!x || !y) return { pps: 0, bps: 0, newFlowsPerSec: 0 };
    const dt = (b.at - a.at) / 1000;
    const r = (p: bigint, q: bigint): number => Math.max(0, Math.round(Number(q - p) / dt));
    return { pps: r(x.packets, y.packets), bps: r(x.bytes * 8n, y.bytes * 8n), newFlowsPerSec: r(x.newFlows, y.newFlows) };
  }

  private async refreshMacs(): Promise<boolean> {
    const want = new Set<string>();
    for (const svc of this.config.services) {
      if (svc.mode !== 'l2dsr') continue;
      for (const b of svc.backends) if (!b.mac) want.add(b.address);
    }
    if (want.size === 0) return false;
    const table = await resolveMacs([...want]);
    let changed = false;
    for (const a of want) {
      const m = table.get(a);
      if (m && this.macs.get(a) !== m) {
        if (this.macs.has(a)) this.log.child({ component: 'neigh' }).warn({ backend: a, was: this.macs.get(a), now: m }, 'backend MAC changed');
        this.macs.set(a, m);
        changed = true;
      } else if (!m && !this.macs.has(a)) {
        this.log.child({ component: 'neigh' }).warn({ backend: a }, 'no MAC for l2dsr backend: not on this L2 segment? kept out of the ring');
      }
    }
    return changed;
  }

  private attachAll(): void {
    const { interfaces, xdpMode } = this.config.node;
    for (const ifname of interfaces) {
      attachXdp(ifname, this.lb.prog, { mode: xdpMode, replace: true });
      if (!this.attached.includes(ifname)) this.attached.push(ifname);
    }
    for (const ifname of this.attached.filter((i) => !interfaces.includes(i))) {
      detachXdp(ifname, xdpMode);
      this.log.info({ component: 'xdp', ifname }, 'detached from an interface no longer configured');
    }
    this.attached = [...interfaces];
    this.log.info({ component: 'xdp', interfaces, mode: xdpMode, progId: this.lb.prog.id }, 'attached');
  }

  // ---- what the API exposes ----

  private flowCounts(): Map<number, FlowCount> {
    if (!this.flowCache || Date.now() - this.flowCache.at > FLOW_COUNT_CACHE_MS) {
      const counts = countFlows(this.lb.flowMemory, this.clock, Math.ceil(this.config.node.flowIdleTimeoutMs / CLOCK_TICK_MS));
      // NAT services keep their connections in the NAT table, not the flow table.
      if (this.config.services.some((s) => s.mode === 'nat')) {
        for (const c of this.lb.nat.connections()) {
          let e = counts.get(c.backendId);
          if (!e) counts.set(c.backendId, (e = { total: 0, active: 0 }));
          e.total++;
          if (c.expiresInMs > 0) e.active++;
        }
      }
      this.flowCache = { at: Date.now(), counts };
    }
    return this.flowCache.counts;
  }

  findService(key: string): Service {
    return findService(this.config, key).service;
  }

  list(opts: { stats?: boolean; rate?: boolean; service?: string } = {}): ServiceView[] {
    const services = opts.service ? [this.findService(opts.service)] : this.config.services;
    const counts = this.flowCounts();
    const cur = opts.stats ? this.readCounters() : undefined;
    const inp = this.inputs();
    return services.map((svc) => {
      const sid = this.lb.dataplane.serviceId(svc.vip, svc.port, svc.proto);
      const slots = sid !== undefined ? this.lb.dataplane.slotCounts(sid) : new Map<number, number>();
      const total = [...slots.values()].reduce((a, b) => a + b, 0);
      const backends = svc.backends.map((b) => this.backendView(svc, b, sid, slots, total, counts, inp, cur, opts.rate));
      const view: ServiceView = {
        name: svc.name,
        key: serviceKeyString(svc),
        vip: svc.vip,
        port: svc.port,
        proto: svc.proto,
        mode: svc.mode,
        hashSourceOnly: svc.hashSourceOnly,
        onAllDown: svc.onAllDown,
        ...(sid !== undefined ? { id: sid } : {}),
        usableBackends: backends.filter((b) => b.inRing).length,
        backends,
      };
      if (cur && sid !== undefined) {
        const c = cur.services.get(sid);
        if (c) view.stats = toView(c);
      }
      if (opts.rate && sid !== undefined) {
        const r = this.rate('services', sid);
        if (r) view.rate = r;
      }
      return view;
    });
  }

  private backendView(
    svc: Service,
    b: Backend,
    sid: number | undefined,
    slots: Map<number, number>,
    total: number,
    counts: Map<number, FlowCount>,
    inp: DesiredInputs,
    cur: Sample | undefined,
    rate: boolean | undefined,
  ): BackendView {
    const bid = sid !== undefined ? this.lb.dataplane.backendId(sid, b.address, b.port ?? 0) : undefined;
    const key = backendKey(svc, b);
    const snap = this.health.snapshotOf(key);
    const v = judge(svc, b, inp);
    const n = bid !== undefined ? slots.get(bid) ?? 0 : 0;
    const mac = b.mac ?? this.macs.get(b.address);
    const view: BackendView = {
      address: b.address,
      ...(b.port !== undefined ? { port: b.port } : {}),
      weight: b.weight,
      ...(mac && svc.mode === 'l2dsr' ? { mac } : {}),
      ...(bid !== undefined ? { id: bid } : {}),
      health: {
        state: b.healthCheck.type === 'none' ? 'up' : snap?.state ?? 'unknown',
        check: b.healthCheck.type,
        ...(snap?.detail ? { detail: snap.detail } : {}),
        ...(snap?.since ? { since: snap.since } : {}),
        ...(snap?.history ? { history: snap.history } : {}),
      },
      inRing: n > 0,
      ...(v.why ? { excluded: v.why } : {}),
      slots: n,
      share: total ? n / total : 0,
      flows: (bid !== undefined ? counts.get(bid) : undefined) ?? { total: 0, active: 0 },
    };
    if (cur && bid !== undefined) {
      const c = cur.backends.get(bid);
      if (c) view.stats = toView(c);
    }
    if (rate && bid !== undefined) {
      const r = this.rate('backends', bid);
      if (r) view.rate = r;
    }
    return view;
  }

  reasons(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.lb.reasons()).map(([k, v]) => [k, Number(v)]));
  }

  status(): StatusView {
    const node = this.config.node;
    return {
      version: VERSION,
      pid: process.pid,
      startedAt: this.startedAt.toISOString(),
      uptimeSec: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
      config: this.cfgFile.path,
      bpffs: node.bpffs,
      interfaces: node.interfaces.map((name) => {
        try {
          const q = queryXdp(name);
          return { name, attached: q.progId === this.lb.prog.id, progId: q.progId, mode: q.attachMode };
        } catch {
          return { name, attached: false, progId: 0, mode: 'none' };
        }
      }),
      xdpMode: node.xdpMode,
      services: this.config.services.length,
      backends: this.config.services.reduce((a, s) => a + s.backends.length, 0),
      adopted: this.adopted,
      ...(this.lastApply ? { lastApply: this.lastApply } : {}),
      ...(this.prep ? { serverPrep: this.prep } : {}),
      clock: this.clock,
    };
  }

  // ---- changes: validate the whole, write the file atomically, then apply ----

  private commit(next: ConfigFile, reason: string): ApplyReport {
    const a = this.config.node;
    const b = next.config.node;
    const fixed: string[] = (['bpffs', 'ringSize', 'maxServices', 'flowBuckets', 'seed'] as const).filter((k) => a[k] !== b[k]);
    if (a.nat.entries !== b.nat.entries) fixed.push('nat.entries');
    if (a.nat.entries6 !== b.nat.entries6) fixed.push('nat.entries6');
    if (fixed.length) {
      throw new LbError('ERR_LB_CONFIG', `node.${fixed.join(', node.')} cannot change on a running data path`, {
        hint: 'restart the daemon for these: `lbctl stop --detach`, then start it with the new config',
      });
    }
    // refused before the file is written when it needs a source address the host lacks
    const src = resolveSources(next.config, this.picked);
    next.save();
    this.cfgFile = next;
    this.src = src;
    if (a.xdpMode !== b.xdpMode || a.interfaces.join() !== b.interfaces.join()) this.attachAll();
    this.configureNat();
    void this.health.set(this.healthTargets()).catch((e: unknown) => this.log.error({ component: 'health', err: e }, 'health targets not applied'));
    void this.refreshMacs().then((changed) => changed && this.queueReconcile('neighbours resolved'));
    this.prepBackends(reason);
    return this.reconcile(reason);
  }

  applyText(text: string): ApplyReport {
    return this.commit(this.cfgFile.replaceWith(text), 'apply');
  }

  reload(): ApplyReport {
    return this.commit(ConfigFile.load(this.cfgFile.path), 'reload');
  }

  edit(op: EditOp): ApplyReport {
    const f = this.cfgFile;
    switch (op.op) {
      case 'service-add':
        return this.commit(f.addService(op.raw), `service add`);
      case 'service-set':
        return this.commit(f.setService(op.service, op.patch), `service set ${op.service}`);
      case 'service-del':
        return this.commit(f.deleteService(op.service), `service del ${op.service}`);
      case 'backend-add':
        return this.commit(f.addBackend(op.service, op.raw), `backend add ${op.service}`);
      case 'backend-set':
        return this.commit(f.setBackend(op.service, op.address, op.patch), `backend set ${op.service} ${op.address}`);
      case 'backend-del':
        return this.commit(f.deleteBackend(op.service, op.address), `backend del ${op.service} ${op.address}`);
    }
  }

  /** NAT connections (at most `limit`) and the table's counts: `lbctl nat`. */
  natConnections(limit: number): { count: ReturnType<LoadedBalancer['nat']['count']>; connections: ReturnType<LoadedBalancer['nat']['connections']> } {
    return { count: this.lb.nat.count(), connections: this.lb.nat.connections().slice(0, limit) };
  }

  /** Flows of one backend, uncached: what `backend drain --wait` polls. */
  backendFlows(service: string, address: string): FlowCount & { weight: number } {
    const svc = this.findService(service);
    const b = findBackend(svc, address).backend;
    const sid = this.lb.dataplane.serviceId(svc.vip, svc.port, svc.proto);
    const bid = sid !== undefined ? this.lb.dataplane.backendId(sid, b.address, b.port ?? 0) : undefined;
    this.flowCache = undefined;
    const c = bid !== undefined ? this.flowCounts().get(bid) : undefined;
    return { total: c?.total ?? 0, active: c?.active ?? 0, weight: b.weight };
  }

  /** Counters for metrics: one read of every map, shaped for exposition. */
  metricsSnapshot(): {
    services: { svc: Service; stats?: Counters; usable: number }[];
    backends: { svc: Service; b: Backend; stats?: Counters; state: string; weight: number; flows: FlowCount }[];
    reasons: Record<string, bigint>;
  } {
    const cur = this.readCounters();
    const counts = this.flowCounts();
    const inp = this.inputs();
    const services: ReturnType<Daemon['metricsSnapshot']>['services'] = [];
    const backends: ReturnType<Daemon['metricsSnapshot']>['backends'] = [];
    for (const svc of this.config.services) {
      const sid = this.lb.dataplane.serviceId(svc.vip, svc.port, svc.proto);
      const st = sid !== undefined ? cur.services.get(sid) : undefined;
      services.push({ svc, ...(st ? { stats: st } : {}), usable: svc.backends.filter((b) => judge(svc, b, inp).usable).length });
      for (const b of svc.backends) {
        const bid = sid !== undefined ? this.lb.dataplane.backendId(sid, b.address, b.port ?? 0) : undefined;
        const bs = bid !== undefined ? cur.backends.get(bid) : undefined;
        backends.push({
          svc,
          b,
          ...(bs ? { stats: bs } : {}),
          state: b.healthCheck.type === 'none' ? 'up' : this.health.stateOf(backendKey(svc, b)) ?? 'unknown',
          weight: b.weight,
          flows: (bid !== undefined ? counts.get(bid) : undefined) ?? { total: 0, active: 0 },
        });
      }
    }
    return { services, backends, reasons: this.lb.reasons() };
  }

  /**
   * Stop the control plane. Without `detach` the data path keeps forwarding with the last state
   * (pins and XDP stay); with it, XDP is detached and the pins removed: traffic to the VIPs stops.
   */
  async stop(opts: { detach?: boolean } = {}): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.sweeper?.stop();
    await this.health.stop();
    await this.prepRunning;
    const log = this.log.child({ component: 'daemon' });
    if (opts.detach) {
      for (const ifname of this.attached) {
        try {
          detachXdp(ifname, this.config.node.xdpMode);
        } catch (e) {
          log.warn({ ifname, err: e }, 'detach failed');
        }
      }
      this.lb.close();
      removePinDir(this.config.node.bpffs);
      log.info({ interfaces: this.attached, bpffs: this.config.node.bpffs }, 'stopped: XDP detached and pins removed');
    } else {
      this.lb.close();
      log.info({ interfaces: this.attached }, 'stopped: the data path keeps forwarding with the last state (XDP attached, maps pinned)');
    }
  }
}

export type EditOp =
  | { op: 'service-add'; raw: object }
  | { op: 'service-set'; service: string; patch: object }
  | { op: 'service-del'; service: string }
  | { op: 'backend-add'; service: string; raw: object }
  | { op: 'backend-set'; service: string; address: string; patch: object }
  | { op: 'backend-del'; service: string; address: string };

/** Offline detach, when no daemon runs: what `lbctl stop --detach --config` does. */
export function detachOffline(cfg: Config): string[] {
  const done: string[] = [];
  for (const ifname of cfg.node.interfaces) {
    try {
      detachXdp(ifname, cfg.node.xdpMode);
      done.push(ifname);
    } catch {
      // interface gone: nothing attached there any more
    }
  }
  removePinDir(cfg.node.bpffs);
  return done;
}
