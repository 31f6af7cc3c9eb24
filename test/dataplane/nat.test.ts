/**
 * NAT, control-plane side, against the real maps of a loaded balancer: settings (validated,
 * written once, found again after a restart), the backend source filter the applier keeps, the
 * redirect devmap, and the connection table: listing, counting and sweeping by state and age.
 * Entries are written here directly, so every state and age can be set exactly; test/bpf/nat.test.ts
 * has the data path build them.
 */
import t from 'tap';
import { loadBalancer, type LoadedBalancer } from '../../src/dataplane/loader.js';
import { NAT_DIR, NAT_F_FULL, NAT_STATE, natCfg, natEntry, natKey, u32Key, type NatEntry, type NatKey } from '../../src/dataplane/abi.js';
import { DEFAULT_NAT_SETTINGS, Nat, ORPHAN_GRACE_NS, SWEEP_GRACE_NS, monotonicNs, natBackendFilter } from '../../src/dataplane/nat.js';
import { vipFilterBit } from '../../src/dataplane/hash.js';
import type { DesiredService } from '../../src/dataplane/apply.js';

const S = 1_000_000_000n;
let lb: LoadedBalancer;

t.before(() => {
  lb = loadBalancer({ ringSize: 251, maxServices: 8, flowBuckets: 64, natEntries: 1024 });
});
t.teardown(() => lb?.close());

function clearTable(): void {
  for (const k of [...lb.maps.nat_conns.keys()]) lb.maps.nat_conns.delete(k);
}

/** Writes a connection's two entries as nat_forward() would. */
function conn(o: { client: string; cport: number; vip?: string; backend?: string; src?: string; sport?: number; state: number; age: bigint; proto?: number; now: bigint }): { fwd: NatKey; rev: NatKey } {
  const vip = o.vip ?? '10.0.1.1';
  const backend = o.backend ?? '10.2.0.11';
  const src = o.src ?? o.client;
  const sport = o.sport ?? o.cport;
  const proto = o.proto ?? 6;
  const base: Omit<NatEntry, 'saddr' | 'daddr' | 'sport' | 'dport'> = {
    serviceId: 0, backendId: 7, state: o.state, flags: o.src ? NAT_F_FULL : 0, lastSeen: o.now - o.age,
  };
  const fwd: NatKey = { saddr: o.client, daddr: vip, sport: o.cport, dport: 80, proto, dir: NAT_DIR.forward };
  const rev: NatKey = { saddr: backend, daddr: src, sport: 8080, dport: sport, proto, dir: NAT_DIR.reverse };
  lb.maps.nat_conns.update(natKey.encode(fwd), natEntry.encode({ ...base, saddr: src, daddr: backend, sport, dport: 8080 }));
  lb.maps.nat_conns.update(natKey.encode(rev), natEntry.encode({ ...base, saddr: vip, daddr: o.client, sport: 80, dport: o.cport }));
  return { fwd, rev };
}

function has(k: NatKey): boolean {
  return lb.maps.nat_conns.lookup(natKey.encode(k)) !== undefined;
}

t.test('settings: defaults on a fresh load, validated, written only when changed, found again by a restarted control plane', async (t) => {
  const cfg = natCfg.decode(lb.maps.nat_cfg.lookup(u32Key(0))!);
  t.same(cfg.timeoutNs, [30n * S, 300n * S, 10n * S, 30n * S], 'default timeouts in the map after load: the data path never runs without them');
  t.same(lb.nat.settings(), DEFAULT_NAT_SETTINGS);
  t.equal(lb.nat.configure({ sources: ['10.9.0.1'], portMin: 20000, portMax: 20999, timeouts: { udpSec: 60 } }), true, 'first write');
  t.equal(lb.nat.configure({ sources: ['10.9.0.1'] }), false, 'the same again: no write');
  const again = new Nat(lb.maps);
  t.same(again.settings(), { sources: ['10.9.0.1'], portMin: 20000, portMax: 20999, timeouts: { ...DEFAULT_NAT_SETTINGS.timeouts, udpSec: 60 } }, 'read back from the map');
  t.throws(
    () => lb.nat.configure({ sources: ['10.9.0.1', 'nope', '10.9.0.1', '1.1.1.1', '2.2.2.2'], portMin: 0, portMax: 70000, timeouts: { tcpClosingSec: 0 } }),
    { code: 'ERR_LB_CONFIG', message: /sources: 5 given.*sources\[1\].*duplicate.*portMin: 0.*portMax: 70000.*tcpClosingSec/ },
    'every violation listed',
  );
  t.throws(() => lb.nat.configure({ portMin: 3000, portMax: 2000 }), { code: 'ERR_LB_CONFIG', message: /portMax 2000 < portMin 3000/ });
  t.same(again.settings().sources, ['10.9.0.1'], 'a rejected change changed nothing');
  lb.nat.configure({ ...DEFAULT_NAT_SETTINGS, timeouts: { ...DEFAULT_NAT_SETTINGS.timeouts } });
});

