/**
 * HealthMonitor: one probe loop per target key, reconciled by set(), reporting by events.
 *
 *  - set(targets): keys not seen before start (state unknown, first probe after a random part of
 *    one interval), keys gone stop, a key whose target changed in any way (check, timing, port,
 *    service) restarts from unknown, an unchanged key keeps its state and its rhythm.
 *  - Each loop probes, waits the interval (± jitter) after the probe ENDS, probes again: never two
 *    probes of one key in flight, and a slow backend is probed less often rather than piled on.
 *    A restarted key waits for its previous probe to finish before its first one.
 *  - type `none` never probes: the key is up at once.
 *  - Data-path checks (datapath.ts) get their routes from one DatapathRoutes, created when first
 *    needed and removed by stop(). Its setup failing never fails a check (that would take every
 *    DSR backend down for an LB-side problem): the check runs plain, and a `notice` says why.
 *
 * Events: `transition` {key, from, to, detail, at} (also to `unknown` when a check changed, and
 * `unknown` -> `up` for type none); `probe` {key, result, at} after every probe (for metrics);
 * `notice` {key, message} once per loop for something the operator should know (plain check only).
 * Nothing is emitted after stop() began.
 */
import { EventEmitter } from 'node:events';
import type { HealthType } from '../config/types.js';
import { LbError } from '../errors.js';
import { errorDetail } from './bounded.js';
import { planDatapath, runCheck, type CheckResult, type DatapathPlan } from './datapath.js';
import { DatapathRoutes, pairKey, type DatapathEntry, type DatapathPair } from './datapath-routes.js';
import { firstDelay, nextDelay, type Random } from './jitter.js';
import { initialStatus, observe, pushHistory, type HealthState, type HealthStatus, type Transition } from './state.js';
import type { HealthTarget, ProbeResult } from './types.js';

export interface HealthTransition extends Transition {
  key: string;
}

export interface HealthNotice {
  key: string;
  message: string;
}

export interface HealthProbeEvent {
  key: string;
  result: CheckResult | ProbeResult;
  at: number;
}

export interface HealthEvents {
  transition: [HealthTransition];
  probe: [HealthProbeEvent];
  notice: [HealthNotice];
}

export interface HealthSnapshot extends HealthStatus {
  key: string;
  check: HealthType;
  /** ISO time of the last transition, or of when watching began */
  since: string;
  /** the last probe's detail ('' before the first probe) */
  detail: string;
  /** on: plain and data-path check; off: not asked for; plain only: asked for, not possible (see note) */
  datapath: 'on' | 'off' | 'plain only';
  note?: string;
}

export type CheckFn = (target: HealthTarget, signal: AbortSignal, datapath: DatapathEntry | undefined) => Promise<CheckResult | ProbeResult>;

export interface HealthMonitorOptions {
  /** draws for the first delay and the jitter (tests pin them); default Math.random */
  random?: Random;
  /** ms since the epoch; default Date.now */
  now?: () => number;
  /** runs one probe cycle; default runCheck (plain + data path) */
  check?: CheckFn;
  /**
   * Routes for data-path checks: default one DatapathRoutes for the current network namespace,
   * created when first needed and removed by stop(); an instance: use it, never remove it;
   * false: no data-path checks in this process (they run plain, with a notice).
   */
  datapath?: DatapathRoutes | false;
  /** at most this often, retry data-path setups that failed or found no route. Default 30 s. */
  datapathRetryMs?: number;
}

const defaultCheck: CheckFn = (target, signal, datapath) => runCheck(target, target.check, signal, datapath);

/** Compares targets by value; a Buffer payload compares by content. */
function fingerprint(t: HealthTarget): string {
  return JSON.stringify({ service: t.service, backend: t.backend, check: t.check }, (_k, v: unknown) =>
    v !== null && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)
      ? `buffer:${Buffer.from((v as { data: number[] }).data).toString('hex')}`
      : v,
  );
}

/** What a loop asks of its monitor. */
interface LoopHost {
  readonly random: Random;
  readonly now: () => number;
  readonly check: CheckFn;
  datapathFor(loop: Loop): Promise<DatapathEntry | undefined>;
  observed(loop: Loop, result: CheckResult | ProbeResult, at: number, transition: Transition | null): void;
}

