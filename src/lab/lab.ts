/**
 * The network-namespace lab: the one module that creates, inspects and destroys it. Tests, the demo
 * and `lbctl lab up|down|status` all come through here; nothing else writes the topology.
 *
 * labUp() realises a Topology (topology.ts) with namespaces `<prefix><host>`, veths created directly
 * in their namespaces (nothing is left in the root namespace), two bridges in the router, and the
 * veth quirks of shared/LAB-NOTES.md handled in ONE place (applyVethQuirks): TX checksum offload off
 * on every veth end, and the pass-through XDP program on the router-side peer of the LB's eth0.
 * Dual stack: every interface also gets its IPv6 twin address (topology.ts). IPv6's own quirks are
 * handled where the links are made: no duplicate address detection anywhere (accept_dad=0 before any
 * link exists, `nodad` on every address), or addresses stay tentative for a second and the first
 * connections fail; and no multicast snooping on the bridges, which would otherwise forward a
 * neighbour solicitation only to ports whose MLD report it happened to see. Set-up ends when every
 * veth is operationally up (linkup.ts): before that, the first packet of each link waits a second.
 * Backends get their VIPs from scripts/server-prep.sh and run dist/lab/backend-server.js.
 *
 * labDown() removes everything of a prefix from what exists, not from what was recorded, so it also
 * cleans up after a crash: processes in the namespaces, the namespaces, the state dir. Idempotent.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LbError, isLbError } from '../errors.js';
import { exec, ipBatch, run } from './exec.js';
import { waitVethsUp } from './linkup.js';
import {
  buildTopology,
  namespacesOf,
  segmentOf,
  validatePrefix,
  DEFAULT_PREFIX,
  type SegmentName,
  type TopoHost,
  type TopoService,
  type Topology,
  type TopologyOptions,
} from './topology.js';

/** Repository root (this file is src/lab/lab.ts or dist/lab/lab.js). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const XDP_PASS_OBJ = join(REPO_ROOT, 'build/bpf/xdp_pass.bpf.o');
export const DECAP_OBJ = join(REPO_ROOT, 'build/bpf/decap.bpf.o');
export const SERVER_PREP = join(REPO_ROOT, 'scripts/server-prep.sh');
export const BACKEND_SERVER_JS = join(REPO_ROOT, 'dist/lab/backend-server.js');
/** Where lab state lives: one directory per prefix. tmpfs, so a reboot forgets it with the namespaces. */
export const DEFAULT_STATE_ROOT = process.env['XDPLB_LAB_STATE_ROOT'] ?? '/run/xdplb/lab';
const NETNS_DIR = '/run/netns';

export interface LabHostInfo {
  name: string;
  ns: string;
  addr: string;
  addr6: string;
  mac: string;
  segment: 'l2' | 'routed' | 'nat';
  /** VIPs held on lo */
  vips: string[];
}

/** A running lab, as JSON-serialisable data (`lbctl lab up --json` prints it). */
export interface Lab {
  prefix: string;
  stateDir: string;
  /** client namespace */
  client: string;
  clientAddr: string;
  clientAddr6: string;
  /** the balancer's host: attach the XDP program to `ifname` in `ns` */
  lb: {
    ns: string;
    ifname: string;
    addr: string;
    addr6: string;
    mac: string;
    /** its default gateway (the router's br0), with a permanent neighbour entry (both families) so
     * that bpf_fib_lookup() in the LB never answers NO_NEIGH for routed (IPIP) backends */
    gateway: { addr: string; addr6: string; mac: string };
    /** its leg on the nat segment, the nat backends' gateway (absent without nat backends);
     * the balancer runs here too, for the replies */
    natIf?: { ifname: string; addr: string; addr6: string; mac: string };
  };
  /** router namespace */
  router: string;
  backends: LabHostInfo[];
  services: TopoService[];
  /** the description this lab was built from */
  topology: Topology;
  /** XDP object server-prep.sh attached to the routed backends' eth0 for IPIP decap */
  decapObj: string;
  createdAt: string;
}

export interface LabUpOptions extends TopologyOptions {
  /** parent of the per-prefix state dirs. Default /run/xdplb/lab (env XDPLB_LAB_STATE_ROOT). */
  stateRoot?: string;
  /** tear down an existing lab of the same prefix first instead of failing. Default false. */
  recreate?: boolean;
  /** decap object for routed backends. Default build/bpf/decap.bpf.o. */
  decapObj?: string;
}

export interface LabDownOptions {
  stateRoot?: string;
}

