/**
 * The one place where a failed libbpf or system call becomes an LbError: the errno name, and a
 * hint for the failures an operator can fix.
 */
import { constants } from 'node:os';
import { LbError } from '../errors.js';
import type { LbErrorCode } from '../errors.js';

// The kernel's internal ENOTSUPP (524) leaks out of the bpf() syscall for unsupported map
// operations; userspace errno.h does not define it, so os.constants does not either.
const ENOTSUPP = 524;

const NAMES = new Map<number, string>();
for (const [name, num] of Object.entries(constants.errno)) {
  // Aliases (EWOULDBLOCK = EAGAIN, EDEADLOCK = EDEADLK) share a number: keep the first,
  // which is the name strerror and the man pages use.
  if (!NAMES.has(num)) NAMES.set(num, name);
}
NAMES.set(ENOTSUPP, 'ENOTSUPP');

/** errno name for a positive or negative errno number ('E?123' when unknown). */
export function errnoName(code: number): string {
  const n = Math.abs(code);
  return NAMES.get(n) ?? `E?${n}`;
}

/** errno number for a name, or undefined. */
export function errnoNumber(name: string): number | undefined {
  if (name === 'ENOTSUPP') return ENOTSUPP;
  return (constants.errno as Record<string, number | undefined>)[name];
}

function hintFor(code: LbErrorCode, errno: string): string | undefined {
  switch (errno) {
    case 'EPERM':
    case 'EACCES':
      return code === 'ERR_LB_BPF_VERIFIER'
        ? 'the verifier rejected the program; see the log in the error detail'
        : 'BPF needs root (or CAP_BPF + CAP_NET_ADMIN): run as root';
    case 'ENOENT':
      if (code === 'ERR_LB_BPF_PIN' || code === 'ERR_LB_BPF_LOAD')
        return 'is bpffs mounted at /sys/fs/bpf? (mount -t bpf bpf /sys/fs/bpf)';
      return undefined;
    case 'E2BIG':
    case 'ENOSPC':
      if (code === 'ERR_LB_BPF_MAP') return 'the map is full: raise its max_entries';
      if (code === 'ERR_LB_BPF_TEST_RUN') return 'the output buffer is too small: raise dataOutSize';
      return undefined;
    case 'EBUSY':
    case 'EEXIST':
      if (code === 'ERR_LB_BPF_ATTACH')
        return 'another XDP program is attached to this interface (or one in the other mode): detach it, or attach with replace';
      if (code === 'ERR_LB_BPF_PIN') return 'something is already pinned at this path: unpin it first';
      return undefined;
    case 'EOPNOTSUPP':
    case 'ENOTSUPP':
      if (code === 'ERR_LB_BPF_ATTACH')
        return 'the driver has no native XDP support: use mode generic';
      return undefined;
    case 'EINVAL':
      if (code === 'ERR_LB_BPF_TEST_RUN')
        return 'an XDP test run needs at least a 14-byte Ethernet header, and ctxIn must be a valid struct xdp_md';
      return undefined;
    case 'ENOMEM':
      return 'the kernel could not allocate memory (map too large, or RLIMIT_MEMLOCK on old kernels)';
    default:
      return undefined;
  }
}

export interface LibbpfErrOptions {
  detail?: string;
  cause?: unknown;
  hint?: string;
}

/**
 * Turn a failed call into an LbError. `ret` is libbpf's negative return (libbpf 1.x returns
 * -errno) or, for calls that return NULL or -1, the positive errno.
 */
export function libbpfErr(code: LbErrorCode, what: string, ret: number, opts: LibbpfErrOptions = {}): LbError {
  const errno = errnoName(ret);
  const desc = ret === 0 ? 'failed' : errno;
  return new LbError(code, `${what}: ${desc}`, {
    errno,
    hint: opts.hint ?? hintFor(code, errno),
    detail: opts.detail,
    cause: opts.cause,
  });
}
