/**
 * The IPIP next-hop cache (bpf/lib/nexthop.h) against the behaviour of a bare bpf_fib_lookup():
 * the same frames, the route's MTU still enforced on cached answers, and a neighbour change
 * followed within the cache's lifetime (one second).
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
