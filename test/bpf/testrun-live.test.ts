/**
 * testRun() in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES): the frames an XDP program returns
 * XDP_TX for leave the ctx's ingress interface for real. Driven with the lab generator
 * (bpf/labgen.bpf.c) on a veth pair in a namespace this test creates, counted on the peer.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { BpfObject, attachXdp, ifIndex, inNetns, testRun, TestRunFlags } from '../../src/bpf/index.js';
import { u32Key } from '../../src/dataplane/abi.js';
import { packet } from '../../src/packet/index.js';
import { projectObject } from './fixtures/build.js';

const ns = `xlive-${randomBytes(3).toString('hex')}`;
const ip = (...a: string[]) => execFileSync('ip', ['-n', ns, ...a], { stdio: 'pipe' });
let gen: BpfObject;

t.before(() => {
  execFileSync('ip', ['netns', 'add', ns]);
  ip('link', 'add', 'gen0', 'type', 'veth', 'peer', 'name', 'sink0');
  ip('link', 'set', 'gen0', 'up');
  ip('link', 'set', 'sink0', 'up');
  gen = BpfObject.open(projectObject('labgen'));
  gen.load();
});
t.teardown(() => {
  gen?.close();
  execFileSync('ip', ['netns', 'del', ns], { stdio: 'pipe' });
});

t.test('XDP_TX frames leave the ingress interface and arrive at its peer', async (t) => {
  const frame = packet({
    eth: { src: '02:00:00:00:00:01', dst: '02:00:00:00:00:02' },
    ipv4: { src: '10.77.0.1', dst: '10.77.0.2' },
    tcp: { srcPort: 1, dstPort: 80, flags: ['SYN'] },
  });
  const cfg = Buffer.alloc(68);
  frame.copy(cfg, 0, 0, 54);
  cfg.writeUInt16LE(20000, 54);
  cfg.writeUInt32LE(15, 56);
  Buffer.from([10, 77, 0, 1]).copy(cfg, 60);
  Buffer.from([10, 77, 0, 2]).copy(cfg, 64);
  gen.map('lab_cfg').update(u32Key(0), cfg);
  const counted = () => (gen.map('lab_count').lookupPerCpu(u32Key(0)) ?? []).reduce((a, b) => a + Number(b.readBigUInt64LE(0)), 0);

  const res = inNetns(ns, () => {
    attachXdp('sink0', gen.program('xdp_lab_count')); // a veth delivers XDP_TX only to a peer with XDP
    const ctx = Buffer.alloc(24);
    ctx.writeUInt32LE(ifIndex('gen0'), 12);
    return testRun(gen.program('xdp_lab_gen'), { data: frame, repeat: 1000, ctxIn: ctx, flags: TestRunFlags.XDP_LIVE_FRAMES, batchSize: 64 });
  });
  t.equal(res.data.length, 0, 'nothing comes back in live mode');
  t.equal(res.ctxOut, undefined, 'no ctx comes back either');
  t.equal(counted(), 1000, 'all 1000 frames arrived at the peer');
});