export interface LabDownResult {
  prefix: string;
  namespaces: string[];
  killed: number[];
  stateDirRemoved: boolean;
}

export interface LabStatus {
  prefix: string;
  stateDir: string;
  /** true when the recorded lab exists completely and every backend server runs */
  up: boolean;
  /** what lab.json recorded (null when absent: never up, or crashed before finishing) */
  lab: Lab | null;
  /** namespaces that exist with this prefix */
  namespaces: string[];
  /** namespaces the recorded lab should have but that do not exist */
  missing: string[];
  processes: { ns: string; pids: number[] }[];
  servers: { name: string; ns: string; pid: number | null; running: boolean }[];
}

export function stateDirOf(prefix: string, stateRoot = DEFAULT_STATE_ROOT): string {
  return join(stateRoot, validatePrefix(prefix));
}

/** Namespaces that exist and belong to `prefix` (every lab namespace name starts with it). */
export function listLabNamespaces(prefix: string): string[] {
  validatePrefix(prefix);
  let names: string[];
  try {
    names = readdirSync(NETNS_DIR);
  } catch {
    return [];
  }
  return names.filter((n) => n.startsWith(prefix)).sort();
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Alive and not a zombie. */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

async function netnsPids(ns: string): Promise<number[]> {
  const r = await run(['ip', 'netns', 'pids', ns], { allowFail: true, timeoutMs: 5000 });
  if (r.status !== 0) return [];
  return r.stdout
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number)
    .filter((p) => p !== process.pid);
}

function writeJsonAtomic(path: string, data: unknown): void {
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, JSON.stringify(data, null, 2) + '\n');
  renameSync(tmp, path);
}

// --------------------------------------------------------------------------------------------
// up

function hostPrefixLen(topo: Topology, h: TopoHost): number {
  return segmentOf(topo, h.segment).prefixLen;
}

/** sysctls, set before any link exists so new interfaces inherit `default`. */
async function setSysctls(topo: Topology): Promise<void> {
  const common = [
    'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0',
    'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0',
  ];
  // bpf_fib_lookup() answers FWD_DISABLED for IPv6 unless the receiving device forwards.
  const forward = ['net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1', 'net.ipv6.conf.default.forwarding=1'];
  await Promise.all(
    namespacesOf(topo).map((ns) =>
      exec(ns, ['sysctl', '-q', '-w', ...common, ...(ns === topo.router.ns || ns === `${topo.prefix}lb` ? forward : [])], {
        code: 'ERR_LB_LAB',
      }),
    ),
  );
}

/** Router: bridges, every veth pair (created here, each end directly in its namespace), addresses, routes. */
async function buildRouter(topo: Topology): Promise<void> {
  const lines = ['link set lo up'];
  for (const seg of topo.segments) {
    if (seg.bridge) lines.push(`link add ${seg.routerIf} type bridge stp_state 0 mcast_snooping 0`);
  }
  for (const h of topo.hosts) {
    for (const i of [{ segment: h.segment, ifname: h.ifname, routerPort: h.routerPort }, ...(h.extraIfs ?? [])]) {
      const seg = segmentOf(topo, i.segment);
      lines.push(`link add ${i.routerPort} type veth peer name ${i.ifname} netns ${h.ns}`);
      if (seg.bridge) lines.push(`link set ${i.routerPort} master ${seg.routerIf}`);
      lines.push(`link set ${i.routerPort} up`);
    }
  }
  for (const seg of topo.segments) {
    // A segment whose gateway is the LB is only switched here.
    if (seg.gatewayHost !== 'lb') {
      lines.push(`addr add ${seg.gateway}/${seg.prefixLen} dev ${seg.routerIf}`);
      lines.push(`addr add ${seg.gateway6}/${seg.prefixLen6} dev ${seg.routerIf} nodad`);
    }
    lines.push(`link set ${seg.routerIf} up`);
  }
  for (const r of [...topo.router.routes, ...topo.router.routes6]) lines.push(`route add ${r.dst} via ${r.via}`);
  await ipBatch(topo.router.ns, lines, { code: 'ERR_LB_LAB', timeoutMs: 15_000 });
}

