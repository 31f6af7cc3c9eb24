/**
 * Policy routing for the data-path check (l2dsr): per (VIP, backend, protocol) pair one "slot" k,
 * which is a local port P = portBase + k, a routing table T = tableBase + k, and
 *
 *   ip rule  add priority PRIO to VIP/32 ipproto tcp sport P lookup T
 *   ip route replace VIP/32 via BACKEND dev IF onlink hoplimit 1 table T
 *   ip route replace unreachable default table T
 *
 * A socket bound to (the LB's address on IF, P) and connected to VIP:port then sends its SYN to the
 * VIP with the backend's MAC, exactly what the balancer's l2dsr MAC rewrite does, and nothing else
 * on the host is affected: the rule matches only that source port towards that VIP.
 *
 *  - `hoplimit 1`: the backend must take the packet as its own. A backend without the VIP that
 *    forwards it (ip_forward=1, a route back towards the VIP) would otherwise hand it to another
 *    backend, through the balancer, and pass a check it should fail; with TTL 1 it drops it.
 *  - `unreachable default`: when the VIP route goes (the kernel deletes routes through an interface
 *    that goes down) the lookup must stop in T with an error, not fall through to the main table,
 *    whose route to the VIP may well lead back through the balancer to a healthy backend.
 *  - The reply comes from VIP:port to our own address, not to a VIP, so the balancer's XDP program
 *    (IF ingress only, VIP destinations only) passes it to the stack. Under strict rp_filter the
 *    reverse-path lookup carries the swapped ports (the kernel dissects ports for fib rules once any
 *    rule uses them), which again match the rule, so the source check passes through T as well.
 *  - P comes from above the default ephemeral range (ip_local_port_range ends at 60999), so no
 *    other connection of the host takes it; where the range was widened, list the slots' ports in
 *    net.ipv4.ip_local_reserved_ports. libuv binds with SO_REUSEADDR, so a socket of the previous
 *    probe that is still closing does not block the bind, and the probe closes with a RST
 *    (tcp.ts): no TIME_WAIT to refuse the next connect from the same port.
 *  - Only rules at our priority that point into our table range are ever deleted; the first
 *    ensure() removes what an earlier run that crashed left there.
 *  - Each ensure() looks every pair up again (`ip route get`, one process for all): a backend that
 *    moved to another interface keeps its slot with the new route, one that lost its route loses
 *    its slot (its check then fails: the data path cannot reach it either).
 *
 * IPv6 pairs get the same with `ip -6` (VIP/128, `via BACKEND onlink`: the backend's global
 * address as the gateway, resolved by NDP); IPv6 has no rp_filter to satisfy. Slots (port and table)
 * are shared by both families, and each family's rules and routes go through its own `ip -4`/`ip -6`.
 *
 * Not supported (the slot reports why, the caller runs the plain check only): a VIP and backend of
 * different families (ipip IPv4-in-IPv6, not a path this check takes anyway); a VIP
 * that is an address of this host (its route in the `local` table, policy rule 0, wins over ours);
 * ipip services (see datapath.ts). One DatapathRoutes per network namespace: two would remove
 * each other's rules as leftovers.
 *
 * All commands are argv arrays (`ip -j ...`, `ip -batch -`), never a shell string.
 */
import { isIP } from 'node:net';
import { LbError } from '../errors.js';
import { run, type ExecResult } from '../lab/exec.js';

export const DEFAULT_RULE_PRIORITY = 100;
export const DEFAULT_TABLE_BASE = 0x7a00;
export const DEFAULT_PORT_BASE = 61000;
export const DEFAULT_SLOTS = 1024;

export interface DatapathPair {
  vip: string;
  backend: string;
  proto: 'tcp' | 'udp';
}

export interface DatapathSlot extends DatapathPair {
  index: number;
  localPort: number;
  table: number;
  /** the interface the backend is reached on */
  dev: string;
  /** this host's address on `dev` (the probe binds it) */
  localAddress: string;
}

