/**
 * The backend-side decapsulator (bpf/decap.bpf.c) through BPF_PROG_TEST_RUN: IPv4-in-IPv4,
 * IPv6-in-IPv6 and IPv4-in-IPv6 stripped to exactly the inner frame, everything else passed
 * untouched, with the counter that moves. Expected frames are built with src/packet.
 */
import t, { type Test } from 'tap';
import { BpfObject, testRun, type BpfMap, type BpfProgram } from '../../src/bpf/index.js';
import { bpfObjectPath } from '../../src/dataplane/loader.js';
import { u32Key } from '../../src/dataplane/abi.js';
import { hexDiff, packet, type L3Spec, type PacketSpec } from '../../src/packet/index.js';

const PASS = 2;
const COUNTERS = ['OK', 'PASS', 'UNSUPPORTED'] as const;
type Counter = (typeof COUNTERS)[number];

let obj: BpfObject;
let prog: BpfProgram;
let stats: BpfMap;

t.before(() => {
  obj = BpfObject.open(bpfObjectPath('decap'));
  obj.load();
  prog = obj.program('xdp_decap');
  stats = obj.map('decap_stats');
});
t.teardown(() => obj?.close());

function counters(): Record<Counter, bigint> {
  const out = {} as Record<Counter, bigint>;
  COUNTERS.forEach((name, i) => {
    out[name] = (stats.lookupPerCpu(u32Key(i)) ?? []).reduce((a, v) => a + v.readBigUInt64LE(0), 0n);
  });
  return out;
}

/** Runs one frame: verdict XDP_PASS always, the exact output, and exactly one counter moved. */
function run(tt: Test, name: string, input: Buffer, counter: Counter, want: Buffer): void {
  const before = counters();
  const r = testRun(prog, { data: input });
  const after = counters();
  tt.equal(r.retval, PASS, `${name}: XDP_PASS`);
  for (const c of COUNTERS) tt.equal(after[c] - before[c], c === counter ? 1n : 0n, `${name}: ${c} moved ${c === counter ? 'once' : 'not'}`);
  if (!r.data.equals(want)) tt.fail(`${name}: output differs\n${hexDiff(want, r.data)}`);
  else tt.pass(`${name}: output bytes as expected`);
}

const ETH = { src: '02:aa:00:00:00:01', dst: '02:bb:00:00:00:01' };
const inner4: L3Spec = { ipv4: { src: '192.0.2.10', dst: '10.0.0.7', flags: ['DF'] }, tcp: { srcPort: 40000, dstPort: 80, payload: 'hello' } };
const inner6: L3Spec = { ipv6: { src: '2001:db8:c::10', dst: 'fd00::1', flowLabel: 7 }, tcp: { srcPort: 40000, dstPort: 80, payload: 'hello' } };
const outer6 = { src: 'fd09::1', dst: 'fd02::1', hopLimit: 64, flowLabel: 0x54321 };

function frame(spec: PacketSpec): Buffer {
  return packet({ eth: ETH, ...spec });
}

t.test('IPv4-in-IPv4 (as before): the outer header goes, the rest stays', async (t) => {
  run(t, '4in4', frame({ ipv4: { src: '10.9.0.1', dst: '10.2.0.1' }, inner: inner4 }), 'OK', frame(inner4));
  run(t, '4in4 + VLAN', frame({ vlan: { vid: 5 }, ipv4: { src: '10.9.0.1', dst: '10.2.0.1' }, inner: inner4 }), 'OK', frame({ vlan: { vid: 5 }, ...inner4 }));
});

t.test('IPv6-in-IPv6 and IPv4-in-IPv6: stripped, ethertype of the inner packet', async (t) => {
  run(t, '6in6', frame({ ipv6: outer6, inner: inner6 }), 'OK', frame(inner6));
  run(t, '4in6', frame({ ipv6: outer6, inner: inner4 }), 'OK', frame(inner4));
  run(t, '6in6 + VLAN', frame({ vlan: { vid: 9 }, ipv6: outer6, inner: inner6 }), 'OK', frame({ vlan: { vid: 9 }, ...inner6 }));
  run(t, '4in6 + VLAN', frame({ vlan: { vid: 9 }, ipv6: outer6, inner: inner4 }), 'OK', frame({ vlan: { vid: 9 }, ...inner4 }));
});

t.test('not a tunnel: passed untouched', async (t) => {
  const cases: [string, Buffer][] = [
    ['IPv4 TCP', frame(inner4)],
    ['IPv6 TCP', frame(inner6)],
    ['IPv6 UDP', frame({ ipv6: outer6, udp: { dstPort: 53 } })],
    ['MLD behind hop-by-hop', frame({ ipv6: { ...outer6, ext: [{ type: 'hopByHop', options: Buffer.from([5, 2, 0, 0]) }] }, icmpv6: { type: 143, payload: Buffer.alloc(4) } })],
    ['ARP', Buffer.concat([Buffer.from('ffffffffffff02cc000000010806', 'hex'), Buffer.alloc(46)])],
    ['IPv6 header cut short', frame(inner6).subarray(0, 14 + 30)],
  ];
  for (const [name, input] of cases) run(t, name, input, 'PASS', input);
});

t.test('tunnels we do not strip: left to the kernel, counted unsupported', async (t) => {
  const cases: [string, Buffer][] = [
    ['6in6 behind a destination options header', frame({ ipv6: { ...outer6, ext: [{ type: 'destOpts' }] }, inner: inner6 })],
    ['4in6 behind a hop-by-hop header', frame({ ipv6: { ...outer6, ext: [{ type: 'hopByHop' }] }, inner: inner4 })],
    ['6in6 fragment', frame({ ipv6: { ...outer6, ext: [{ type: 'fragment', more: true }] }, inner: inner6 })],
    ['6in6, inner header cut short', frame({ ipv6: outer6, inner: inner6 }).subarray(0, 14 + 40 + 30)],
    ['4in6, inner version 6', frame({ ipv6: { ...outer6, nextHeader: 4 }, inner: inner6 })],
    ['6in6, inner version 4', frame({ ipv6: { ...outer6, nextHeader: 41 }, inner: inner4 })],
    ['4in4 with outer options', frame({ ipv4: { src: '10.9.0.1', dst: '10.2.0.1', options: Buffer.from([1, 1, 1, 0]) }, inner: inner4 })],
  ];
  for (const [name, input] of cases) run(t, name, input, 'UNSUPPORTED', input);
});
