/**
 * BpfMap: raw key/value I/O on a map fd. Keys and values are Buffers laid out exactly as the C
 * structs; typed codecs live a layer up (src/dataplane/).
 */
import { closeSync, readlinkSync } from 'node:fs';
import { LbError } from '../errors.js';
import { bpf, c, lastErrno, possibleCpus, viewNative, type Ptr } from './libbpf.js';
import { errnoName, libbpfErr } from './errors.js';
import { pinFd } from './pin.js';

/** BPF_MAP_TYPE_* names, for messages and for `typeName`. */
const MAP_TYPE_NAMES = [
  'unspec', 'hash', 'array', 'prog_array', 'perf_event_array', 'percpu_hash', 'percpu_array',
  'stack_trace', 'cgroup_array', 'lru_hash', 'lru_percpu_hash', 'lpm_trie', 'array_of_maps',
  'hash_of_maps', 'devmap', 'sockmap', 'cpumap', 'xskmap', 'sockhash', 'cgroup_storage',
  'reuseport_sockarray', 'percpu_cgroup_storage', 'queue', 'stack', 'sk_storage', 'devmap_hash',
  'struct_ops', 'ringbuf', 'inode_storage', 'task_storage', 'bloom_filter', 'user_ringbuf',
  'cgrp_storage',
] as const;

export const MapType = {
  HASH: 1,
  ARRAY: 2,
  PERCPU_HASH: 5,
  PERCPU_ARRAY: 6,
  LRU_HASH: 9,
  LRU_PERCPU_HASH: 10,
  LPM_TRIE: 11,
  PERCPU_CGROUP_STORAGE: 21,
} as const;

const PER_CPU_TYPES = new Set<number>([
  MapType.PERCPU_HASH,
  MapType.PERCPU_ARRAY,
  MapType.LRU_PERCPU_HASH,
  MapType.PERCPU_CGROUP_STORAGE,
]);

/** Flags for update(): BPF_ANY, BPF_NOEXIST, BPF_EXIST. */
export const UpdateFlag = { ANY: 0, NOEXIST: 1, EXIST: 2 } as const;

export interface MapInfo {
  id: number;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
}

const MAP_INFO_SIZE = 88; // struct bpf_map_info in the uapi of kernel 6.x; the kernel fills what it knows

/** bpf_obj_get_info_by_fd for a map fd. */
export function mapInfoByFd(fd: number): MapInfo {
  const info = Buffer.alloc(MAP_INFO_SIZE);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(MAP_INFO_SIZE);
  const ret = bpf().bpf_obj_get_info_by_fd(fd, info, len);
  if (ret < 0) throw libbpfErr('ERR_LB_BPF_MAP', `cannot read the info of map fd ${fd}`, ret);
  return {
    type: info.readUInt32LE(0),
    id: info.readUInt32LE(4),
    keySize: info.readUInt32LE(8),
    valueSize: info.readUInt32LE(12),
    maxEntries: info.readUInt32LE(16),
    flags: info.readUInt32LE(20),
    name: cString(info.subarray(24, 40)),
  };
}

/**
 * What a BPF fd refers to. The info syscall cannot tell (it fills whichever struct matches the
 * fd), but the fd's anon inode name can: anon_inode:bpf-map, anon_inode:bpf-prog, ...
 */
export function fdKind(fd: number): 'map' | 'prog' | 'link' | 'other' {
  let target: string;
  try {
    target = readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return 'other';
  }
  if (target === 'anon_inode:bpf-map') return 'map';
  if (target === 'anon_inode:bpf-prog') return 'prog';
  if (target === 'anon_inode:bpf_link') return 'link';
  return 'other';
}

export function cString(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? b.length : nul).toString('utf8');
}

export class BpfMap {
  readonly name: string;
  readonly type: number;
  readonly keySize: number;
  readonly valueSize: number;
  readonly maxEntries: number;
  readonly isPerCpu: boolean;
  #fd: number;
  // Maps opened from a pin or by id own their fd; maps of a BpfObject borrow it from libbpf.
  readonly #ownsFd: boolean;
  #id: number | undefined;
  private mapped: { ptr: Ptr; len: number; buf: Buffer } | undefined;

  constructor(fd: number, info: Omit<MapInfo, 'id' | 'flags'> & { id?: number }, ownsFd: boolean) {
    this.#fd = fd;
    this.#ownsFd = ownsFd;
    this.name = info.name;
    this.type = info.type;
    this.keySize = info.keySize;
    this.valueSize = info.valueSize;
    this.maxEntries = info.maxEntries;
    this.isPerCpu = PER_CPU_TYPES.has(info.type);
    this.#id = info.id;
  }