class Loop {
  status: HealthStatus;
  since: number;
  note: string | undefined;
  readonly plan: DatapathPlan;
  private timer: NodeJS.Timeout | undefined;
  private readonly ctl = new AbortController();
  private running: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    readonly target: HealthTarget,
    readonly print: string,
    private readonly host: LoopHost,
  ) {
    this.plan = planDatapath(target, target.check);
    this.since = host.now();
    this.status = initialStatus();
  }

  get key(): string {
    return this.target.key;
  }

  /** First probe after a random part of one interval, once `after` (the key's previous loop) has ended. */
  start(after: Promise<void>): void {
    void after.then(() => {
      if (!this.stopped) this.schedule(firstDelay(this.target.check.intervalMs, this.host.random));
    });
  }

  stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.ctl.abort();
    return this.running;
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // a listener that throws is a bug of the caller: it surfaces as an uncaught exception, as it
      // would from any timer, but stop() still resolves and the loop keeps its rhythm
      this.running = this.tick().catch((e: unknown) => {
        queueMicrotask(() => {
          throw e;
        });
      });
    }, ms);
  }

  private async tick(): Promise<void> {
    let result: CheckResult | ProbeResult;
    try {
      const dp = await this.host.datapathFor(this);
      if (this.stopped) return;
      result = await this.host.check(this.target, this.ctl.signal, dp);
    } catch (e) {
      // a probe must not throw; if one does, it counts as a failure and the loop goes on
      result = { ok: false, ms: 0, detail: `probe error: ${errorDetail(e)}` };
    }
    if (this.stopped) return;
    const at = this.host.now();
    const next = observe(this.status, result, at, this.target.check);
    this.status = next.status;
    if (next.transition) this.since = at;
    this.schedule(nextDelay(this.target.check.intervalMs, this.target.check.jitter, this.host.random));
    this.host.observed(this, result, at, next.transition);
  }
}

export class HealthMonitor extends EventEmitter<HealthEvents> {
  private readonly loops = new Map<string, Loop>();
  /** per key, the stop of its previous loop (a restarted key waits for it) */
  private readonly stopping = new Map<string, Promise<void>>();
  private readonly host: LoopHost;
  private readonly datapathOpt: DatapathRoutes | false | undefined;
  private readonly retryMs: number;
  private routes: DatapathRoutes | undefined;
  private routesReady: Promise<void> = Promise.resolve();
  private routesError: string | undefined;
  private lastEnsure = 0;
  private pairs: DatapathPair[] = [];
  private stopped = false;

  constructor(opts: HealthMonitorOptions = {}) {
    super();
    this.datapathOpt = opts.datapath;
    this.retryMs = opts.datapathRetryMs ?? 30_000;
    this.host = {
      random: opts.random ?? Math.random,
      now: opts.now ?? Date.now,
      check: opts.check ?? defaultCheck,
      datapathFor: (loop) => this.datapathFor(loop),
      observed: (loop, result, at, transition) => this.observed(loop, result, at, transition),
    };
  }

  /**
   * Watch exactly these targets (see the module comment for what happens to each key). Resolves
   * once the data-path routes they need are in place; never rejects (setup problems become notices).
   */
  set(targets: readonly HealthTarget[]): Promise<void> {
    if (this.stopped) throw new LbError('ERR_LB_HEALTH', 'HealthMonitor.set() after stop()');
    const wanted = new Map<string, HealthTarget>();
    for (const t of targets) {
      if (wanted.has(t.key)) throw new LbError('ERR_LB_HEALTH', `health target key ${t.key} given twice`);
      wanted.set(t.key, t);
    }
    for (const [key, loop] of this.loops) {
      if (!wanted.has(key)) this.retire(loop);
    }
    for (const [key, target] of wanted) {
      const print = fingerprint(target);
      const old = this.loops.get(key);
      if (old?.print === print) continue;
      if (old) this.retire(old);
      this.begin(target, print, old?.status.state);
    }

    const pairs = new Map<string, DatapathPair>();
    for (const loop of this.loops.values()) {
      if (loop.plan.kind === 'wanted') pairs.set(pairKey(loop.plan.pair), loop.plan.pair);
    }
    this.pairs = [...pairs.values()];
    if (this.pairs.length > 0 || this.routes !== undefined) this.ensureRoutes();
    return this.routesReady;
  }

  stateOf(key: string): HealthState | undefined {
    return this.loops.get(key)?.status.state;
  }

