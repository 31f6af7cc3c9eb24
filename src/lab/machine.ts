/**
 * The balancer on a lab whose hosts are machines (the Vagrant lab), or anything a HostRunner reaches.
 * labUp() knows every MAC because it made every interface; here they are learned the way a real LB
 * learns them: from the LB host, ping each neighbour on its segment and read the neighbour table.
 * Then balancer.ts programs and attaches the balancer exactly as in the namespace lab.
 *
 * The program stays attached when the process that attached it exits (the kernel holds it through
 * the interface), so a one-shot `node dist/lab/machine-lb.js` at provisioning time is enough.
 */
import { LbError, isLbError } from '../errors.js';
import { startLabBalancer, type LabBalancer } from './balancer.js';
import { labOfTopology, type LoadedMachineTopology } from './export.js';
import type { HostRunner } from './hosts.js';
import type { Lab } from './lab.js';
import { segmentOf } from './topology.js';

export type XdpModeChoice = 'auto' | 'native' | 'generic';

export interface MachineLabOptions {
  /** reaches the LB host: LocalRunner on the LB machine itself, NetnsRunner in the namespace lab */
  runner: HostRunner;
  /** network namespace to attach in: `/proc/self/ns/net` on a machine, `<prefix>lb` in the namespace lab */
  lbNs: string;
  /** how long the neighbours may take to answer (machines still booting). Default 120 s. */
  waitMs?: number;
  log?: (line: string) => void;
}

export const ZERO_MAC = '00:00:00:00:00:00';
const MAC_RE = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface IpAddrJson {
  ifname?: string;
  address?: string;
}
interface IpNeighJson {
  dst?: string;
  lladdr?: string;
  state?: string[];
}

/**
 * Learn what the balancer needs from the LB host (its interface, its MAC, its gateway's and its
 * segment's backends' MACs) and describe the lab as a `Lab`. Backends on other segments get the
 * zero MAC: they are reached through the router (ipip), never by MAC.
 */
export async function resolveMachineLab(loaded: LoadedMachineTopology, opts: MachineLabOptions): Promise<Lab> {
  const { topology: topo } = loaded;
  const { runner } = opts;
  const log = opts.log ?? ((): void => {});
  const lbHost = topo.hosts.find((h) => h.role === 'lb');
  if (!lbHost) throw new LbError('ERR_LB_LAB', 'the lab topology has no lb');
  const lb = lbHost.name;
  const seg = segmentOf(topo, lbHost.segment);

  const addrs = JSON.parse((await runner.exec(lb, ['ip', '-j', '-4', 'addr', 'show', 'to', `${lbHost.addr}/32`], { code: 'ERR_LB_LAB' })).stdout) as IpAddrJson[];
  const ifname = addrs[0]?.ifname;
  if (!ifname) {
    throw new LbError('ERR_LB_LAB', `no interface of ${lb} holds ${lbHost.addr}`, {
      hint: 'the machine must have its lab address before the balancer starts (vagrant configures it at boot)',
    });
  }
  const link = JSON.parse((await runner.exec(lb, ['ip', '-j', 'link', 'show', 'dev', ifname], { code: 'ERR_LB_LAB' })).stdout) as IpAddrJson[];
  const lbMac = link[0]?.address ?? '';
  if (!MAC_RE.test(lbMac)) throw new LbError('ERR_LB_LAB', `no MAC address for ${ifname} on ${lb}`);

  // Neighbours by MAC: the gateway (for bpf_fib_lookup) and the backends on the LB's own segment.
  const want = new Map<string, string>([[seg.gateway, 'gateway']]);
  for (const h of topo.hosts) if (h.role === 'backend' && h.segment === lbHost.segment) want.set(h.addr, h.name);
  const found = new Map<string, string>();
  const deadline = Date.now() + (opts.waitMs ?? 120_000);
  for (let round = 0; ; round++) {
    const missing = [...want.keys()].filter((a) => !found.has(a));
    if (missing.length === 0) break;
    if (round > 0 && Date.now() > deadline) {
      throw new LbError('ERR_LB_LAB', `${lb} got no ARP answer from ${missing.map((a) => `${want.get(a)} (${a})`).join(', ')}`, {
        hint: 'are those machines up, with their lab address? (vagrant status)',
      });
    }
    if (round > 0) {
      if (round === 1) log(`waiting for ${missing.map((a) => want.get(a)).join(', ')} to answer ARP`);
      await sleep(1000);
    }
    await Promise.all(missing.map((a) => runner.exec(lb, ['ping', '-n', '-q', '-c', '1', '-W', '1', a], { allowFail: true, timeoutMs: 5000 })));
    const neigh = JSON.parse((await runner.exec(lb, ['ip', '-j', '-4', 'neigh', 'show', 'dev', ifname], { code: 'ERR_LB_LAB' })).stdout) as IpNeighJson[];
    for (const n of neigh) {
      const state = n.state ?? [];
      if (n.dst && want.has(n.dst) && n.lladdr && MAC_RE.test(n.lladdr) && !state.includes('FAILED') && !state.includes('INCOMPLETE')) {
        found.set(n.dst, n.lladdr);
      }
    }
  }
  const gatewayMac = found.get(seg.gateway) ?? '';
  // As labUp(): a permanent entry, so bpf_fib_lookup() never answers NO_NEIGH for routed backends.
  await runner.exec(lb, ['ip', 'neigh', 'replace', seg.gateway, 'lladdr', gatewayMac, 'dev', ifname, 'nud', 'permanent'], { code: 'ERR_LB_LAB' });

  const macs: Record<string, string> = {};
  for (const h of topo.hosts) if (h.role === 'backend') macs[h.name] = found.get(h.addr) ?? ZERO_MAC;
  return labOfTopology(topo, { lbNs: opts.lbNs, lbIfname: ifname, lbMac, gatewayMac, macs });
}

export interface MachineBalancer {
  lab: Lab;
  balancer: LabBalancer;
  xdpMode: 'native' | 'generic';
}

/** resolveMachineLab(), then balancer.ts's startLabBalancer(); `auto` tries native XDP, then generic. */
export async function startMachineBalancer(
  loaded: LoadedMachineTopology,
  opts: MachineLabOptions & { xdpMode?: XdpModeChoice },
): Promise<MachineBalancer> {
  const lab = await resolveMachineLab(loaded, opts);
  const choice = opts.xdpMode ?? 'auto';
  const modes: ('native' | 'generic')[] = choice === 'auto' ? ['native', 'generic'] : [choice];
  for (const [i, mode] of modes.entries()) {
    try {
      return { lab, balancer: startLabBalancer(lab, { xdpMode: mode }), xdpMode: mode };
    } catch (e) {
      if (i === modes.length - 1 || !isLbError(e) || e.code !== 'ERR_LB_BPF_ATTACH') throw e;
      opts.log?.(`native XDP on ${lab.lb.ifname} refused (${e.message}); falling back to generic`);
    }
  }
  throw new LbError('ERR_LB_USAGE', `invalid XDP mode ${choice}`);
}
