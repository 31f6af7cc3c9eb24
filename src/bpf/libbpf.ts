/**
 * The raw libbpf 1.1 and libc functions, declared once for koffi, plus the native-memory and
 * logging plumbing the typed wrappers need. Nothing outside src/bpf/ should import this file.
 *
 * Conventions: koffi represents pointers as bigint and NULL as null. Opaque libbpf handles
 * (struct bpf_object *, struct bpf_map *, struct btf *) are declared `void *`. Buffers passed
 * for `void *` arguments reach C without a copy and must only be used during the call; any
 * pointer that is stored inside a struct, or kept by libbpf after the call, points at memory
 * from nativeAlloc() instead, which the garbage collector cannot move or free.
 */
import koffi from 'koffi';
import type { LibraryHandle } from 'koffi';
import { LbError } from '../errors.js';

export type Ptr = bigint;

/* eslint-disable @typescript-eslint/no-explicit-any */
type Fn<A extends any[], R> = (...args: A) => R;

export interface Libbpf {
  bpf_object__open_file: Fn<[path: string, opts: Buffer | null], Ptr | null>;
  bpf_object__load: Fn<[obj: Ptr], number>;
  bpf_object__close: Fn<[obj: Ptr], void>;
  bpf_object__btf: Fn<[obj: Ptr], Ptr | null>;
  bpf_object__find_map_by_name: Fn<[obj: Ptr, name: string], Ptr | null>;
  bpf_object__find_program_by_name: Fn<[obj: Ptr, name: string], Ptr | null>;
  bpf_object__next_map: Fn<[obj: Ptr, map: Ptr | null], Ptr | null>;
  bpf_object__next_program: Fn<[obj: Ptr, prog: Ptr | null], Ptr | null>;
  bpf_program__name: Fn<[prog: Ptr], string>;
  bpf_program__section_name: Fn<[prog: Ptr], string>;
  bpf_program__fd: Fn<[prog: Ptr], number>;
  bpf_map__name: Fn<[map: Ptr], string>;
  bpf_map__fd: Fn<[map: Ptr], number>;
  bpf_map__type: Fn<[map: Ptr], number>;
  bpf_map__key_size: Fn<[map: Ptr], number>;
  bpf_map__value_size: Fn<[map: Ptr], number>;
  bpf_map__max_entries: Fn<[map: Ptr], number>;
  bpf_map__set_max_entries: Fn<[map: Ptr, n: number], number>;
  bpf_map__set_pin_path: Fn<[map: Ptr, path: string | null], number>;
  bpf_map__pin_path: Fn<[map: Ptr], string | null>;
  bpf_map__is_pinned: Fn<[map: Ptr], boolean>;
  bpf_map__initial_value: Fn<[map: Ptr, psize: Buffer], Ptr | null>;
  bpf_map__set_initial_value: Fn<[map: Ptr, data: Buffer, size: number], number>;
  bpf_map_lookup_elem: Fn<[fd: number, key: Buffer, value: Buffer], number>;
  bpf_map_update_elem: Fn<[fd: number, key: Buffer, value: Buffer, flags: bigint], number>;
  bpf_map_delete_elem: Fn<[fd: number, key: Buffer], number>;
  bpf_map_get_next_key: Fn<[fd: number, key: Buffer | null, next: Buffer], number>;
  bpf_map_update_batch: Fn<[fd: number, keys: Buffer, values: Buffer, count: Buffer, opts: Buffer | null], number>;
  bpf_map_lookup_batch: Fn<
    [fd: number, inBatch: Buffer | null, outBatch: Buffer, keys: Buffer, values: Buffer, count: Buffer, opts: Buffer | null],
    number
  >;
  bpf_obj_pin: Fn<[fd: number, path: string], number>;
  bpf_obj_get: Fn<[path: string], number>;
  bpf_obj_get_info_by_fd: Fn<[fd: number, info: Buffer, len: Buffer], number>;
  bpf_prog_get_fd_by_id: Fn<[id: number], number>;
  bpf_map_get_fd_by_id: Fn<[id: number], number>;
  bpf_prog_test_run_opts: Fn<[fd: number, opts: Buffer], number>;
  bpf_xdp_attach: Fn<[ifindex: number, progFd: number, flags: number, opts: Buffer | null], number>;
  bpf_xdp_detach: Fn<[ifindex: number, flags: number, opts: Buffer | null], number>;
  bpf_xdp_query: Fn<[ifindex: number, flags: number, opts: Buffer], number>;
  libbpf_num_possible_cpus: Fn<[], number>;
  btf__parse: Fn<[path: string, ext: null], Ptr | null>;
  btf__free: Fn<[btf: Ptr], void>;
  btf__type_cnt: Fn<[btf: Ptr], number>;
  btf__type_by_id: Fn<[btf: Ptr, id: number], Ptr | null>;
  btf__name_by_offset: Fn<[btf: Ptr, off: number], string | null>;
  btf__find_by_name_kind: Fn<[btf: Ptr, name: string, kind: number], number>;
  btf__resolve_size: Fn<[btf: Ptr, id: number], bigint | number>;
  btf__resolve_type: Fn<[btf: Ptr, id: number], number>;
}