  snapshotOf(key: string): HealthSnapshot | undefined {
    const loop = this.loops.get(key);
    if (loop === undefined) return undefined;
    const s = loop.status;
    return {
      key,
      check: loop.target.check.type,
      ...s,
      history: [...s.history],
      since: new Date(loop.since).toISOString(),
      detail: s.last?.detail ?? '',
      datapath: loop.plan.kind === 'off' ? 'off' : loop.note === undefined ? 'on' : 'plain only',
      ...(loop.note === undefined ? {} : { note: loop.note }),
    };
  }

  /** Every key's snapshot. */
  snapshot(): Record<string, HealthSnapshot> {
    const out: Record<string, HealthSnapshot> = {};
    for (const key of [...this.loops.keys()].sort()) {
      const s = this.snapshotOf(key);
      if (s) out[key] = s;
    }
    return out;
  }

  /** Stop every loop, wait for probes in flight to end, remove the data-path routes we installed. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const loops = [...this.loops.values()];
    this.loops.clear();
    await Promise.all([...loops.map((l) => l.stop()), ...this.stopping.values()]);
    await this.routesReady;
    if (this.routes !== undefined && this.datapathOpt === undefined) {
      try {
        await this.routes.remove();
      } catch {
        // nothing to report to after stop; the next start removes leftovers by priority and table
      }
    }
  }

  private begin(target: HealthTarget, print: string, previous: HealthState | undefined): void {
    const loop = new Loop(target, print, this.host);
    this.loops.set(target.key, loop);
    const at = this.host.now();
    if (previous !== undefined && previous !== 'unknown') {
      this.emitTransition(loop, { from: previous, to: 'unknown', at, detail: 'check changed' });
    }
    if (target.check.type === 'none') {
      const t = { from: 'unknown' as const, to: 'up' as const, at, detail: 'no health check' };
      loop.status = { ...initialStatus('up'), history: pushHistory([], t) };
      this.emitTransition(loop, t);
      return;
    }
    if (loop.plan.kind === 'unsupported') this.notice(loop, loop.plan.note);
    loop.start(this.stopping.get(target.key) ?? Promise.resolve());
  }

  private retire(loop: Loop): void {
    this.loops.delete(loop.key);
    const done = loop.stop().finally(() => {
      if (this.stopping.get(loop.key) === done) this.stopping.delete(loop.key);
    });
    this.stopping.set(loop.key, done);
  }

  private emitTransition(loop: Loop, t: Transition): void {
    if (!this.stopped) this.emit('transition', { key: loop.key, ...t });
  }

  private notice(loop: Loop, message: string): void {
    if (loop.note === message) return;
    loop.note = message;
    if (!this.stopped) this.emit('notice', { key: loop.key, message });
  }

  private observed(loop: Loop, result: CheckResult | ProbeResult, at: number, transition: Transition | null): void {
    if (this.stopped || this.loops.get(loop.key) !== loop) return;
    this.emit('probe', { key: loop.key, result, at });
    if (transition) this.emitTransition(loop, transition);
  }

  private ensureRoutes(): void {
    if (this.datapathOpt === false) return;
    this.routes ??= this.datapathOpt ?? new DatapathRoutes();
    const routes = this.routes;
    const pairs = this.pairs;
    this.lastEnsure = this.host.now();
    this.routesReady = this.routesReady
      .then(() => routes.ensure(pairs))
      .then(
        () => {
          this.routesError = undefined;
        },
        (e: unknown) => {
          this.routesError = `datapath routes: ${errorDetail(e)}`;
        },
      );
  }

  private async datapathFor(loop: Loop): Promise<DatapathEntry | undefined> {
    if (loop.plan.kind !== 'wanted') return undefined;
    if (this.datapathOpt === false) {
      this.notice(loop, 'datapath checks are off in this process: plain check only');
      return undefined;
    }
    await this.routesReady;
    const entry: DatapathEntry = this.routes?.get(loop.plan.pair) ?? {
      ok: false,
      kind: 'error',
      reason: this.routesError ?? 'datapath routes not set up',
    };
    if (!entry.ok && entry.kind !== 'unsupported' && this.host.now() - this.lastEnsure >= this.retryMs && !this.stopped) {
      this.ensureRoutes();
    }
    if (entry.ok || entry.kind === 'unreachable') {
      loop.note = undefined;
      return entry;
    }
    this.notice(loop, entry.kind === 'error' ? `${entry.reason}: plain check only` : entry.reason);
    return undefined;
  }
}