async function configureHost(topo: Topology, h: TopoHost): Promise<void> {
  const seg = segmentOf(topo, h.segment);
  const extra = (h.extraIfs ?? []).flatMap((i) => [
    `addr add ${i.addr}/${segmentOf(topo, i.segment).prefixLen} dev ${i.ifname}`,
    `addr add ${i.addr6}/${segmentOf(topo, i.segment).prefixLen6} dev ${i.ifname} nodad`,
    `link set ${i.ifname} up`,
  ]);
  await ipBatch(
    h.ns,
    [
      'link set lo up',
      `addr add ${h.addr}/${hostPrefixLen(topo, h)} dev ${h.ifname}`,
      `addr add ${h.addr6}/${seg.prefixLen6} dev ${h.ifname} nodad`,
      `link set ${h.ifname} up`,
      ...extra,
      `route add default via ${seg.gateway}`,
      `route add ::/0 via ${seg.gateway6}`,
    ],
    { code: 'ERR_LB_LAB' },
  );
}

/**
 * The veth quirks (shared/LAB-NOTES.md), in this one place:
 *  - quirk 2: TX checksum offload off on every veth end, or TCP forwarded by XDP arrives with bad
 *    checksums;
 *  - quirk 1: XDP_TX out of the LB's eth0 delivers only when the peer has a (native) XDP program:
 *    xdp_pass on the router's bridge port facing the LB.
 */
async function applyVethQuirks(topo: Topology): Promise<void> {
  const byNs = new Map<string, string[]>();
  const add = (ns: string, ifname: string): void => {
    byNs.set(ns, [...(byNs.get(ns) ?? []), ifname]);
  };
  for (const h of topo.hosts) {
    for (const i of [h, ...(h.extraIfs ?? [])]) {
      add(h.ns, i.ifname);
      add(topo.router.ns, i.routerPort);
    }
  }
  // One process per namespace; interface names are positional arguments, not part of the script.
  const script = 'for i do ethtool -K "$i" tx off >/dev/null || exit 1; done';
  await Promise.all(
    [...byNs].map(([ns, ifs]) => exec(ns, ['sh', '-c', script, 'sh', ...ifs], { code: 'ERR_LB_LAB' })),
  );
  // argv, not a batch line: the object's path may contain anything.
  for (const h of topo.hosts.filter((x) => x.role === 'lb')) {
    for (const port of [h.routerPort, ...(h.extraIfs ?? []).map((i) => i.routerPort)]) {
      await run(['ip', '-n', topo.router.ns, 'link', 'set', 'dev', port, 'xdpdrv', 'obj', XDP_PASS_OBJ, 'sec', 'xdp'], {
        code: 'ERR_LB_LAB',
      });
    }
  }
}

async function readMac(ns: string, ifname: string): Promise<string> {
  const r = await run(['ip', '-j', '-n', ns, 'link', 'show', 'dev', ifname], { code: 'ERR_LB_LAB' });
  const parsed = JSON.parse(r.stdout) as { address?: string }[];
  const mac = parsed[0]?.address;
  if (!mac) throw new LbError('ERR_LB_LAB', `no MAC address for ${ifname} in ${ns}`);
  return mac;
}

/**
 * VIPs on lo, ARP suppressed, and for ipip the decap XDP program on eth0 (this kernel has no ipip
 * driver): all done by the project's own scripts/server-prep.sh, run inside the backend's namespace,
 * exactly as on a real server. Its record goes to the lab's state dir and dies with it.
 */
async function prepareBackend(h: TopoHost, stateDir: string, decapObj: string): Promise<void> {
  if (h.prepMode === null || h.vips.length === 0) return;
  const argv = ['bash', SERVER_PREP, 'add'];
  for (const v of h.vips) argv.push('--vip', v);
  argv.push('--mode', h.prepMode, '--dev', h.ifname, '--state-dir', join(stateDir, h.name, 'prep'));
  if (h.prepMode === 'ipip') argv.push('--decap-obj', decapObj);
  await exec(h.ns, argv, { code: 'ERR_LB_LAB', timeoutMs: 30_000 });
}

