/**
 * Runs the balancer in a lab: loads it, attaches it to the LB's interface and gives every lab
 * service its backends (l2dsr: the L2 segment's, by MAC; ipip: the routed segment's). The
 * end-to-end tests and the demo both use this, so the lab's wiring exists once.
 */
import { attachXdp, detachXdp, inNetns } from '../bpf/index.js';
import type { DesiredService } from '../dataplane/apply.js';
import { loadBalancer, type LoadedBalancer } from '../dataplane/loader.js';
import type { Lab } from './lab.js';

export interface LabBalancer {
  lb: LoadedBalancer;
  services: DesiredService[];
  stop(): void;
}

/** The desired state for a lab: one service per lab service, with the segment's backends. */
export function labServices(lab: Lab): DesiredService[] {
  const out: DesiredService[] = [];
  for (const s of lab.services) {
    if (s.mode !== 'l2dsr' && s.mode !== 'ipip') continue; // nat: not in this data path yet
    const segment = s.mode === 'l2dsr' ? 'l2' : 'routed';
    out.push({
      vip: s.vip,
      port: s.port,
      proto: s.proto,
      mode: s.mode,
      backends: lab.backends
        .filter((b) => b.segment === segment)
        .map((b) => ({ address: b.addr, mac: b.mac, weight: 1 })),
    });
  }
  return out;
}

export function startLabBalancer(lab: Lab, opts: { xdpMode?: 'native' | 'generic' } = {}): LabBalancer {
  const lb = loadBalancer({ maxServices: 16, flowBuckets: 1 << 14 });
  const services = labServices(lab);
  try {
    lb.dataplane.apply(services);
    lb.dataplane.setCtl({ src4: lab.lb.addr, clock: 1 });
    inNetns(lab.lb.ns, () => attachXdp(lab.lb.ifname, lb.prog, { mode: opts.xdpMode ?? 'native', replace: true }));
  } catch (e) {
    lb.close();
    throw e;
  }
  return {
    lb,
    services,
    stop() {
      try {
        inNetns(lab.lb.ns, () => detachXdp(lab.lb.ifname, opts.xdpMode ?? 'native'));
      } catch {
        // the namespace may already be gone: the program went with it
      }
      lb.close();
    },
  };
}
