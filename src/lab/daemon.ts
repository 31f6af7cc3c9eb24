/**
 * The real daemon in the lab: a config written from the lab's own description (one service per
 * mode, the segment's backends), `lbctl daemon` started in the LB's namespace, and a summary
 * anything can be pointed at. `lbctl lab up` and the demo both use this, so the wiring exists once.
 *
 * The daemon runs under `nsenter --net` (network namespace only): `ip netns exec` would remount
 * /sys and hide bpffs, and the daemon's pins must outlive it in the root mount namespace.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { removePinDir } from '../bpf/index.js';
import { call } from '../api/client.js';
import type { ServiceView } from '../daemon/daemon.js';
import { LbError } from '../errors.js';
import { REPO_ROOT, processAlive, type Lab } from './lab.js';
import { backendFamilyOf, isIpv4Only, serviceSegment } from './topology.js';

/**
 * Whether the daemon's config takes IPv6 services (VIPs, backends, 4in6); it does since the config
 * learnt IPv6 (docs/config.md#ipv6). False would give the lab's config, summary and the demo the
 * IPv4 services only (the IPv6 ones still run through startLabBalancer(): test/e2e/dsr6, nat6).
 */
export const DAEMON_TAKES_IPV6 = true;

export const LBCTL_JS = join(REPO_ROOT, 'dist/cli/main.js');

export interface LabDaemon {
  pid: number;
  socket: string;
  config: string;
  pins: string;
  log: string;
}

/** What `lbctl lab up --json` prints: enough to point any tool at the lab. */
export interface LabSummary {
  prefix: string;
  client: string;
  clientAddress: string;
  lb: { ns: string; address: string; interface: string };
  backends: { name: string; namespace: string; address: string; segment: string }[];
  services: { name: string; vip: string; port: number; proto: string; mode: string; backends: string[] }[];
  daemon: LabDaemon | null;
}

function pinsOf(lab: Lab): string {
  return `/sys/fs/bpf/xdplb-lab-${lab.prefix.replace(/[^A-Za-z0-9]/g, '')}`;
}

export interface LabService {
  name: string;
  vip: string;
  port: number;
  proto: string;
  mode: string;
  fullNat: boolean;
  /** nat: the backends' port */
  backendPort?: number;
  backends: string[];
}

/**
 * The lab's services with the segment each takes its backends from (topology.serviceSegment), the
 * backends in the family the LB reaches them by. `ipv6: false` leaves out every service that
 * involves IPv6 (default: what the daemon takes, DAEMON_TAKES_IPV6).
 */
export function labServiceBackends(lab: Lab, opts: { ipv6?: boolean } = {}): LabService[] {
  const ipv6 = opts.ipv6 ?? DAEMON_TAKES_IPV6;
  return lab.services.filter((s) => ipv6 || isIpv4Only(s)).map((s) => ({
    name: `lab-${s.mode}${s.fullNat ? '-full' : ''}${s.proto === 'udp' ? '-udp' : ''}${s.vip.includes(':') ? '-v6' : backendFamilyOf(s) === 6 ? '-4in6' : ''}`,
    vip: s.vip,
    port: s.port,
    proto: s.proto,
    mode: s.mode,
    fullNat: !!s.fullNat,
    ...(s.backendPort !== undefined ? { backendPort: s.backendPort } : {}),
    backends: lab.backends.filter((b) => b.segment === serviceSegment(s)).map((b) => (backendFamilyOf(s) === 6 ? b.addr6 : b.addr)),
  }));
}

/** An IPv6 address is quoted: a plain YAML scalar full of colons is one typo from a mapping. */
function yamlAddr(a: string): string {
  return a.includes(':') ? `"${a}"` : a;
}

export function labConfig(lab: Lab, socket: string): string {
  const lines = [
    `# Written by the xdplb lab (${lab.prefix}): one service per mode, the lab's backends.`,
    'node:',
    `  interfaces: [${[lab.lb.ifname, ...(lab.lb.natIf ? [lab.lb.natIf.ifname] : [])].join(', ')}]`,
    `  bpffs: ${pinsOf(lab)}`,
    '  maxServices: 16',
    '  flowBuckets: 65536',
    `  api: { socket: ${socket} }`,
    'services:',
  ];
  for (const s of labServiceBackends(lab)) {
    // UDP echo servers answer anything: a reply is the check.
    const check = s.proto === 'udp' ? "{ type: udp, payload: ping, interval: 1s, timeout: 500ms, rise: 1, fall: 2 }" : '{ type: http, path: /, interval: 1s, timeout: 500ms, rise: 1, fall: 2 }';
    lines.push(
      `  - name: ${s.name}`,
      `    vip: ${yamlAddr(s.vip)}`,
      `    port: ${s.port}`,
      `    proto: ${s.proto}`,
      `    mode: ${s.mode}`,
      ...(s.fullNat ? ['    fullNat: true'] : []),
      `    healthCheck: ${check}`,
      '    backends:',
      ...s.backends.map((a) => `      - address: ${yamlAddr(a)}${s.backendPort !== undefined ? `\n        port: ${s.backendPort}` : ''}`),
    );
  }
  return `${lines.join('\n')}\n`;
}