async function startServer(topo: Topology, h: TopoHost, stateDir: string): Promise<number> {
  const dir = join(stateDir, h.name);
  mkdirSync(dir, { recursive: true });
  const readyFile = join(dir, 'server.ready');
  const logFile = join(dir, 'server.log');
  rmSync(readyFile, { force: true });
  const argv = ['netns', 'exec', h.ns, process.execPath, BACKEND_SERVER_JS, '--name', h.name];
  for (const p of topo.serverPorts.tcp) argv.push('--port', String(p));
  for (const p of topo.serverPorts.udpEcho) argv.push('--udp-echo', String(p));
  argv.push('--ready-file', readyFile);

  const fd = openSync(logFile, 'a');
  let exited: string | null = null;
  try {
    // Detached and unref'd: the server outlives `lbctl lab up`; labDown kills it via `ip netns pids`.
    const child = spawn('ip', argv, { detached: true, stdio: ['ignore', fd, fd] });
    child.on('error', (e) => {
      exited = e.message;
    });
    child.on('exit', (code, sig) => {
      exited = `exit status ${code ?? sig ?? '?'}`;
    });
    child.unref();
  } finally {
    closeSync(fd);
  }
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (existsSync(readyFile)) {
      const ready = JSON.parse(readFileSync(readyFile, 'utf8')) as { pid: number };
      return ready.pid;
    }
    if (exited !== null) break;
    await sleep(20);
  }
  let log = '';
  try {
    log = readFileSync(logFile, 'utf8').trim();
  } catch {
    /* no log */
  }
  throw new LbError('ERR_LB_LAB', `backend server ${h.name} in ${h.ns} did not start (${exited ?? 'timeout after 10 s'})`, {
    detail: log || undefined,
  });
}

/** Create the lab. On any failure everything of the prefix is removed again before the error is thrown. */
export async function labUp(opts: LabUpOptions = {}): Promise<Lab> {
  const topo = buildTopology(opts);
  const prefix = topo.prefix;
  const stateDir = stateDirOf(prefix, opts.stateRoot);

  if (listLabNamespaces(prefix).length > 0 || existsSync(stateDir)) {
    if (!opts.recreate) {
      throw new LbError('ERR_LB_LAB', `a lab with prefix ${prefix} already exists (namespaces or ${stateDir})`, {
        hint: `remove it first: lbctl lab down --prefix ${prefix}`,
      });
    }
    await labDown(prefix, { stateRoot: opts.stateRoot });
  }
  const decapObj = opts.decapObj ?? DECAP_OBJ;
  const needed: [string, string][] = [
    [BACKEND_SERVER_JS, 'run make ts'],
    [XDP_PASS_OBJ, 'run make bpf'],
    [decapObj, 'run make bpf'],
    [SERVER_PREP, 'scripts/server-prep.sh is part of the repository'],
  ];
  for (const [path, hint] of needed) {
    if (!existsSync(path)) throw new LbError('ERR_LB_LAB', `missing ${path}`, { hint });
  }

  try {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    writeJsonAtomic(join(stateDir, 'topology.json'), topo);

    await ipBatch(null, namespacesOf(topo).map((ns) => `netns add ${ns}`), { code: 'ERR_LB_LAB' });
    await setSysctls(topo);
    await buildRouter(topo);
    await Promise.all(topo.hosts.map((h) => configureHost(topo, h)));
    await applyVethQuirks(topo);
    await Promise.all(namespacesOf(topo).map((ns) => waitVethsUp(ns)));

    const backends = topo.hosts.filter((h) => h.role === 'backend');
    const lbHost = topo.hosts.find((h) => h.role === 'lb');
    const clientHost = topo.hosts.find((h) => h.role === 'client');
    if (!lbHost || !clientHost) throw new LbError('ERR_LB_LAB', 'topology lacks an lb or a client');

    const lbSeg = segmentOf(topo, lbHost.segment);
    const lbNat = lbHost.extraIfs?.find((i) => i.segment === 'nat');
    const [gwMac, lbNatMac, lbMac, ...beMacs] = await Promise.all([
      readMac(topo.router.ns, lbSeg.routerIf),
      lbNat ? readMac(lbHost.ns, lbNat.ifname) : Promise.resolve(''),
      ...[lbHost, ...backends].map((h) => readMac(h.ns, h.ifname)),
    ]);
    await ipBatch(
      lbHost.ns,
      [lbSeg.gateway, lbSeg.gateway6].map((a) => `neigh replace ${a} lladdr ${gwMac} dev ${lbHost.ifname} nud permanent`),
      { code: 'ERR_LB_LAB' },
    );
    await Promise.all(backends.map((h) => prepareBackend(h, stateDir, decapObj)));
    await Promise.all(backends.map((h) => startServer(topo, h, stateDir)));

    const lab: Lab = {
      prefix,
      stateDir,
      client: clientHost.ns,
      clientAddr: clientHost.addr,
      clientAddr6: clientHost.addr6,
      lb: {
        ns: lbHost.ns,
        ifname: lbHost.ifname,
        addr: lbHost.addr,
        addr6: lbHost.addr6,
        mac: lbMac ?? '',
        gateway: { addr: lbSeg.gateway, addr6: lbSeg.gateway6, mac: gwMac ?? '' },
        ...(lbNat ? { natIf: { ifname: lbNat.ifname, addr: lbNat.addr, addr6: lbNat.addr6, mac: lbNatMac ?? '' } } : {}),
      },
      router: topo.router.ns,
      backends: backends.map((h, i) => ({
        name: h.name,
        ns: h.ns,
        addr: h.addr,
        addr6: h.addr6,
        mac: beMacs[i] ?? '',
        segment: h.segment as Exclude<SegmentName, 'client'>,
        vips: [...h.vips],
      })),
      services: topo.services.map((s) => ({ ...s })),
      topology: topo,
      decapObj,
      createdAt: new Date().toISOString(),
    };
    writeJsonAtomic(join(stateDir, 'lab.json'), lab);
    return lab;
  } catch (e) {
    try {
      await labDown(prefix, { stateRoot: opts.stateRoot });
    } catch {
      /* the original error matters more; labDown can be run again */
    }
    if (isLbError(e)) throw e;
    throw new LbError('ERR_LB_LAB', `lab up failed: ${(e as Error).message}`, { cause: e });
  }
}

