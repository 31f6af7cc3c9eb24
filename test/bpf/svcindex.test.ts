/**
 * The service index (bpf/lib/svcindex.h, src/dataplane/svcindex.ts): the data path finds services
 * through it, keys that fold to one slot still work through the hash map, and a removed or
 * replaced service never answers from the index.
 */
import t from 'tap';
import { testRun } from '../../src/bpf/index.js';
import { loadBalancer, type LoadedBalancer } from '../../src/dataplane/loader.js';
import type { DesiredService } from '../../src/dataplane/apply.js';
import { IPPROTO } from '../../src/dataplane/abi.js';
import { keyWord, slotOf, SVC_INDEX_SLOTS, type ServiceIndex } from '../../src/dataplane/svcindex.js';
import { packet } from '../../src/packet/index.js';

const backends = [1, 2].map((i) => ({ address: `10.1.0.${i}`, mac: `02:00:00:00:01:0${i}`, weight: 1 }));
let lb: LoadedBalancer;
let index: ServiceIndex;

t.before(() => {
  lb = loadBalancer({ ringSize: 251, maxServices: 16, flowBuckets: 1024 });
  index = lb.serviceIndex;
});
t.teardown(() => lb?.close());

function l2(vip: string, port: number): DesiredService {
  return { vip, port, proto: 'tcp', mode: 'l2dsr', backends };
}

function verdictOf(vip: string, port: number): string {
  const before = lb.reasons();
  testRun(lb.prog, { data: packet({ eth: { src: '02:00:00:00:00:01', dst: '02:00:00:00:00:02' }, ipv4: { src: '192.0.2.1', dst: vip }, tcp: { srcPort: 40000, dstPort: port, flags: ['SYN'] } }) });
  const after = lb.reasons();
  return Object.keys(after).find((k) => (after[k] ?? 0n) !== (before[k] ?? 0n)) ?? 'none';
}

/** Two ports of a VIP whose keys fold to the same slot. */
function collidingPorts(vip: string): [number, number] {
  const seen = new Map<number, number>();
  for (let port = 1; port < 65536; port++) {
    const s = slotOf(keyWord({ addr: vip, port, proto: IPPROTO.tcp })!);
    const other = seen.get(s);
    if (other !== undefined) return [other, port];
    seen.set(s, port);
  }
  throw new Error('no collision in 65535 ports');
}

t.test('every service is indexed with its id and value', async (t) => {
  lb.dataplane.apply([l2('10.0.0.1', 80), l2('10.0.0.1', 443), { ...l2('10.0.0.2', 53), proto: 'udp' }]);
  for (const [vip, port, proto] of [['10.0.0.1', 80, 'tcp'], ['10.0.0.1', 443, 'tcp'], ['10.0.0.2', 53, 'udp']] as const) {
    const id = lb.dataplane.serviceId(vip, port, proto);
    t.equal(index.lookup({ addr: vip, port, proto: IPPROTO[proto] }), id, `${vip}:${port}/${proto} -> id ${id}`);
    t.equal(index.value(id!).mode, 1, `${vip}:${port}/${proto}: value in svc_by_id`);
  }
  t.equal(index.lookup({ addr: '10.0.0.2', port: 53, proto: IPPROTO.tcp }), undefined, 'the protocol is part of the key');
});

t.test('the data path reads the index', async (t) => {
  lb.dataplane.apply([l2('10.0.0.1', 80)]);
  t.equal(verdictOf('10.0.0.1', 80), 'TX_L2DSR', 'forwarded');
  // Give the indexed copy a mode the program does not know; the hash map still says l2dsr.
  const id = lb.dataplane.serviceId('10.0.0.1', 80, 'tcp')!;
  const mem = lb.maps.svc_by_id.mmap();
  const saved = mem.readUInt8(id * 8 + 4);
  mem.writeUInt8(9, id * 8 + 4);
  t.equal(verdictOf('10.0.0.1', 80), 'PASS_NOT_MODE', 'the verdict follows the index copy, so it was used');
  mem.writeUInt8(saved, id * 8 + 4);
  t.equal(verdictOf('10.0.0.1', 80), 'TX_L2DSR', 'and back');
});

t.test('a slot whose word does not match the key is ignored', async (t) => {
  lb.dataplane.apply([l2('10.0.0.1', 80)]);
  const kw = keyWord({ addr: '10.0.0.1', port: 80, proto: IPPROTO.tcp })!;
  const slots = lb.maps.svc_index.mmap();
  const slot = slotOf(kw);
  const saved = slots.readBigUInt64LE(slot * 8);
  slots.writeBigUInt64LE(kw ^ (1n << 40n), slot * 8); // another VIP, same slot
  t.equal(verdictOf('10.0.0.1', 80), 'TX_L2DSR', 'falls back to the hash map');
  slots.writeBigUInt64LE(saved, slot * 8);
});

t.test('keys that share a slot: one indexed, both forwarded', async (t) => {
  const [p1, p2] = collidingPorts('10.0.0.7');
  lb.dataplane.apply([l2('10.0.0.7', p1), l2('10.0.0.7', p2)]);
  const i1 = index.lookup({ addr: '10.0.0.7', port: p1, proto: IPPROTO.tcp });
  const i2 = index.lookup({ addr: '10.0.0.7', port: p2, proto: IPPROTO.tcp });
  t.ok((i1 === undefined) !== (i2 === undefined), `exactly one of ports ${p1}, ${p2} is indexed`);
  t.equal(verdictOf('10.0.0.7', p1), 'TX_L2DSR', `port ${p1} forwarded`);
  t.equal(verdictOf('10.0.0.7', p2), 'TX_L2DSR', `port ${p2} forwarded`);
  // The indexed one leaves: the other takes the slot.
  const stay = i1 === undefined ? p1 : p2;
  lb.dataplane.apply([l2('10.0.0.7', stay)]);
  t.equal(index.lookup({ addr: '10.0.0.7', port: stay, proto: IPPROTO.tcp }), lb.dataplane.serviceId('10.0.0.7', stay, 'tcp'), 'the remaining key is indexed now');
});

t.test('removed and replaced services leave no slot behind', async (t) => {
  lb.dataplane.apply([l2('10.0.0.1', 80), l2('10.0.0.3', 80)]);
  const old = lb.dataplane.serviceId('10.0.0.3', 80, 'tcp')!;
  // 10.0.0.3 goes and 10.0.0.4 comes in the same apply: it may get the freed id.
  lb.dataplane.apply([l2('10.0.0.1', 80), { ...l2('10.0.0.4', 80), mode: 'ipip' }]);
  t.equal(index.lookup({ addr: '10.0.0.3', port: 80, proto: IPPROTO.tcp }), undefined, 'removed key not indexed');
  t.equal(verdictOf('10.0.0.3', 80), 'PASS_NOT_VIP', 'removed service passes as not a VIP');
  const id = lb.dataplane.serviceId('10.0.0.4', 80, 'tcp')!;
  t.equal(index.lookup({ addr: '10.0.0.4', port: 80, proto: IPPROTO.tcp }), id, `new key indexed (id ${id}, old id was ${old})`);
  t.equal(index.value(id).mode, 2, 'with its own value');
  let used = 0;
  const slots = lb.maps.svc_index.mmap();
  for (let s = 0; s < SVC_INDEX_SLOTS; s++) if (slots.readBigUInt64LE(s * 8) !== 0n) used++;
  t.equal(used, 2, 'exactly the two services hold slots');
});
