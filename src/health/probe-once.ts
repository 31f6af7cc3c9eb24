/**
 * Run health checks from the command line, in the current network namespace (run it under
 * `ip netns exec NS` to probe from a namespace: Node cannot open one socket in another namespace).
 *
 *   node dist/health/probe-once.js '{"service":{...},"backend":{...},"check":{...},"repeat":3}'
 *     one check cycle (plain, plus data path when check.datapath), `repeat` times (default 1,
 *     at most 1000) `pauseMs` apart; one JSON line per cycle; exit 0 when every cycle passed, 1 not
 *
 *   node dist/health/probe-once.js --watch '{"targets":[{key,service,backend,check}...],"durationMs":N}'
 *     a HealthMonitor over the targets; one JSON line per event ({"event":"transition"|"probe"|"notice"});
 *     stops at durationMs (default and at most 10 min), at SIGTERM/SIGINT or when stdin closes, then
 *     prints {"event":"stopped","snapshot":...}; exit 0
 *
 * Both take `"routes": {priority, tableBase, portBase, slots}` for the data-path routes, and remove
 * the routes they installed before exiting. The single check also takes `"slot": {DatapathSlot}`:
 * probe through routes someone else installed, and leave routing alone. Checks are the normalized HealthCheck with durations
 * in ms; missing fields get defaults (interval 1 s, timeout 1 s, rise 2, fall 3, no jitter, no
 * data path); `udp.payload` is hex. Exit 2 on bad input.
 */
import type { HealthCheck, HealthType } from '../config/types.js';
import { LbError } from '../errors.js';
import { errorDetail } from './bounded.js';
import { planDatapath, runCheck } from './datapath.js';
import { DatapathRoutes, pairKey, type DatapathEntry, type DatapathRoutesOptions, type DatapathSlot } from './datapath-routes.js';
import { HealthMonitor } from './monitor.js';
import type { HealthTarget, ProbeTarget } from './types.js';

const TYPES: readonly HealthType[] = ['none', 'tcp', 'http', 'https', 'udp', 'exec'];
const MAX_REPEAT = 1000;
const MAX_WATCH_MS = 600_000;

type Json = Record<string, unknown>;

function usage(msg: string): never {
  throw new LbError('ERR_LB_USAGE', `probe-once: ${msg}`);
}

function obj(v: unknown, what: string): Json {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) usage(`${what}: not an object`);
  return v as Json;
}

function num(v: unknown, dflt: number, what: string): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) usage(`${what}: not a non-negative number`);
  return v;
}

function str(v: unknown, what: string): string {
  if (typeof v !== 'string' || v === '') usage(`${what}: not a string`);
  return v;
}

/** A check with defaults filled in; a light check of the shape (the config schema is the real validator). */
function checkFromJson(v: unknown): HealthCheck {
  const c = obj(v, 'check');
  const type = c['type'] as HealthType;
  if (!TYPES.includes(type)) usage(`check.type: one of ${TYPES.join(', ')}`);
  const check: HealthCheck = {
    type,
    intervalMs: num(c['intervalMs'], 1000, 'check.intervalMs'),
    timeoutMs: num(c['timeoutMs'], 1000, 'check.timeoutMs'),
    rise: num(c['rise'], 2, 'check.rise'),
    fall: num(c['fall'], 3, 'check.fall'),
    jitter: num(c['jitter'], 0, 'check.jitter'),
    datapath: c['datapath'] === true,
  };
  if (c['port'] !== undefined) check.port = num(c['port'], 0, 'check.port');
  if (type === 'http' || type === 'https') {
    const h = obj(c['http'] ?? {}, 'check.http');
    check.http = {
      method: (h['method'] as 'GET' | undefined) ?? 'GET',
      path: (h['path'] as string | undefined) ?? '/',
      expect: (h['expect'] as { from: number; to: number }[] | undefined) ?? [{ from: 200, to: 399 }],
      insecure: h['insecure'] === true,
      ...(h['host'] === undefined ? {} : { host: str(h['host'], 'check.http.host') }),
      ...(h['bodyContains'] === undefined ? {} : { bodyContains: str(h['bodyContains'], 'check.http.bodyContains') }),
    };
  }
  if (type === 'udp') {
    const u = obj(c['udp'] ?? {}, 'check.udp');
    const hex = (u['payload'] as string | undefined) ?? '';
    if (!/^(?:[0-9a-f]{2})*$/i.test(hex)) usage('check.udp.payload: hex, an even number of digits');
    check.udp = { payload: Buffer.from(hex, 'hex'), expect: u['expect'] === 'no-unreachable' ? 'no-unreachable' : 'reply' };
  }
  if (type === 'exec') {
    const e = obj(c['exec'], 'check.exec');
    const cmd = e['command'];
    if (!Array.isArray(cmd) || cmd.length === 0 || !cmd.every((a) => typeof a === 'string')) usage('check.exec.command: a non-empty argv');
    check.exec = { command: cmd as string[] };
  }
  return check;
}

