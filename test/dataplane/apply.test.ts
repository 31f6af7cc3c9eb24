/**
 * The applier against real maps: idempotent, minimal, and a restarted control plane that adopts
 * the pinned maps writes nothing when nothing changed.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { removePinDir } from '../../src/bpf/index.js';
import { loadBalancer } from '../../src/dataplane/loader.js';
import type { DesiredService } from '../../src/dataplane/apply.js';

const RING = 65537;
const pinDir = `/sys/fs/bpf/xdplb-test-${randomBytes(3).toString('hex')}`;
t.teardown(() => removePinDir(pinDir));

function config(n: number, extra?: { address: string; weight: number }): DesiredService[] {
  return Array.from({ length: n }, (_, s) => ({
    vip: `10.0.${s}.1`,
    port: 80,
    proto: 'tcp' as const,
    mode: 'l2dsr' as const,
    backends: [
      ...Array.from({ length: 10 }, (_, b) => ({ address: `10.1.${s}.${b + 1}`, mac: `02:00:00:00:${s.toString(16).padStart(2, '0')}:${(b + 1).toString(16).padStart(2, '0')}`, weight: 1 })),
      ...(extra && s === 0 ? [{ ...extra, mac: '02:00:00:00:ff:ff' }] : []),
    ],
  }));
}

t.test('apply is idempotent and a restart adopts the pins without writing', async (t) => {
  const first = loadBalancer({ ringSize: RING, maxServices: 8, flowBuckets: 1024, pinDir });
  const r1 = first.dataplane.apply(config(4));
  t.equal(r1.services.added, 4);
  t.equal(r1.backends.added, 40);
  t.equal(r1.writes.ringSlots, 4 * RING, 'a new ring is written slot by slot, once');

  const r2 = first.dataplane.apply(config(4));
  const total = (r: typeof r2) => Object.values(r.writes).reduce((a, b) => a + b, 0);
  t.equal(total(r2), 0, 'the same desired state twice: no writes');
  const ringBefore = Buffer.from(first.maps.rings.mmap().subarray(0, 2 * RING));
  first.close();

  // A second control plane (the restarted daemon) reuses the pinned maps.
  const second = loadBalancer({ ringSize: RING, maxServices: 8, flowBuckets: 1024, pinDir });
  t.teardown(() => second.close());
  t.same(second.dataplane.adopt(), { services: 4, backends: 40 }, 'adopted what the pins hold');
  t.ok(Buffer.from(second.maps.rings.mmap().subarray(0, 2 * RING)).equals(ringBefore), 'ring content survived');
  const r3 = second.dataplane.apply(config(4));
  t.equal(total(r3), 0, 'after adoption, the unchanged config writes nothing');
  t.equal(r3.ringsBuilt, 4, 'after adoption every table is rebuilt once, to check it against the map');

  // One backend added to one service: only its entry and the slots it takes.
  const r4 = second.dataplane.apply(config(4, { address: '10.1.0.99', weight: 1 }));
  t.equal(r4.ringsBuilt, 1, 'only the changed service rebuilt its Maglev table');
  const r4b = second.dataplane.apply(config(4, { address: '10.1.0.99', weight: 1 }));
  t.equal(r4b.ringsBuilt, 0, 'nothing changed: no Maglev table built');
  t.equal(r4.writes.backends, 1, 'one backend entry written');
  t.equal(r4.writes.services, 0, 'no service entry written');
  const share = r4.writes.ringSlots / RING;
  t.ok(share > 0.05 && share < 0.15, `ring slots written: ${r4.writes.ringSlots} (${(share * 100).toFixed(1)}% of one ring; the new backend's fair share is 9.1%)`);
  t.comment(`one backend added to 10: ${r4.writes.ringSlots} slot writes of ${RING}`);

  // Removing a service clears its ring and filter; removing backends clears their entries.
  const r5 = second.dataplane.apply(config(3));
  t.equal(r5.services.removed, 1);
  t.equal(r5.backends.removed, 11);
  t.equal(second.dataplane.serviceId('10.0.3.1', 80, 'tcp'), undefined);
});

t.test('a config the maps cannot hold is refused before anything is written', async (t) => {
  const lb = loadBalancer({ ringSize: 251, maxServices: 2, flowBuckets: 64 });
  t.teardown(() => lb.close());
  t.throws(() => lb.dataplane.apply(config(3)), { code: 'ERR_LB_DATAPLANE' });
  t.equal([...lb.maps.services.keys()].length, 0, 'no service written');
  t.throws(() => loadBalancer({ ringSize: 1000 }), { code: 'ERR_LB_CONFIG' }, 'ring size must be prime');
});

t.test('a service replaced by another in one apply: the newcomer keeps its ring', async (t) => {
  const lb = loadBalancer({ ringSize: 251, maxServices: 4, flowBuckets: 64 });
  t.teardown(() => lb.close());
  const svc = (vip: string): DesiredService => ({
    vip, port: 80, proto: 'tcp', mode: 'l2dsr', backends: [{ address: '10.1.0.1', mac: '02:00:00:00:01:01', weight: 1 }],
  });
  lb.dataplane.apply([svc('10.0.0.1')]);
  const oldId = lb.dataplane.serviceId('10.0.0.1', 80, 'tcp');
  lb.dataplane.apply([svc('10.0.0.2')]);
  const id = lb.dataplane.serviceId('10.0.0.2', 80, 'tcp');
  t.equal(id, oldId, 'the freed id went to the newcomer in the same apply (the case that broke)');
  const chunks = Math.ceil(251 / 32);
  const mem = lb.maps.rings.mmap();
  let empty = 0;
  for (let i = 0; i < 251; i++) if (mem.readUInt16LE(((id ?? 0) * chunks * 32 + i) * 2) === 0) empty++;
  t.equal(empty, 0, 'no ring slot of the newcomer was cleared');
  t.equal(lb.dataplane.ring(id ?? 0)?.every((b) => b !== 0), true, 'the mirror agrees');
});

t.test('service counters are the sum of its backends, and keep what removed backends counted', async (t) => {
  const lb = loadBalancer({ ringSize: 251, maxServices: 8, flowBuckets: 1024 });
  t.teardown(() => lb.close());
  lb.dataplane.apply(config(2));
  const sid = lb.dataplane.serviceId('10.0.0.1', 80, 'tcp') as number;
  const other = lb.dataplane.serviceId('10.0.1.1', 80, 'tcp') as number;
  // What the data path would have counted: per backend, one CPU's slot each.
  const put = (addr: string, svc: number, packets: number) => {
    const id = lb.dataplane.backendId(svc, addr) as number;
    const v = Buffer.alloc(24);
    v.writeBigUInt64LE(BigInt(packets), 0);
    v.writeBigUInt64LE(BigInt(packets * 100), 8);
    v.writeBigUInt64LE(1n, 16);
    const cpus = lb.maps.backend_stats.lookupPerCpu(Buffer.from([id & 0xff, id >> 8, 0, 0]))?.length ?? 1;
    lb.maps.backend_stats.updatePerCpu(Buffer.from([id & 0xff, id >> 8, 0, 0]), [v, ...Array.from({ length: cpus - 1 }, () => Buffer.alloc(24))]);
  };
  put('10.1.0.1', sid, 5);
  put('10.1.0.2', sid, 7);
  put('10.1.1.1', other, 1000);
  t.same(lb.dataplane.serviceCounters(sid), { packets: 12n, bytes: 1200n, newFlows: 2n }, 'the sum of its own backends only');

  const without = config(2);
  without[0]!.backends = without[0]!.backends.filter((b) => b.address !== '10.1.0.2');
  lb.dataplane.apply(without);
  t.same(lb.dataplane.serviceCounters(sid), { packets: 12n, bytes: 1200n, newFlows: 2n }, 'a removed backend still counts for its service');

  lb.dataplane.apply(config(2).slice(1));
  lb.dataplane.apply([{ ...config(1)[0]!, vip: '10.0.9.1' }, config(2)[1]!]);
  const again = lb.dataplane.serviceId('10.0.9.1', 80, 'tcp') as number;
  t.equal(again, sid, 'the newcomer got the removed service id');
  t.same(lb.dataplane.serviceCounters(again), { packets: 0n, bytes: 0n, newFlows: 0n }, 'and none of its counts');
});
