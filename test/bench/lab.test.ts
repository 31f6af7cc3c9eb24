/**
 * The lab benchmark's pieces that decide whether its figures are of the right path: the
 * generator's frames (a TCP checksum conntrack accepts, for every source port), the parsing of the
 * kernel's counters, and the verdict on a case's counters.
 */
import t from 'tap';
import { BpfObject, testRun } from '../../src/bpf/index.js';
import { u32Key } from '../../src/dataplane/abi.js';
import { packet, parsePacket } from '../../src/packet/index.js';
import { checkProblem, parseKernelCounters, type BalancerCheck, type KernelCheck } from '../../src/bench/lab.js';
import { projectObject } from '../bpf/fixtures/build.js';

const XDP_TX = 3;
let gen: BpfObject;

t.before(() => {
  gen = BpfObject.open(projectObject('labgen'));
  gen.load();
});
t.teardown(() => gen?.close());

function configure(frame: Buffer, portBase: number, flows: number): void {
  const cfg = Buffer.alloc(68);
  frame.copy(cfg, 0, 0, 54);
  cfg.writeUInt16LE(portBase, 54);
  cfg.writeUInt32LE(flows - 1, 56);
  gen.map('lab_cfg').update(u32Key(0), cfg);
  gen.map('lab_state').update(u32Key(0), Buffer.alloc(8));
}

const eth = { src: '02:00:00:00:00:01', dst: '02:00:00:00:00:02' };
const ipv4 = { src: '10.77.0.1', dst: '10.77.0.2', ttl: 64 };

for (const flags of [['SYN'], ['ACK']] as const) t.test(`TCP ${flags[0]} frames: each flow\'s source port with a right checksum, across the 16-bit wrap`, async (t) => {
  const base = 0xfff0;
  const frame = packet({ eth, ipv4, tcp: { srcPort: base, dstPort: 80, flags: [...flags] } });
  configure(frame, base, 32);
  // A frame that is not the header: the generator must write all of it, every time.
  const junk = Buffer.alloc(frame.length, 0xa5);
  for (let i = 0; i < 40; i++) {
    const r = testRun(gen.program('xdp_lab_gen'), { data: junk, repeat: 1 });
    t.equal(r.retval, XDP_TX);
    const p = parsePacket(r.data);
    const want = (base + (i % 32)) & 0xffff;
    if (p.tcp?.srcPort !== want || p.tcp?.checksumOk !== true || p.tcp?.flagNames.join() !== flags.join()) {
      t.fail(`frame ${i}: port ${p.tcp?.srcPort} (want ${want}), checksum ok ${String(p.tcp?.checksumOk)}`);
      return;
    }
  }
  t.pass('40 frames, ports fff0..000f and round again, every checksum right');
});

t.test('UDP frames keep "no checksum"', async (t) => {
  const frame = packet({ eth, ipv4, udp: { srcPort: 20000, dstPort: 53, payload: Buffer.alloc(12) } });
  t.equal(frame.length, 54, 'a 54-byte UDP frame');
  const noSum = Buffer.from(frame);
  noSum.writeUInt16LE(0, 40);
  configure(noSum, 20000, 4);
  for (let i = 0; i < 5; i++) testRun(gen.program('xdp_lab_gen'), { data: noSum, repeat: 1 });
  const r = testRun(gen.program('xdp_lab_gen'), { data: noSum, repeat: 1 });
  const p = parsePacket(r.data);
  t.equal(p.udp?.srcPort, 20001, 'sixth frame: flow 1 of 4');
  t.equal(p.udp?.checksum, 0, 'checksum field still zero');
});

t.test('parseKernelCounters: Ip ForwDatagrams and conntrack columns summed over CPUs', async (t) => {
  const snmp = [
    'Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos',
    'Ip: 1 64 1234 0 0 987654 0',
    'Icmp: InMsgs InErrors',
    'Icmp: 5 0',
  ].join('\n');
  const ct = [
    'entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart',
    '00000400  00000000 00000000 00000000 00000002 00000000 00000000 00000000 00000400 00000000 00000001 00000000 00000000  00000000 00000000 00000000 00000000',
    '00000400  00000000 00000000 00000000 00000010 00000000 00000000 00000000 00000001 00000003 00000000 00000000 00000000  00000000 00000000 00000000 00000000',
  ].join('\n');
  t.same(parseKernelCounters(snmp, ct), { forwarded: 987654, ct: { insert: 1025, invalid: 18, drop: 1, insert_failed: 3 } });
  t.same(parseKernelCounters(snmp, '').ct, { insert: 0, invalid: 0, drop: 0, insert_failed: 0 }, 'no conntrack file: zeros');
});

t.test('checkProblem: a figure of the wrong path is refused', async (t) => {
  const nat: BalancerCheck = { expected_reason: 'REDIRECT_NAT', reason_count: 1000, other_reasons: { PASS_NOT_IP: 2 }, new_flows: 0, expected_new_flows: 'none', delivered: 1000 };
  t.equal(checkProblem('xdp_nat', nat), null, 'every frame translated, none new');
  t.match(checkProblem('xdp_nat', { ...nat, reason_count: 900, other_reasons: { PASS_NAT_KERNEL: 100 } }), /only 900 REDIRECT_NAT/);
  t.match(checkProblem('xdp_nat', { ...nat, reason_count: 1100, other_reasons: { PASS_NAT_KERNEL: 100 } }), /other verdicts/);
  t.match(checkProblem('xdp_nat', { ...nat, new_flows: 1024 }), /1024 new flows or connections, expected 0/);
  t.equal(checkProblem('xdp_l2dsr', { ...nat, expected_reason: 'TX_L2DSR' }), null, 'DSR ACKs after the warm-up: none new');
  t.match(checkProblem('xdp_l2dsr', { ...nat, expected_reason: 'TX_L2DSR', new_flows: 3 }), /3 new flows or connections, expected 0/, 'a DSR flow missed after the warm-up');
  t.equal(checkProblem('xdp_l2dsr', { ...nat, expected_reason: 'TX_L2DSR', new_flows: 1000, expected_new_flows: 'all' }), null, 'DSR SYNs: all new');
  t.match(checkProblem('xdp_l2dsr', { ...nat, expected_reason: 'TX_L2DSR', new_flows: 0, expected_new_flows: 'all' }), /expected 1000/);
  t.match(checkProblem('xdp_nat', { ...nat, delivered: 0 }), /nothing arrived/);

  const k: KernelCheck = { forwarded: 5000, conntrack: { insert: 0, invalid: 0, drop: 0, insert_failed: 0 }, delivered: 5000 };
  t.equal(checkProblem('kernel_dnat', k), null);
  t.match(checkProblem('kernel_dnat', { ...k, forwarded: 4000 }), /forwarded 4000/);
  t.match(checkProblem('kernel_dnat', { ...k, conntrack: { ...k.conntrack!, insert: 1024 } }), /inserted 1024/);
  t.match(checkProblem('kernel_dnat', { ...k, conntrack: { ...k.conntrack!, invalid: 7 } }), /7 INVALID/);
  t.equal(checkProblem('kernel_forward', { forwarded: 10, delivered: 10 }), null, 'plain routing: no conntrack check');
});
