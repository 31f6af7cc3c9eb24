/**
 * Read-only BTF access: struct layouts, enum values and DATASEC variables, read from the debug
 * info that clang puts into every object built with -g. The control plane uses this to check
 * that its codecs match the C structs it talks to (the Cilium alignchecker idea), and
 * BpfObject.setGlobal() uses it to find a `const volatile` variable inside .rodata.
 *
 * Type records are decoded from libbpf's in-memory copy (struct btf_type and the per-kind
 * trailers of <linux/btf.h>); libbpf only gives accessors for them as inline functions.
 */
import { LbError } from '../errors.js';
import { bpf, lastErrno, viewNative } from './libbpf.js';
import type { Ptr } from './libbpf.js';
import { libbpfErr } from './errors.js';

/** BTF_KIND_* of <linux/btf.h>. */
export const BtfKind = {
  UNKN: 0,
  INT: 1,
  PTR: 2,
  ARRAY: 3,
  STRUCT: 4,
  UNION: 5,
  ENUM: 6,
  FWD: 7,
  TYPEDEF: 8,
  VOLATILE: 9,
  CONST: 10,
  RESTRICT: 11,
  FUNC: 12,
  FUNC_PROTO: 13,
  VAR: 14,
  DATASEC: 15,
  FLOAT: 16,
  DECL_TAG: 17,
  TYPE_TAG: 18,
  ENUM64: 19,
} as const;

const BTF_TYPE_SIZE = 12; // struct btf_type: name_off, info, size/type

export interface BtfTypeRecord {
  id: number;
  kind: number;
  name: string;
  vlen: number;
  kindFlag: boolean;
  /** size for INT/STRUCT/UNION/ENUM/DATASEC/FLOAT, the referenced type id for the others */
  sizeOrType: number;
  /** the kind-specific data after struct btf_type */
  extra: DataView;
}

export interface BtfMember {
  name: string;
  /** byte offset of the member (for a bitfield: of the byte holding its first bit) */
  offset: number;
  /** size in bytes of the member's type (for a bitfield: of its underlying integer type) */
  size: number;
  typeId: number;
  /** a C-like spelling of the type: `__u32`, `__u8[6]`, `struct lb_ctl`, `__u32 *` */
  typeName: string;
  bitfield?: { bitOffset: number; bitSize: number };
}

export interface StructLayout {
  name: string;
  kind: 'struct' | 'union';
  size: number;
  members: BtfMember[];
}

export interface DatasecVar {
  name: string;
  offset: number;
  size: number;
  typeId: number;
}

const MODIFIERS = new Set<number>([
  BtfKind.TYPEDEF,
  BtfKind.VOLATILE,
  BtfKind.CONST,
  BtfKind.RESTRICT,
  BtfKind.TYPE_TAG,
]);

export class Btf {
  #ptr: Ptr | null;
  readonly #owned: boolean;
  // Keeps a borrowed BTF's owner (a BpfObject) reachable while this object is in use.
  readonly #owner: unknown;

  private constructor(ptr: Ptr, owned: boolean, owner?: unknown) {
    this.#ptr = ptr;
    this.#owned = owned;
    this.#owner = owner;
  }

  /** Parse the .BTF section of an ELF object (or a raw BTF file such as /sys/kernel/btf/vmlinux). */
  static fromObjectFile(path: string): Btf {
    const ptr = bpf().btf__parse(path, null);
    if (ptr === null) throw libbpfErr('ERR_LB_BPF_BTF', `cannot read BTF from ${path}`, lastErrno());
    return new Btf(ptr, true);
  }

  /** Wrap BTF that another object owns (bpf_object__btf); it must not outlive `owner`. */
  static borrowed(ptr: Ptr, owner: unknown): Btf {
    return new Btf(ptr, false, owner);
  }