/**
 * A pair's standing: a slot to probe through; `unsupported` or `error` (the check cannot be done
 * here: plain check only, tell the operator once); `unreachable` (this host has no way to the
 * backend, so neither has the data path: the data-path check fails).
 */
export type DatapathEntry =
  | { ok: true; slot: DatapathSlot }
  | { ok: false; kind: 'unsupported' | 'error' | 'unreachable'; reason: string };

export interface DatapathRoutesOptions {
  priority?: number;
  tableBase?: number;
  portBase?: number;
  slots?: number;
  /** run `ip -n NETNS ...` instead of in the current namespace (tests drive a namespace from outside) */
  netns?: string;
  timeoutMs?: number;
}

/** A rule of ours as `ip -j rule show` prints it. */
export interface RuleInfo {
  family: 4 | 6;
  priority: number;
  dst: string;
  ipproto: string;
  sport: number;
  table: number;
}

export function pairKey(p: DatapathPair): string {
  return `${p.vip}|${p.backend}|${p.proto}`;
}

interface IpRule {
  /** not printed by ip: which `ip -4`/`ip -6` listed it */
  family: 4 | 6;
  priority?: number;
  dst?: string;
  dstlen?: number;
  ipproto?: string;
  sport?: number | string;
  table?: string;
}

/** A route as `ip -j route` prints it (the fields we read). */
export interface IpRoute {
  type?: string;
  dst?: string;
  gateway?: string;
  dev?: string;
  prefsrc?: string;
}

