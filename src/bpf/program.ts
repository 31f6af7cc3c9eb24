/** BpfProgram: a loaded program's fd, from an object, a pin or a kernel id. */
import { closeSync } from 'node:fs';
import { LbError } from '../errors.js';
import { bpf } from './libbpf.js';
import { libbpfErr } from './errors.js';
import { cString, fdKind } from './map.js';
import { pinFd } from './pin.js';

export interface ProgInfo {
  id: number;
  type: number;
  name: string;
}

const PROG_INFO_SIZE = 232; // struct bpf_prog_info of the 6.x uapi

export function progInfoByFd(fd: number): ProgInfo {
  const info = Buffer.alloc(PROG_INFO_SIZE);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(PROG_INFO_SIZE);
  const ret = bpf().bpf_obj_get_info_by_fd(fd, info, len);
  if (ret < 0) throw libbpfErr('ERR_LB_BPF_LOAD', `cannot read the info of program fd ${fd}`, ret);
  return { type: info.readUInt32LE(0), id: info.readUInt32LE(4), name: cString(info.subarray(64, 80)) };
}

export class BpfProgram {
  readonly name: string;
  #fd: number;
  readonly #ownsFd: boolean;
  #info: ProgInfo | undefined;

  constructor(fd: number, name: string, ownsFd: boolean) {
    this.#fd = fd;
    this.name = name;
    this.#ownsFd = ownsFd;
  }

  /** Open a pinned program, e.g. to attach it again after a restart. */
  static openPinned(path: string): BpfProgram {
    const fd = bpf().bpf_obj_get(path);
    if (fd < 0) throw libbpfErr('ERR_LB_BPF_PIN', `cannot open the pinned program ${path}`, fd);
    return BpfProgram.#fromOwnedFd(fd, path);
  }

  /** Open a program by kernel id (as queryXdp reports it). */
  static fromId(id: number): BpfProgram {
    const fd = bpf().bpf_prog_get_fd_by_id(id);
    if (fd < 0) throw libbpfErr('ERR_LB_BPF_LOAD', `cannot open program id ${id}`, fd);
    return BpfProgram.#fromOwnedFd(fd, `id ${id}`);
  }

  static #fromOwnedFd(fd: number, what: string): BpfProgram {
    if (fdKind(fd) !== 'prog') {
      closeSync(fd);
      throw new LbError('ERR_LB_BPF_PIN', `${what} is not a BPF program`);
    }
    let info: ProgInfo;
    try {
      info = progInfoByFd(fd);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    const p = new BpfProgram(fd, info.name, true);
    p.#info = info;
    return p;
  }

  get fd(): number {
    if (this.#fd < 0) throw new LbError('ERR_LB_BPF_LOAD', `program ${this.name} used after close`);
    return this.#fd;
  }

  get id(): number {
    this.#info ??= progInfoByFd(this.fd);
    return this.#info.id;
  }

  /** BPF_PROG_TYPE_* number (6 = XDP). */
  get type(): number {
    this.#info ??= progInfoByFd(this.fd);
    return this.#info.type;
  }

  pin(path: string): void {
    pinFd(this.fd, path, `program ${this.name}`);
  }

  close(): void {
    if (this.#ownsFd && this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }
}
