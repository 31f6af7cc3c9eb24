/**
 * From the parsed file (plain data) to the normalized Config, or the list of everything wrong
 * with it. Pieces are checked separately (node, defaults, each service, each backend) so that one
 * broken piece does not hide the problems of the others; the checks that relate several values
 * (duplicates, families, modes, the merged health checks) run on every piece that parsed.
 */
import { isIP } from 'node:net';
import type { z } from 'zod';
import { mergeHealth, type Layer } from './health.js';
import {
  BackendSchema,
  DefaultsSchema,
  HealthLayerSchema,
  isPlainObject,
  isUnknownKeyIssue,
  NodeSchema,
  ServiceSchema,
  TopSchema,
  type HealthLayer,
  type RawBackend,
  type RawNode,
  type RawService,
} from './schema.js';
import { serviceKeyString, type Backend, type Config, type NodeSettings, type Service } from './types.js';
import { describeValue, fromZodIssue, type Violation } from './violations.js';

function violation(path: string, message: string, hint?: string): Violation {
  return { path, message, ...(hint === undefined ? {} : { hint }) };
}

/**
 * Parses one piece; its problems go to `out`. When an unknown key is all that is wrong, the piece
 * is parsed again without it, so the checks that need the piece still run and report too.
 */
function run<T>(schema: z.ZodType<T>, value: unknown, path: string, out: Violation[]): T | undefined {
  const r = schema.safeParse(value, { reportInput: true });
  if (r.success) return r.data;
  for (const issue of r.error.issues) out.push(fromZodIssue(path, issue));
  if (!r.error.issues.every(isUnknownKeyIssue)) return undefined;
  const again = schema.safeParse(withoutPaths(value, r.error.issues.map((i) => i.path)));
  return again.success ? again.data : undefined;
}

function withoutPaths(value: unknown, paths: PropertyKey[][]): unknown {
  const copy: unknown = structuredClone(value);
  for (const path of paths) {
    let node: unknown = copy;
    for (const p of path.slice(0, -1)) node = (node as Record<PropertyKey, unknown> | undefined)?.[p];
    const last = path[path.length - 1];
    if (isPlainObject(node) && typeof last === 'string') delete node[last];
  }
  return copy;
}

export function validate(raw: unknown): { config?: Config; violations: Violation[] } {
  const v: Violation[] = [];
  if (!isPlainObject(raw)) {
    v.push({
      path: '',
      message: `the top level must be a mapping (node, defaults, services), got ${describeValue(raw)}`,
    });
    return { violations: v };
  }
  run(TopSchema, raw, '', v);

  const node = raw['node'] === undefined ? undefined : run(NodeSchema, raw['node'], 'node', v);
  if (raw['node'] === undefined) v.push(violation('node', 'missing (required: a mapping with at least interfaces)'));

  const rawDefaults = raw['defaults'] ?? undefined;
  const defaults = rawDefaults === undefined ? {} : run(DefaultsSchema, rawDefaults, 'defaults', v);

  let rawServices: unknown[] = [];
  if (Array.isArray(raw['services'])) rawServices = raw['services'];
  else if (raw['services'] !== undefined && raw['services'] !== null) {
    v.push({ path: 'services', message: `expected a list, got ${describeValue(raw['services'])}` });
  }

  const services: Service[] = [];
  const byKey = new Map<string, number>();
  const byName = new Map<string, number>();
  rawServices.forEach((rs, i) => {
    const s = checkService(rs, i, defaults, v);
    if (s === undefined) return;
    const path = `services[${i}]`;
    const key = serviceKeyString(s);
    const first = byKey.get(key);
    if (first !== undefined) {
      const hint = 'a VIP, port and proto make one service; merge their backends';
      v.push(violation(path, `${key} is already services[${first}]`, hint));
    } else {
      byKey.set(key, i);
    }
    if (isPlainObject(rs) && rs['name'] !== undefined) {
      const firstName = byName.get(s.name);
      if (firstName === undefined) byName.set(s.name, i);
      else v.push(violation(`${path}.name`, `"${s.name}" is already the name of services[${firstName}]`));
    }
    services.push(s);
  });

  if (node !== undefined) {
    if (rawServices.length > node.maxServices) {
      v.push({
        path: 'services',
        message: `${rawServices.length} services, more than node.maxServices (${node.maxServices})`,
        hint: 'raise node.maxServices (at most 4096); it sizes the maps, so the daemon must restart',
      });
    }
    if (node.nat.portMin > node.nat.portMax) {
      v.push(violation('node.nat.portMin', `${node.nat.portMin} is above node.nat.portMax (${node.nat.portMax})`));
    }
  }

  const violations = dedupe(v);
  if (violations.length > 0 || node === undefined) return { violations };
  return { config: { node: normalizeNode(node), services }, violations };
}