export class DatapathRoutes {
  readonly priority: number;
  readonly tableBase: number;
  readonly portBase: number;
  readonly slots: number;
  private readonly netns: string | undefined;
  private readonly timeoutMs: number;
  private readonly entries = new Map<string, DatapathEntry>();
  private cleaned = false;
  /** ensure() and remove() run one at a time, in call order */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: DatapathRoutesOptions = {}) {
    this.priority = opts.priority ?? DEFAULT_RULE_PRIORITY;
    this.tableBase = opts.tableBase ?? DEFAULT_TABLE_BASE;
    this.portBase = opts.portBase ?? DEFAULT_PORT_BASE;
    this.slots = opts.slots ?? DEFAULT_SLOTS;
    this.netns = opts.netns;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    if (this.portBase + this.slots > 65536 || this.slots < 1) {
      throw new LbError('ERR_LB_HEALTH', `datapath slots ${this.portBase}+${this.slots} exceed the port range`);
    }
  }

  /** The current standing of a pair (after the ensure() that included it). */
  get(pair: DatapathPair): DatapathEntry | undefined {
    return this.entries.get(pairKey(pair));
  }

  /**
   * Make the installed rules and routes exactly those of `pairs`: new pairs get a slot, pairs no
   * longer listed lose theirs, existing slots keep their port and table. Pairs that failed before
   * are tried again. Idempotent; the first call also removes leftovers of an earlier run.
   */
  ensure(pairs: readonly DatapathPair[]): Promise<Map<string, DatapathEntry>> {
    const next = this.queue.then(() => this.doEnsure(pairs));
    this.queue = next.catch(() => {});
    return next;
  }

  /** Remove every rule and route of ours (also leftovers). Idempotent. */
  remove(): Promise<void> {
    const next = this.queue.then(() => this.doRemove());
    this.queue = next.catch(() => {});
    return next;
  }

  /** Rules at our priority pointing into our table range, as installed now. */
  async installedRules(): Promise<RuleInfo[]> {
    return (await this.readRules()).map((r) => ({
      family: r.family,
      priority: r.priority ?? -1,
      dst: r.dstlen === undefined ? `${r.dst ?? 'all'}` : `${r.dst ?? 'all'}/${r.dstlen}`,
      ipproto: r.ipproto ?? '',
      sport: Number(r.sport ?? -1),
      table: Number(r.table),
    }));
  }

  /** The routes of one of our tables, as `ip -j route show table T` prints them. */
  async tableRoutes(table: number, family: 4 | 6 = 4): Promise<IpRoute[]> {
    const r = await this.ip([`-${family}`, '-j', 'route', 'show', 'table', String(table)], true);
    if (r.status !== 0) return [];
    return parseJson<IpRoute[]>(r.stdout) ?? [];
  }

  // ------------------------------------------------------------------------------------------

  private async doEnsure(pairs: readonly DatapathPair[]): Promise<Map<string, DatapathEntry>> {
    if (!this.cleaned) {
      await this.doRemove();
      this.cleaned = true;
    }
    const wanted = new Map(pairs.map((p) => [pairKey(p), p]));
    /** tables to empty before anything is added: slots given up, and slots new to their pair */
    const flush = new Set<number>();
    for (const [key, e] of this.entries) {
      if (!wanted.has(key)) {
        if (e.ok) flush.add(e.slot.table);
        this.entries.delete(key);
      }
    }
    // every pair is looked up again (one process for all): a backend that moved to another
    // interface or lost its route is noticed on the next ensure(), not only on a restart
    const found = new Map<string, IpRoute | string>();
    for (const f of FAMILIES) {
      // a pair of mixed families is refused by plan(); looking its backend up as `f` would shadow its real route
      const same = [...wanted.values()].filter((p) => isIP(p.vip) === f && isIP(p.backend) === f);
      for (const [a, r] of await this.lookup([...new Set(same.flatMap((p) => [p.vip, p.backend]))], f)) found.set(a, r);
    }
    const used = new Set([...this.entries.values()].flatMap((e) => (e.ok ? [e.slot.index] : [])));
    for (const [key, p] of wanted) {
      const old = this.entries.get(key);
      const entry = this.plan(p, old?.ok ? old.slot.index : undefined, used, found);
      if (old?.ok && !entry.ok) flush.add(old.slot.table);
      if (entry.ok && !old?.ok) flush.add(entry.slot.table);
      this.entries.set(key, entry);
    }

    const active = [...this.entries.values()].flatMap((e) => (e.ok ? [e.slot] : []));
    const desired = new Set(active.map(slotRuleKey));
    const drop: Line[] = [];
    const kept = new Set<string>();
    for (const r of await this.readRules()) {
      const key = installedKey(r);
      if (desired.has(key) && !kept.has(key)) kept.add(key);
      else drop.push(deleteRuleLine(this.priority, r));
    }
    // rules go first: a rule must never point at a table that is being emptied
    const cleanup = [...drop, ...[...flush].flatMap((t) => flushLines(t))];
    if (cleanup.length > 0) await this.batch(cleanup, true);

    if (active.length === 0) return new Map(this.entries);
    try {
      await this.batch(active.flatMap((s) => slotLines(this.priority, s, !kept.has(slotRuleKey(s)))), false);
    } catch {
      // the batch stopped at the first failing line: find which slots fail, one by one, so one bad
      // pair does not take the others' checks with it (rules the batch did add are seen as present)
      const present = new Set((await this.readRules()).map(installedKey));
      for (const s of active) {
        try {
          await this.batch(slotLines(this.priority, s, !present.has(slotRuleKey(s))), false);
        } catch (e) {
          await this.batch(deleteSlotLines(this.priority, s), true);
          this.entries.set(pairKey(s), { ok: false, kind: 'error', reason: `cannot install routes: ${errorMessage(e)}` });
        }
      }
    }
    return new Map(this.entries);
  }

  private async doRemove(): Promise<void> {
    const drop = (await this.readRules()).map((r) => deleteRuleLine(this.priority, r));
    const flush = Array.from({ length: this.slots }, (_, k) => flushLines(this.tableBase + k)).flat();
    // -force: flushing a table that does not exist fails, and so may a rule someone removed meanwhile
    await this.batch([...drop, ...flush], true);
    this.entries.clear();
  }

  /** A pair's entry: its slot (keeping `index` when it had one), or why it has none. */
  private plan(p: DatapathPair, index: number | undefined, used: Set<number>, found: ReadonlyMap<string, IpRoute | string>): DatapathEntry {
    if (isIP(p.vip) !== isIP(p.backend)) {
      return { ok: false, kind: 'unsupported', reason: `datapath check needs the VIP and the backend in one family (${p.vip}, ${p.backend}): plain check only` };
    }
    const vip = found.get(p.vip);
    if (typeof vip === 'object' && vip.type === 'local') {
      return {
        ok: false,
        kind: 'unsupported',
        reason: `VIP ${p.vip} is an address of this host, its local route wins over the check's rule: plain check only`,
      };
    }
    const route = found.get(p.backend) ?? `no route to backend ${p.backend}`;
    if (typeof route === 'string') return { ok: false, kind: 'unreachable', reason: route };
    if (route.type === 'local') return { ok: false, kind: 'unreachable', reason: `backend ${p.backend} is an address of this host` };
    if (route.dev === undefined || route.prefsrc === undefined) {
      return { ok: false, kind: 'unreachable', reason: `no interface address towards ${p.backend}` };
    }
    let k = index ?? 0;
    if (index === undefined) {
      while (used.has(k) && k < this.slots) k++;
      if (k >= this.slots) return { ok: false, kind: 'error', reason: `all ${this.slots} datapath slots in use` };
      used.add(k);
    }
    return {
      ok: true,
      slot: { ...p, index: k, localPort: this.portBase + k, table: this.tableBase + k, dev: route.dev, localAddress: route.prefsrc },
    };
  }

  /**
   * `ip route get` for many addresses in one process (hundreds of backends at start-up would
   * otherwise cost a process each); an address without a route gets the kernel's reason.
   */
  private async lookup(addrs: readonly string[], family: 4 | 6): Promise<Map<string, IpRoute | string>> {
    const out = new Map<string, IpRoute | string>();
    if (addrs.length === 0) return out;
    const r = await run(this.ipArgv([`-${family}`, '-j', '-force', '-batch', '-']), {
      timeoutMs: this.timeoutMs,
      input: addrs.map((a) => `route get ${a}`).join('\n') + '\n',
      allowFail: true,
    });
    // one JSON array per line that succeeded, each naming its destination
    const asked = new Set(addrs);
    for (const line of r.stdout.split('\n')) {
      const route = parseJson<IpRoute[]>(line)?.[0];
      const dst = route?.dst === undefined ? undefined : canonical(route.dst);
      if (route !== undefined && dst !== undefined && asked.has(dst)) out.set(dst, route);
    }
    for (const a of addrs) {
      if (out.has(a)) continue;
      const one = await this.ip([`-${family}`, '-j', 'route', 'get', a], true);
      const route = one.status === 0 ? parseJson<IpRoute[]>(one.stdout)?.[0] : undefined;
      out.set(a, route ?? `no route to backend ${a}: ${one.stderr.trim().replace(/^RTNETLINK answers: /, '') || 'none'}`);
    }
    return out;
  }

  /** Our rules (at our priority, into our table range) of both families. */
  private async readRules(): Promise<IpRule[]> {
    const out: IpRule[] = [];
    for (const family of FAMILIES) {
      const r = await this.ip([`-${family}`, '-j', 'rule', 'show'], false);
      const rules = parseJson<Omit<IpRule, 'family'>[]>(r.stdout);
      if (rules === undefined) throw new LbError('ERR_LB_HEALTH', `cannot parse \`ip -${family} -j rule show\``, { detail: r.stdout.slice(0, 500) });
      for (const x of rules) {
        const table = Number(x.table);
        if (x.priority === this.priority && Number.isInteger(table) && table >= this.tableBase && table < this.tableBase + this.slots) {
          out.push({ ...x, family });
        }
      }
    }
    return out;
  }

  private ipArgv(args: readonly string[]): string[] {
    return ['ip', ...(this.netns === undefined ? [] : ['-n', this.netns]), ...args];
  }

  private ip(args: readonly string[], allowFail: boolean): Promise<ExecResult> {
    return run(this.ipArgv(args), { timeoutMs: this.timeoutMs, allowFail });
  }

  /**
   * `ip -4 -batch -` and `ip -6 -batch -` for many lines (a batch line cannot name its family).
   * `force` continues past failing lines (deleting what is already gone).
   */
  private async batch(lines: readonly Line[], force: boolean): Promise<void> {
    for (const family of FAMILIES) {
      const mine = lines.filter((l) => l.family === family).map((l) => l.text);
      if (mine.length === 0) continue;
      const argv = this.ipArgv([`-${family}`, ...(force ? ['-force'] : []), '-batch', '-']);
      await run(argv, { timeoutMs: this.timeoutMs, input: mine.join('\n') + '\n', allowFail: force });
    }
  }
}

