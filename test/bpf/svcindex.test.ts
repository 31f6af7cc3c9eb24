/**
 * The service index (bpf/lib/svcindex.h, src/dataplane/svcindex.ts): the data path finds services
 * through it, keys that fold to one slot still work through the hash map, and a removed or
 * replaced service never answers from the index. IPv6 keys the same through their records
 * (svc_index6), plus: a record that names another key (what two VIPs with equal lb_fold6() would
 * leave in one slot) is never trusted.
 */
import t from 'tap';
import { testRun } from '../../src/bpf/index.js';
import { loadBalancer, type LoadedBalancer } from '../../src/dataplane/loader.js';
import type { DesiredService } from '../../src/dataplane/apply.js';
import { IPPROTO, serviceKey, type ServiceKey } from '../../src/dataplane/abi.js';
import { key6, keyWord, REC6_WORDS, slotOf, SVC_INDEX6_SLOTS, SVC_INDEX_SLOTS, type ServiceIndex } from '../../src/dataplane/svcindex.js';
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

const backends6 = [1, 2].map((i) => ({ address: `fd01::${i}`, mac: `02:00:00:00:06:0${i}`, weight: 1 }));

function l2v6(vip: string, port: number): DesiredService {
  return { vip, port, proto: 'tcp', mode: 'l2dsr', backends: backends6 };
}