function dedupe(v: Violation[]): Violation[] {
  const seen = new Set<string>();
  return v.filter((x) => {
    const k = `${x.path}\0${x.message}\0${x.hint ?? ''}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function normalizeNode(n: RawNode): NodeSettings {
  const src = n.sourceAddress;
  return {
    interfaces: [...n.interfaces],
    xdpMode: n.xdpMode,
    bpffs: n.bpffs,
    ringSize: n.ringSize,
    maxServices: n.maxServices,
    flowBuckets: n.flowBuckets,
    seed: n.seed,
    flowIdleTimeoutMs: n.flowIdleTimeout,
    ...(src === undefined
      ? {}
      : {
          sourceAddress: {
            ...(src.ipv4 === undefined ? {} : { ipv4: src.ipv4 }),
            ...(src.ipv6 === undefined ? {} : { ipv6: src.ipv6 }),
          },
        }),
    api: { socket: n.api.socket },
    ...(n.metrics === undefined ? {} : { metrics: { listen: n.metrics.listen, port: n.metrics.port } }),
    log: { level: n.log.level },
    nat: {
      ...(n.nat.sources === undefined ? {} : { sources: [...n.nat.sources] }),
      portMin: n.nat.portMin,
      portMax: n.nat.portMax,
      entries: n.nat.entries,
      entries6: n.nat.entries6,
      sweepIntervalMs: n.nat.sweepInterval,
      timeoutsMs: { tcpNew: n.nat.timeouts.tcpNew, tcpEstablished: n.nat.timeouts.tcpEstablished, tcpClosing: n.nat.timeouts.tcpClosing, udp: n.nat.timeouts.udp },
    },
    ...(n.serverPrep === undefined
      ? {}
      : {
          serverPrep: {
            auto: n.serverPrep.auto,
            ...(n.serverPrep.user === undefined ? {} : { user: n.serverPrep.user }),
            ...(n.serverPrep.identityFile === undefined ? {} : { identityFile: n.serverPrep.identityFile }),
            ...(n.serverPrep.knownHosts === undefined ? {} : { knownHosts: n.serverPrep.knownHosts }),
            acceptNew: n.serverPrep.acceptNew,
            connectTimeoutMs: n.serverPrep.connectTimeout,
            timeoutMs: n.serverPrep.timeout,
            concurrency: n.serverPrep.concurrency,
          },
        }),
  };
}

type Defaults = { healthCheck?: HealthLayer | undefined } | undefined;

function checkService(raw: unknown, i: number, defaults: Defaults, v: Violation[]): Service | undefined {
  const path = `services[${i}]`;
  const s = run(ServiceSchema, raw, path, v);
  const rawCheck = isPlainObject(raw) ? (raw['healthCheck'] ?? undefined) : undefined;
  const check = rawCheck === undefined ? {} : run(HealthLayerSchema, rawCheck, `${path}.healthCheck`, v);
  const rawBackends = s?.backends ?? (isPlainObject(raw) && Array.isArray(raw['backends']) ? raw['backends'] : []);
  const backends = rawBackends.map((rb, j) => run(BackendSchema, rb, `${path}.backends[${j}]`, v));
  if (s === undefined) return undefined;

  if (s.fullNat && s.mode !== 'nat') {
    v.push(violation(`${path}.fullNat`, `fullNat is for mode nat, not ${s.mode}`, 'DSR modes keep the client address by design'));
  }

  // A broken layer was reported already; merging without it would only add noise.
  const layersOk = defaults !== undefined && check !== undefined;
  const layers: Layer[] = [];
  if (defaults?.healthCheck !== undefined) layers.push({ path: 'defaults.healthCheck', check: defaults.healthCheck });
  if (rawCheck !== undefined && check !== undefined) layers.push({ path: `${path}.healthCheck`, check });
  const ctx = { mode: s.mode, proto: s.proto, servicePath: path };
  const svcCheck = layersOk ? mergeHealth(layers, ctx) : { violations: [] };
  v.push(...svcCheck.violations);

  const out: Backend[] = [];
  const seen = new Map<string, number>();
  let ok = svcCheck.check !== undefined;
  backends.forEach((b, j) => {
    if (b === undefined) {
      ok = false;
      return;
    }
    const r = checkBackend(s, b, `${path}.backends[${j}]`, layersOk ? layers : undefined, v);
    if (r === undefined) ok = false;
    else out.push(r);
    // nat may send one address on several ports; DSR sends to the VIP's port, so the address alone counts.
    const key = s.mode === 'nat' ? `${b.address} ${b.port ?? s.port}` : b.address;
    const first = seen.get(key);
    if (first !== undefined) {
      const what = s.mode === 'nat' ? `${b.address} port ${b.port ?? s.port}` : b.address;
      v.push(violation(`${path}.backends[${j}].address`, `${what} is already backends[${first}]`));
    } else {
      seen.set(key, j);
    }
  });
  if (!ok || svcCheck.check === undefined) return undefined;
  return {
    name: s.name ?? serviceKeyString(s),
    vip: s.vip,
    port: s.port,
    proto: s.proto,
    mode: s.mode,
    hashSourceOnly: s.hashSourceOnly,
    fullNat: s.fullNat,
    onAllDown: s.onAllDown,
    healthCheck: svcCheck.check,
    backends: out,
  };
}

/** Cross-checks of one backend, and its merged health check when the layers above it are sound. */
function checkBackend(
  s: RawService,
  b: RawBackend,
  path: string,
  layers: Layer[] | undefined,
  v: Violation[],
): Backend | undefined {
  const before = v.length;
  const vipFamily = isIP(s.vip);
  const family = isIP(b.address);
  if (b.address === s.vip) {
    v.push(violation(`${path}.address`, `${b.address} is the service's VIP`, 'a backend is a real server behind the VIP'));
  }
  // ipip may carry an IPv4 VIP to an IPv6 backend (IPv4-in-IPv6, as Katran does); the other way
  // round the backend would need an IPv6 VIP inside IPv4, which nobody decapsulates.
  if (family !== vipFamily && !(s.mode === 'ipip' && vipFamily === 4)) {
    const message = `${b.address} is IPv${family} but the VIP ${s.vip} is IPv${vipFamily}`;
    const hint =
      s.mode === 'ipip'
        ? 'mode ipip sends an IPv6 VIP to IPv6 backends only (an IPv4 VIP may go to either family)'
        : `mode ${s.mode} keeps the VIP's address family`;
    v.push(violation(`${path}.address`, message, hint));
  }
  if (b.port !== undefined && s.mode !== 'nat') {
    const message = `mode ${s.mode} cannot translate ports: the backend gets the VIP's port ${s.port}`;
    v.push(violation(`${path}.port`, message, 'remove it, or use mode nat'));
  }
  if (b.mac !== undefined && s.mode !== 'l2dsr') {
    const hint = `mode ${s.mode} finds the next hop by route`;
    v.push(violation(`${path}.mac`, `mac is only for l2dsr backends, not ${s.mode}`, hint));
  }
  if (layers === undefined) return undefined;
  const chain = b.healthCheck === undefined ? layers : [...layers, { path: `${path}.healthCheck`, check: b.healthCheck }];
  const hc = mergeHealth(chain, { mode: s.mode, proto: s.proto, servicePath: path.replace(/\.backends\[\d+\]$/, '') });
  v.push(...hc.violations);
  if (hc.check === undefined || v.length > before) return undefined;
  return {
    address: b.address,
    weight: b.weight,
    ...(b.port === undefined ? {} : { port: b.port }),
    ...(b.mac === undefined ? {} : { mac: b.mac }),
    healthCheck: hc.check,
  };
}