function parseJson<T>(s: string): T | undefined {
  try {
    return JSON.parse(s) as T;
  } catch {
    return undefined;
  }
}

const FAMILIES = [4, 6] as const;

/** One line of an `ip -batch`, and the family it must run under. */
interface Line {
  family: 4 | 6;
  text: string;
}

function familyOf(p: DatapathPair): 4 | 6 {
  return isIP(p.vip) === 6 ? 6 : 4;
}

function hostLen(family: 4 | 6): number {
  return family === 6 ? 128 : 32;
}

/** iproute2 prints IPv6 as inet_ntop does; the pairs carry RFC 5952 text. Compare in one form. */
function canonical(a: string): string {
  return isIP(a) === 6 ? new URL(`http://[${a}]/`).hostname.slice(1, -1) : a;
}

function ruleKey(dst: string, len: number, proto: string, sport: number, table: number): string {
  return `${canonical(dst)}/${len}|${proto}|${sport}|${table}`;
}

function installedKey(r: IpRule): string {
  return ruleKey(r.dst ?? '', r.dstlen ?? hostLen(r.family), r.ipproto ?? '', Number(r.sport), Number(r.table));
}

function slotRuleKey(s: DatapathSlot): string {
  return ruleKey(s.vip, hostLen(familyOf(s)), s.proto, s.localPort, s.table);
}

