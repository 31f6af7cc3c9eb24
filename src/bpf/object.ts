/**
 * BpfObject: one ELF object file, opened, adjusted (map sizes, `const volatile` globals, pin
 * paths), then loaded into the kernel in one go. Mirrors libbpf's open -> configure -> load life
 * cycle; every configuration method must come before load().
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { LbError } from '../errors.js';
import { Btf } from './btf.js';
import { errnoName, libbpfErr } from './errors.js';
import { bpf, captureLibbpfLog, lastErrno, nativeAlloc, readNative } from './libbpf.js';
import type { NativeBuffer, Ptr } from './libbpf.js';
import { BpfMap, cString } from './map.js';
import { BpfProgram } from './program.js';
import { pinFd } from './pin.js';

export interface OpenOptions {
  /** Override the object name (libbpf derives internal map names such as `name.rodata` from it). */
  objectName?: string;
  /**
   * Size of the verifier log buffer. The kernel keeps the END of an overlong log, which is the
   * part that says why the program was rejected; 1 MiB holds the full log of most programs.
   */
  logSize?: number;
  /**
   * 0 (default): ask for a log only when a load fails (libbpf then retries at level 1).
   * 1 or 2: always log; 2 is the per-instruction state trace, which can exceed logSize and
   * then fails even a good load with ENOSPC.
   */
  logLevel?: number;
  /** Directory for maps whose definition says `__uint(pinning, LIBBPF_PIN_BY_NAME)`. */
  pinRoot?: string;
}

const OPEN_OPTS_SIZE = 80; // sizeof(struct bpf_object_open_opts) in libbpf 1.1
const DEFAULT_LOG_SIZE = 1 << 20;

// Sections whose BTF DATASEC describes global variables, and the suffix of the internal map
// libbpf makes for each (`<first 8 chars of the object name>.rodata`).
const GLOBAL_SECTIONS = ['.rodata', '.data', '.bss'] as const;

export class BpfObject {
  readonly path: string;
  #obj: Ptr | null;
  #log: NativeBuffer | undefined;
  #loaded = false;
  readonly #maps = new Map<string, BpfMap>();
  readonly #progs = new Map<string, BpfProgram>();
  readonly #pinPaths = new Map<string, string>();
  #btf: Btf | undefined;

  private constructor(path: string, obj: Ptr, log: NativeBuffer) {
    this.path = path;
    this.#obj = obj;
    this.#log = log;
  }

  /** bpf_object__open_file: parse the ELF, nothing reaches the kernel yet. */
  static open(path: string, opts: OpenOptions = {}): BpfObject {
    const lib = bpf();
    const logSize = opts.logSize ?? DEFAULT_LOG_SIZE;
    // libbpf keeps the log pointer until load(), so the buffer must not be GC-managed memory.
    const log = nativeAlloc(logSize);
    const strings: NativeBuffer[] = [];
    const cstr = (s: string): Ptr => {
      const b = nativeAlloc(Buffer.byteLength(s) + 1);
      b.buf.write(s, 'utf8');
      strings.push(b);
      return b.ptr;
    };
    try {
      const o = Buffer.alloc(OPEN_OPTS_SIZE);
      o.writeBigUInt64LE(BigInt(OPEN_OPTS_SIZE), 0); // sz
      if (opts.objectName !== undefined) o.writeBigUInt64LE(cstr(opts.objectName), 8);
      if (opts.pinRoot !== undefined) o.writeBigUInt64LE(cstr(opts.pinRoot), 24);
      o.writeBigUInt64LE(log.ptr, 56); // kernel_log_buf
      o.writeBigUInt64LE(BigInt(logSize), 64); // kernel_log_size
      o.writeUInt32LE(opts.logLevel ?? 0, 72); // kernel_log_level
      return captureLibbpfLog((lines) => {
        const obj = lib.bpf_object__open_file(path, o);
        if (obj === null) {
          const errno = lastErrno();
          throw libbpfErr('ERR_LB_BPF_OPEN', `cannot open BPF object ${path}`, errno, {
            detail: lines.join('\n') || undefined,
            hint:
              errnoName(errno) === 'ENOENT'
                ? 'no such file: build the BPF objects first (make bpf)'
                : errnoName(errno) === 'EINVAL'
                  ? 'not a BPF ELF object, or one this libbpf cannot parse (built with clang -target bpf -g?)'
                  : undefined,
          });
        }
        return new BpfObject(path, obj, log);
      });
    } catch (e) {
      log.free();
      throw e;
    } finally {
      for (const s of strings) s.free();
    }
  }

  get loaded(): boolean {
    return this.#loaded;
  }

  get #p(): Ptr {
    if (this.#obj === null) throw new LbError('ERR_LB_BPF_OPEN', `BPF object ${this.path} used after close`);
    return this.#obj;
  }

  #beforeLoad(what: string): void {
    if (this.#loaded) throw new LbError('ERR_LB_BPF_LOAD', `${what}: ${this.path} is already loaded; do this before load()`);
  }

