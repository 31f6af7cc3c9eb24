/**
 * BPF_PROG_TEST_RUN: run a loaded program on a packet in the kernel without a network, and get
 * its verdict, its output packet and its run time. The project's packet fixtures and benchmarks
 * go through here.
 *
 * Caveat (shared/LAB-NOTES.md): with repeat > 1 the kernel does not restore the packet between
 * runs, so a program that rewrites the packet sees its own output from the second run on.
 */
import { LbError } from '../errors.js';
import { libbpfErr } from './errors.js';
import { bpf, readNative, withNative } from './libbpf.js';

export interface TestRunOptions {
  /** the packet, starting at the Ethernet header */
  data: Buffer;
  /** runs to time; duration is the kernel's average per run (default 1) */
  repeat?: number;
  /**
   * struct xdp_md to run with (e.g. ingress_ifindex, rx_queue_index); 24 bytes. data and
   * data_end are offsets into `data`; a data_end of 0 is replaced by the packet length.
   */
  ctxIn?: Buffer;
  /** room for the output packet; the default leaves space for encapsulation */
  dataOutSize?: number;
  /** BPF_F_TEST_* flags, e.g. BPF_F_TEST_XDP_LIVE_FRAMES (2) */
  flags?: number;
  /** for BPF_F_TEST_XDP_LIVE_FRAMES: frames per batch */
  batchSize?: number;
}

export interface TestRunResult {
  /** the program's return value: an XDP verdict for XDP programs */
  retval: number;
  /** nanoseconds per run, as the kernel reports it (averaged over `repeat`) */
  duration: number;
  /** the output packet, trimmed to its length */
  data: Buffer;
  /** the output context, when ctxIn was given */
  ctxOut?: Buffer;
}

export const XdpAction = { ABORTED: 0, DROP: 1, PASS: 2, TX: 3, REDIRECT: 4 } as const;

export const TestRunFlags = {
  /**
   * XDP only (kernel >= 5.18): the verdicts are carried out (XDP_TX leaves through the ctx's
   * ingress interface, XDP_PASS enters its stack), in batches of batchSize; nothing comes back,
   * so the result's data is empty and duration 0. What xdp-trafficgen is built on.
   */
  XDP_LIVE_FRAMES: 1 << 1,
} as const;

const TEST_RUN_OPTS_SIZE = 80; // sizeof(struct bpf_test_run_opts) in libbpf 1.1

export function testRun(prog: number | { fd: number }, opts: TestRunOptions): TestRunResult {
  const fd = typeof prog === 'number' ? prog : prog.fd;
  const { data } = opts;
  // Live frames are sent, not returned: the kernel refuses data_out and ctx_out in that mode.
  const live = ((opts.flags ?? 0) & TestRunFlags.XDP_LIVE_FRAMES) !== 0;
  const outSize = live ? 0 : (opts.dataOutSize ?? Math.max(4096, data.length + 512));
  const ctxLen = opts.ctxIn?.length ?? 0;
  if (data.length === 0) throw new LbError('ERR_LB_BPF_TEST_RUN', 'test run needs a packet (data is empty)');
  // The struct carries pointers, so the buffers it points at live in native memory.
  return withNative([data.length, Math.max(outSize, 1), ctxLen, ctxLen], ([din, dout, cin, cout]) => {
    if (!din || !dout || !cin || !cout) throw new Error('unreachable');
    data.copy(din.buf);
    if (opts.ctxIn) {
      opts.ctxIn.copy(cin.buf);
      // The kernel takes data_end = 0 literally and runs the program on an empty packet: a
      // trap, since a zeroed struct xdp_md is the natural way to ask for "no special context".
      if (ctxLen >= 8 && cin.buf.readUInt32LE(4) === 0) cin.buf.writeUInt32LE(data.length, 4);
    }
    const o = Buffer.alloc(TEST_RUN_OPTS_SIZE);
    o.writeBigUInt64LE(BigInt(TEST_RUN_OPTS_SIZE), 0); // sz
    o.writeBigUInt64LE(din.ptr, 8); // data_in
    if (!live) o.writeBigUInt64LE(dout.ptr, 16); // data_out
    o.writeUInt32LE(data.length, 24); // data_size_in
    o.writeUInt32LE(outSize, 28); // data_size_out
    if (ctxLen > 0) {
      o.writeBigUInt64LE(cin.ptr, 32); // ctx_in
      o.writeUInt32LE(ctxLen, 48); // ctx_size_in
      if (!live) {
        o.writeBigUInt64LE(cout.ptr, 40); // ctx_out
        o.writeUInt32LE(ctxLen, 52); // ctx_size_out
      }
    }
    o.writeUInt32LE(opts.repeat ?? 1, 60); // repeat
    o.writeUInt32LE(opts.flags ?? 0, 68); // flags
    o.writeUInt32LE(opts.batchSize ?? 0, 76); // batch_size
    const ret = bpf().bpf_prog_test_run_opts(fd, o);
    if (ret < 0) throw libbpfErr('ERR_LB_BPF_TEST_RUN', `test run of program fd ${fd} failed`, ret);
    const outLen = Math.min(o.readUInt32LE(28), outSize);
    const res: TestRunResult = {
      retval: o.readUInt32LE(56),
      duration: o.readUInt32LE(64),
      data: readNative(dout.ptr, outLen),
    };
    if (ctxLen > 0 && !live) res.ctxOut = readNative(cout.ptr, Math.min(o.readUInt32LE(52), ctxLen));
    return res;
  });
}