/** Empty a table of ours in both families (a slot may have served either). */
function flushLines(table: number): Line[] {
  return FAMILIES.map((family) => ({ family, text: `route flush table ${table}` }));
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function deleteRuleLine(priority: number, r: IpRule): Line {
  const parts = [`rule del priority ${priority}`];
  if (r.dst !== undefined && r.dst !== 'all') parts.push(`to ${r.dst}/${r.dstlen ?? hostLen(r.family)}`);
  if (r.ipproto !== undefined) parts.push(`ipproto ${r.ipproto}`);
  if (r.sport !== undefined) parts.push(`sport ${r.sport}`);
  parts.push(`table ${r.table ?? ''}`);
  return { family: r.family, text: parts.join(' ') };
}

function slotLines(priority: number, s: DatapathSlot, withRule: boolean): Line[] {
  const family = familyOf(s);
  const len = hostLen(family);
  const lines = [
    // routes before the rule: a rule pointing at an empty table would let the probe fall through
    `route replace unreachable default table ${s.table}`,
    `route replace ${s.vip}/${len} via ${s.backend} dev ${s.dev} onlink hoplimit 1 table ${s.table}`,
  ];
  if (withRule) lines.push(`rule add priority ${priority} to ${s.vip}/${len} ipproto ${s.proto} sport ${s.localPort} table ${s.table}`);
  return lines.map((text) => ({ family, text }));
}

function deleteSlotLines(priority: number, s: DatapathSlot): Line[] {
  const family = familyOf(s);
  return [
    { family, text: `rule del priority ${priority} to ${s.vip}/${hostLen(family)} ipproto ${s.proto} sport ${s.localPort} table ${s.table}` },
    ...flushLines(s.table),
  ];
}