t.test('the applier keeps the NAT backends\' source filter: set, idempotent, cleared, adopted', async (t) => {
  const nat: DesiredService = {
    vip: '10.0.1.1', port: 80, proto: 'tcp', mode: 'nat',
    backends: [{ address: '10.2.0.11', port: 8080, weight: 1 }, { address: '10.2.0.12', port: 8080, weight: 0 }],
  };
  const dsr: DesiredService = { vip: '10.0.0.1', port: 80, proto: 'tcp', mode: 'l2dsr', backends: [{ address: '10.1.0.1', mac: '02:00:00:00:01:01', weight: 1 }] };
  const bit = (a: string): boolean => {
    const b = vipFilterBit(a);
    const w = lb.maps.nat_filter.lookup(u32Key(b >> 6))!.readBigUInt64LE(0);
    return (w & (1n << BigInt(b & 63))) !== 0n;
  };
  lb.dataplane.apply([nat, dsr]);
  t.ok(bit('10.2.0.11') && bit('10.2.0.12'), 'both NAT backends (a drained one too: its connections still answer)');
  t.notOk(bit('10.1.0.1'), 'a DSR backend is not in it');
  t.same(natBackendFilter([nat, dsr]).filter((w) => w !== 0n).length, 2, 'natBackendFilter: one word per address here');
  const second = lb.dataplane.apply([nat, dsr]);
  t.equal(second.writes.vipFilter, 0, 'the same state again writes no filter word');
  const sv = await import('../../src/dataplane/apply.js');
  const adopted = new sv.Dataplane(lb.maps, { ringSize: 251, seed: 0, cpus: 1 });
  adopted.adopt();
  t.equal(adopted.apply([nat, dsr]).writes.vipFilter, 0, 'a restarted applier adopts the filter');
  lb.dataplane.apply([dsr]);
  t.notOk(bit('10.2.0.11') || bit('10.2.0.12'), 'cleared with the service');
  lb.dataplane.apply([]);
});

t.test('the redirect devmap holds exactly the interfaces given', async (t) => {
  lb.nat.setTxPorts([1]);
  t.same(lb.nat.txPorts(), [1]);
  lb.nat.setTxPorts([]);
  t.same(lb.nat.txPorts(), []);
  t.throws(() => lb.nat.setTxPorts([0]), { code: 'ERR_LB_USAGE' });
});

t.test('listing merges both entries of a connection and reports its state, source and expiry', async (t) => {
  clearTable();
  const now = monotonicNs();
  conn({ client: '192.0.2.1', cport: 40000, state: NAT_STATE.tcpEstablished, age: 5n * S, now });
  conn({ client: '192.0.2.2', cport: 40001, src: '10.9.0.1', sport: 20001, state: NAT_STATE.tcpNew, age: 1n * S, now });
  conn({ client: '192.0.2.3', cport: 53, proto: 17, state: NAT_STATE.udp, age: 40n * S, now });
  // The two halves disagree (one direction saw the FIN): the later time and the later state win.
  const c = conn({ client: '192.0.2.4', cport: 40002, state: NAT_STATE.tcpEstablished, age: 100n * S, now });
  const rv = natEntry.decode(lb.maps.nat_conns.lookup(natKey.encode(c.rev))!);
  lb.maps.nat_conns.update(natKey.encode(c.rev), natEntry.encode({ ...rv, state: NAT_STATE.tcpClosing, lastSeen: now - 2n * S }));

  const list = lb.nat.connections(now);
  t.equal(list.length, 4);
  t.match(list.find((x) => x.clientPort === 40000), {
    proto: 'tcp', client: '192.0.2.1', vip: '10.0.1.1', vipPort: 80, backend: '10.2.0.11', backendPort: 8080,
    source: '192.0.2.1', sourcePort: 40000, fullNat: false, state: 'tcpEstablished', idleMs: 5000, expiresInMs: 295000,
  });
  t.match(list.find((x) => x.clientPort === 40001), { fullNat: true, source: '10.9.0.1', sourcePort: 20001, state: 'tcpNew', expiresInMs: 29000 });
  t.match(list.find((x) => x.clientPort === 53), { proto: 'udp', state: 'udp', expiresInMs: -10000 });
  t.match(list.find((x) => x.clientPort === 40002), { state: 'tcpClosing', idleMs: 2000, expiresInMs: 8000 });
  t.same(lb.nat.count(now), {
    connections: 4, entries: 8, orphans: 0, fullNat: 1, expired: 1,
    byState: { tcpNew: 1, tcpEstablished: 1, tcpClosing: 1, udp: 1 },
  });
});

