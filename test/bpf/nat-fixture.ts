/**
 * What the NAT and NAT66 tests share (test/bpf/nat.test.ts, nat6.test.ts): the fixture namespace
 * with a second interface and routes back to the clients, a balancer with NAT on, and the
 * predictions a test checks the data path against: the ring's backend for a flow, its connection,
 * its counters. The packets themselves are per family and stay in the test files.
 */
import { execFileSync } from 'node:child_process';
import { ifIndex, inNetns } from '../../src/bpf/index.js';
import { loadBalancer, type LoadedBalancer } from '../../src/dataplane/loader.js';
import type { DesiredService } from '../../src/dataplane/apply.js';
import { FixtureBench, type Flow } from './fixture.js';

export type { Flow };

export const RING = 251;
export const SEED = 0x5eed;
export const PORT_MIN = 20000;
export const PORT_MAX = 29999;

export interface Hdr {
  src: string;
  sport: number;
  dst: string;
  dport: number;
}

/** A second interface of the fixture namespace, with a gateway of its own for the prefix `net`. */
export interface Out2 {
  ifname: string;
  mac: string;
  addr: string;
  gw: string;
  gwMac: string;
  net: string;
}

export interface NatBenchOptions {
  services: DesiredService[];
  /** full-NAT source addresses */
  sources: string[];
  /** the client of a Flow that names none */
  client: string;
  out2: Out2;
  /** client prefixes, routed through the namespace's gateway of their family so replies have a next hop */
  clientNets: string[];
  nat6Entries?: number;
}

/** The namespace and balancer of a NAT test file, and the NAT helpers beside FixtureBench's. */
export class NatBench extends FixtureBench {
  out2Index = 0;

  constructor(private readonly o: NatBenchOptions) {
    super(o.client, RING, SEED);
  }

  ipn = (...args: string[]): void => {
    execFileSync('ip', ['-n', this.net.ns, ...args], { stdio: 'pipe' });
  };

  up(): LoadedBalancer {
    const { net, ipn, o } = this;
    const v6 = (a: string) => a.includes(':');
    return this.start(
      () => {
        for (const c of o.clientNets) ipn(...(v6(c) ? ['-6', 'route', 'add', c, 'via', net.gw6] : ['route', 'add', c, 'via', net.gw]));
        const fam = v6(o.out2.addr) ? ['-6'] : [];
        ipn('link', 'add', o.out2.ifname, 'type', 'veth', 'peer', 'name', 'veth3');
        ipn('link', 'set', o.out2.ifname, 'address', o.out2.mac);
        ipn('link', 'set', o.out2.ifname, 'up');
        ipn('link', 'set', 'veth3', 'up');
        // nodad: the address is usable at once (DAD would hold it tentative for a second).
        ipn(...fam, 'addr', 'add', ...(v6(o.out2.addr) ? [`${o.out2.addr}/64`, 'dev', o.out2.ifname, 'nodad'] : [`${o.out2.addr}/24`, 'dev', o.out2.ifname]));
        ipn(...fam, 'neigh', 'replace', o.out2.gw, 'lladdr', o.out2.gwMac, 'dev', o.out2.ifname, 'nud', 'permanent');
        ipn(...fam, 'route', 'add', o.out2.net, 'via', o.out2.gw);
        this.out2Index = inNetns(net.ns, () => ifIndex(o.out2.ifname));
        return loadBalancer({ ringSize: RING, maxServices: 16, flowBuckets: 1024, seed: SEED, natEntries: 4096, ...(o.nat6Entries ? { nat6Entries: o.nat6Entries } : {}) });
      },
      (lb) => {
        lb.nat.configure({ sources: o.sources, portMin: PORT_MIN, portMax: PORT_MAX });
        // A devmap resolves ifindexes in the caller's namespace.
        inNetns(net.ns, () => lb.nat.setTxPorts([net.ifindex, this.out2Index]));
        lb.dataplane.apply(o.services);
        lb.dataplane.setCtl({ src4: net.addr, clock: 1 });
      },
    );
  }

  /** The backend (address and port) the ring gives a new flow, from the control plane's ring and the TypeScript flow hash. */
  ringBackend = (f: Flow): { address: string; port: number; id: number } => {
    const { lb, svcId } = this;
    const svc = this.o.services.find((s) => s.vip === f.vip && s.port === f.vipPort && s.proto === (f.proto ?? 'tcp'));
    const want = this.ringSlot(f);
    for (const b of svc?.backends ?? []) {
      if (lb.dataplane.backendId(svcId(f), b.address, b.port ?? 0) === want) return { address: b.address, port: b.port || f.vipPort, id: want };
    }
    throw new Error(`ring slot holds unknown backend id ${want}`);
  };

  connOf = (clientPort: number, vip: string) => {
    return this.lb.nat.connections().find((c) => c.clientPort === clientPort && c.vip === vip);
  };
}
