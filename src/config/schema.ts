/**
 * The file's shape as zod schemas, one level at a time: the node settings, one health-check layer
 * (every key optional: layers are merged later, see health.ts), a service without its health check
 * and backends, one backend. validate.ts runs them piece by piece so that one broken piece does not
 * hide the problems of the next, and does the checks that need more than one value.
 *
 * Leaf checks return our own messages (with the value that was written); the generic zod issues
 * are worded in violations.ts. Unknown keys are refused at every level, with a did-you-mean.
 */
import { isIP } from 'node:net';
import { posix } from 'node:path';
import { z } from 'zod';
import { isPrime } from '../maglev/prime.js';
import { checkInterfaceName, checkIp, checkMac, checkUnicastIp, type Checked } from './addr.js';
import { parseDuration } from './durations.js';
import type { StatusRange } from './types.js';
import { closest, describeValue, type PathPart } from './violations.js';

// ---------- helpers ----------

// "key:" with nothing after it is null in YAML; it means "not set", which is what people intend
// when they comment out every entry under a key.
const nullIsAbsent = (v: unknown): unknown => (v === null ? undefined : v);

function optional<T extends z.ZodType>(s: T) {
  return z.preprocess(nullIsAbsent, s.optional());
}

function withDefault<T extends z.ZodType>(s: T, d: z.output<T>) {
  return z.preprocess(nullIsAbsent, s.default(d as never));
}

type Report = (message: string, hint?: string, path?: PathPart[]) => void;

/** A value checked by our own code, which reports as many problems as it finds. */
function custom<T>(what: string, fn: (v: unknown, report: Report) => T) {
  return z.unknown().transform((v, ctx) => {
    let bad = false;
    const report: Report = (message, hint, path = []) => {
      bad = true;
      ctx.addIssue({ code: 'custom', message, path, input: v, ...(hint === undefined ? {} : { params: { hint } }) });
    };
    if (v === undefined) {
      report(`missing (required: ${what})`);
      return z.NEVER;
    }
    const out = fn(v, report);
    return bad ? z.NEVER : out;
  });
}

/** A value of the right zod type, then one of our checks. */
function checked<I, O>(base: z.ZodType<I>, fn: (v: I) => Checked<O>) {
  return base.transform((v, ctx) => {
    const r = fn(v);
    if ('value' in r) return r.value;
    ctx.addIssue({ code: 'custom', message: r.error, input: v, ...(r.hint === undefined ? {} : { params: { hint: r.hint } }) });
    return z.NEVER;
  });
}

const int = (min: number, max: number) => z.number().int().min(min).max(max);

// Keys of the levels people indent wrongly, so an unknown key can be told where it belongs.
const LEVEL_KEYS = new Map<string, readonly string[]>();

function unknownKey(key: string, level: string, known: readonly string[]): { message: string; hint?: string } {
  const guess = closest(key, known);
  if (guess !== undefined) return { message: `unknown key "${key}" (did you mean "${guess}"?)` };
  const elsewhere = [...LEVEL_KEYS].filter(([other, keys]) => other !== level && keys.includes(key)).map(([other]) => other);
  if (elsewhere.length > 0) {
    return { message: `unknown key "${key}"`, hint: `"${key}" is a key of ${elsewhere.join(' or ')}; check the indentation` };
  }
  return { message: `unknown key "${key}"`, hint: `known keys here: ${known.join(', ')}` };
}

/** True for the issue strictObject raises for a key it does not know. */
export function isUnknownKeyIssue(issue: z.core.$ZodIssue): boolean {
  return issue.code === 'custom' && issue.params?.['unknownKey'] === true;
}

/** zod's object with unknown keys refused one by one (each gets its own path and suggestion). */
function strictObject<S extends z.core.$ZodLooseShape>(level: string, shape: S, indentHints = false) {
  const known = Object.keys(shape);
  if (indentHints) LEVEL_KEYS.set(level, known);
  return z.looseObject(shape).check(
    z.superRefine(
      (obj: Record<string, unknown>, ctx) => {
        for (const key of Object.keys(obj)) {
          if (!known.includes(key)) {
            const { message, hint } = unknownKey(key, level, known);
            const params = { unknownKey: true, ...(hint === undefined ? {} : { hint }) };
            ctx.addIssue({ code: 'custom', path: [key], input: obj[key], message, params });
          }
        }
      },
      // Also when some values were wrong: a misspelt key is often why a required one is missing.
      { when: (p) => typeof p.value === 'object' && p.value !== null && !Array.isArray(p.value) },
    ),
  );
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);
}

