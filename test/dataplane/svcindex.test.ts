/**
 * The control plane's half of the IPv6 service index (src/dataplane/svcindex.ts) on plain memory:
 * the record layout against the object's BTF, the sequence count in each record's first word,
 * and that publishing the same state twice stores nothing. The data path's side is in
 * test/bpf/svcindex.test.ts.
 */
import t from 'tap';
import { Btf } from '../../src/bpf/index.js';
import { IPPROTO, serviceValue, type ServiceKey } from '../../src/dataplane/abi.js';
import { bpfObjectPath } from '../../src/dataplane/loader.js';
import {
  key6,
  REC6_LAYOUT,
  REC6_WORDS,
  ServiceIndex,
  SVC_INDEX6_SLOTS,
  SVC_INDEX_IDS,
  SVC_INDEX_SLOTS,
  type IndexedService,
} from '../../src/dataplane/svcindex.js';

function fresh(): { index: ServiceIndex; recs: Buffer; slots: Buffer } {
  const slots = Buffer.alloc(SVC_INDEX_SLOTS * 8);
  const recs = Buffer.alloc(SVC_INDEX6_SLOTS * REC6_WORDS * 8);
  return { index: new ServiceIndex(slots, Buffer.alloc(SVC_INDEX_IDS * 8), recs), recs, slots };
}

function svc(addr: string, port: number, id: number, mode = 1): IndexedService {
  return { key: { addr, port, proto: IPPROTO.tcp }, id, value: serviceValue.encode({ id, mode, flags: 0 }) };
}

function word(recs: Buffer, key: ServiceKey): bigint {
  return recs.readBigUInt64LE(key6(key)!.slot * REC6_WORDS * 8);
}

t.test('struct lb_svc_rec6 matches the BTF', async (t) => {
  const btf = Btf.fromObjectFile(bpfObjectPath('balancer'));
  try {
    const layout = btf.structLayout('lb_svc_rec6');
    t.equal(layout.size, REC6_WORDS * 8, 'size');
    t.same(
      layout.members.map((m) => ({ name: m.name, offset: m.offset, size: m.size })),
      REC6_LAYOUT.map((f) => ({ ...f })),
      'fields, offsets and sizes',
    );
  } finally {
    btf.close();
  }
});

t.test('records: written once, sequence counted, invalidated on removal', async (t) => {
  const { index, recs, slots } = fresh();
  const a = svc('fd00::1', 80, 0);
  let r = index.publish([a, svc('10.0.0.1', 80, 1)]);
  t.same(r, { slots: 1, values: 1, records: 1, unindexed: 0 }, 'one IPv4 slot, one IPv6 record');
  const w = word(recs, a.key);
  t.equal(w >> 32n, 2n, 'two stores of the first word: invalid, then valid');
  t.equal(w & 0xffffffffn, (0x5000n << 16n) | 0x8000n, 'low half: port 80 as loaded (0x5000) in bits 31..16, valid, TCP');
  t.equal(index.lookup(a.key), 0, 'found');
  t.equal(index.lookup({ ...a.key, addr: 'fd00::1:0' }), undefined, 'another address is not');

  const before = Buffer.from(recs);
  r = index.publish([a, svc('10.0.0.1', 80, 1)]);
  t.same(r, { slots: 0, values: 0, records: 0, unindexed: 0 }, 'same state: nothing stored');
  t.ok(before.equals(recs), 'no byte changed');

  r = index.publish([svc('fd00::1', 80, 0, 2), svc('10.0.0.1', 80, 1)]);
  t.equal(r.records, 1, 'a new value rewrites the record');
  t.equal(word(recs, a.key) >> 32n, 4n, 'with two more stores of the first word');
  t.equal(index.value6(a.key)?.mode, 2, 'new value');

  r = index.publish([svc('10.0.0.1', 80, 1)]);
  t.equal(r.records, 1, 'removal invalidates');
  t.equal(word(recs, a.key), 5n << 32n, 'invalid, count advanced once');
  t.equal(index.lookup(a.key), undefined, 'gone');
  let used = 0;
  for (let i = 0; i < SVC_INDEX_SLOTS; i++) if (slots.readBigUInt64LE(i * 8) !== 0n) used++;
  t.equal(used, 1, 'the IPv4 slot stays');

  r = index.publish([a, svc('10.0.0.1', 80, 1)]);
  t.equal(word(recs, a.key) >> 32n, 7n, 'back: the count goes on from the mapped word');
});

t.test('retain() invalidates only the records of keys that leave', async (t) => {
  const { index, recs } = fresh();
  const a = svc('fd00::1', 80, 0);
  const b = svc('fd00::2', 443, 1);
  index.publish([a, b]);
  t.not(key6(a.key)!.slot, key6(b.key)!.slot, 'two slots');
  index.retain([a.key]);
  t.equal(index.lookup(a.key), 0, 'kept');
  t.equal(index.lookup(b.key), undefined, 'left');
  t.equal(word(recs, b.key) & 0xffffffffn, 0n, 'its word invalid');
});

t.test('the sequence count wraps within its 32 bits', async (t) => {
  const { index, recs } = fresh();
  const a = svc('fd00::1', 80, 0);
  recs.writeBigUInt64LE(0xffffffffn << 32n, key6(a.key)!.slot * REC6_WORDS * 8);
  index.publish([a]);
  t.equal(word(recs, a.key) >> 32n, 1n, '0xffffffff + 2 = 1');
  t.equal(index.lookup(a.key), 0, 'found');
});