export interface Libc {
  if_nametoindex: Fn<[name: string], number>;
  setns: Fn<[fd: number, nstype: number], number>;
  mmap: Fn<[addr: Ptr | null, len: number, prot: number, flags: number, fd: number, off: number], Ptr>;
  munmap: Fn<[addr: Ptr, len: number], number>;
}

let libbpf: Libbpf | undefined;
let libc: Libc | undefined;

function declare<T>(lib: LibraryHandle, defs: Record<keyof T, string>): T {
  const out: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(defs) as [string, string][]) out[name] = lib.func(def);
  return out as T;
}

/** The libbpf functions, loaded on first use so that importing this module never fails. */
export function bpf(): Libbpf {
  if (libbpf) return libbpf;
  let lib: LibraryHandle;
  try {
    lib = koffi.load('libbpf.so.1');
  } catch (cause) {
    throw new LbError('ERR_LB_BPF_OPEN', 'cannot load libbpf.so.1', {
      cause,
      hint: 'install libbpf 1.x (Debian: apt-get install libbpf1)',
    });
  }
  libbpf = declare<Libbpf>(lib, {
    bpf_object__open_file: 'void *bpf_object__open_file(const char *path, const void *opts)',
    bpf_object__load: 'int bpf_object__load(void *obj)',
    bpf_object__close: 'void bpf_object__close(void *obj)',
    bpf_object__btf: 'void *bpf_object__btf(void *obj)',
    bpf_object__find_map_by_name: 'void *bpf_object__find_map_by_name(void *obj, const char *name)',
    bpf_object__find_program_by_name: 'void *bpf_object__find_program_by_name(void *obj, const char *name)',
    bpf_object__next_map: 'void *bpf_object__next_map(void *obj, void *map)',
    bpf_object__next_program: 'void *bpf_object__next_program(void *obj, void *prog)',
    bpf_program__name: 'const char *bpf_program__name(void *prog)',
    bpf_program__section_name: 'const char *bpf_program__section_name(void *prog)',
    bpf_program__fd: 'int bpf_program__fd(void *prog)',
    bpf_map__name: 'const char *bpf_map__name(void *map)',
    bpf_map__fd: 'int bpf_map__fd(void *map)',
    bpf_map__type: 'int bpf_map__type(void *map)',
    bpf_map__key_size: 'uint32_t bpf_map__key_size(void *map)',
    bpf_map__value_size: 'uint32_t bpf_map__value_size(void *map)',
    bpf_map__max_entries: 'uint32_t bpf_map__max_entries(void *map)',
    bpf_map__set_max_entries: 'int bpf_map__set_max_entries(void *map, uint32_t n)',
    bpf_map__set_pin_path: 'int bpf_map__set_pin_path(void *map, const char *path)',
    bpf_map__pin_path: 'const char *bpf_map__pin_path(void *map)',
    bpf_map__is_pinned: 'bool bpf_map__is_pinned(void *map)',
    bpf_map__initial_value: 'void *bpf_map__initial_value(void *map, void *psize)',
    bpf_map__set_initial_value: 'int bpf_map__set_initial_value(void *map, const void *data, size_t size)',
    bpf_map_lookup_elem: 'int bpf_map_lookup_elem(int fd, const void *key, void *value)',
    bpf_map_update_elem: 'int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)',
    bpf_map_delete_elem: 'int bpf_map_delete_elem(int fd, const void *key)',
    bpf_map_get_next_key: 'int bpf_map_get_next_key(int fd, const void *key, void *next)',
    bpf_map_update_batch:
      'int bpf_map_update_batch(int fd, const void *keys, const void *values, void *count, const void *opts)',
    bpf_map_lookup_batch:
      'int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, void *count, const void *opts)',
    bpf_obj_pin: 'int bpf_obj_pin(int fd, const char *path)',
    bpf_obj_get: 'int bpf_obj_get(const char *path)',
    bpf_obj_get_info_by_fd: 'int bpf_obj_get_info_by_fd(int fd, void *info, void *len)',
    bpf_prog_get_fd_by_id: 'int bpf_prog_get_fd_by_id(uint32_t id)',
    bpf_map_get_fd_by_id: 'int bpf_map_get_fd_by_id(uint32_t id)',
    bpf_prog_test_run_opts: 'int bpf_prog_test_run_opts(int fd, void *opts)',
    bpf_xdp_attach: 'int bpf_xdp_attach(int ifindex, int prog_fd, uint32_t flags, const void *opts)',
    bpf_xdp_detach: 'int bpf_xdp_detach(int ifindex, uint32_t flags, const void *opts)',
    bpf_xdp_query: 'int bpf_xdp_query(int ifindex, int flags, void *opts)',
    libbpf_num_possible_cpus: 'int libbpf_num_possible_cpus(void)',
    btf__parse: 'void *btf__parse(const char *path, void *btf_ext)',
    btf__free: 'void btf__free(void *btf)',
    btf__type_cnt: 'uint32_t btf__type_cnt(void *btf)',
    btf__type_by_id: 'void *btf__type_by_id(void *btf, uint32_t id)',
    btf__name_by_offset: 'const char *btf__name_by_offset(void *btf, uint32_t off)',
    btf__find_by_name_kind: 'int32_t btf__find_by_name_kind(void *btf, const char *name, uint32_t kind)',
    btf__resolve_size: 'int64_t btf__resolve_size(void *btf, uint32_t id)',
    btf__resolve_type: 'int btf__resolve_type(void *btf, uint32_t id)',
  });
  installPrintCallback(lib);
  return libbpf;
}

