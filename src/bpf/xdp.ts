/**
 * XDP attach/detach/query by interface name, and inNetns() to do that inside a network
 * namespace.
 *
 * Interface names and XDP attachments are per network namespace, and so is the netlink socket
 * libbpf opens for each call. inNetns() moves the calling thread (Node's main thread, where
 * koffi's synchronous calls run) into a namespace with setns(2), runs a SYNCHRONOUS function
 * and moves back. Joining a network namespace is allowed for one thread of a multithreaded
 * process, and affects only that thread: libuv's pool threads stay where they are. Because no
 * JS from elsewhere can run until the function returns, nothing else opens sockets in the
 * wrong namespace. An async function is refused: across an await, timers, loggers and servers
 * of the rest of the process would run inside the namespace.
 */
import { closeSync, openSync } from 'node:fs';
import { LbError } from '../errors.js';
import { errnoName, libbpfErr } from './errors.js';
import { bpf, c, lastErrno } from './libbpf.js';

/** XDP_FLAGS_* of <linux/if_link.h>. */
export const XdpFlags = {
  UPDATE_IF_NOEXIST: 1 << 0,
  SKB_MODE: 1 << 1,
  DRV_MODE: 1 << 2,
  HW_MODE: 1 << 3,
  REPLACE: 1 << 4,
} as const;

export type XdpMode = 'native' | 'generic';

export interface AttachOptions {
  /** 'native' (driver mode, the default) or 'generic' (skb mode: slow, for drivers without XDP) */
  mode?: XdpMode;
  /** Replace a program already attached; without it, an attached program makes this fail with EBUSY. */
  replace?: boolean;
}

export interface XdpQuery {
  /** the single attached program (0 if none, or if several are attached in different modes) */
  progId: number;
  drvProgId: number;
  skbProgId: number;
  hwProgId: number;
  attachMode: 'none' | 'native' | 'generic' | 'hw' | 'multi';
}

const ATTACH_MODES = ['none', 'native', 'generic', 'hw', 'multi'] as const;

/** ifindex of an interface in the current network namespace (of this thread). */
export function ifIndex(ifname: string): number {
  const idx = c().if_nametoindex(ifname);
  if (idx === 0) {
    const errno = lastErrno();
    throw new LbError('ERR_LB_NO_INTERFACE', `no network interface named ${ifname}`, {
      errno: errno ? errnoName(errno) : 'ENODEV',
      hint: 'check the name with `ip link`; interfaces of another network namespace are not visible',
    });
  }
  return idx;
}

function modeFlags(mode: XdpMode): number {
  return mode === 'generic' ? XdpFlags.SKB_MODE : XdpFlags.DRV_MODE;
}

/** Attach an XDP program (fd, or anything with an fd) to an interface. */
export function attachXdp(ifname: string, prog: number | { fd: number }, opts: AttachOptions = {}): void {
  const mode = opts.mode ?? 'native';
  const fd = typeof prog === 'number' ? prog : prog.fd;
  let flags = modeFlags(mode);
  if (!opts.replace) flags |= XdpFlags.UPDATE_IF_NOEXIST;
  const ret = bpf().bpf_xdp_attach(ifIndex(ifname), fd, flags, null);
  if (ret < 0) throw libbpfErr('ERR_LB_BPF_ATTACH', `cannot attach XDP (${mode}) to ${ifname}`, ret);
}

/** Detach whatever XDP program is attached in `mode`. Detaching when none is attached is not an error. */
export function detachXdp(ifname: string, mode: XdpMode = 'native'): void {
  const ret = bpf().bpf_xdp_detach(ifIndex(ifname), modeFlags(mode), null);
  if (ret < 0) throw libbpfErr('ERR_LB_BPF_ATTACH', `cannot detach XDP (${mode}) from ${ifname}`, ret);
}

export function queryXdp(ifname: string): XdpQuery {
  const o = Buffer.alloc(32); // struct bpf_xdp_query_opts of libbpf 1.1
  o.writeBigUInt64LE(32n, 0);
  const ret = bpf().bpf_xdp_query(ifIndex(ifname), 0, o);
  if (ret < 0) throw libbpfErr('ERR_LB_BPF_ATTACH', `cannot query XDP on ${ifname}`, ret);
  return {
    progId: o.readUInt32LE(8),
    drvProgId: o.readUInt32LE(12),
    hwProgId: o.readUInt32LE(16),
    skbProgId: o.readUInt32LE(20),
    attachMode: ATTACH_MODES[o.readUInt8(24)] ?? 'multi',
  };
}

const CLONE_NEWNET = 0x40000000;

/**
 * Run a synchronous fn inside the named network namespace (/run/netns/<ns>, as `ip netns add`
 * creates it, or any path to a netns file) and come back, even if fn throws.
 */
export function inNetns<T>(ns: string, fn: () => T): T {
  const path = ns.includes('/') ? ns : `/run/netns/${ns}`;
  const libc = c();
  let target: number;
  try {
    target = openSync(path, 'r');
  } catch (e) {
    throw new LbError('ERR_LB_NO_INTERFACE', `no network namespace ${ns}`, {
      errno: (e as NodeJS.ErrnoException).code,
      cause: e,
      hint: 'list them with `ip netns list`',
    });
  }
  let home: number | undefined;
  try {
    // thread-self, not self: namespaces belong to threads, and self is the main thread only by luck
    home = openSync('/proc/thread-self/ns/net', 'r');
    if (libc.setns(target, CLONE_NEWNET) !== 0)
      throw libbpfErr('ERR_LB_NO_INTERFACE', `cannot enter network namespace ${ns}`, lastErrno(), {
        hint: 'entering a network namespace needs root (CAP_SYS_ADMIN)',
      });
    try {
      const out = fn();
      if (out !== null && typeof out === 'object' && typeof (out as { then?: unknown }).then === 'function')
        throw new LbError('ERR_LB_USAGE', 'inNetns() takes a synchronous function');
      return out;
    } finally {
      if (libc.setns(home, CLONE_NEWNET) !== 0) {
        // Staying in the wrong namespace would silently misroute every later socket: stop here.
        process.stderr.write(`xdplb: cannot return to the original network namespace (errno ${lastErrno()})\n`);
        process.abort();
      }
    }
  } finally {
    closeSync(target);
    if (home !== undefined) closeSync(home);
  }
}