  #mapPtr(name: string): Ptr {
    const m = bpf().bpf_object__find_map_by_name(this.#p, name);
    if (m === null)
      throw new LbError('ERR_LB_BPF_MAP', `no map named ${name} in ${this.path}`, {
        hint: `maps in this object: ${this.mapNames().join(', ') || 'none'}`,
      });
    return m;
  }

  /** Names of all maps, internal ones (`x.rodata`, `x.bss`) included. */
  mapNames(): string[] {
    const lib = bpf();
    const out: string[] = [];
    for (let m = lib.bpf_object__next_map(this.#p, null); m !== null; m = lib.bpf_object__next_map(this.#p, m))
      out.push(lib.bpf_map__name(m));
    return out;
  }

  programNames(): string[] {
    const lib = bpf();
    const out: string[] = [];
    for (
      let p = lib.bpf_object__next_program(this.#p, null);
      p !== null;
      p = lib.bpf_object__next_program(this.#p, p)
    )
      out.push(lib.bpf_program__name(p));
    return out;
  }

  /** The object's BTF (owned by the object: do not use it after close()). */
  btf(): Btf {
    if (this.#btf) return this.#btf;
    const ptr = bpf().bpf_object__btf(this.#p);
    if (ptr === null)
      throw new LbError('ERR_LB_BPF_BTF', `${this.path} has no BTF`, { hint: 'build it with clang -g' });
    this.#btf = Btf.borrowed(ptr, this);
    return this.#btf;
  }

  setMapMaxEntries(mapName: string, n: number): void {
    this.#beforeLoad(`setMapMaxEntries(${mapName})`);
    const ret = bpf().bpf_map__set_max_entries(this.#mapPtr(mapName), n);
    if (ret < 0) throw libbpfErr('ERR_LB_BPF_MAP', `cannot set max_entries of map ${mapName} to ${n}`, ret);
  }

  /**
   * Pin a map at `path` on load, or reuse the map already pinned there if its type, sizes and
   * flags match (libbpf's rule). A restarted daemon keeps its maps, and their contents, this way.
   */
  setPinPath(mapName: string, path: string): void {
    this.#beforeLoad(`setPinPath(${mapName})`);
    const ret = bpf().bpf_map__set_pin_path(this.#mapPtr(mapName), path);
    if (ret < 0) throw libbpfErr('ERR_LB_BPF_PIN', `cannot set the pin path of map ${mapName}`, ret);
    this.#pinPaths.set(mapName, path);
  }

  #findGlobal(varName: string): { map: Ptr; offset: number; size: number; section: string } {
    const btf = this.btf();
    for (const section of GLOBAL_SECTIONS) {
      const v = btf.datasecVars(section)?.find((x) => x.name === varName);
      if (!v) continue;
      const lib = bpf();
      for (let m = lib.bpf_object__next_map(this.#p, null); m !== null; m = lib.bpf_object__next_map(this.#p, m))
        if (lib.bpf_map__name(m).endsWith(section)) return { map: m, offset: v.offset, size: v.size, section };
      throw new LbError('ERR_LB_BPF_MAP', `no internal map for section ${section} in ${this.path}`);
    }
    throw new LbError('ERR_LB_BPF_BTF', `no global variable ${varName} in ${this.path}`, {
      hint: 'a `const volatile` global must be used by the program, or clang drops it',
    });
  }

  /**
   * Set a global variable's initial value before load: a `const volatile` global in .rodata
   * (the verifier then sees it as a constant and prunes dead branches), or one in .data/.bss.
   * `value` must be exactly the variable's size, in the program's (host) byte order.
   */
  setGlobal(varName: string, value: Buffer): void {
    this.#beforeLoad(`setGlobal(${varName})`);
    const g = this.#findGlobal(varName);
    if (value.length !== g.size)
      throw new LbError('ERR_LB_BPF_MAP', `global ${varName} is ${g.size} bytes, ${value.length} given`);
    const lib = bpf();
    const psize = Buffer.alloc(8);
    const ptr = lib.bpf_map__initial_value(g.map, psize);
    if (ptr === null) throw new LbError('ERR_LB_BPF_MAP', `section ${g.section} of ${this.path} has no initial value`);
    const size = Number(psize.readBigUInt64LE(0));
    const data = readNative(ptr, size);
    value.copy(data, g.offset);
    const ret = lib.bpf_map__set_initial_value(g.map, data, size);
    if (ret < 0) throw libbpfErr('ERR_LB_BPF_MAP', `cannot set global ${varName}`, ret);
  }

  /** Read a global: its initial value before load, the kernel's copy after. */
  getGlobal(varName: string): Buffer {
    const g = this.#findGlobal(varName);
    const lib = bpf();
    if (!this.#loaded) {
      const psize = Buffer.alloc(8);
      const ptr = lib.bpf_map__initial_value(g.map, psize);
      if (ptr === null) throw new LbError('ERR_LB_BPF_MAP', `section ${g.section} of ${this.path} has no initial value`);
      return readNative(ptr, Number(psize.readBigUInt64LE(0))).subarray(g.offset, g.offset + g.size);
    }
    const value = this.map(lib.bpf_map__name(g.map)).lookup(Buffer.alloc(4));
    if (!value) throw new LbError('ERR_LB_BPF_MAP', `cannot read section ${g.section} of ${this.path}`);
    return value.subarray(g.offset, g.offset + g.size);
  }

  /**
   * Create the maps, load and verify every program. A verifier rejection throws
   * ERR_LB_BPF_VERIFIER with the verifier's log in `detail`.
   */
  load(): void {
    this.#beforeLoad('load');
    const lib = bpf();
    const log = this.#log;
    if (log) log.buf[0] = 0;
    for (const p of this.#pinPaths.values()) {
      try {
        mkdirSync(dirname(p), { recursive: true });
      } catch {
        // libbpf reports the failure to pin with a better message
      }
    }
    captureLibbpfLog((lines) => {
      const ret = lib.bpf_object__load(this.#p);
      const vlog = log ? cString(log.buf) : '';
      this.#freeLog();
      if (ret === 0) return;
      const err = errnoName(ret);
      const libbpfLines = lines.join('\n');
      // libbpf says which program failed; the log buffer alone could also hold a BTF log.
      const prog = /prog '([^']+)': BPF program load failed/.exec(libbpfLines)?.[1];
      if (prog !== undefined && vlog.trim() !== '') {
        throw new LbError('ERR_LB_BPF_VERIFIER', `the verifier rejected program ${prog} in ${this.path}: ${verifierSummary(vlog)}`, {
          errno: err,
          detail: vlog,
          hint: 'the full verifier log is in the error detail',
        });
      }
      let hint: string | undefined;
      if (/parameter mismatch/.test(libbpfLines))
        hint = 'a map pinned at the pin path has another type, size or flags: unpin it (the data in it is lost)';
      throw libbpfErr('ERR_LB_BPF_LOAD', `cannot load ${this.path}${lines[lines.length - 1] ? ` (${lines[lines.length - 1]})` : ''}`, ret, {
        detail: libbpfLines || undefined,
        hint,
      });
    });
    this.#loaded = true;
  }

  #freeLog(): void {
    // libbpf only writes the log during load; after it the pointer it holds is never used.
    this.#log?.free();
    this.#log = undefined;
  }

  #requireLoaded(what: string): void {
    if (!this.#loaded) throw new LbError('ERR_LB_BPF_LOAD', `${what}: ${this.path} is not loaded yet; call load() first`);
  }

  /** A loaded program by function name; with no name, the object's only program. */
  program(name?: string): BpfProgram {
    this.#requireLoaded(`program(${name ?? ''})`);
    const lib = bpf();
    if (name === undefined) {
      const names = this.programNames();
      if (names.length !== 1 || names[0] === undefined)
        throw new LbError('ERR_LB_BPF_OPEN', `${this.path} has ${names.length} programs; name one: ${names.join(', ')}`);
      name = names[0];
    }
    const cached = this.#progs.get(name);
    if (cached) return cached;
    const p = lib.bpf_object__find_program_by_name(this.#p, name);
    if (p === null)
      throw new LbError('ERR_LB_BPF_OPEN', `no program named ${name} in ${this.path}`, {
        hint: `programs in this object: ${this.programNames().join(', ') || 'none'}`,
      });
    const prog = new BpfProgram(lib.bpf_program__fd(p), name, false);
    this.#progs.set(name, prog);
    return prog;
  }

  /** A loaded map by name. The object owns its fd: the BpfMap dies with close(). */
  map(name: string): BpfMap {
    this.#requireLoaded(`map(${name})`);
    const cached = this.#maps.get(name);
    if (cached) return cached;
    const lib = bpf();
    const m = this.#mapPtr(name);
    const map = new BpfMap(
      lib.bpf_map__fd(m),
      {
        name: lib.bpf_map__name(m),
        type: lib.bpf_map__type(m),
        keySize: lib.bpf_map__key_size(m),
        valueSize: lib.bpf_map__value_size(m),
        maxEntries: lib.bpf_map__max_entries(m),
      },
      false,
    );
    this.#maps.set(name, map);
    return map;
  }

  /** Pin a loaded map at `path` (bpf_obj_pin; for pin-or-reuse at load, use setPinPath). */
  pinMap(name: string, path: string): void {
    pinFd(this.map(name).fd, path, `map ${name}`);
  }

  pinProgram(name: string, path: string): void {
    pinFd(this.program(name).fd, path, `program ${name}`);
  }

  /** Release the object: its programs and maps go away unless pinned or attached. */
  close(): void {
    if (this.#obj === null) return;
    for (const m of this.#maps.values()) m.close();
    for (const p of this.#progs.values()) p.close();
    this.#btf?.close();
    bpf().bpf_object__close(this.#obj);
    this.#obj = null;
    this.#freeLog();
  }
}

const NOISE = [
  /^processed \d+ insns/,
  /^verification time/,
  /^stack depth/,
  /^max_states_per_insn/,
  /^-- (BEGIN|END) PROG LOAD LOG --/,
];

/** The last lines of a verifier log that say something (not the statistics footer). */
export function verifierSummary(log: string, n = 3): string {
  const lines = log
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !NOISE.some((re) => re.test(l)));
  return lines.slice(-n).join(' | ') || 'no reason given';
}