/** Start the daemon for a lab (detached: it outlives `lbctl lab up`); resolves once its API answers. */
export async function startLabDaemon(lab: Lab, opts: { timeoutMs?: number } = {}): Promise<LabDaemon> {
  const socket = join(lab.stateDir, 'lbctl.sock');
  const config = join(lab.stateDir, 'config.yaml');
  const log = join(lab.stateDir, 'daemon.log');
  writeFileSync(config, labConfig(lab, socket));
  const fd = openSync(log, 'a');
  const child = spawn('nsenter', [`--net=/run/netns/${lab.lb.ns}`, process.execPath, LBCTL_JS, 'daemon', '--config', config], {
    detached: true,
    stdio: ['ignore', fd, fd],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  closeSync(fd);
  child.unref();
  const d: LabDaemon = { pid: child.pid ?? 0, socket, config, pins: pinsOf(lab), log };
  writeFileSync(join(lab.stateDir, 'daemon.json'), JSON.stringify(d));
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  while (Date.now() < deadline) {
    if (!processAlive(d.pid)) break;
    if (existsSync(socket)) {
      try {
        await call(socket, 'GET', '/v1/status', undefined, 2000);
        return d;
      } catch {
        // not listening yet
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const tail = existsSync(log) ? readFileSync(log, 'utf8').split('\n').slice(-15).join('\n') : '';
  throw new LbError('ERR_LB_LAB', `the lab daemon did not come up (${processAlive(d.pid) ? 'no answer' : 'it exited'})`, { detail: tail });
}

/** Wait until every lab service has all its backends in the ring (health checks passed). */
export async function waitLabHealthy(d: LabDaemon, timeoutMs = 20_000): Promise<ServiceView[]> {
  const deadline = Date.now() + timeoutMs;
  let last: ServiceView[] = [];
  while (Date.now() < deadline) {
    last = await call<ServiceView[]>(d.socket, 'GET', '/v1/services');
    if (last.every((s) => s.usableBackends === s.backends.length)) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  const bad = last.flatMap((s) => s.backends.filter((b) => !b.inRing).map((b) => `${s.name} ${b.address}: ${b.health.state} ${b.health.detail ?? ''}`));
  throw new LbError('ERR_LB_LAB', 'lab backends did not all become healthy', { detail: bad.join('\n') });
}

export function readLabDaemon(stateDir: string): LabDaemon | null {
  try {
    return JSON.parse(readFileSync(join(stateDir, 'daemon.json'), 'utf8')) as LabDaemon;
  } catch {
    return null;
  }
}

/**
 * Stop a lab's daemon and take its data path down. The namespaces going away would take the XDP
 * attachment with them, but the pins live in the root bpffs and must be removed here.
 */
export async function stopLabDaemon(stateDir: string, prefix: string): Promise<void> {
  const d = readLabDaemon(stateDir);
  if (d && processAlive(d.pid)) {
    try {
      await call(d.socket, 'POST', '/v1/stop', { detach: true }, 5000);
    } catch {
      // no answer: kill it below
    }
    const deadline = Date.now() + 5000;
    while (processAlive(d.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (processAlive(d.pid)) process.kill(d.pid, 'SIGKILL');
  }
  removePinDir(d?.pins ?? `/sys/fs/bpf/xdplb-lab-${prefix.replace(/[^A-Za-z0-9]/g, '')}`);
}

export function labSummary(lab: Lab, d: LabDaemon | null): LabSummary {
  return {
    prefix: lab.prefix,
    client: lab.client,
    clientAddress: lab.clientAddr,
    lb: { ns: lab.lb.ns, address: lab.lb.addr, interface: lab.lb.ifname },
    backends: lab.backends.map((b) => ({ name: b.name, namespace: b.ns, address: b.addr, segment: b.segment })),
    services: labServiceBackends(lab),
    daemon: d,
  };
}