const absolutePath = (maxBytes = 4095) =>
  checked(z.string(), (s): Checked<string> => {
    if (!s.startsWith('/')) return { error: `${JSON.stringify(s)} is not an absolute path` };
    if (s.includes('\0')) return { error: 'a path cannot contain NUL' };
    const p = posix.normalize(s).replace(/\/+$/, '');
    if (p === '') {
      return { error: `${JSON.stringify(s)} is the root directory`, hint: 'name a directory under it, e.g. /sys/fs/bpf/xdplb' };
    }
    if (Buffer.byteLength(p) > maxBytes) return { error: `${JSON.stringify(s)} is longer than ${maxBytes} bytes` };
    return { value: p };
  });

const unicastIp = checked(z.string(), (s) => {
  const r = checkUnicastIp(s);
  return 'value' in r ? { value: r.value.address } : r;
});

function familyIp(family: 4 | 6) {
  return checked(z.string(), (s): Checked<string> => {
    const r = checkUnicastIp(s);
    if (!('value' in r)) return r;
    if (r.value.family !== family) return { error: `${JSON.stringify(s)} is an IPv${r.value.family} address, not IPv${family}` };
    return { value: r.value.address };
  });
}

/** The data path holds at most this many full-NAT sources of each family (lb_nat_cfg). */
export const NAT_SOURCES_PER_FAMILY = 4;

/** Full-NAT sources: either family, at most NAT_SOURCES_PER_FAMILY of each, no address twice. */
const natSources = z
  .array(unicastIp)
  .min(1)
  .check(
    z.superRefine((addrs: string[], ctx) => {
      addrs.forEach((a, i) => {
        const first = addrs.indexOf(a);
        if (first < i) ctx.addIssue({ code: 'custom', path: [i], input: a, message: `${a} is already sources[${first}]` });
      });
      for (const family of [4, 6] as const) {
        const n = addrs.filter((a) => isIP(a) === family).length;
        if (n > NAT_SOURCES_PER_FAMILY) {
          const hint = `the data path has ${NAT_SOURCES_PER_FAMILY} source slots per family`;
          ctx.addIssue({ code: 'custom', input: addrs, message: `${n} IPv${family} addresses, at most ${NAT_SOURCES_PER_FAMILY} per family`, params: { hint } });
        }
      }
    }),
  );

// ---------- health-check layer ----------

export const HEALTH_TYPES = ['none', 'tcp', 'http', 'https', 'udp', 'exec'] as const;
export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'OPTIONS'] as const;
export const UDP_EXPECT = ['reply', 'no-unreachable'] as const;

/** `expect` means a status list for http(s) and a reply rule for udp; which one is known after merging. */
export type ExpectSpec = { kind: 'http'; ranges: StatusRange[] } | { kind: 'udp'; value: (typeof UDP_EXPECT)[number] };

/**
 * The data path drops fragments, so a datapath probe must fit one packet even behind an IPv6 or
 * an outer IPIP header; 1400 bytes does on a 1500-byte MTU.
 */
export const MAX_UDP_PAYLOAD = 1400;

