/**
 * The IPIP next-hop cache (bpf/lib/nexthop.h) against the behaviour of a bare bpf_fib_lookup():
 * the same frames, the route's MTU still enforced on cached answers, a neighbour change followed
 * within the cache's lifetime (one second), and inside that lifetime the cached answer used.
 * (NAT's use of the cache: test/bpf/nat.test.ts and nat6.test.ts.)
 */
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { loadBalancer, type LoadedBalancer } from '../../src/dataplane/loader.js';
import { packet, parsePacket } from '../../src/packet/index.js';
import { FixtureNet, runFixture } from './fixture.js';

const TTL_MS = 1000;
const CLIENT = '192.0.2.10';
const ROUTER_MAC = '02:cc:00:00:00:01';
const VIP = '10.0.0.2';
const BACKEND = '10.2.9.9';

const net = new FixtureNet();
let lb: LoadedBalancer;
const ip = (...a: string[]) => execFileSync('ip', ['-n', net.ns, ...a], { stdio: 'pipe' });

t.before(() => {
  net.up();
  lb = loadBalancer({ ringSize: 251, maxServices: 4, flowBuckets: 1024 });
  lb.dataplane.apply([{ vip: VIP, port: 80, proto: 'tcp', mode: 'ipip', backends: [{ address: BACKEND, weight: 1 }] }]);
  lb.dataplane.setCtl({ src4: net.addr, clock: 1 });
});
t.teardown(() => {
  try {
    lb?.close();
  } finally {
    net.down();
  }
});

function syn(clientPort: number, payload = 0): Buffer {
  return packet({
    eth: { src: ROUTER_MAC, dst: net.mac },
    ipv4: { src: CLIENT, dst: VIP, flags: ['DF'] },
    tcp: { srcPort: clientPort, dstPort: 80, flags: ['SYN'], payload: payload ? Buffer.alloc(payload, 0x61) : undefined },
  });
}

t.test('repeated packets to one backend: every one forwarded with the kernel next hop', async (t) => {
  for (let i = 0; i < 5; i++) {
    const out = runFixture(t, lb, net, { name: `packet ${i}`, in: syn(42000 + i), verdict: 'TX', reason: 'TX_IPIP' });
    const p = parsePacket(out);
    t.equal(p.eth?.dst, net.gwMac, `packet ${i}: to the gateway's MAC`);
    t.equal(p.ipv4?.dst, BACKEND, `packet ${i}: outer destination is the backend`);
  }
});

t.test('the route MTU holds for cached answers too', async (t) => {
  ip('route', 'replace', `${BACKEND}/32`, 'via', net.gw, 'mtu', 'lock', '600');
  await sleep(TTL_MS + 200); // answers cached before the route changed have expired
  // 14 + 20 + 20 + payload: outer total length = inner + 20
  runFixture(t, lb, net, { name: 'outer 560 bytes', in: syn(43000, 500), verdict: 'TX', reason: 'TX_IPIP' });
  runFixture(t, lb, net, { name: 'outer 620 bytes', in: syn(43001, 560), verdict: 'DROP', reason: 'DROP_IPIP_MTU' });
  runFixture(t, lb, net, { name: 'outer 560 bytes again', in: syn(43002, 500), verdict: 'TX', reason: 'TX_IPIP' });
  runFixture(t, lb, net, { name: 'outer 620 bytes again', in: syn(43003, 560), verdict: 'DROP', reason: 'DROP_IPIP_MTU' });
  ip('route', 'del', `${BACKEND}/32`);
});

t.test('a changed neighbour is followed within the cache lifetime', async (t) => {
  runFixture(t, lb, net, { name: 'before', in: syn(44000), verdict: 'TX', reason: 'TX_IPIP' });
  const moved = '02:aa:00:00:00:99';
  ip('neigh', 'replace', net.gw, 'lladdr', moved, 'dev', net.ifname, 'nud', 'permanent');
  try {
    await sleep(TTL_MS + 200);
    const out = runFixture(t, lb, net, { name: 'after', in: syn(44001), verdict: 'TX', reason: 'TX_IPIP' });
    t.equal(parsePacket(out).eth?.dst, moved, 'to the new MAC');
  } finally {
    ip('neigh', 'replace', net.gw, 'lladdr', net.gwMac, 'dev', net.ifname, 'nud', 'permanent');
  }
});

t.test('a cached answer is used within its lifetime; ECN bits share it, another DSCP does not', async (t) => {
  const moved = '02:aa:00:00:00:98';
  const tosSyn = (clientPort: number, tos: number) =>
    packet({
      eth: { src: ROUTER_MAC, dst: net.mac },
      ipv4: { src: CLIENT, dst: VIP, flags: ['DF'], tos },
      tcp: { srcPort: clientPort, dstPort: 80, flags: ['SYN'] },
    });
  const dmac = (name: string, pkt: Buffer) => parsePacket(runFixture(t, lb, net, { name, in: pkt, verdict: 'TX', reason: 'TX_IPIP' })).eth?.dst;
  // The cache is per CPU: BPF_PROG_TEST_RUN runs XDP on the calling thread's CPU, and this thread
  // is the process's main one (tid = pid), so pin it for the test.
  const affinity = execFileSync('taskset', ['-pc', String(process.pid)], { encoding: 'utf8' }).trim().split(': ').pop()!;
  try {
    execFileSync('taskset', ['-pc', affinity.split(/[,-]/)[0]!, String(process.pid)], { stdio: 'pipe' });
    await sleep(TTL_MS + 200); // what the tests before cached has expired
    t.equal(dmac('not-ECT', tosSyn(45000, 0x00)), net.gwMac, 'first packet: the kernel answer');
    ip('neigh', 'replace', net.gw, 'lladdr', moved, 'dev', net.ifname, 'nud', 'permanent');
    t.equal(dmac('ECT(0), after the neighbour moved', tosSyn(45001, 0x02)), net.gwMac, 'the cached answer, ECN bits aside');
    t.equal(dmac('CE', tosSyn(45002, 0x03)), net.gwMac, 'still the cached answer');
    t.equal(dmac('DSCP 10', tosSyn(45003, 0x28)), moved, 'another DSCP is another lookup: the new MAC');
  } finally {
    ip('neigh', 'replace', net.gw, 'lladdr', net.gwMac, 'dev', net.ifname, 'nud', 'permanent');
    execFileSync('taskset', ['-pc', affinity, String(process.pid)], { stdio: 'pipe' });
  }
});