  /** Open a pinned map (bpf_obj_get) and learn its shape from the kernel. */
  static openPinned(path: string): BpfMap {
    const fd = bpf().bpf_obj_get(path);
    if (fd < 0) throw libbpfErr('ERR_LB_BPF_PIN', `cannot open the pinned map ${path}`, fd);
    return BpfMap.#fromOwnedFd(fd, path);
  }

  /** Open a map by its kernel id (as bpftool map show lists them). */
  static fromId(id: number): BpfMap {
    const fd = bpf().bpf_map_get_fd_by_id(id);
    if (fd < 0) throw libbpfErr('ERR_LB_BPF_MAP', `cannot open map id ${id}`, fd);
    return BpfMap.#fromOwnedFd(fd, `id ${id}`);
  }

  static #fromOwnedFd(fd: number, what: string): BpfMap {
    if (fdKind(fd) !== 'map') {
      closeSync(fd);
      throw new LbError('ERR_LB_BPF_MAP', `${what} is not a BPF map`);
    }
    let info: MapInfo;
    try {
      info = mapInfoByFd(fd);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
    return new BpfMap(fd, info, true);
  }

  get fd(): number {
    if (this.#fd < 0) throw new LbError('ERR_LB_BPF_MAP', `map ${this.name} used after close`);
    return this.#fd;
  }

  /** The kernel's id of this map (stable while the map exists; the same for every fd on it). */
  get id(): number {
    this.#id ??= mapInfoByFd(this.fd).id;
    return this.#id;
  }

  get typeName(): string {
    return MAP_TYPE_NAMES[this.type] ?? `type${this.type}`;
  }

  /** Bytes of one CPU's slot in a per-CPU value: the kernel aligns each to 8. */
  get perCpuStride(): number {
    return Math.ceil(this.valueSize / 8) * 8;
  }

  /** Bytes a lookup writes: valueSize, or one 8-aligned slot per possible CPU for per-CPU maps. */
  get fullValueSize(): number {
    return this.isPerCpu ? this.perCpuStride * possibleCpus() : this.valueSize;
  }

  /**
   * Maps a BPF_F_MMAPABLE array into this process: the returned Buffer is the map's memory, so a
   * write is a store the data path sees at once, with no system call. Lets the control plane
   * change single ring slots instead of whole values. Valid until unmap() or process exit.
   */
  mmap(): Buffer {
    if (this.mapped) return this.mapped.buf;
    const len = Math.ceil((this.maxEntries * Math.ceil(this.valueSize / 8) * 8) / 4096) * 4096;
    const PROT_READ_WRITE = 0x3;
    const MAP_SHARED = 0x1;
    const ptr = c().mmap(null, len, PROT_READ_WRITE, MAP_SHARED, this.fd, 0);
    if (ptr === null || BigInt(ptr as bigint) === BigInt('0xffffffffffffffff')) {
      throw libbpfErr('ERR_LB_BPF_MAP', `mmap map ${this.name}`, -lastErrno(), {
        hint: 'only arrays created with BPF_F_MMAPABLE can be mapped',
      });
    }
    this.mapped = { ptr, len, buf: viewNative(ptr, len) };
    return this.mapped.buf;
  }

  unmap(): void {
    if (!this.mapped) return;
    c().munmap(this.mapped.ptr, this.mapped.len);
    this.mapped = undefined;
  }

  close(): void {
    this.unmap();
    if (this.#ownsFd && this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }

  /** Pin this map at `path` (parent directories are created). */
  pin(path: string): void {
    pinFd(this.fd, path, `map ${this.name}`);
  }

  lookup(key: Buffer): Buffer | undefined {
    this.#noPerCpu('lookup', 'lookupPerCpu');
    const value = Buffer.alloc(this.valueSize);
    return this.#lookupInto(key, value) ? value : undefined;
  }

  /** Per-CPU maps: one Buffer of valueSize bytes per possible CPU. */
  lookupPerCpu(key: Buffer): Buffer[] | undefined {
    this.#perCpuOnly('lookupPerCpu');
    const raw = Buffer.alloc(this.fullValueSize);
    if (!this.#lookupInto(key, raw)) return undefined;
    return this.#splitPerCpu(raw);
  }

  update(key: Buffer, value: Buffer, flags: number = UpdateFlag.ANY): void {
    this.#noPerCpu('update', 'updatePerCpu');
    this.#checkKey(key);
    this.#checkLen('value', value, this.valueSize);
    this.#update(key, value, flags);
  }

  /** Per-CPU maps: one value per possible CPU, or a single value written to every CPU. */
  updatePerCpu(key: Buffer, values: Buffer[] | Buffer, flags: number = UpdateFlag.ANY): void {
    this.#perCpuOnly('updatePerCpu');
    this.#checkKey(key);
    const n = possibleCpus();
    const list = Array.isArray(values) ? values : Array.from({ length: n }, () => values);
    if (list.length !== n)
      throw new LbError('ERR_LB_BPF_MAP', `map ${this.name}: ${list.length} per-CPU values given, ${n} CPUs possible`);
    const raw = Buffer.alloc(this.fullValueSize);
    list.forEach((v, i) => {
      this.#checkLen('value', v, this.valueSize);
      v.copy(raw, i * this.perCpuStride);
    });
    this.#update(key, raw, flags);
  }

  /** Delete a key; false if it was not there. */
  delete(key: Buffer): boolean {
    this.#checkKey(key);
    const ret = bpf().bpf_map_delete_elem(this.fd, key);
    if (ret === 0) return true;
    if (errnoName(ret) === 'ENOENT') return false;
    throw libbpfErr('ERR_LB_BPF_MAP', `cannot delete from map ${this.name}`, ret, {
      hint: errnoName(ret) === 'EINVAL' && this.#isArray() ? 'array map entries cannot be deleted, only overwritten' : undefined,
    });
  }

  /**
   * Iterate the keys (bpf_map_get_next_key). If the current key is deleted meanwhile, a hash
   * map restarts from its first key, so deleting while iterating may yield a key twice.
   */
  *keys(): Generator<Buffer> {
    const lib = bpf();
    let prev: Buffer | null = null;
    for (;;) {
      const next = Buffer.alloc(this.keySize);
      const ret = lib.bpf_map_get_next_key(this.fd, prev, next);
      if (ret < 0) {
        if (errnoName(ret) === 'ENOENT') return;
        throw libbpfErr('ERR_LB_BPF_MAP', `cannot iterate map ${this.name}`, ret);
      }
      yield next;
      prev = next;
    }
  }

  /** Iterate [key, value]; keys removed between the two steps are skipped. */
  *entries(): Generator<[Buffer, Buffer]> {
    this.#noPerCpu('entries', 'entriesPerCpu');
    for (const k of this.keys()) {
      const v = this.lookup(k);
      if (v !== undefined) yield [k, v];
    }
  }

  *entriesPerCpu(): Generator<[Buffer, Buffer[]]> {
    for (const k of this.keys()) {
      const v = this.lookupPerCpu(k);
      if (v !== undefined) yield [k, v];
    }
  }

  /**
   * Update `count` entries in one syscall. `keys` holds count keys back to back, `values` count
   * values (for per-CPU maps: count × possibleCpus() slots of perCpuStride bytes). Map types
   * without batch support (the kernel says ENOTSUPP or EINVAL) are updated one by one instead,
   * from the first entry the kernel did not take; an entry that is really invalid then fails
   * with its own error. Returns the number of entries written.
   */
  updateBatch(keys: Buffer, values: Buffer, count: number, flags: number = UpdateFlag.ANY): number {
    const vsz = this.fullValueSize;
    this.#checkLen('keys', keys, this.keySize * count);
    this.#checkLen('values', values, vsz * count);
    if (count === 0) return 0;
    const cnt = Buffer.alloc(4);
    cnt.writeUInt32LE(count);
    const opts = Buffer.alloc(24); // struct bpf_map_batch_opts: sz, elem_flags, flags
    opts.writeBigUInt64LE(24n, 0);
    opts.writeBigUInt64LE(BigInt(flags), 8);
    const ret = bpf().bpf_map_update_batch(this.fd, keys, values, cnt, opts);
    if (ret === 0) return count;
    // The kernel writes back how many entries it processed, but only once it got that far:
    // a map type without batch support fails before that and leaves our count untouched.
    const back = cnt.readUInt32LE(0);
    const done = back < count ? back : 0;
    const err = errnoName(ret);
    if (err === 'EINVAL' || err === 'ENOTSUPP' || err === 'EOPNOTSUPP') {
      for (let i = done; i < count; i++)
        this.#update(
          keys.subarray(i * this.keySize, (i + 1) * this.keySize),
          values.subarray(i * vsz, (i + 1) * vsz),
          flags,
        );
      return count;
    }
    throw libbpfErr('ERR_LB_BPF_MAP', `batch update of map ${this.name} failed after ${done} of ${count} entries`, ret);
  }

  /**
   * Read the whole map `chunk` entries per system call (bpf_map_lookup_batch): yields batches of
   * `count` keys and values back to back (values as lookup() would return them; per-CPU maps:
   * fullValueSize each). Entries changed meanwhile may be seen in either state, as with keys().
   * Map types without batch support fall back to keys() and lookups, one entry per batch.
   */
  *lookupBatch(chunk = 16384): Generator<{ keys: Buffer; values: Buffer; count: number }> {
    const vsz = this.fullValueSize;
    // The position token is a bucket index for hashes, a key for arrays: room for either.
    const tokenSize = Math.max(8, this.keySize);
    let inBatch: Buffer | null = null;
    for (let n = chunk; ; ) {
      const outBatch = Buffer.alloc(tokenSize);
      // Unzeroed: only the first `count` entries, which the kernel writes, are handed out.
      const keys = Buffer.allocUnsafeSlow(this.keySize * n);
      const values = Buffer.allocUnsafeSlow(vsz * n);
      const cnt = Buffer.alloc(4);
      cnt.writeUInt32LE(n);
      const opts = Buffer.alloc(24); // struct bpf_map_batch_opts: sz, elem_flags, flags
      opts.writeBigUInt64LE(24n, 0);
      const ret = bpf().bpf_map_lookup_batch(this.fd, inBatch, outBatch, keys, values, cnt, opts);
      const err = ret < 0 ? errnoName(ret) : null;
      if (err === 'ENOSPC' && n < (1 << 20)) {
        n *= 4; // one bucket holds more than n entries: retry the same position with more room
        continue;
      }
      if (err === 'EINVAL' || err === 'ENOTSUPP' || err === 'EOPNOTSUPP') {
        if (inBatch !== null) throw libbpfErr('ERR_LB_BPF_MAP', `batch lookup of map ${this.name} failed midway`, ret);
        for (const k of this.keys()) {
          const v = this.isPerCpu ? this.#lookupRaw(k) : this.lookup(k);
          if (v) yield { keys: k, values: v, count: 1 };
        }
        return;
      }
      if (err !== null && err !== 'ENOENT') throw libbpfErr('ERR_LB_BPF_MAP', `batch lookup of map ${this.name} failed`, ret);
      const got = cnt.readUInt32LE(0);
      if (got > 0) yield { keys: keys.subarray(0, got * this.keySize), values: values.subarray(0, got * vsz), count: got };
      if (err === 'ENOENT') return; // that was the last batch
      inBatch = outBatch;
    }
  }

  #lookupRaw(key: Buffer): Buffer | undefined {
    const raw = Buffer.alloc(this.fullValueSize);
    return this.#lookupInto(key, raw) ? raw : undefined;
  }

  #lookupInto(key: Buffer, value: Buffer): boolean {
    this.#checkKey(key);
    const ret = bpf().bpf_map_lookup_elem(this.fd, key, value);
    if (ret === 0) return true;
    if (errnoName(ret) === 'ENOENT') return false;
    throw libbpfErr('ERR_LB_BPF_MAP', `cannot look up in map ${this.name}`, ret);
  }

  #update(key: Buffer, value: Buffer, flags: number): void {
    const ret = bpf().bpf_map_update_elem(this.fd, key, value, BigInt(flags));
    if (ret < 0) {
      const err = errnoName(ret);
      let hint: string | undefined;
      if (err === 'EEXIST' && flags === UpdateFlag.NOEXIST) hint = 'the key exists and NOEXIST was asked';
      else if (err === 'ENOENT' && flags === UpdateFlag.EXIST) hint = 'the key does not exist and EXIST was asked';
      else if (err === 'E2BIG' && this.#isArray()) hint = `index out of range: the map has ${this.maxEntries} entries`;
      throw libbpfErr('ERR_LB_BPF_MAP', `cannot update map ${this.name}`, ret, { hint });
    }
  }

  #isArray(): boolean {
    return this.type === MapType.ARRAY || this.type === MapType.PERCPU_ARRAY;
  }

  #splitPerCpu(raw: Buffer): Buffer[] {
    const out: Buffer[] = [];
    const n = possibleCpus();
    for (let i = 0; i < n; i++) out.push(raw.subarray(i * this.perCpuStride, i * this.perCpuStride + this.valueSize));
    return out;
  }

  #checkKey(key: Buffer): void {
    this.#checkLen('key', key, this.keySize);
  }

  #checkLen(what: string, b: Buffer, want: number): void {
    // A short buffer would let the kernel read past its end: refuse it here.
    if (b.length !== want)
      throw new LbError('ERR_LB_BPF_MAP', `map ${this.name}: ${what} is ${b.length} bytes, expected ${want}`);
  }

  #noPerCpu(op: string, alt: string): void {
    if (this.isPerCpu)
      throw new LbError('ERR_LB_BPF_MAP', `map ${this.name} is per-CPU (${this.typeName}): use ${alt}() instead of ${op}()`);
  }

  #perCpuOnly(op: string): void {
    if (!this.isPerCpu) throw new LbError('ERR_LB_BPF_MAP', `${op}() on map ${this.name}, which is not per-CPU`);
  }
}
