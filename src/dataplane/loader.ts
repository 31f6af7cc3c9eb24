/**
 * Loads the balancer object with the node's geometry, optionally pinning (and on a restart,
 * reusing) its maps under one bpffs directory, and hands back typed access to its maps.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BpfObject, possibleCpus, type BpfMap, type BpfProgram } from '../bpf/index.js';
import { LbError } from '../errors.js';
import { isPrime } from '../maglev/index.js';
import { RING_CHUNK, flowBucket, u32Key } from './abi.js';
import { Dataplane, type DataplaneMaps } from './apply.js';
import { Nat } from './nat.js';
import { ServiceIndex } from './svcindex.js';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BPF_DIR = join(REPO_ROOT, 'build', 'bpf');

export function bpfObjectPath(name: string): string {
  const p = join(BPF_DIR, `${name}.bpf.o`);
  if (!existsSync(p)) {
    throw new LbError('ERR_LB_BPF_OPEN', `missing ${p}`, { hint: 'run make build' });
  }
  return p;
}

export interface Geometry {
  /** Maglev table size per service (prime) */
  ringSize: number;
  maxServices: number;
  /** flow-table buckets (power of two); 4 flows each */
  flowBuckets: number;
  /** hash seed: the same on every LB node so they agree on every flow */
  seed: number;
  /** NAT connection-table entries; two per connection */
  natEntries: number;
  /** NAT66 connection-table entries (nat6_conns), two per connection; each is 96 bytes of key and value to IPv4's 48 */
  nat6Entries: number;
}

export const DEFAULT_GEOMETRY: Geometry = { ringSize: 65537, maxServices: 64, flowBuckets: 1 << 18, seed: 0, natEntries: 1 << 18, nat6Entries: 1 << 16 };

export const MAP_NAMES = [
  'services',
  'rings',
  'backends',
  'flows',
  'vip_filter',
  'ctl',
  'backend_stats',
  'reasons',
  'nat_conns',
  'nat6_conns',
  'nat_cfg',
  'nat_filter',
  'tx_ports',
  'svc_index',
  'svc_by_id',
  'svc_index6',
] as const;
export type MapName = (typeof MAP_NAMES)[number];

export interface LoadedBalancer {
  obj: BpfObject;
  prog: BpfProgram;
  maps: Record<MapName, BpfMap>;
  dataplane: Dataplane;
  /** NAT settings, redirect ports, the connection table and its sweeper */
  nat: Nat;
  /** the data path's fast service lookup, which dataplane.apply() keeps in step */
  serviceIndex: ServiceIndex;
  geometry: Geometry;
  /** the flow table's memory (mmapable array): see flows.ts */
  flowMemory: Buffer;
  /** verdict counters summed over CPUs, by reason name (from the object's BTF) */
  reasons(): Record<string, bigint>;
  close(): void;
}

function checkGeometry(g: Geometry): void {
  const bad: string[] = [];
  if (!Number.isInteger(g.ringSize) || !isPrime(g.ringSize)) bad.push(`ringSize ${g.ringSize} is not a prime`);
  if (!Number.isInteger(g.maxServices) || g.maxServices < 1) bad.push(`maxServices ${g.maxServices} < 1`);
  if (!Number.isInteger(g.flowBuckets) || g.flowBuckets < 1 || (g.flowBuckets & (g.flowBuckets - 1)) !== 0) {
    bad.push(`flowBuckets ${g.flowBuckets} is not a power of two`);
  }
  if (!Number.isInteger(g.seed) || g.seed < 0 || g.seed > 0xffffffff) bad.push(`seed ${g.seed} is not a u32`);
  if (!Number.isInteger(g.natEntries) || g.natEntries < 2) bad.push(`natEntries ${g.natEntries} < 2`);
  if (!Number.isInteger(g.nat6Entries) || g.nat6Entries < 2) bad.push(`nat6Entries ${g.nat6Entries} < 2`);
  if (bad.length) throw new LbError('ERR_LB_CONFIG', `bad data-path geometry: ${bad.join('; ')}`);
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
}

export function loadBalancer(opts: Partial<Geometry> & { objectPath?: string; pinDir?: string } = {}): LoadedBalancer {
  const geometry: Geometry = { ...DEFAULT_GEOMETRY, ...opts };
  checkGeometry(geometry);
  const obj = BpfObject.open(opts.objectPath ?? bpfObjectPath('balancer'));
  try {
    const chunks = Math.ceil(geometry.ringSize / RING_CHUNK);
    obj.setGlobal('ring_size', u32(geometry.ringSize));
    obj.setGlobal('flow_mask', u32(geometry.flowBuckets - 1));
    obj.setGlobal('hash_seed', u32(geometry.seed));
    obj.setMapMaxEntries('services', geometry.maxServices);
    obj.setMapMaxEntries('rings', geometry.maxServices * chunks);
    obj.setMapMaxEntries('flows', geometry.flowBuckets);
    obj.setMapMaxEntries('nat_conns', geometry.natEntries);
    obj.setMapMaxEntries('nat6_conns', geometry.nat6Entries);
    // tx_ports stays unpinned: the kernel marks devmaps read-only for programs, and libbpf 1.1
    // then sees a pinned one's flags differ from the definition and refuses to reuse it. Its
    // content (the interfaces attached to) is set again by whoever attaches.
    if (opts.pinDir) for (const m of MAP_NAMES) if (m !== 'tx_ports') obj.setPinPath(m, join(opts.pinDir, m));
    obj.load();
    const maps = Object.fromEntries(MAP_NAMES.map((m) => [m, obj.map(m)])) as Record<MapName, BpfMap>;
    const serviceIndex = new ServiceIndex(maps.svc_index.mmap(), maps.svc_by_id.mmap(), maps.svc_index6.mmap());
    const dpMaps: DataplaneMaps = { ...maps, ringMemory: maps.rings.mmap(), serviceIndex };
    const flowMemory = maps.flows.mmap().subarray(0, geometry.flowBuckets * flowBucket.size);
    const dataplane = new Dataplane(dpMaps, { ringSize: geometry.ringSize, seed: geometry.seed, cpus: possibleCpus() });
    const reasonNames = obj.btf().enumValues('lb_reason');
    const nat = new Nat(maps);
    // Fresh maps: the data path needs timeouts before its first NAT connection.
    if (maps.nat_cfg.lookup(u32Key(0))?.readBigUInt64LE(24) === 0n) nat.configure();
    return {
      obj,
      prog: obj.program('xdp_balancer'),
      maps,
      dataplane,
      nat,
      serviceIndex,
      geometry,
      flowMemory,
      reasons() {
        const out: Record<string, bigint> = {};
        for (const [name, idx] of Object.entries(reasonNames)) {
          if (name === 'LB_R_MAX') continue;
          const per = maps.reasons.lookupPerCpu(u32Key(idx)) ?? [];
          out[name.replace(/^LB_R_/, '')] = per.reduce((a, b) => a + b.readBigUInt64LE(0), 0n);
        }
        return out;
      },
      close() {
        maps.rings.unmap();
        maps.flows.unmap();
        maps.svc_index.unmap();
        maps.svc_by_id.unmap();
        maps.svc_index6.unmap();
        obj.close();
      },
    };
  } catch (e) {
    obj.close();
    throw e;
  }
}
