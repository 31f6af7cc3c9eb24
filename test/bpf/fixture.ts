/**
 * Fixture runner for the balancer, in the spirit of Katran's tester: each fixture is an input
 * packet, the expected verdict, the expected output bytes and the verdict counter that must move.
 *
 * Packets run through the real program with BPF_PROG_TEST_RUN inside a namespace of our own
 * (FixtureNet), whose routes and neighbours make bpf_fib_lookup answer the same way everywhere.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Test } from 'tap';
import { inNetns, ifIndex, testRun } from '../../src/bpf/index.js';
import type { LoadedBalancer } from '../../src/dataplane/loader.js';
import { lbReduce, ringHash, type FlowTuple } from '../../src/dataplane/hash.js';
import { sumCounters, u32Key } from '../../src/dataplane/abi.js';
import { hexDiff } from '../../src/packet/index.js';

export const XDP = { ABORTED: 0, DROP: 1, PASS: 2, TX: 3, REDIRECT: 4 } as const;
export type Verdict = keyof typeof XDP;

export interface Fixture {
  name: string;
  in: Buffer;
  verdict: Verdict;
  /** the reason counter (LB_R_ without prefix) that must move by exactly one */
  reason: string;
  /** exact expected output; 'same' = the input untouched */
  out?: Buffer | 'same';
}

/** The namespace the fixtures run in: one veth, a gateway with a known MAC, a route without one. */
export class FixtureNet {
  readonly ns = `xfx-${randomBytes(3).toString('hex')}`;
  readonly ifname = 'veth0';
  readonly addr = '10.9.0.1';
  readonly gw = '10.9.0.2';
  readonly gwMac = '02:aa:00:00:00:02';
  /** routed through gw (resolved neighbour) */
  readonly routedNet = '10.2.0.0/16';
  /** routed through a gateway with no neighbour entry */
  readonly unresolvedNet = '10.3.0.0/16';
  /** the same three for IPv6: our address, the resolved gateway, and the two routed prefixes */
  readonly addr6 = 'fd09::1';
  readonly gw6 = 'fd09::2';
  readonly routedNet6 = 'fd02::/32';
  readonly unresolvedNet6 = 'fd03::/32';
  mac = '';
  ifindex = 0;