function verdictOf(vip: string, port: number): string {
  const before = lb.reasons();
  const l3 = vip.includes(':') ? { ipv6: { src: '2001:db8:c::1', dst: vip } } : { ipv4: { src: '192.0.2.1', dst: vip } };
  testRun(lb.prog, { data: packet({ eth: { src: '02:00:00:00:00:01', dst: '02:00:00:00:00:02' }, ...l3, tcp: { srcPort: 40000, dstPort: port, flags: ['SYN'] } }) });
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

// IPv6: records in svc_index6, four words each (word, addr[2], value).

function tcp6(addr: string, port: number): ServiceKey {
  return { addr, port, proto: IPPROTO.tcp };
}

/** The record words at key's slot, and a way to put them back. */
function recordAt(key: ServiceKey): { words: bigint[]; at: number; restore(): void } {
  const mem = lb.maps.svc_index6.mmap();
  const at = key6(key)!.slot * REC6_WORDS * 8;
  const words = [0, 1, 2, 3].map((i) => mem.readBigUInt64LE(at + i * 8));
  return { words, at, restore: () => words.forEach((w, i) => mem.writeBigUInt64LE(w, at + i * 8)) };
}

function writeRecord(at: number, words: readonly bigint[]): void {
  const mem = lb.maps.svc_index6.mmap();
  words.forEach((w, i) => mem.writeBigUInt64LE(w, at + i * 8));
}

/** A value word with another mode: l2dsr (1) becomes 9, which the program does not know. */
function withMode9(value: bigint): bigint {
  return (value & ~(0xffn << 32n)) | (9n << 32n);
}

/** Two ports of an IPv6 VIP whose keys share a record slot. */
function collidingPorts6(vip: string): [number, number] {
  const seen = new Map<number, number>();
  for (let port = 1; port < 65536; port++) {
    const s = key6(tcp6(vip, port))!.slot;
    const other = seen.get(s);
    if (other !== undefined) return [other, port];
    seen.set(s, port);
  }
  throw new Error('no collision in 65535 ports');
}

t.test('IPv6 services are indexed in records with their ids and values', async (t) => {
  lb.dataplane.apply([l2v6('fd00::1', 80), l2v6('fd00::1', 443), { ...l2v6('fd00::2', 53), proto: 'udp', mode: 'ipip' }, l2('10.0.0.1', 80)]);
  for (const [vip, port, proto, mode] of [['fd00::1', 80, 'tcp', 1], ['fd00::1', 443, 'tcp', 1], ['fd00::2', 53, 'udp', 2]] as const) {
    const id = lb.dataplane.serviceId(vip, port, proto);
    t.equal(index.lookup({ addr: vip, port, proto: IPPROTO[proto] }), id, `${vip}:${port}/${proto} -> id ${id}`);
    t.equal(index.value6({ addr: vip, port, proto: IPPROTO[proto] })?.mode, mode, `${vip}:${port}/${proto}: value in its record`);
  }
  t.equal(index.lookup({ addr: 'fd00::2', port: 53, proto: IPPROTO.tcp }), undefined, 'the protocol is part of the key');
  t.equal(index.lookup(tcp6('fd00::1:1', 80)), undefined, 'so is every bit of the address');
  t.equal(index.lookup(tcp6('10.0.0.1', 80)), lb.dataplane.serviceId('10.0.0.1', 80, 'tcp'), 'IPv4 still in its slot');
  const mem = lb.maps.svc_index6.mmap();
  const before = Buffer.from(mem);
  lb.dataplane.apply([l2v6('fd00::1', 80), l2v6('fd00::1', 443), { ...l2v6('fd00::2', 53), proto: 'udp', mode: 'ipip' }, l2('10.0.0.1', 80)]);
  t.ok(before.equals(mem), 'the same state applied twice changes no record byte');
});

t.test('the data path answers IPv6 from the record', async (t) => {
  lb.dataplane.apply([l2v6('fd00::1', 80)]);
  t.equal(verdictOf('fd00::1', 80), 'TX_L2DSR', 'forwarded');
  const rec = recordAt(tcp6('fd00::1', 80));
  writeRecord(rec.at, [rec.words[0]!, rec.words[1]!, rec.words[2]!, withMode9(rec.words[3]!)]);
  try {
    t.equal(verdictOf('fd00::1', 80), 'PASS_NOT_MODE', 'the verdict follows the record, so it was used');
  } finally {
    rec.restore();
  }
  t.equal(verdictOf('fd00::1', 80), 'TX_L2DSR', 'and back');
  // Behind the index's back, the hash map loses the service: the record still answers.
  const k = serviceKey.encode(tcp6('fd00::1', 80));
  const v = lb.maps.services.lookup(k)!;
  lb.maps.services.delete(k);
  try {
    t.equal(verdictOf('fd00::1', 80), 'TX_L2DSR', 'forwarded without the hash map entry');
    rec.words[0] = rec.words[0]! & ~(1n << 15n);
    writeRecord(rec.at, rec.words.slice(0, 1));
    t.equal(verdictOf('fd00::1', 80), 'PASS_NOT_SERVICE', 'an invalid record is not read: the hash map answers');
  } finally {
    lb.maps.services.update(k, v);
    rec.words[0] = rec.words[0]! | (1n << 15n);
    rec.restore();
  }
  t.equal(verdictOf('fd00::1', 80), 'TX_L2DSR', 'and back');
});

t.test('a record that names another key is never trusted', async (t) => {
  // Two VIPs whose lb_fold6() were equal would meet in one slot: the record there holds one of
  // them. Real equal folds are not to be found, so put B's record in A's slot by hand, with a
  // mode that would show if its value were taken.
  lb.dataplane.apply([l2v6('fd00::a', 80), l2v6('fd00::b', 80)]);
  const a = recordAt(tcp6('fd00::a', 80));
  const b = recordAt(tcp6('fd00::b', 80));
  t.equal(b.words[0]! & 0xffffffffn, a.words[0]! & 0xffffffffn, 'same port and protocol in the low word');
  t.not(a.at, b.at, 'two slots');
  try {
    writeRecord(a.at, [a.words[0]!, b.words[1]!, b.words[2]!, withMode9(b.words[3]!)]);
    t.equal(verdictOf('fd00::a', 80), 'TX_L2DSR', "B's record in A's slot: A is found in the hash map");
    for (const [i, bit] of [[1, 0n], [1, 63n], [2, 0n], [2, 63n]] as const) {
      const words = [...a.words];
      words[i] = words[i]! ^ (1n << bit);
      words[3] = withMode9(words[3]!);
      writeRecord(a.at, words);
      t.equal(verdictOf('fd00::a', 80), 'TX_L2DSR', `address word ${i - 1} bit ${bit} differs: the hash map answers`);
    }
    const port = [...a.words];
    port[0] = port[0]! ^ (1n << 16n); // another port
    port[3] = withMode9(port[3]!);
    writeRecord(a.at, port);
    t.equal(verdictOf('fd00::a', 80), 'TX_L2DSR', 'another port: the hash map answers');
    const udp = [...a.words];
    udp[0] = udp[0]! | (1n << 14n);
    udp[3] = withMode9(udp[3]!);
    writeRecord(a.at, udp);
    t.equal(verdictOf('fd00::a', 80), 'TX_L2DSR', 'UDP: the hash map answers');
  } finally {
    a.restore();
  }
  t.equal(verdictOf('fd00::a', 80), 'TX_L2DSR', 'restored');
  t.equal(verdictOf('fd00::b', 80), 'TX_L2DSR', 'B untouched');
});

t.test('IPv6 keys that share a slot: one indexed, both forwarded', async (t) => {
  const [p1, p2] = collidingPorts6('fd00::7');
  lb.dataplane.apply([l2v6('fd00::7', p1), l2v6('fd00::7', p2)]);
  const i1 = index.lookup(tcp6('fd00::7', p1));
  const i2 = index.lookup(tcp6('fd00::7', p2));
  t.ok((i1 === undefined) !== (i2 === undefined), `exactly one of ports ${p1}, ${p2} is indexed`);
  t.equal(verdictOf('fd00::7', p1), 'TX_L2DSR', `port ${p1} forwarded`);
  t.equal(verdictOf('fd00::7', p2), 'TX_L2DSR', `port ${p2} forwarded`);
  const stay = i1 === undefined ? p1 : p2;
  lb.dataplane.apply([l2v6('fd00::7', stay)]);
  t.equal(index.lookup(tcp6('fd00::7', stay)), lb.dataplane.serviceId('fd00::7', stay, 'tcp'), 'the remaining key is indexed now');
});

t.test('an IPv6 service leaves its record before the hash map', async (t) => {
  lb.dataplane.apply([l2v6('fd00::1', 80), l2v6('fd00::3', 80)]);
  const gone = tcp6('fd00::3', 80);
  const rec = recordAt(gone);
  t.ok(rec.words[0]! & (1n << 15n), 'indexed before');
  const seen: string[] = [];
  const del = lb.maps.services.delete.bind(lb.maps.services);
  lb.maps.services.delete = (k: Buffer) => {
    if (k.equals(serviceKey.encode(gone))) seen.push(index.lookup(gone) === undefined ? 'record invalid' : 'record still valid');
    return del(k);
  };
  try {
    // fd00::3 goes and fd00::4 comes in the same apply: it may get the freed id.
    lb.dataplane.apply([l2v6('fd00::1', 80), { ...l2v6('fd00::4', 80), mode: 'ipip' }]);
  } finally {
    lb.maps.services.delete = del;
  }
  t.same(seen, ['record invalid'], 'invalidated when the hash entry went');
  t.equal(verdictOf('fd00::3', 80), 'PASS_NOT_VIP', 'removed service passes as not a VIP');
  const word = recordAt(gone).words[0]!;
  t.equal(word & 0xffffffffn, 0n, 'its record word says invalid');
  t.equal(word >> 32n, (rec.words[0]! >> 32n) + 1n, 'with its sequence count advanced');
  const id = lb.dataplane.serviceId('fd00::4', 80, 'tcp')!;
  t.equal(index.lookup(tcp6('fd00::4', 80)), id, `new key indexed (id ${id})`);
  t.equal(index.value6(tcp6('fd00::4', 80))?.mode, 2, 'with its own value');
  let used = 0;
  const mem = lb.maps.svc_index6.mmap();
  for (let s = 0; s < SVC_INDEX6_SLOTS; s++) if (mem.readBigUInt64LE(s * REC6_WORDS * 8) & (1n << 15n)) used++;
  t.equal(used, 2, 'exactly the two IPv6 services hold valid records');
});