function targetFromJson(v: unknown, what: string): ProbeTarget {
  const t = obj(v, what);
  const s = obj(t['service'], `${what}.service`);
  const b = obj(t['backend'], `${what}.backend`);
  const vip = str(s['vip'], `${what}.service.vip`);
  const port = num(s['port'], 0, `${what}.service.port`);
  const proto = s['proto'] === 'udp' ? 'udp' : 'tcp';
  const mode = (['l2dsr', 'ipip', 'nat'] as const).find((m) => m === s['mode']) ?? 'l2dsr';
  return {
    service: { name: typeof s['name'] === 'string' ? s['name'] : `${vip}:${port}/${proto}`, vip, port, proto, mode },
    backend: {
      address: str(b['address'], `${what}.backend.address`),
      ...(b['port'] === undefined ? {} : { port: num(b['port'], 0, `${what}.backend.port`) }),
    },
  };
}

function routesOptions(v: unknown): DatapathRoutesOptions {
  if (v === undefined) return {};
  const r = obj(v, 'routes');
  const out: DatapathRoutesOptions = {};
  if (r['priority'] !== undefined) out.priority = num(r['priority'], 0, 'routes.priority');
  if (r['tableBase'] !== undefined) out.tableBase = num(r['tableBase'], 0, 'routes.tableBase');
  if (r['portBase'] !== undefined) out.portBase = num(r['portBase'], 0, 'routes.portBase');
  if (r['slots'] !== undefined) out.slots = num(r['slots'], 0, 'routes.slots');
  return out;
}

/** A slot whose routes someone else manages (tests tamper with them to prove what each route is for). */
function slotFromJson(v: unknown): DatapathSlot {
  const s = obj(v, 'slot');
  const proto = s['proto'] === 'udp' ? 'udp' : 'tcp';
  return {
    vip: str(s['vip'], 'slot.vip'),
    backend: str(s['backend'], 'slot.backend'),
    proto,
    index: num(s['index'], 0, 'slot.index'),
    localPort: num(s['localPort'], 0, 'slot.localPort'),
    table: num(s['table'], 0, 'slot.table'),
    dev: str(s['dev'], 'slot.dev'),
    localAddress: str(s['localAddress'], 'slot.localAddress'),
  };
}

function print(v: unknown): void {
  process.stdout.write(JSON.stringify(v) + '\n');
}

/** Aborts on SIGTERM/SIGINT (and stdin closing, when asked), so the routes always come off. */
function stopSignal(onStdinEnd: boolean): AbortController {
  const ctl = new AbortController();
  const abort = (): void => ctl.abort();
  process.once('SIGTERM', abort);
  process.once('SIGINT', abort);
  if (onStdinEnd) {
    process.stdin.once('end', abort);
    process.stdin.once('close', abort);
    process.stdin.resume();
  }
  return ctl;
}