t.test('sweep: by state and idle time (plus a grace), pairs together, orphans', async (t) => {
  clearTable();
  lb.nat.configure({ timeouts: { tcpNewSec: 30, tcpEstablishedSec: 300, tcpClosingSec: 10, udpSec: 30 } });
  const now = monotonicNs();
  const keep = [
    conn({ client: '192.0.2.1', cport: 1, state: NAT_STATE.tcpEstablished, age: 299n * S, now }),
    conn({ client: '192.0.2.2', cport: 2, state: NAT_STATE.tcpClosing, age: 9n * S, now }),
    conn({ client: '192.0.2.3', cport: 3, state: NAT_STATE.udp, age: 29n * S, now, proto: 17 }),
    conn({ client: '192.0.2.4', cport: 4, state: NAT_STATE.tcpNew, age: 29n * S, now }),
  ];
  // Past the timeout by less than the sweeper's grace: the data path already ignores it, the
  // sweeper leaves it one more round (the data path's coarse clock may lag).
  const justExpired = conn({ client: '192.0.2.5', cport: 5, state: NAT_STATE.udp, age: 30n * S + SWEEP_GRACE_NS / 2n, now, proto: 17 });
  const past = (sec: bigint) => sec * S + SWEEP_GRACE_NS + S;
  const gone = [
    conn({ client: '192.0.2.11', cport: 11, state: NAT_STATE.tcpEstablished, age: past(300n), now }),
    conn({ client: '192.0.2.12', cport: 12, state: NAT_STATE.tcpClosing, age: past(10n), now }),
    conn({ client: '192.0.2.13', cport: 13, state: NAT_STATE.udp, age: past(30n), now, proto: 17 }),
    conn({ client: '192.0.2.14', cport: 14, state: NAT_STATE.tcpNew, age: past(30n), now, src: '10.9.0.1', sport: 20014 }),
  ];
  // Orphans: a forward entry without its reverse (useless: replies would not be translated), a
  // reverse entry just inserted (nat_forward writes reverse first) and an old lone reverse one.
  const lonelyFwd = conn({ client: '192.0.2.21', cport: 21, state: NAT_STATE.tcpEstablished, age: 1n * S, now });
  lb.maps.nat_conns.delete(natKey.encode(lonelyFwd.rev));
  const young = conn({ client: '192.0.2.22', cport: 22, state: NAT_STATE.tcpNew, age: 0n, now });
  lb.maps.nat_conns.delete(natKey.encode(young.fwd));
  const old = conn({ client: '192.0.2.23', cport: 23, state: NAT_STATE.tcpNew, age: ORPHAN_GRACE_NS + S, now });
  lb.maps.nat_conns.delete(natKey.encode(old.fwd));

  const before = lb.nat.count(now);
  t.equal(before.orphans, 3, 'three lone entries');
  const r = lb.nat.sweep(now);
  t.equal(r.connections, 4, 'four idle connections deleted');
  t.equal(r.orphans, 2, 'the lone forward entry and the old lone reverse entry deleted');
  t.equal(r.remaining, 5 * 2 + 1, 'what is left: four live pairs, the one within the grace, the young reverse entry');
  t.equal(before.expired, 5, 'count() calls the one within the grace expired (the data path does)');
  for (const c of [...keep, justExpired]) t.ok(has(c.fwd) && has(c.rev), `kept ${c.fwd.saddr}`);
  for (const c of gone) t.ok(!has(c.fwd) && !has(c.rev), `deleted ${c.fwd.saddr} (both entries)`);
  t.ok(has(young.rev), 'young reverse entry kept (its forward entry is on its way)');
  t.ok(!has(old.rev) && !has(lonelyFwd.fwd), 'old orphans gone');

  // Timeouts are settings: shorter established timeout, the same pair is now expired.
  lb.nat.configure({ timeouts: { tcpEstablishedSec: 100 } });
  t.equal(lb.nat.sweep(now).connections, 1, 'the 299 s established one goes at a 100 s timeout');
  t.equal(lb.nat.sweep(now + SWEEP_GRACE_NS).connections, 1, 'and the one within the grace, a grace later');
  lb.nat.configure({ timeouts: { tcpEstablishedSec: 300 } });
});

