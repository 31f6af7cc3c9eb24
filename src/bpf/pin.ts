/**
 * Pinning: a pinned map or program outlives the process that loaded it, which is how a
 * restarted daemon finds its maps again (the project pins under /sys/fs/bpf/xdplb/).
 * A pin is a file on bpffs: unpinning is unlink(2), and a directory of pins is removed like
 * any directory.
 */
import { mkdirSync, rmSync, statfsSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { LbError } from '../errors.js';
import { bpf } from './libbpf.js';
import { libbpfErr } from './errors.js';

export const DEFAULT_PIN_DIR = '/sys/fs/bpf/xdplb';

const BPF_FS_MAGIC = 0xcafe4a11;

function fsErr(e: unknown, what: string): LbError {
  const errno = (e as NodeJS.ErrnoException).code ?? 'EIO';
  return new LbError('ERR_LB_BPF_PIN', `${what}: ${errno}`, {
    errno,
    cause: e,
    hint:
      errno === 'ENOENT' || errno === 'EPERM' || errno === 'EACCES'
        ? 'is bpffs mounted at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf), and are we root?'
        : undefined,
  });
}

/** Create a pin directory (and its parents) on bpffs. */
export function ensurePinDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw fsErr(e, `cannot create the pin directory ${dir}`);
  }
  assertBpffs(dir);
}

/** Throw unless `dir` lives on a bpffs mount (pins anywhere else fail with EPERM). */
export function assertBpffs(dir: string): void {
  let type: number;
  try {
    type = statfsSync(dir).type;
  } catch (e) {
    throw fsErr(e, `cannot stat ${dir}`);
  }
  if (type !== BPF_FS_MAGIC)
    throw new LbError('ERR_LB_BPF_PIN', `${dir} is not on a bpf filesystem`, {
      hint: 'mount bpffs: mount -t bpf bpf /sys/fs/bpf',
    });
}

/** Pin any BPF fd (map, program, link) at `path`, creating the parent directory. */
export function pinFd(fd: number, path: string, what = 'object'): void {
  ensurePinDir(dirname(path));
  const ret = bpf().bpf_obj_pin(fd, path);
  if (ret < 0) throw libbpfErr('ERR_LB_BPF_PIN', `cannot pin ${what} at ${path}`, ret);
}

/** Remove one pin. Returns false if nothing was pinned there. */
export function unpin(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw fsErr(e, `cannot unpin ${path}`);
  }
}

/** Remove a pin directory and every pin under it. */
export function removePinDir(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch (e) {
    throw fsErr(e, `cannot remove the pin directory ${dir}`);
  }
}