let libcHandle: LibraryHandle | undefined;
function libcLib(): LibraryHandle {
  libcHandle ??= koffi.load('libc.so.6');
  return libcHandle;
}

export function c(): Libc {
  libc ??= declare<Libc>(libcLib(), {
    if_nametoindex: 'unsigned int if_nametoindex(const char *name)',
    setns: 'int setns(int fd, int nstype)',
    mmap: 'void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off)',
    munmap: 'int munmap(void *addr, size_t len)',
  });
  return libc;
}

/** errno of the last native call made through koffi (for calls that return NULL or -1). */
export function lastErrno(): number {
  return koffi.errno();
}

// ---------------------------------------------------------------------------------------------
// Native memory

/** Memory outside the JS heap: `buf` is a Buffer view onto it, `ptr` its address for structs. */
export interface NativeBuffer {
  readonly ptr: Ptr;
  readonly buf: Buffer;
  free(): void;
}

export function nativeAlloc(size: number): NativeBuffer {
  const n = Math.max(1, size);
  const ptr = koffi.alloc('uint8_t', n) as Ptr;
  const buf = Buffer.from(koffi.view(ptr, n));
  buf.fill(0);
  let freed = false;
  return {
    ptr,
    buf,
    free() {
      if (!freed) {
        freed = true;
        koffi.free(ptr);
      }
    },
  };
}