t.test('sweep deletes the reverse half first and keeps a forward entry rebuilt in between', async (t) => {
  clearTable();
  const now = monotonicNs();
  const c = conn({ client: '192.0.2.32', cport: 32, state: NAT_STATE.udp, age: 60n * S, now, proto: 17 });
  const fkey = natKey.encode(c.fwd);
  let reads = 0;
  const order: string[] = [];
  const racing = new Nat({
    ...lb.maps,
    nat_conns: {
      maxEntries: lb.maps.nat_conns.maxEntries,
      keys: () => lb.maps.nat_conns.keys(),
      update: (k, v) => lb.maps.nat_conns.update(k, v),
      delete: (k) => {
        order.push(k.equals(fkey) ? 'forward' : 'reverse');
        return lb.maps.nat_conns.delete(k);
      },
      lookup: (k) => {
        // Second read of the forward entry (the first is the table read): the reverse half is
        // gone, and the client's next packet has found the forward one stale and rebuilt it.
        if (k.equals(fkey) && ++reads === 2) {
          const e = natEntry.decode(lb.maps.nat_conns.lookup(k)!);
          lb.maps.nat_conns.update(k, natEntry.encode({ ...e, lastSeen: monotonicNs() }));
        }
        return lb.maps.nat_conns.lookup(k);
      },
    },
  });
  racing.sweep(now);
  t.same(order, ['reverse'], 'the reverse entry went first, the rebuilt forward entry was not deleted');
  t.ok(has(c.fwd) && !has(c.rev), 'forward kept, reverse gone');
});

t.test('a table bigger than one batch is read whole: every entry once, pairs found', async (t) => {
  clearTable();
  const now = monotonicNs();
  const keys: Buffer[] = [];
  for (let i = 0; i < 400; i++) {
    const c = conn({ client: `198.18.${i >> 8}.${i & 255}`, cport: 1000 + i, state: NAT_STATE.tcpEstablished, age: 0n, now });
    keys.push(natKey.encode(c.fwd), natKey.encode(c.rev));
  }
  let batches = 0;
  const seen = new Set<string>();
  for (const b of lb.maps.nat_conns.lookupBatch(64)) {
    batches++;
    for (let i = 0; i < b.count; i++) seen.add(b.keys.subarray(16 * i, 16 * i + 16).toString('hex'));
  }
  t.ok(batches >= 800 / 64, `read in ${batches} batches`);
  t.equal(seen.size, 800, 'all 800 entries, none twice');
  t.ok(keys.every((k) => seen.has(k.toString('hex'))), 'exactly the entries written');
  t.match(lb.nat.count(now), { connections: 400, entries: 800, orphans: 0 });
});

t.test('the periodic sweeper runs in the background and stops', async (t) => {
  clearTable();
  const now = monotonicNs();
  const c = conn({ client: '192.0.2.41', cport: 41, state: NAT_STATE.tcpClosing, age: 60n * S, now });
  const results: unknown[] = [];
  const sw = lb.nat.startSweeper(100, (r) => results.push(r));
  const deadline = Date.now() + 3000;
  while (has(c.fwd) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  sw.stop();
  t.notOk(has(c.fwd), 'swept within a few intervals');
  t.ok(results.length >= 1 && !(results[0] instanceof Error), 'reported its result');
  t.throws(() => lb.nat.startSweeper(10), { code: 'ERR_LB_USAGE' });
});