const expectSpec = custom('a status list or "reply"', (v, report): ExpectSpec => {
  if (v === 'reply' || v === 'no-unreachable') return { kind: 'udp', value: v };
  const items = Array.isArray(v) ? v : [v];
  if (items.length === 0) report('needs at least one status or range', 'e.g. [200, "300-399"]');
  const ranges: StatusRange[] = [];
  items.forEach((item, i) => {
    const path = Array.isArray(v) ? [i] : [];
    let from: number | undefined;
    let to: number | undefined;
    if (typeof item === 'number' && Number.isInteger(item)) {
      from = to = item;
    } else if (typeof item === 'string' && /^\d+(-\d+)?$/.test(item.trim())) {
      const [a = '', b] = item.trim().split('-');
      from = Number(a);
      to = b === undefined ? from : Number(b);
    }
    if (from === undefined || to === undefined) {
      report(
        `${describeValue(item)} is not an HTTP status, a range like "200-399", "reply" or "no-unreachable"`,
        undefined,
        path,
      );
    } else if (from < 100 || to > 599 || to < 100 || from > 599) {
      report(`${describeValue(item)} is outside the HTTP status codes 100..599`, undefined, path);
    } else if (from > to) {
      report(`${describeValue(item)} is inverted`, `write "${to}-${from}"`, path);
    } else {
      ranges.push({ from, to });
    }
  });
  return { kind: 'http', ranges };
});

const payload = custom('a string or {hex: "..."}', (v, report): Buffer => {
  let buf: Buffer | undefined;
  if (typeof v === 'string') {
    buf = Buffer.from(v, 'utf8');
  } else if (isPlainObject(v)) {
    for (const key of Object.keys(v)) {
      if (key !== 'hex') report(`unknown key "${key}"`, 'a binary payload is written {hex: "0a0b..."}', [key]);
    }
    const hex = v['hex'];
    const bytes = /^([0-9a-fA-F]{2})*$/;
    if (typeof hex !== 'string') report(`expected a hex string, got ${describeValue(hex)}`, undefined, ['hex']);
    else if (!bytes.test(hex)) report(`${describeValue(hex)} is not hex bytes (two digits per byte)`, undefined, ['hex']);
    else buf = Buffer.from(hex, 'hex');
  } else {
    report(`expected a string or {hex: "..."}, got ${describeValue(v)}`);
  }
  if (buf !== undefined && buf.length > MAX_UDP_PAYLOAD) {
    report(`${buf.length} bytes is more than ${MAX_UDP_PAYLOAD}`, 'the data path drops fragments; keep a probe to one packet');
  }
  return buf ?? Buffer.alloc(0);
});

const command = custom('an argv list', (v, report): string[] => {
  if (typeof v === 'string') {
    const prog = JSON.stringify(v.split(/\s+/)[0]);
    report('expected a list (argv), got a string', `no shell runs it; write it as a list, e.g. [${prog}, ...]`);
    return [];
  }
  if (!Array.isArray(v)) {
    report(`expected a list (argv), got ${describeValue(v)}`);
    return [];
  }
  if (v.length === 0) report('needs at least the program to run');
  v.forEach((arg, i) => {
    if (typeof arg !== 'string') report(`expected a string, got ${describeValue(arg)}`, undefined, [i]);
  });
  const prog: unknown = v[0];
  if (typeof prog === 'string' && !prog.startsWith('/')) {
    const hint = 'the daemon runs as root and does not search PATH; give the full path';
    report(`${JSON.stringify(prog)} is not an absolute path`, hint, [0]);
  }
  return v as string[];
});

export const HEALTH_KEYS = [
  'type', 'interval', 'timeout', 'rise', 'fall', 'jitter', 'port', 'method', 'path', 'host', 'expect',
  'bodyContains', 'insecure', 'payload', 'command', 'datapath',
] as const;

const duration = custom('a duration such as "2s"', (v, report): number => {
  const r = parseDuration(v);
  if ('ms' in r) return r.ms;
  report(r.error, r.hint);
  return 0;
});

export const HealthLayerSchema = strictObject(
  'healthCheck',
  {
    type: optional(z.enum(HEALTH_TYPES)),
    interval: optional(duration),
    timeout: optional(duration),
    rise: optional(int(1, 100)),
    fall: optional(int(1, 100)),
    jitter: optional(z.number().min(0).max(0.5)),
    port: optional(int(1, 65535)),
    method: optional(z.enum(HTTP_METHODS)),
    path: optional(
      checked(z.string(), (s): Checked<string> =>
        /^\/\S*$/.test(s) ? { value: s } : { error: `${JSON.stringify(s)} must start with "/" and contain no spaces` },
      ),
    ),
    host: optional(
      checked(z.string(), (s): Checked<string> =>
        /^[^\s/]{1,255}$/.test(s) ? { value: s } : { error: `${JSON.stringify(s)} is not a host name` },
      ),
    ),
    expect: optional(expectSpec),
    bodyContains: optional(z.string().min(1)),
    insecure: optional(z.boolean()),
    payload: optional(payload),
    command: optional(command),
    datapath: optional(z.boolean()),
  } satisfies Record<(typeof HEALTH_KEYS)[number], z.ZodType>,
  true,
);
export type HealthLayer = z.output<typeof HealthLayerSchema>;