  up(): void {
    const ip = (...a: string[]) => execFileSync('ip', ['-n', this.ns, ...a], { stdio: 'pipe' });
    execFileSync('ip', ['netns', 'add', this.ns]);
    // bpf_fib_lookup answers only where forwarding is on, as on a real LB.
    execFileSync('ip', ['netns', 'exec', this.ns, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
    ip('link', 'add', 'veth0', 'type', 'veth', 'peer', 'name', 'veth1');
    ip('link', 'set', 'veth0', 'address', '02:aa:00:00:00:01');
    ip('link', 'set', 'veth0', 'up');
    ip('link', 'set', 'veth1', 'up');
    ip('addr', 'add', `${this.addr}/24`, 'dev', 'veth0');
    ip('neigh', 'replace', this.gw, 'lladdr', this.gwMac, 'dev', 'veth0', 'nud', 'permanent');
    ip('route', 'add', this.routedNet, 'via', this.gw);
    ip('route', 'add', this.unresolvedNet, 'via', '10.9.0.3');
    // nodad: the address is usable at once (DAD would hold it tentative for a second).
    ip('-6', 'addr', 'add', `${this.addr6}/64`, 'dev', 'veth0', 'nodad');
    ip('-6', 'neigh', 'replace', this.gw6, 'lladdr', this.gwMac, 'dev', 'veth0', 'nud', 'permanent');
    ip('-6', 'route', 'add', this.routedNet6, 'via', this.gw6);
    ip('-6', 'route', 'add', this.unresolvedNet6, 'via', 'fd09::3');
    this.mac = '02:aa:00:00:00:01';
    this.ifindex = inNetns(this.ns, () => ifIndex(this.ifname));
  }

  down(): void {
    try {
      execFileSync('ip', ['netns', 'del', this.ns], { stdio: 'pipe' });
    } catch {
      // already gone
    }
  }

  /** struct xdp_md with ingress_ifindex set, so bpf_fib_lookup has an interface to start from. */
  ctx(): Buffer {
    const b = Buffer.alloc(24);
    b.writeUInt32LE(this.ifindex, 12);
    return b;
  }

  run(lb: LoadedBalancer, data: Buffer): { verdict: number; out: Buffer } {
    return inNetns(this.ns, () => {
      const r = testRun(lb.prog, { data, ctxIn: this.ctx() });
      return { verdict: r.retval, out: r.data };
    });
  }
}

export function runFixture(t: Test, lb: LoadedBalancer, net: FixtureNet, f: Fixture): Buffer {
  const before = lb.reasons();
  const { verdict, out } = net.run(lb, f.in);
  const after = lb.reasons();
  t.equal(verdict, XDP[f.verdict], `${f.name}: verdict ${f.verdict}`);
  const moved = Object.keys(after).filter((k) => (after[k] ?? 0n) !== (before[k] ?? 0n));
  t.ok(
    (after[f.reason] ?? 0n) - (before[f.reason] ?? 0n) === 1n,
    `${f.name}: reason ${f.reason} counted once (moved: ${moved.join(', ') || 'none'})`,
  );
  if (f.out !== undefined) {
    const want = f.out === 'same' ? f.in : f.out;
    if (!out.equals(want)) t.fail(`${f.name}: output bytes differ\n${hexDiff(want, out)}`);
    else t.pass(`${f.name}: output bytes as expected`);
  }
  return out;
}

/**
 * A test file's set-up: brings `net` up, then `load` builds the balancer (and whatever the namespace
 * needs first) and `configure` fills its maps. A throw in t.before ends the process before any
 * teardown, so a failed set-up takes down what it made itself.
 */
export function setUpBalancer(net: FixtureNet, load: () => LoadedBalancer, configure: (lb: LoadedBalancer) => void): LoadedBalancer {
  net.up();
  let lb: LoadedBalancer | undefined;
  try {
    lb = load();
    configure(lb);
    return lb;
  } catch (e) {
    lb?.close();
    net.down();
    throw e;
  }
}

/** The teardown that goes with setUpBalancer(): the namespace goes even if closing the balancer throws. */
export function tearDownBalancer(net: FixtureNet, lb: LoadedBalancer | undefined): void {
  try {
    lb?.close();
  } finally {
    net.down();
  }
}

/** A client's flow to a service; the client defaults to the bench's. */
export interface Flow {
  vip: string;
  vipPort: number;
  clientPort: number;
  client?: string;
  proto?: 'tcp' | 'udp';
}

/**
 * A test file's namespace and balancer, with the helpers that predict the balancer's choices from
 * the control plane's ring. The helpers are arrow functions, so a test file can take them apart:
 * `const { net, tuple, svcId } = bench`.
 */
export class FixtureBench {
  readonly net = new FixtureNet();
  lb!: LoadedBalancer;

  constructor(
    readonly client: string,
    readonly ringSize: number,
    readonly seed: number,
  ) {}

  start(load: () => LoadedBalancer, configure: (lb: LoadedBalancer) => void): LoadedBalancer {
    this.lb = setUpBalancer(this.net, load, configure);
    return this.lb;
  }

  down(): void {
    tearDownBalancer(this.net, this.lb);
  }

  tuple = (f: Flow): FlowTuple => {
    return { client: f.client ?? this.client, clientPort: f.clientPort, vip: f.vip, vipPort: f.vipPort, proto: f.proto === 'udp' ? 17 : 6 };
  };

  svcId = (f: Flow): number => {
    const id = this.lb.dataplane.serviceId(f.vip, f.vipPort, f.proto ?? 'tcp');
    if (id === undefined) throw new Error(`no service ${f.vip}:${f.vipPort}`);
    return id;
  };

  /** The backend id the ring gives a new flow, computed in TypeScript from the control plane's ring. */
  ringSlot = (f: Flow, srcOnly = false): number => {
    return this.lb.dataplane.ring(this.svcId(f))![lbReduce(ringHash(this.tuple(f), this.seed, srcOnly), this.ringSize)]!;
  };
  /** The address of the pool's backend that has id `backendId` in the flow's service. */
  addrOf = (f: Flow, backendId: number, pool: { address: string }[]): string => {
    const hit = pool.find((b) => this.lb.dataplane.backendId(this.svcId(f), b.address) === backendId);
    if (!hit) throw new Error(`backend id ${backendId} not in pool`);
    return hit.address;
  };

  /** The flow's service counters (summed over its backends) and one backend's. */
  stats = (f: Flow, backendId: number) => {
    return {
      svc: this.lb.dataplane.serviceCounters(this.svcId(f)),
      be: sumCounters(this.lb.maps.backend_stats.lookupPerCpu(u32Key(backendId)) ?? []),
    };
  };
}