async function once(input: Json): Promise<number> {
  const target = targetFromJson(input, 'input');
  const check = checkFromJson(input['check']);
  const repeat = Math.min(num(input['repeat'], 1, 'repeat'), MAX_REPEAT);
  const pauseMs = num(input['pauseMs'], 0, 'pauseMs');
  const plan = planDatapath(target, check);
  const ctl = stopSignal(false);
  const given = input['slot'] === undefined ? undefined : slotFromJson(input['slot']);
  const routes = plan.kind === 'wanted' && given === undefined ? new DatapathRoutes(routesOptions(input['routes'])) : undefined;
  let allOk = true;
  try {
    let entry: DatapathEntry | undefined = given === undefined ? undefined : { ok: true, slot: given };
    if (routes && plan.kind === 'wanted') entry = (await routes.ensure([plan.pair])).get(pairKey(plan.pair));
    const note = plan.kind === 'unsupported' ? plan.note : entry && !entry.ok && entry.kind !== 'unreachable' ? entry.reason : undefined;
    for (let i = 0; i < repeat && !ctl.signal.aborted; i++) {
      if (i > 0 && pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
      const r = await runCheck(target, check, ctl.signal, entry);
      allOk &&= r.ok;
      print({ ...r, ...(note === undefined ? {} : { note }), ...(entry?.ok ? { slot: entry.slot } : {}) });
    }
  } finally {
    await routes?.remove();
  }
  return allOk && !ctl.signal.aborted ? 0 : 1;
}

async function watch(input: Json): Promise<number> {
  const list = input['targets'];
  if (!Array.isArray(list) || list.length === 0) usage('targets: a non-empty array');
  const targets: HealthTarget[] = list.map((v, i) => {
    const t = obj(v, `targets[${i}]`);
    return { key: str(t['key'], `targets[${i}].key`), ...targetFromJson(t, `targets[${i}]`), check: checkFromJson(t['check']) };
  });
  const durationMs = Math.min(num(input['durationMs'], MAX_WATCH_MS, 'durationMs'), MAX_WATCH_MS);
  const hasRoutes = targets.some((t) => planDatapath(t, t.check).kind === 'wanted');
  const routes = hasRoutes ? new DatapathRoutes(routesOptions(input['routes'])) : undefined;
  const mon = new HealthMonitor(routes === undefined ? {} : { datapath: routes });
  mon.on('transition', (e) => print({ event: 'transition', ...e }));
  mon.on('notice', (e) => print({ event: 'notice', ...e }));
  mon.on('probe', (e) => print({ event: 'probe', key: e.key, at: e.at, ok: e.result.ok, ms: e.result.ms, detail: e.result.detail }));
  const ctl = stopSignal(true);
  const timer = setTimeout(() => ctl.abort(), durationMs);
  try {
    await mon.set(targets);
    print({ event: 'ready' });
    await new Promise<void>((r) => (ctl.signal.aborted ? r() : ctl.signal.addEventListener('abort', () => r(), { once: true })));
    const snapshot = mon.snapshot();
    await mon.stop();
    print({ event: 'stopped', snapshot });
  } finally {
    clearTimeout(timer);
    await mon.stop();
    await routes?.remove();
    process.stdin.pause();
  }
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const watchMode = argv[0] === '--watch';
  const text = watchMode ? argv[1] : argv[0];
  if (text === undefined) usage('expects one JSON argument (see the comment at the top of probe-once.ts)');
  let input: unknown;
  try {
    input = JSON.parse(text);
  } catch (e) {
    usage(`input is not JSON: ${errorDetail(e)}`);
  }
  return watchMode ? watch(obj(input, 'input')) : once(obj(input, 'input'));
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`${errorDetail(e)}\n`);
    process.exitCode = e instanceof LbError ? e.exitCode : 1;
  },
);