// ---------- backend, service, defaults ----------

export const BackendSchema = strictObject(
  'a backend',
  {
    address: unicastIp,
    weight: withDefault(int(0, 65535), 1),
    port: optional(int(1, 65535)),
    mac: optional(checked(z.string(), checkMac)),
    healthCheck: optional(HealthLayerSchema),
  },
  true,
);
export type RawBackend = z.output<typeof BackendSchema>;

const serviceName = checked(z.string(), (s): Checked<string> =>
  /^[A-Za-z0-9_.-]{1,64}$/.test(s)
    ? { value: s }
    : { error: `${describeValue(s)} is not a service name`, hint: "1 to 64 of A-Z a-z 0-9 '_' '.' '-'" },
);

/**
 * A service without its health check and backends, which are parsed on their own (see
 * validate.ts) so that a problem in one does not hide the checks that need the others.
 */
export const ServiceSchema = strictObject(
  'a service',
  {
    name: optional(serviceName),
    vip: unicastIp,
    port: int(1, 65535),
    proto: withDefault(z.enum(['tcp', 'udp']), 'tcp'),
    mode: z.enum(['l2dsr', 'ipip', 'nat']),
    hashSourceOnly: withDefault(z.boolean(), false),
    fullNat: withDefault(z.boolean(), false),
    onAllDown: withDefault(z.enum(['drop', 'pass']), 'drop'),
    healthCheck: z.unknown().optional(),
    backends: withDefault(z.array(z.unknown()), []),
  },
  true,
);
export type RawService = z.output<typeof ServiceSchema>;

export const DefaultsSchema = strictObject('defaults', { healthCheck: optional(HealthLayerSchema) }, true);

// ---------- node ----------

export const NODE_DEFAULTS = {
  xdpMode: 'native',
  bpffs: '/sys/fs/bpf/xdplb',
  ringSize: 65537,
  maxServices: 64,
  flowBuckets: 262144,
  seed: 0,
  flowIdleTimeoutMs: 30_000,
  apiSocket: '/run/xdplb/lbctl.sock',
  metricsListen: '127.0.0.1',
  metricsPort: 9723,
  logLevel: 'info',
} as const;

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;

function nearPrimes(n: number): string {
  let lo = n - 1;
  while (lo > 2 && !isPrime(lo)) lo--;
  let hi = n + 1;
  while (!isPrime(hi)) hi++;
  return `the nearest primes are ${lo} and ${hi}`;
}

const ringSize = checked(int(257, 1048573), (n): Checked<number> =>
  isPrime(n) ? { value: n } : { error: `${n} is not a prime`, hint: `Maglev needs a prime table size; ${nearPrimes(n)}` },
);

const flowBuckets = checked(int(1024, 1 << 24), (n): Checked<number> => {
  if ((n & (n - 1)) === 0) return { value: n };
  const lo = 2 ** Math.floor(Math.log2(n));
  return { error: `${n} is not a power of two`, hint: `the data path masks the hash; try ${lo} or ${lo * 2}` };
});

const interfaces = z
  .array(checked(z.string(), checkInterfaceName))
  .min(1)
  .max(16)
  .check(
    z.superRefine((names: string[], ctx) => {
      names.forEach((n, i) => {
        if (names.indexOf(n) < i) {
          ctx.addIssue({ code: 'custom', path: [i], input: n, message: `${JSON.stringify(n)} is listed twice` });
        }
      });
    }),
  );