// --------------------------------------------------------------------------------------------
// down

async function killAll(pids: number[]): Promise<void> {
  const signal = (sig: NodeJS.Signals): void => {
    for (const p of pids) {
      try {
        process.kill(p, sig);
      } catch {
        /* already gone */
      }
    }
  };
  signal('SIGTERM');
  for (const [sig, ms] of [['SIGKILL', 2000], [null, 2000]] as const) {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline && pids.some(processAlive)) await sleep(25);
    if (sig) signal(sig);
  }
  const left = pids.filter(processAlive);
  if (left.length > 0) throw new LbError('ERR_LB_LAB', `processes survived SIGKILL: ${left.join(' ')}`);
}

/**
 * Remove everything of `prefix`: processes in its namespaces, the namespaces (which takes their veths
 * and XDP programs with them), the state dir. Works from what exists, so it cleans up after a crash;
 * running it twice is fine. Never looks at a namespace whose name does not start with `prefix`.
 */
export async function labDown(prefix: string = DEFAULT_PREFIX, opts: LabDownOptions = {}): Promise<LabDownResult> {
  validatePrefix(prefix);
  const stateDir = stateDirOf(prefix, opts.stateRoot);
  const namespaces = listLabNamespaces(prefix);

  const pids = [...new Set((await Promise.all(namespaces.map(netnsPids))).flat())];
  await killAll(pids);

  if (namespaces.length > 0) {
    await ipBatch(null, namespaces.map((ns) => `netns del ${ns}`), { force: true, allowFail: true, code: 'ERR_LB_LAB' });
  }
  const left = listLabNamespaces(prefix);
  for (const ns of left) await run(['ip', 'netns', 'del', ns], { allowFail: true });
  const still = listLabNamespaces(prefix);
  if (still.length > 0) {
    throw new LbError('ERR_LB_LAB', `could not delete namespaces: ${still.join(' ')}`);
  }

  const stateDirRemoved = existsSync(stateDir);
  rmSync(stateDir, { recursive: true, force: true });
  return { prefix, namespaces, killed: pids, stateDirRemoved };
}

// --------------------------------------------------------------------------------------------
// status

export async function labStatus(prefix: string = DEFAULT_PREFIX, opts: LabDownOptions = {}): Promise<LabStatus> {
  validatePrefix(prefix);
  const stateDir = stateDirOf(prefix, opts.stateRoot);
  let lab: Lab | null = null;
  try {
    lab = JSON.parse(readFileSync(join(stateDir, 'lab.json'), 'utf8')) as Lab;
  } catch {
    lab = null;
  }
  const namespaces = listLabNamespaces(prefix);
  const processes = await Promise.all(namespaces.map(async (ns) => ({ ns, pids: await netnsPids(ns) })));
  const expected = lab ? namespacesOf(lab.topology) : [];
  const missing = expected.filter((ns) => !namespaces.includes(ns));
  const servers = (lab?.backends ?? []).map((b) => {
    let pid: number | null = null;
    try {
      pid = (JSON.parse(readFileSync(join(stateDir, b.name, 'server.ready'), 'utf8')) as { pid: number }).pid;
    } catch {
      pid = null;
    }
    const inNs = processes.find((p) => p.ns === b.ns)?.pids ?? [];
    return { name: b.name, ns: b.ns, pid, running: pid !== null && inNs.includes(pid) && processAlive(pid) };
  });
  const up = lab !== null && missing.length === 0 && servers.every((s) => s.running);
  return { prefix, stateDir, up, lab, namespaces, missing, processes, servers };
}
