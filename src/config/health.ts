/**
 * Health checks are written in layers: built-in defaults < `defaults.healthCheck` < the service's
 * `healthCheck` < the backend's `healthCheck`. A layer that changes `type` drops what it inherited
 * for the old type (an http `path` from the defaults means nothing to a tcp service), everything
 * else is inherited key by key. The merged result is what is checked against its type, and each
 * problem is reported at the layer that wrote the offending key.
 */
import { formatDuration } from './durations.js';
import { HEALTH_KEYS, type ExpectSpec, type HealthLayer } from './schema.js';
import type { HealthCheck, HealthType, Mode, Proto } from './types.js';
import { joinPath, type Violation } from './violations.js';

export const HEALTH_DEFAULTS = Object.freeze({
  intervalMs: 2000,
  timeoutMs: 1000,
  rise: 2,
  fall: 3,
  jitter: 0.1,
  method: 'GET',
  path: '/',
  expect: Object.freeze([Object.freeze({ from: 200, to: 399 })]),
  insecure: false,
  udpExpect: 'reply',
} as const);

/** The type when no layer names one: a TCP connect for TCP services; UDP has no safe generic probe. */
export function defaultHealthType(proto: Proto): HealthType {
  return proto === 'tcp' ? 'tcp' : 'none';
}

export interface Layer {
  /** where the layer is written, e.g. `services[0].healthCheck` */
  path: string;
  check: HealthLayer;
}

export interface MergeContext {
  mode: Mode;
  proto: Proto;
  /** `services[3]`, to say whose check a defaults key ended up in */
  servicePath: string;
}

const TYPE_SPECIFIC: Partial<Record<string, readonly HealthType[]>> = {
  method: ['http', 'https'],
  path: ['http', 'https'],
  host: ['http', 'https'],
  bodyContains: ['http', 'https'],
  insecure: ['https'],
  payload: ['udp'],
  command: ['exec'],
};

function typesFor(key: string, value: unknown): readonly HealthType[] | undefined {
  if (key === 'expect') return (value as ExpectSpec).kind === 'udp' ? ['udp'] : ['http', 'https'];
  return TYPE_SPECIFIC[key];
}

interface Entry {
  value: unknown;
  /** path of the layer that wrote it */
  from: string;
}

export function mergeHealth(layers: readonly Layer[], ctx: MergeContext): { check?: HealthCheck; violations: Violation[] } {
  let type = defaultHealthType(ctx.proto);
  let typeFrom: string | undefined;
  const set = new Map<string, Entry>();
  for (const layer of layers) {
    const c = layer.check;
    if (c.type !== undefined) {
      for (const [k, e] of set) {
        if (!(typesFor(k, e.value)?.includes(c.type) ?? true)) set.delete(k);
      }
      type = c.type;
      typeFrom = layer.path;
    }
    for (const k of HEALTH_KEYS) {
      if (k !== 'type' && c[k] !== undefined) set.set(k, { value: c[k], from: layer.path });
    }
  }

  const violations: Violation[] = [];
  const report = (e: Entry, key: string, message: string, hint?: string): void => {
    const inherited = e.from.startsWith('defaults') ? ` (in the check of ${ctx.servicePath})` : '';
    violations.push({ path: joinPath(e.from, key), message: message + inherited, ...(hint === undefined ? {} : { hint }) });
  };

  for (const [k, e] of set) {
    const types = typesFor(k, e.value);
    if (types === undefined || types.includes(type)) continue;
    const why =
      typeFrom === e.from
        ? `not ${type}`
        : typeFrom !== undefined
          ? `but ${typeFrom} sets type ${type}`
          : `but ${ctx.servicePath} has type ${type} (the default for proto ${ctx.proto})`;
    const spec = e.value as ExpectSpec;
    const what = k === 'expect' && spec.kind === 'udp' ? `expect: ${JSON.stringify(spec.value)}` : `"${k}"`;
    report(e, k, `${what} is for ${types.join('/')} checks, ${why}`, `set type: ${types[0] ?? 'http'}, or remove "${k}"`);
  }

  const num = (k: string, d: number): number => (set.get(k)?.value as number | undefined) ?? d;
  const intervalMs = num('interval', HEALTH_DEFAULTS.intervalMs);
  const timeoutMs = num('timeout', HEALTH_DEFAULTS.timeoutMs);
  if (timeoutMs >= intervalMs) {
    // Blame the layer that wrote the later of the two: that is the edit which broke the pair.
    const order = layers.map((l) => l.path);
    const ti = set.get('timeout');
    const iv = set.get('interval');
    const blameTimeout = iv === undefined || (ti !== undefined && order.indexOf(ti.from) >= order.indexOf(iv.from));
    const e = blameTimeout ? ti : iv;
    if (e !== undefined) {
      report(
        e,
        blameTimeout ? 'timeout' : 'interval',
        `timeout ${formatDuration(timeoutMs)} must be shorter than interval ${formatDuration(intervalMs)}`,
      );
    }
  }

  const dp = set.get('datapath');
  if (ctx.mode === 'nat' && dp?.value === true) {
    const hint = 'nat probes the backend address itself; remove it';
    report(dp, 'datapath', 'datapath probing is for l2dsr and ipip services, not nat', hint);
  }

  const port = set.get('port')?.value as number | undefined;
  const check: HealthCheck = {
    type,
    intervalMs,
    timeoutMs,
    rise: num('rise', HEALTH_DEFAULTS.rise),
    fall: num('fall', HEALTH_DEFAULTS.fall),
    jitter: num('jitter', HEALTH_DEFAULTS.jitter),
    ...(port === undefined ? {} : { port }),
    // Nothing probes a 'none' check, so it never claims to probe the data path.
    datapath: type === 'none' ? false : ((dp?.value as boolean | undefined) ?? ctx.mode !== 'nat'),
  };
  const str = (k: string): string | undefined => set.get(k)?.value as string | undefined;
  if (type === 'http' || type === 'https') {
    const expect = set.get('expect')?.value as ExpectSpec | undefined;
    const ranges = expect?.kind === 'http' ? expect.ranges : HEALTH_DEFAULTS.expect;
    const host = str('host');
    const bodyContains = str('bodyContains');
    check.http = {
      method: (str('method') ?? HEALTH_DEFAULTS.method) as NonNullable<HealthCheck['http']>['method'],
      path: str('path') ?? HEALTH_DEFAULTS.path,
      ...(host === undefined ? {} : { host }),
      expect: ranges.map((r) => ({ from: r.from, to: r.to })),
      ...(bodyContains === undefined ? {} : { bodyContains }),
      insecure: type === 'https' && ((set.get('insecure')?.value as boolean | undefined) ?? HEALTH_DEFAULTS.insecure),
    };
  } else if (type === 'udp') {
    const expect = set.get('expect')?.value as ExpectSpec | undefined;
    const payload = set.get('payload')?.value as Buffer | undefined;
    check.udp = {
      payload: Buffer.from(payload ?? Buffer.alloc(0)),
      expect: expect?.kind === 'udp' ? expect.value : HEALTH_DEFAULTS.udpExpect,
    };
  } else if (type === 'exec') {
    const command = set.get('command')?.value as string[] | undefined;
    if (command === undefined) {
      violations.push({
        path: joinPath(typeFrom ?? ctx.servicePath, 'command'),
        message: 'missing (required for type exec: the argv to run)',
        hint: 'e.g. command: ["/usr/local/bin/check", "--fast"]',
      });
    } else {
      check.exec = { command: [...command] };
    }
  }
  return violations.length === 0 ? { check, violations } : { violations };
}