export const NodeSchema = strictObject(
  'node',
  {
    interfaces,
    xdpMode: withDefault(z.enum(['native', 'generic']), NODE_DEFAULTS.xdpMode),
    bpffs: withDefault(absolutePath(), NODE_DEFAULTS.bpffs),
    ringSize: withDefault(ringSize, NODE_DEFAULTS.ringSize),
    maxServices: withDefault(int(1, 4096), NODE_DEFAULTS.maxServices),
    flowBuckets: withDefault(flowBuckets, NODE_DEFAULTS.flowBuckets),
    seed: withDefault(int(0, 0xffffffff), NODE_DEFAULTS.seed),
    flowIdleTimeout: withDefault(
      checked(duration, (ms): Checked<number> =>
        ms >= 1000 && ms <= 3_600_000 ? { value: ms } : { error: `must be between 1s and 1h, got ${ms} ms`, hint: 'the flow clock ticks once a second' },
      ),
      NODE_DEFAULTS.flowIdleTimeoutMs,
    ),
    sourceAddress: optional(strictObject('node.sourceAddress', { ipv4: optional(familyIp(4)), ipv6: optional(familyIp(6)) })),
    api: withDefault(
      // sun_path holds 108 bytes including the terminating NUL.
      strictObject('node.api', { socket: withDefault(absolutePath(107), NODE_DEFAULTS.apiSocket) }),
      { socket: NODE_DEFAULTS.apiSocket },
    ),
    metrics: optional(
      strictObject('node.metrics', {
        listen: withDefault(
          checked(z.string(), (s): Checked<string> => {
            const r = checkIp(s);
            if ('value' in r) return { value: r.value.address };
            return { error: r.error, hint: 'listen takes an IP address, not a host name: 127.0.0.1, ::1, 0.0.0.0 or ::' };
          }),
          NODE_DEFAULTS.metricsListen,
        ),
        port: withDefault(int(1, 65535), NODE_DEFAULTS.metricsPort),
      }),
    ),
    log: withDefault(strictObject('node.log', { level: withDefault(z.enum(LOG_LEVELS), NODE_DEFAULTS.logLevel) }), {
      level: NODE_DEFAULTS.logLevel,
    }),
    nat: withDefault(
      strictObject('node.nat', {
        sources: optional(natSources),
        portMin: withDefault(int(1024, 65535), 10000),
        portMax: withDefault(int(1024, 65535), 32767),
        entries: withDefault(int(1024, 1 << 24), 262144),
        entries6: withDefault(int(1024, 1 << 24), 65536),
        sweepInterval: withDefault(duration, 5000),
        timeouts: withDefault(
          strictObject('node.nat.timeouts', {
            tcpNew: withDefault(duration, 30_000),
            tcpEstablished: withDefault(duration, 300_000),
            tcpClosing: withDefault(duration, 10_000),
            udp: withDefault(duration, 30_000),
          }),
          { tcpNew: 30_000, tcpEstablished: 300_000, tcpClosing: 10_000, udp: 30_000 },
        ),
      }),
      {
        portMin: 10000,
        portMax: 32767,
        entries: 262144,
        entries6: 65536,
        sweepInterval: 5000,
        timeouts: { tcpNew: 30_000, tcpEstablished: 300_000, tcpClosing: 10_000, udp: 30_000 },
      },
    ),
    serverPrep: optional(
      strictObject('node.serverPrep', {
        auto: withDefault(z.boolean(), false),
        user: optional(checked(z.string(), (u): Checked<string> =>
          /^[a-z_][a-z0-9_.-]{0,31}$/i.test(u) ? { value: u } : { error: `${JSON.stringify(u)} is not a user name` },
        )),
        identityFile: optional(absolutePath()),
        knownHosts: optional(absolutePath()),
        acceptNew: withDefault(z.boolean(), false),
        connectTimeout: withDefault(duration, 10_000),
        timeout: withDefault(duration, 60_000),
        concurrency: withDefault(int(1, 256), 16),
      }),
    ),
  },
  true,
);
export type RawNode = z.output<typeof NodeSchema>;

export const TOP_KEYS = ['node', 'defaults', 'services'] as const;
LEVEL_KEYS.set('the top level', TOP_KEYS);

/** The top level's own keys; its values are parsed by the schemas above, one piece at a time. */
export const TopSchema = strictObject('the top level', {
  node: z.unknown().optional(),
  defaults: z.unknown().optional(),
  services: z.unknown().optional(),
});