  close(): void {
    if (this.#ptr !== null && this.#owned) bpf().btf__free(this.#ptr);
    this.#ptr = null;
  }

  get #p(): Ptr {
    if (this.#ptr === null) throw new LbError('ERR_LB_BPF_BTF', 'BTF used after close');
    void this.#owner;
    return this.#ptr;
  }

  /** Number of type ids, including the void type 0. */
  get typeCount(): number {
    return bpf().btf__type_cnt(this.#p);
  }

  /** Decode the record of a type id. */
  type(id: number): BtfTypeRecord {
    const lib = bpf();
    const ptr = lib.btf__type_by_id(this.#p, id);
    if (ptr === null) throw new LbError('ERR_LB_BPF_BTF', `no BTF type with id ${id}`);
    const head = viewNative(ptr, BTF_TYPE_SIZE);
    const nameOff = head.readUInt32LE(0);
    const info = head.readUInt32LE(4);
    const sizeOrType = head.readUInt32LE(8);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const kindFlag = (info >>> 31) === 1;
    const extraLen = extraSize(kind, vlen);
    const whole = viewNative(ptr, BTF_TYPE_SIZE + extraLen);
    return {
      id,
      kind,
      name: lib.btf__name_by_offset(this.#p, nameOff) ?? '',
      vlen,
      kindFlag,
      sizeOrType,
      extra: new DataView(whole.buffer, whole.byteOffset + BTF_TYPE_SIZE, extraLen),
    };
  }

  /** Type id of a named type of one kind, or undefined. */
  findId(name: string, kind: number): number | undefined {
    const id = bpf().btf__find_by_name_kind(this.#p, name, kind);
    return id > 0 ? id : undefined;
  }

  /** Size in bytes of a type, through typedefs and modifiers, arrays included. */
  sizeOf(id: number): number {
    const n = Number(bpf().btf__resolve_size(this.#p, id));
    if (n < 0) throw libbpfErr('ERR_LB_BPF_BTF', `cannot resolve the size of BTF type ${id}`, n);
    return n;
  }

  /** Follow typedefs and const/volatile/restrict/type tags to the underlying type. */
  resolve(id: number): BtfTypeRecord {
    let t = this.type(id);
    for (let i = 0; i < 64 && MODIFIERS.has(t.kind); i++) t = this.type(t.sizeOrType);
    return t;
  }

  /**
   * Layout of a struct or union, found by its tag name or by a typedef name.
   * Member offsets are in bytes; a bitfield also reports its bit offset and width.
   */
  structLayout(name: string): StructLayout {
    let id = this.findId(name, BtfKind.STRUCT) ?? this.findId(name, BtfKind.UNION);
    if (id === undefined) {
      const td = this.findId(name, BtfKind.TYPEDEF);
      if (td !== undefined) {
        const r = this.resolve(td);
        if (r.kind === BtfKind.STRUCT || r.kind === BtfKind.UNION) id = r.id;
      }
    }
    if (id === undefined) throw new LbError('ERR_LB_BPF_BTF', `no struct or union named ${name} in the BTF`);
    return this.layoutOf(id);
  }

  /** Layout of the struct or union with this type id. */
  layoutOf(id: number): StructLayout {
    const t = this.resolve(id);
    if (t.kind !== BtfKind.STRUCT && t.kind !== BtfKind.UNION)
      throw new LbError('ERR_LB_BPF_BTF', `BTF type ${id} is not a struct or union`);
    const members: BtfMember[] = [];
    for (let i = 0; i < t.vlen; i++) {
      const nameOff = t.extra.getUint32(i * 12, true);
      const typeId = t.extra.getUint32(i * 12 + 4, true);
      const rawOffset = t.extra.getUint32(i * 12 + 8, true);
      // With kind_flag set, the offset word packs the bitfield width in its top 8 bits;
      // without it, a bitfield is described by the INT type's own bits/offset encoding.
      let bitOffset = t.kindFlag ? rawOffset & 0xffffff : rawOffset;
      let bitSize = t.kindFlag ? rawOffset >>> 24 : 0;
      const size = this.sizeOf(typeId);
      if (!t.kindFlag) {
        const base = this.resolve(typeId);
        if (base.kind === BtfKind.INT) {
          const enc = base.extra.getUint32(0, true);
          const nrBits = enc & 0xff;
          const intOff = (enc >>> 16) & 0xff;
          if (nrBits !== base.sizeOrType * 8 || intOff !== 0) {
            bitOffset += intOff;
            bitSize = nrBits;
          }
        }
      }
      const m: BtfMember = {
        name: bpf().btf__name_by_offset(this.#p, nameOff) ?? '',
        offset: Math.floor(bitOffset / 8),
        size,
        typeId,
        typeName: this.typeName(typeId),
      };
      if (bitSize > 0) m.bitfield = { bitOffset, bitSize };
      members.push(m);
    }
    return { name: t.name, kind: t.kind === BtfKind.STRUCT ? 'struct' : 'union', size: t.sizeOrType, members };
  }

  /** Values of an enum (or 64-bit enum) found by its tag name or a typedef name. */
  enumValues(name: string): Record<string, number> {
    let id = this.findId(name, BtfKind.ENUM) ?? this.findId(name, BtfKind.ENUM64);
    if (id === undefined) {
      const td = this.findId(name, BtfKind.TYPEDEF);
      if (td !== undefined) {
        const r = this.resolve(td);
        if (r.kind === BtfKind.ENUM || r.kind === BtfKind.ENUM64) id = r.id;
      }
    }
    if (id === undefined)
      throw new LbError('ERR_LB_BPF_BTF', `no enum named ${name} in the BTF`, {
        hint: 'clang only emits an enum that the program uses (as a variable, member or cast)',
      });
    const t = this.type(id);
    const out: Record<string, number> = {};
    const lib = bpf();
    if (t.kind === BtfKind.ENUM) {
      // kind_flag marks a signed enum
      for (let i = 0; i < t.vlen; i++) {
        const n = lib.btf__name_by_offset(this.#p, t.extra.getUint32(i * 8, true)) ?? '';
        out[n] = t.kindFlag ? t.extra.getInt32(i * 8 + 4, true) : t.extra.getUint32(i * 8 + 4, true);
      }
    } else {
      for (let i = 0; i < t.vlen; i++) {
        const n = lib.btf__name_by_offset(this.#p, t.extra.getUint32(i * 12, true)) ?? '';
        const lo = t.extra.getUint32(i * 12 + 4, true);
        const hi = t.kindFlag ? t.extra.getInt32(i * 12 + 8, true) : t.extra.getUint32(i * 12 + 8, true);
        out[n] = hi * 0x1_0000_0000 + lo;
      }
    }
    return out;
  }

  /**
   * The variables of a DATASEC (".rodata", ".data", ".bss", ...); undefined if there is none.
   * Needs the BTF of an opened BpfObject (see below), not Btf.fromObjectFile().
   */
  datasecVars(section: string): DatasecVar[] | undefined {
    const id = this.findId(section, BtfKind.DATASEC);
    if (id === undefined) return undefined;
    const t = this.type(id);
    // clang leaves DATASEC sizes and offsets at 0; libbpf fills them in from the ELF symbol
    // table when it opens an object. Only that fixed-up copy can answer.
    if (t.sizeOrType === 0 && t.vlen > 0)
      throw new LbError('ERR_LB_BPF_BTF', `the offsets in DATASEC ${section} are not known in raw BTF`, {
        hint: 'read DATASECs from an opened object: BpfObject.open(path).btf()',
      });
    const vars: DatasecVar[] = [];
    for (let i = 0; i < t.vlen; i++) {
      const typeId = t.extra.getUint32(i * 12, true);
      const offset = t.extra.getUint32(i * 12 + 4, true);
      const size = t.extra.getUint32(i * 12 + 8, true);
      vars.push({ name: this.type(typeId).name, offset, size, typeId });
    }
    return vars;
  }

  /** A C-like spelling of a type, for error messages and layout comparisons. */
  typeName(id: number, depth = 0): string {
    if (id === 0) return 'void';
    if (depth > 32) return '...';
    const t = this.type(id);
    switch (t.kind) {
      case BtfKind.INT:
      case BtfKind.FLOAT:
      case BtfKind.TYPEDEF:
        return t.name;
      case BtfKind.PTR:
        return `${this.typeName(t.sizeOrType, depth + 1)} *`;
      case BtfKind.ARRAY: {
        const elem = t.extra.getUint32(0, true);
        const n = t.extra.getUint32(8, true);
        return `${this.typeName(elem, depth + 1)}[${n}]`;
      }
      case BtfKind.STRUCT:
        return t.name ? `struct ${t.name}` : 'struct {...}';
      case BtfKind.UNION:
        return t.name ? `union ${t.name}` : 'union {...}';
      case BtfKind.ENUM:
      case BtfKind.ENUM64:
        return t.name ? `enum ${t.name}` : 'enum {...}';
      case BtfKind.FWD:
        return `${t.kindFlag ? 'union' : 'struct'} ${t.name}`;
      case BtfKind.CONST:
        return `const ${this.typeName(t.sizeOrType, depth + 1)}`;
      case BtfKind.VOLATILE:
        return `volatile ${this.typeName(t.sizeOrType, depth + 1)}`;
      case BtfKind.RESTRICT:
      case BtfKind.TYPE_TAG:
        return this.typeName(t.sizeOrType, depth + 1);
      default:
        return t.name || `kind${t.kind}`;
    }
  }
}

/** Bytes of kind-specific data that follow struct btf_type. */
function extraSize(kind: number, vlen: number): number {
  switch (kind) {
    case BtfKind.INT:
      return 4;
    case BtfKind.ARRAY:
      return 12;
    case BtfKind.STRUCT:
    case BtfKind.UNION:
      return 12 * vlen;
    case BtfKind.ENUM:
      return 8 * vlen;
    case BtfKind.FUNC_PROTO:
      return 8 * vlen;
    case BtfKind.VAR:
      return 4;
    case BtfKind.DATASEC:
      return 12 * vlen;
    case BtfKind.DECL_TAG:
      return 4;
    case BtfKind.ENUM64:
      return 12 * vlen;
    default:
      return 0;
  }
}