/** Run fn with native buffers of the given sizes, always freeing them. */
export function withNative<T>(sizes: number[], fn: (bufs: NativeBuffer[]) => T): T {
  const bufs: NativeBuffer[] = [];
  try {
    for (const s of sizes) bufs.push(nativeAlloc(s));
    return fn(bufs);
  } finally {
    for (const b of bufs) b.free();
  }
}

/** Copy `len` bytes at a native address into a new Buffer. */
export function readNative(ptr: Ptr, len: number): Buffer {
  if (len === 0) return Buffer.alloc(0);
  return Buffer.from(Buffer.from(koffi.view(ptr, len)));
}

/** A Buffer view onto native memory that stays owned by C (valid only while its owner lives). */
export function viewNative(ptr: Ptr, len: number): Buffer {
  return Buffer.from(koffi.view(ptr, len));
}

// ---------------------------------------------------------------------------------------------
// libbpf's log

export type LibbpfLevel = 'warn' | 'info' | 'debug';
export type LibbpfLogger = (level: LibbpfLevel, message: string) => void;

const LEVELS: LibbpfLevel[] = ['warn', 'info', 'debug'];
let logger: LibbpfLogger | undefined;
let loggerDebug = false;
const captures: string[][] = [];
let printCb: unknown;

/**
 * Route libbpf's messages to a logger (the daemon passes pino). Without one they are not
 * printed at all: libbpf's default writes to stderr, which would break --json output, and
 * the warnings that matter are attached to the LbError of the call that caused them.
 */
export function setLibbpfLogger(fn: LibbpfLogger | undefined, opts: { debug?: boolean } = {}): void {
  logger = fn;
  loggerDebug = opts.debug ?? false;
  bpf();
}

/**
 * Run fn while collecting libbpf's warnings and infos; fn gets the (growing) list so that its
 * error path can put them into an error's detail.
 */
export function captureLibbpfLog<T>(fn: (lines: string[]) => T): T {
  const lines: string[] = [];
  captures.push(lines);
  try {
    return fn(lines);
  } finally {
    captures.splice(captures.indexOf(lines), 1);
  }
}

function installPrintCallback(lib: LibraryHandle): void {
  // libbpf_print_fn_t takes a va_list. On x86-64 and arm64 Linux a va_list parameter is passed
  // as a pointer, so it can be handed on to vsnprintf unchanged.
  const vsnprintf = libcLib().func('int vsnprintf(_Out_ uint8_t *buf, size_t n, void *fmt, void *ap)') as Fn<
    [Buffer, number, Ptr, Ptr],
    number
  >;
  const proto = koffi.proto('int xdplb_libbpf_print_fn(int level, void *fmt, void *ap)');
  const setPrint = lib.func('void *libbpf_set_print(xdplb_libbpf_print_fn *fn)') as Fn<[unknown], unknown>;
  const scratch = Buffer.alloc(8192);
  printCb = koffi.register((level: number, fmt: Ptr, ap: Ptr): number => {
    const lvl = LEVELS[level] ?? 'debug';
    if (lvl === 'debug' && !(logger && loggerDebug)) return 0;
    const n = vsnprintf(scratch, scratch.length, fmt, ap);
    if (n <= 0) return 0;
    const msg = scratch
      .subarray(0, Math.min(n, scratch.length - 1))
      .toString('utf8')
      .replace(/^libbpf: /, '')
      .trimEnd();
    if (lvl !== 'debug') for (const c of captures) c.push(msg);
    if (logger) {
      try {
        logger(lvl, msg);
      } catch {
        // a throwing logger must not unwind through libbpf's C frames
      }
    }
    return 0;
  }, koffi.pointer(proto));
  setPrint(printCb);
}

// ---------------------------------------------------------------------------------------------

let cpus: number | undefined;

/** Number of possible CPUs: the number of slots in a per-CPU map value. */
export function possibleCpus(): number {
  if (cpus === undefined) {
    const n = bpf().libbpf_num_possible_cpus();
    if (n <= 0) throw new LbError('ERR_LB_BPF_MAP', 'cannot determine the number of possible CPUs');
    cpus = n;
  }
  return cpus;
}
