/**
 * Runs the balancer in a lab: loads it, attaches it to the LB's interfaces and gives every lab
 * service its backends (l2dsr: the L2 segment's, by MAC; ipip and full NAT: the routed segment's;
 * nat: the nat segment's, behind the LB). The end-to-end tests and the demo both use this, so the
 * lab's wiring exists once.
 *
 * NAT needs the program on the nat segment's interface too (the backends' replies arrive there),
 * both interfaces in tx_ports (a client's packet leaves by eth1, a reply by eth0: XDP_REDIRECT),
 * the LB's own addresses (IPv4 and IPv6) as the full-NAT sources, and the connection-table sweeper.
 *
 * IPv6: a service's backends are addressed in the family topology.backendFamilyOf() gives (an
 * IPv6 VIP's by their IPv6 twins; 10.200.100.5's too: 4in6), tunnels to IPv6 backends leave from the
 * LB's IPv6 address (ctl.src6).
 */
import { attachXdp, detachXdp, ifIndex, inNetns } from '../bpf/index.js';
import type { DesiredService } from '../dataplane/apply.js';
import { loadBalancer, type LoadedBalancer } from '../dataplane/loader.js';
import type { NatSettings, SweepReport } from '../dataplane/nat.js';
import type { Lab } from './lab.js';
import { backendFamilyOf, serviceSegment } from './topology.js';

export interface LabBalancer {
  lb: LoadedBalancer;
  services: DesiredService[];
  /** the interfaces (in the LB's namespace) the program is attached to */
  interfaces: string[];
  stop(): void;
}

export interface LabBalancerOptions {
  xdpMode?: 'native' | 'generic';
  /** NAT settings over the lab's (source: the LB's address) */
  nat?: Partial<Omit<NatSettings, 'timeouts'>> & { timeouts?: Partial<NatSettings['timeouts']> };
  /** sweep the NAT table this often; 0: never. Default 2000. */
  sweepIntervalMs?: number;
  onSweep?: (r: SweepReport | Error) => void;
}

/** The desired state for a lab: one service per lab service, with the segment's backends. */
export function labServices(lab: Lab): DesiredService[] {
  const out: DesiredService[] = [];
  for (const s of lab.services) {
    const segment = serviceSegment(s);
    const v6 = backendFamilyOf(s) === 6;
    out.push({
      vip: s.vip,
      port: s.port,
      proto: s.proto,
      mode: s.mode,
      ...(s.fullNat ? { fullNat: true } : {}),
      backends: lab.backends
        .filter((b) => b.segment === segment)
        .map((b) => ({ address: v6 ? b.addr6 : b.addr, mac: b.mac, weight: 1, ...(s.backendPort !== undefined ? { port: s.backendPort } : {}) })),
    });
  }
  return out;
}

export function startLabBalancer(lab: Lab, opts: LabBalancerOptions = {}): LabBalancer {
  const lb = loadBalancer({ maxServices: 16, flowBuckets: 1 << 14, natEntries: 1 << 14, nat6Entries: 1 << 14 });
  const services = labServices(lab);
  const mode = opts.xdpMode ?? 'native';
  const interfaces = [lab.lb.ifname, ...(lab.lb.natIf ? [lab.lb.natIf.ifname] : [])];
  const attached: string[] = [];
  let sweeper: { stop(): void } | undefined;
  const detach = (): void => {
    for (const i of attached.splice(0)) {
      try {
        inNetns(lab.lb.ns, () => detachXdp(i, mode));
      } catch {
        // the namespace may already be gone: the program went with it
      }
    }
  };
  try {
    // Full NAT's sources: the LB's address of each family (NAT66 takes the IPv6 one).
    lb.nat.configure({ sources: [lab.lb.addr, lab.lb.addr6], ...opts.nat });
    // The devmap takes ifindexes of the namespace its writer is in.
    inNetns(lab.lb.ns, () => lb.nat.setTxPorts(interfaces.map((i) => ifIndex(i))));
    lb.dataplane.apply(services);
    lb.dataplane.setCtl({ src4: lab.lb.addr, src6: lab.lb.addr6, clock: 1 });
    for (const i of interfaces) {
      inNetns(lab.lb.ns, () => attachXdp(i, lb.prog, { mode, replace: true }));
      attached.push(i);
    }
    const every = opts.sweepIntervalMs ?? 2000;
    if (every > 0) sweeper = lb.nat.startSweeper(every, opts.onSweep);
  } catch (e) {
    detach();
    lb.close();
    throw e;
  }
  return {
    lb,
    services,
    interfaces,
    stop() {
      sweeper?.stop();
      detach();
      lb.close();
    },
  };
}
