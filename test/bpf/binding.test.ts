import t from 'tap';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { LbError } from '../../src/errors.js';
import {
  BpfMap,
  BpfObject,
  BpfProgram,
  Btf,
  MapType,
  UpdateFlag,
  XdpAction,
  attachXdp,
  errnoName,
  libbpfErr,
  possibleCpus,
  removePinDir,
  testRun,
  unpin,
  verifierSummary,
} from '../../src/bpf/index.js';
import { compileFixture, ensureBpffs, projectObject } from './fixtures/build.js';

const dir = t.testdir();
const FLOOR = projectObject('floor');
const FIXTURE = compileFixture('binding_fixture', dir);
const REJECT = compileFixture('binding_reject', dir);

const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const u64 = (n: number | bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
/** struct fx_value { __u64 count; __u32 tag; __u32 pad; } */
const fxValue = (count: number, tag: number): Buffer => Buffer.concat([u64(count), u32(tag), u32(0)]);

/** A 64-byte Ethernet frame: dst 02:..:01, src 02:..:02, IPv4 ethertype, a counting payload. */
function frame(): Buffer {
  const f = Buffer.alloc(64);
  Buffer.from([0x02, 0, 0, 0, 0, 0x01]).copy(f, 0);
  Buffer.from([0x02, 0, 0, 0, 0, 0x02]).copy(f, 6);
  f.writeUInt16BE(0x0800, 12);
  for (let i = 14; i < 64; i++) f[i] = i;
  return f;
}

/** Open, optionally configure, load; closed at the end of the test. */
function load(tt: { teardown: (fn: () => void) => void }, path: string, configure?: (o: BpfObject) => void): BpfObject {
  const obj = BpfObject.open(path);
  tt.teardown(() => obj.close());
  configure?.(obj);
  obj.load();
  return obj;
}

function lbErr(fn: () => unknown): LbError {
  try {
    fn();
  } catch (e) {
    if (e instanceof LbError) return e;
    throw e;
  }
  throw new Error('expected an LbError, nothing was thrown');
}

t.test('errors', async (t) => {
  t.equal(errnoName(-1), 'EPERM');
  t.equal(errnoName(2), 'ENOENT');
  t.equal(errnoName(-524), 'ENOTSUPP');
  const e = libbpfErr('ERR_LB_BPF_PIN', 'cannot pin x', -2);
  t.equal(e.code, 'ERR_LB_BPF_PIN');
  t.equal(e.errno, 'ENOENT');
  t.match(e.message, /cannot pin x: ENOENT/);
  t.match(e.hint, /bpffs/);
  t.match(libbpfErr('ERR_LB_BPF_LOAD', 'x', -1).hint, /root/);
  t.match(libbpfErr('ERR_LB_BPF_MAP', 'x', -7).hint, /full/);
  t.match(libbpfErr('ERR_LB_BPF_ATTACH', 'x', -16).hint, /another XDP program/);
  t.equal(
    verifierSummary('0: (61) r2 = *(u32 *)(r1 +0)\ninvalid access to packet\n\nprocessed 3 insns (limit 1000000)\n', 2),
    '0: (61) r2 = *(u32 *)(r1 +0) | invalid access to packet',
  );
});

t.test('open errors', async (t) => {
  const missing = lbErr(() => BpfObject.open(`${dir}/nope.bpf.o`));
  t.equal(missing.code, 'ERR_LB_BPF_OPEN');
  t.equal(missing.errno, 'ENOENT');
  const notElf = lbErr(() => BpfObject.open(import.meta.filename ?? new URL(import.meta.url).pathname));
  t.equal(notElf.code, 'ERR_LB_BPF_OPEN');
});

t.test('floor: test-run a 64-byte frame, XDP_TX with the MACs swapped', async (t) => {
  const obj = load(t, FLOOR);
  t.same(obj.programNames(), ['xdp_floor']);
  const prog = obj.program('xdp_floor');
  t.ok(prog.fd > 0);
  t.ok(prog.id > 0);
  t.equal(prog.type, 6, 'BPF_PROG_TYPE_XDP');
  t.equal(obj.program(), prog, 'the only program, by default');
  const input = frame();
  const res = testRun(prog, { data: input });
  t.equal(res.retval, XdpAction.TX);
  const want = Buffer.from(input);
  Buffer.from([0x02, 0, 0, 0, 0, 0x02]).copy(want, 0);
  Buffer.from([0x02, 0, 0, 0, 0, 0x01]).copy(want, 6);
  t.same(res.data, want, 'exact output bytes');
  t.equal(res.data.length, 64);
  t.same(input, frame(), 'the input buffer is not modified');
  t.ok(res.duration >= 0);

  const many = testRun(prog.fd, { data: input, repeat: 1000 });
  t.equal(many.retval, XdpAction.TX);
  t.ok(many.duration > 0 && many.duration < 100_000, `about tens of ns per run (${many.duration})`);

  const runt = lbErr(() => testRun(prog, { data: Buffer.alloc(10) }));
  t.equal(runt.code, 'ERR_LB_BPF_TEST_RUN');
  t.equal(runt.errno, 'EINVAL', 'the kernel wants at least an Ethernet header');
  t.match(runt.hint, /14/);

  const xdpMd = Buffer.alloc(24); // struct xdp_md: data, data_end, data_meta, ingress_ifindex, ...
  xdpMd.writeUInt32LE(64, 4);
  const ctx = testRun(prog, { data: input, ctxIn: xdpMd });
  t.equal(ctx.retval, XdpAction.TX);
  t.equal(ctx.ctxOut?.length, 24);
  t.equal(ctx.ctxOut?.readUInt32LE(4), 64, 'data_end comes back');
  t.equal(testRun(prog, { data: input, ctxIn: Buffer.alloc(24) }).retval, XdpAction.TX, 'data_end 0 means the whole packet');

  const e = lbErr(() => testRun(prog, { data: input, dataOutSize: 10 }));
  t.equal(e.code, 'ERR_LB_BPF_TEST_RUN');
  t.equal(e.errno, 'ENOSPC');
  t.match(e.hint, /dataOutSize/);
  t.throws(() => obj.program('nope'), { code: 'ERR_LB_BPF_OPEN' });
});

t.test('using an object wrongly', async (t) => {
  const obj = BpfObject.open(FIXTURE);
  t.teardown(() => obj.close());
  t.throws(() => obj.program('xdp_fixture'), { code: 'ERR_LB_BPF_LOAD' }, 'program() before load()');
  t.throws(() => obj.map('kv'), { code: 'ERR_LB_BPF_LOAD' }, 'map() before load()');
  t.throws(() => obj.setMapMaxEntries('nope', 4), { code: 'ERR_LB_BPF_MAP' });
  t.throws(() => obj.setGlobal('nope', u32(1)), { code: 'ERR_LB_BPF_BTF' });
  t.throws(() => obj.setGlobal('verdict', u64(1)), { code: 'ERR_LB_BPF_MAP' }, 'wrong size');
  obj.load();
  t.ok(obj.loaded);
  t.throws(() => obj.load(), { code: 'ERR_LB_BPF_LOAD' });
  t.throws(() => obj.setGlobal('verdict', u32(1)), { code: 'ERR_LB_BPF_LOAD' }, 'setGlobal after load');
  t.throws(() => obj.setMapMaxEntries('kv', 4), { code: 'ERR_LB_BPF_LOAD' });
  const kv = obj.map('kv');
  obj.close();
  obj.close();
  t.throws(() => kv.fd, { code: 'ERR_LB_BPF_MAP' }, 'map used after its object is closed');
  t.throws(() => obj.mapNames(), { code: 'ERR_LB_BPF_OPEN' });
});

t.test('const volatile globals change the verdict', async (t) => {
  const plain = load(t, FIXTURE);
  t.same(plain.getGlobal('verdict'), u32(XdpAction.PASS));
  t.equal(testRun(plain.program('xdp_fixture'), { data: frame() }).retval, XdpAction.PASS);

  const drop = BpfObject.open(FIXTURE);
  t.teardown(() => drop.close());
  drop.setGlobal('verdict', u32(XdpAction.DROP));
  drop.setGlobal('tag', u32(42));
  t.same(drop.getGlobal('verdict'), u32(XdpAction.DROP), 'initial value before load');
  t.same(drop.getGlobal('tag'), u32(42), 'the neighbouring variable is set independently');
  drop.load();
  t.same(drop.getGlobal('verdict'), u32(XdpAction.DROP), 'the kernel copy after load');
  t.same(drop.getGlobal('tag'), u32(42));
  const rodata = drop.mapNames().find((n) => n.endsWith('.rodata'));
  t.ok(rodata, 'libbpf made a .rodata map');

  const kv = drop.map('kv');
  kv.update(u32(0), fxValue(0, 0));
  const res = testRun(drop.program('xdp_fixture'), { data: frame(), repeat: 5 });
  t.equal(res.retval, XdpAction.DROP);
  t.same(kv.lookup(u32(0)), fxValue(5, 42), 'the program saw the map entry and the new tag');
});

t.test('hash map: update, lookup, delete, iterate, batch', async (t) => {
  const obj = load(t, FIXTURE);
  const kv = obj.map('kv');
  t.equal(kv.name, 'kv');
  t.equal(kv.type, MapType.HASH);
  t.equal(kv.typeName, 'hash');
  t.equal(kv.keySize, 4);
  t.equal(kv.valueSize, 16);
  t.equal(kv.maxEntries, 16);
  t.equal(kv.isPerCpu, false);
  t.ok(kv.id > 0);
  t.equal(obj.map('kv'), kv, 'one BpfMap per map');

  t.equal(kv.lookup(u32(1)), undefined);
  kv.update(u32(1), fxValue(10, 1));
  t.same(kv.lookup(u32(1)), fxValue(10, 1));
  kv.update(u32(1), fxValue(11, 1), UpdateFlag.EXIST);
  t.same(kv.lookup(u32(1)), fxValue(11, 1));
  const exists = lbErr(() => kv.update(u32(1), fxValue(0, 0), UpdateFlag.NOEXIST));
  t.equal(exists.code, 'ERR_LB_BPF_MAP');
  t.equal(exists.errno, 'EEXIST');
  t.equal(lbErr(() => kv.update(u32(2), fxValue(0, 0), UpdateFlag.EXIST)).errno, 'ENOENT');

  t.throws(() => kv.lookup(Buffer.alloc(3)), { code: 'ERR_LB_BPF_MAP', message: /key is 3 bytes, expected 4/ });
  t.throws(() => kv.update(u32(1), Buffer.alloc(8)), { code: 'ERR_LB_BPF_MAP' });
  t.throws(() => kv.lookupPerCpu(u32(1)), { code: 'ERR_LB_BPF_MAP' });

  t.equal(kv.delete(u32(1)), true);
  t.equal(kv.delete(u32(1)), false);
  t.equal(kv.lookup(u32(1)), undefined);

  const n = 5;
  const keys = Buffer.concat(Array.from({ length: n }, (_, i) => u32(100 + i)));
  const values = Buffer.concat(Array.from({ length: n }, (_, i) => fxValue(i * 1000, i)));
  t.equal(kv.updateBatch(keys, values, n), n);
  const seen = [...kv.keys()].map((k) => k.readUInt32LE(0)).sort((a, b) => a - b);
  t.same(seen, [100, 101, 102, 103, 104]);
  const entries = new Map([...kv.entries()].map(([k, v]) => [k.readUInt32LE(0), v]));
  t.equal(entries.size, n);
  for (let i = 0; i < n; i++) t.same(entries.get(100 + i), fxValue(i * 1000, i));
  t.throws(() => kv.updateBatch(keys, values, n + 1), { code: 'ERR_LB_BPF_MAP' }, 'count beyond the buffers');
  t.equal(kv.updateBatch(Buffer.alloc(0), Buffer.alloc(0), 0), 0);

  for (let i = 0; i < 11; i++) kv.update(u32(200 + i), fxValue(0, 0));
  const full = lbErr(() => kv.update(u32(999), fxValue(0, 0)));
  t.equal(full.errno, 'E2BIG');
  t.match(full.hint, /full/);
  const fullBatch = lbErr(() => kv.updateBatch(Buffer.concat([u32(998), u32(997)]), Buffer.alloc(32), 2));
  t.equal(fullBatch.code, 'ERR_LB_BPF_MAP');
  t.equal(fullBatch.errno, 'E2BIG');

  // Deleting every key while iterating must terminate and empty the map.
  for (const k of kv.keys()) kv.delete(k);
  t.same([...kv.keys()], []);
});

t.test('array map: batch, out of range, no delete', async (t) => {
  const obj = load(t, FIXTURE);
  const arr = obj.map('arr');
  t.equal(arr.type, MapType.ARRAY);
  const keys = Buffer.concat(Array.from({ length: 8 }, (_, i) => u32(i)));
  const values = Buffer.concat(Array.from({ length: 8 }, (_, i) => u64(BigInt(i) << 40n)));
  t.equal(arr.updateBatch(keys, values, 8), 8);
  for (let i = 0; i < 8; i++) t.same(arr.lookup(u32(i)), u64(BigInt(i) << 40n));
  t.equal([...arr.keys()].length, 8, 'an array always has all its keys');
  t.equal(arr.lookup(u32(8)), undefined, 'out of range reads as absent');
  t.equal(lbErr(() => arr.update(u32(8), u64(0))).errno, 'E2BIG');
  const del = lbErr(() => arr.delete(u32(0)));
  t.equal(del.errno, 'EINVAL');
  t.match(del.hint, /overwritten/);
});

t.test('device map: batch update falls back to one by one', async (t) => {
  const obj = load(t, FIXTURE);
  const dev = obj.map('dev');
  t.equal(dev.typeName, 'devmap');
  // Values are ifindexes; lo is 1 in every network namespace.
  t.equal(dev.updateBatch(Buffer.concat([u32(0), u32(3)]), Buffer.concat([u32(1), u32(1)]), 2), 2);
  t.same(dev.lookup(u32(0)), u32(1));
  t.same(dev.lookup(u32(3)), u32(1));
  t.equal(dev.lookup(u32(1)), undefined);
  const bad = lbErr(() => dev.updateBatch(Buffer.concat([u32(1), u32(2)]), Buffer.concat([u32(1), u32(0xfffff)]), 2));
  t.equal(bad.code, 'ERR_LB_BPF_MAP', 'an entry the kernel refuses still fails');
  t.equal(bad.errno, 'EINVAL');
  t.match(bad.message, /cannot update map dev/, 'reported by the one-by-one path');
  t.same(dev.lookup(u32(1)), u32(1), 'entries before the bad one were written');
});

t.test('LPM trie: batch update', async (t) => {
  const obj = load(t, FIXTURE);
  const lpm = obj.map('lpm');
  t.equal(lpm.type, MapType.LPM_TRIE);
  const key = (len: number, a: number, b: number, c: number, d: number) =>
    Buffer.concat([u32(len), Buffer.from([a, b, c, d])]);
  const keys = Buffer.concat([key(8, 10, 0, 0, 0), key(24, 10, 1, 2, 0), key(32, 10, 1, 2, 3)]);
  const values = Buffer.concat([u32(1), u32(2), u32(3)]);
  t.equal(lpm.updateBatch(keys, values, 3), 3);
  t.same(lpm.lookup(key(32, 10, 1, 2, 3)), u32(3));
  t.same(lpm.lookup(key(32, 10, 1, 2, 9)), u32(2), 'longest prefix match');
  t.same(lpm.lookup(key(32, 10, 9, 9, 9)), u32(1));
  t.equal(lpm.lookup(key(32, 11, 0, 0, 0)), undefined);
});

t.test('per-CPU array', async (t) => {
  const ncpu = possibleCpus();
  t.ok(ncpu >= 1);
  const obj = load(t, FIXTURE);
  const hits = obj.map('hits');
  t.equal(hits.type, MapType.PERCPU_ARRAY);
  t.equal(hits.isPerCpu, true);
  t.equal(hits.valueSize, 4);
  t.equal(hits.perCpuStride, 8, 'a 4-byte value takes an 8-byte slot per CPU');
  t.throws(() => hits.lookup(u32(0)), { code: 'ERR_LB_BPF_MAP', message: /lookupPerCpu/ });
  t.throws(() => hits.update(u32(0), u32(0)), { code: 'ERR_LB_BPF_MAP' });

  const sum = () => (hits.lookupPerCpu(u32(0)) ?? []).reduce((s, b) => s + b.readUInt32LE(0), 0);
  t.equal(sum(), 0);
  testRun(obj.program('xdp_fixture'), { data: frame(), repeat: 7 });
  const slots = hits.lookupPerCpu(u32(0));
  t.equal(slots?.length, ncpu);
  for (const s of slots ?? []) t.equal(s.length, 4);
  t.equal(sum(), 7, 'the runs were counted on some CPU');

  const mine = Array.from({ length: ncpu }, (_, i) => u32(1000 + i));
  hits.updatePerCpu(u32(1), mine);
  t.same(hits.lookupPerCpu(u32(1)), mine);
  hits.updatePerCpu(u32(2), u32(5));
  t.same(hits.lookupPerCpu(u32(2)), Array.from({ length: ncpu }, () => u32(5)), 'one value for every CPU');
  t.throws(() => hits.updatePerCpu(u32(1), [u32(1)].concat(mine)), { code: 'ERR_LB_BPF_MAP' });

  const raw = Buffer.alloc(hits.fullValueSize * 2);
  for (let c = 0; c < ncpu; c++) raw.writeUInt32LE(c + 1, hits.fullValueSize + c * 8);
  t.equal(hits.updateBatch(Buffer.concat([u32(0), u32(3)]), raw, 2), 2);
  t.same(hits.lookupPerCpu(u32(0)), Array.from({ length: ncpu }, () => u32(0)));
  t.same(hits.lookupPerCpu(u32(3)), Array.from({ length: ncpu }, (_, c) => u32(c + 1)));
  const all = [...hits.entriesPerCpu()];
  t.equal(all.length, 4);
});

t.test('verifier rejection', async (t) => {
  const obj = BpfObject.open(REJECT);
  t.teardown(() => obj.close());
  const e = lbErr(() => obj.load());
  t.equal(e.code, 'ERR_LB_BPF_VERIFIER');
  t.equal(e.errno, 'EACCES');
  t.match(e.detail, /invalid access to packet|R\d invalid mem access/);
  t.match(e.message, /xdp_reject/);
  t.match(e.message, /invalid access to packet|invalid mem access/, 'the message names the reason');
  t.notMatch(e.message, /processed \d+ insns/);
  t.equal(obj.loaded, false);

  // A log too small for the full trace still keeps its end, where the reason is.
  const small = BpfObject.open(REJECT, { logSize: 256 });
  t.teardown(() => small.close());
  const e2 = lbErr(() => small.load());
  t.equal(e2.code, 'ERR_LB_BPF_VERIFIER');
  t.match(e2.detail, /invalid access to packet|invalid mem access/);
});

t.test('BTF: struct layouts, enums, datasecs', async (t) => {
  const btf = Btf.fromObjectFile(FIXTURE);
  t.teardown(() => btf.close());
  const l = btf.structLayout('fx_layout');
  t.equal(l.kind, 'struct');
  t.equal(l.size, 48);
  const m = Object.fromEntries(l.members.map((x) => [x.name, x]));
  t.match(m.mac, { offset: 0, size: 6, typeName: '__u8[6]' });
  t.notOk(m.mac?.bitfield);
  t.match(m.port, { offset: 6, size: 2, typeName: 'fx_port_t' });
  t.match(m.inner, { offset: 8, size: 16, typeName: 'struct fx_value' });
  t.match(m.low, { offset: 24, size: 4, bitfield: { bitOffset: 192, bitSize: 4 } });
  t.match(m.high, { offset: 24, bitfield: { bitOffset: 196, bitSize: 12 } });
  t.match(m.rest, { offset: 26, bitfield: { bitOffset: 208, bitSize: 16 } });
  t.match(m.tail, { offset: 32, size: 16, typeName: '__u64[2]' });
  t.same(
    btf.structLayout('fx_value').members.map((x) => [x.name, x.offset, x.size]),
    [
      ['count', 0, 8],
      ['tag', 8, 4],
      ['pad', 12, 4],
    ],
  );
  t.same(btf.enumValues('fx_reason'), { FX_R_FIRST: 0, FX_R_SECOND: 1, FX_R_BIG: 1000 });
  t.throws(() => btf.datasecVars('.rodata'), { code: 'ERR_LB_BPF_BTF', hint: /BpfObject/ }, 'raw BTF has no offsets');
  t.equal(btf.datasecVars('.nope'), undefined);
  t.throws(() => btf.structLayout('nope'), { code: 'ERR_LB_BPF_BTF' });
  t.throws(() => btf.enumValues('nope'), { code: 'ERR_LB_BPF_BTF' });
  t.throws(() => Btf.fromObjectFile(`${dir}/nope.o`), { code: 'ERR_LB_BPF_BTF', errno: 'ENOENT' });

  // The same through an opened object.
  const obj = BpfObject.open(FIXTURE);
  t.teardown(() => obj.close());
  t.same(obj.btf().structLayout('fx_layout'), l);
  t.same(
    obj.btf().datasecVars('.rodata')?.map((v) => [v.name, v.offset, v.size]),
    [
      ['verdict', 0, 4],
      ['tag', 4, 4],
    ],
  );
  t.same(obj.btf().enumValues('fx_reason'), { FX_R_FIRST: 0, FX_R_SECOND: 1, FX_R_BIG: 1000 });

  // The data path's contract header, read the way the control plane reads it.
  const kernel = Btf.fromObjectFile('/sys/kernel/btf/vmlinux');
  t.teardown(() => kernel.close());
  t.match(kernel.structLayout('xdp_md').members.slice(0, 2), [
    { name: 'data', offset: 0, size: 4 },
    { name: 'data_end', offset: 4, size: 4 },
  ]);
});

t.test('pinning: pin, reopen, reuse on load, unpin', async (t) => {
  ensureBpffs();
  const pins = `/sys/fs/bpf/xbind-${randomBytes(4).toString('hex')}`;
  t.teardown(() => removePinDir(pins));

  const first = BpfObject.open(FIXTURE);
  t.teardown(() => first.close());
  first.setPinPath('kv', `${pins}/maps/kv`);
  first.load();
  t.ok(existsSync(`${pins}/maps/kv`), 'libbpf pinned the map at load');
  const kv1 = first.map('kv');
  kv1.update(u32(5), fxValue(55, 5));

  const second = BpfObject.open(FIXTURE);
  t.teardown(() => second.close());
  second.setPinPath('kv', `${pins}/maps/kv`);
  second.load();
  const kv2 = second.map('kv');
  t.equal(kv2.id, kv1.id, 'the second object reused the pinned map');
  t.same(kv2.lookup(u32(5)), fxValue(55, 5), 'and sees what the first wrote');
  t.not(second.map('arr').id, first.map('arr').id, 'unpinned maps are not shared');

  const opened = BpfMap.openPinned(`${pins}/maps/kv`);
  t.teardown(() => opened.close());
  t.match(opened, { name: 'kv', type: MapType.HASH, keySize: 4, valueSize: 16, maxEntries: 16, isPerCpu: false });
  t.equal(opened.id, kv1.id);
  t.same(opened.lookup(u32(5)), fxValue(55, 5));

  // A pinned map whose shape differs from the object's definition is refused, not replaced.
  const other = BpfObject.open(FIXTURE);
  t.teardown(() => other.close());
  other.setMapMaxEntries('kv', 32);
  other.setPinPath('kv', `${pins}/maps/kv`);
  const mismatch = lbErr(() => other.load());
  t.equal(mismatch.code, 'ERR_LB_BPF_LOAD');
  t.match(mismatch.hint, /unpin/);
  t.match(mismatch.detail, /parameter mismatch/);

  // Explicit pins of a map and a program.
  first.pinMap('hits', `${pins}/hits`);
  const hits = BpfMap.openPinned(`${pins}/hits`);
  t.teardown(() => hits.close());
  t.equal(hits.isPerCpu, true);
  t.equal(hits.id, first.map('hits').id);
  t.throws(() => first.pinMap('hits', `${pins}/hits`), { code: 'ERR_LB_BPF_PIN', errno: 'EEXIST' });

  first.pinProgram('xdp_fixture', `${pins}/prog`);
  const prog = BpfProgram.openPinned(`${pins}/prog`);
  t.teardown(() => prog.close());
  t.equal(prog.id, first.program('xdp_fixture').id);
  t.equal(prog.name, 'xdp_fixture');
  t.equal(testRun(prog, { data: frame() }).retval, XdpAction.PASS);
  t.throws(() => BpfMap.openPinned(`${pins}/prog`), { code: 'ERR_LB_BPF_MAP', message: /not a BPF map/ });
  t.throws(() => BpfProgram.openPinned(`${pins}/hits`), { code: 'ERR_LB_BPF_PIN', message: /not a BPF program/ });

  const missing = lbErr(() => BpfMap.openPinned(`${pins}/nothing`));
  t.equal(missing.code, 'ERR_LB_BPF_PIN');
  t.equal(missing.errno, 'ENOENT');
  t.match(missing.hint, /bpffs/);

  // The pinned map outlives both objects.
  first.close();
  second.close();
  const again = BpfMap.openPinned(`${pins}/maps/kv`);
  t.same(again.lookup(u32(5)), fxValue(55, 5));
  again.close();

  t.equal(unpin(`${pins}/hits`), true);
  t.equal(existsSync(`${pins}/hits`), false);
  t.equal(unpin(`${pins}/hits`), false);
  t.equal(unpin(`${pins}/prog`), true);
  removePinDir(pins);
  t.equal(existsSync(pins), false);
});

t.test('attach to an unknown interface', async (t) => {
  const obj = load(t, projectObject('xdp_pass'));
  const e = lbErr(() => attachXdp('xbind-none0', obj.program('xdp_pass'), { mode: 'native' }));
  t.equal(e.code, 'ERR_LB_NO_INTERFACE');
  t.equal(e.errno, 'ENODEV');
});
