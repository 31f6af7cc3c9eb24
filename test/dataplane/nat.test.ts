/**
 * NAT, control-plane side, against the real maps of a loaded balancer: settings (validated,
 * written once, found again after a restart), the backend source filter the applier keeps, the
 * redirect devmap, and the connection table: listing, counting and sweeping by state and age.
 * Entries are written here directly, so every state and age can be set exactly; test/bpf/nat.test.ts
 * has the data path build them.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { removePinDir } from '../../src/bpf/index.js';
import { loadBalancer, type LoadedBalancer } from '../../src/dataplane/loader.js';
import { NAT_DIR, NAT_F_FULL, NAT_STATE, nat6Entry, nat6Key, natCfg, natEntry, natKey, u32Key, type NatEntry, type NatKey } from '../../src/dataplane/abi.js';
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
  for (const k of [...lb.maps.nat6_conns.keys()]) lb.maps.nat6_conns.delete(k);
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
    () => lb.nat.configure({ sources: ['10.9.0.1', 'nope', '10.9.0.1', '1.1.1.1', '2.2.2.2', '3.3.3.3'], portMin: 0, portMax: 70000, timeouts: { tcpClosingSec: 0 } }),
    { code: 'ERR_LB_CONFIG', message: /sources: 5 IPv4 addresses given.*sources\[1\].*duplicate.*portMin: 0.*portMax: 70000.*tcpClosingSec/ },
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

// ---- NAT66: nat6_conns beside nat_conns ----------------------------------------------------------

/** Writes a NAT66 connection's two entries into nat6_conns as nat6_forward() would. */
function conn6(o: { client: string; cport: number; vip?: string; backend?: string; src?: string; sport?: number; state: number; age: bigint; proto?: number; now: bigint; backendId?: number }): { fwd: NatKey; rev: NatKey } {
  const vip = o.vip ?? 'fd00:1::1';
  const backend = o.backend ?? 'fd02::11';
  const src = o.src ?? o.client;
  const sport = o.sport ?? o.cport;
  const proto = o.proto ?? 6;
  const base: Omit<NatEntry, 'saddr' | 'daddr' | 'sport' | 'dport'> = {
    serviceId: 1, backendId: o.backendId ?? 9, state: o.state, flags: o.src ? NAT_F_FULL : 0, lastSeen: o.now - o.age,
  };
  const fwd: NatKey = { saddr: o.client, daddr: vip, sport: o.cport, dport: 80, proto, dir: NAT_DIR.forward };
  const rev: NatKey = { saddr: backend, daddr: src, sport: 8080, dport: sport, proto, dir: NAT_DIR.reverse };
  lb.maps.nat6_conns.update(nat6Key.encode(fwd), nat6Entry.encode({ ...base, saddr: src, daddr: backend, sport, dport: 8080 }));
  lb.maps.nat6_conns.update(nat6Key.encode(rev), nat6Entry.encode({ ...base, saddr: vip, daddr: o.client, sport: 80, dport: o.cport }));
  return { fwd, rev };
}

function has6(k: NatKey): boolean {
  return lb.maps.nat6_conns.lookup(nat6Key.encode(k)) !== undefined;
}

t.test('NAT66 settings: IPv4 and IPv6 sources (4 of each), written to source and source6, read back', async (t) => {
  t.teardown(() => lb.nat.configure({ ...DEFAULT_NAT_SETTINGS, timeouts: { ...DEFAULT_NAT_SETTINGS.timeouts } }));
  const mixed = ['10.9.0.1', 'fd09::1', '10.9.0.2', 'fd09::100', '10.9.0.3', 'fd09::1:0', '10.9.0.4', 'fd09::ffff'];
  t.equal(lb.nat.configure({ sources: mixed }), true);
  const cfg = natCfg.decode(lb.maps.nat_cfg.lookup(u32Key(0))!);
  t.same(cfg.sources, ['10.9.0.1', '10.9.0.2', '10.9.0.3', '10.9.0.4'], 'source[]: the IPv4 ones, in order');
  t.same(cfg.sources6, ['fd09::1', 'fd09::100', 'fd09::1:0', 'fd09::ffff'], 'source6[]: the IPv6 ones, in order');
  const raw = lb.maps.nat_cfg.lookup(u32Key(0))!;
  t.equal(raw.readUInt32LE(16), 4, 'n_sources');
  t.equal(raw.readUInt32LE(120), 4, 'n_sources6');
  t.equal(raw.subarray(56, 72).toString('hex'), 'fd090000000000000000000000000001', 'source6[0] in network order');
  t.same(new Nat(lb.maps).settings().sources, ['10.9.0.1', '10.9.0.2', '10.9.0.3', '10.9.0.4', 'fd09::1', 'fd09::100', 'fd09::1:0', 'fd09::ffff'], 'a restarted control plane reads both back (IPv4 first)');
  t.equal(lb.nat.configure({ sources: ['fd09::1'] }), true, 'IPv6 only');
  t.same(natCfg.decode(lb.maps.nat_cfg.lookup(u32Key(0))!).sources, [], 'no IPv4 source left');
  t.equal(lb.maps.nat_cfg.lookup(u32Key(0))!.readUInt32LE(120), 1, 'one IPv6 source');
  t.throws(
    () => lb.nat.configure({ sources: ['fd09::1', 'fd09::2', 'fd09::3', 'fd09::4', 'fd09::5'] }),
    { code: 'ERR_LB_CONFIG', message: /sources: 5 IPv6 addresses given, at most 4/ },
    'five IPv6 sources refused',
  );
  t.throws(() => lb.nat.configure({ sources: ['fd09::1', 'fd09:0:0::1'] }), { code: 'ERR_LB_CONFIG', message: /duplicate address/ }, 'two spellings of one IPv6 address are a duplicate');
  t.same(natCfg.decode(lb.maps.nat_cfg.lookup(u32Key(0))!).sources6, ['fd09::1'], 'a rejected change changed nothing');
});

t.test('nat6Entries sizes nat6_conns; a pinned nat6_conns of another size is refused as nat_conns is', async (t) => {
  t.equal(lb.maps.nat6_conns.maxEntries, 1 << 16, 'default: 65536 entries');
  const pinDir = `/sys/fs/bpf/xdplb-test-${randomBytes(3).toString('hex')}`;
  t.teardown(() => removePinDir(pinDir));
  const geo = { ringSize: 251, maxServices: 8, flowBuckets: 64, natEntries: 1024 };
  const first = loadBalancer({ ...geo, nat6Entries: 512, pinDir });
  t.equal(first.maps.nat6_conns.maxEntries, 512, 'set before load');
  const k = nat6Key.encode({ saddr: 'fd01::1', daddr: 'fd00:1::1', sport: 1, dport: 80, proto: 6, dir: NAT_DIR.forward });
  first.maps.nat6_conns.update(k, nat6Entry.encode({ saddr: 'fd01::1', daddr: 'fd02::11', sport: 1, dport: 8080, serviceId: 0, backendId: 1, state: 1, flags: 0, lastSeen: 1n }));
  first.close();
  const again = loadBalancer({ ...geo, nat6Entries: 512, pinDir });
  t.ok(again.maps.nat6_conns.lookup(k), 'the pinned table is reused, with its entries');
  again.close();
  const err = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return e as { code?: string; hint?: string };
    }
    return undefined;
  };
  const e6 = err(() => loadBalancer({ ...geo, nat6Entries: 1024, pinDir }).close());
  const e4 = err(() => loadBalancer({ ...geo, natEntries: 2048, nat6Entries: 512, pinDir }).close());
  t.match(e6, { code: 'ERR_LB_BPF_LOAD', hint: /another type, size or flags/ }, 'nat6_conns of another size: refused');
  t.same({ code: e6?.code, hint: e6?.hint }, { code: e4?.code, hint: e4?.hint }, 'with the same error as a nat_conns size change');
  t.throws(() => loadBalancer({ ...geo, nat6Entries: 1 }), { code: 'ERR_LB_CONFIG', message: /nat6Entries 1 < 2/ });
});

t.test('NAT66 connections are listed and counted beside IPv4 ones, with IPv6 addresses as strings', async (t) => {
  clearTable();
  const now = monotonicNs();
  conn({ client: '192.0.2.1', cport: 40000, state: NAT_STATE.tcpEstablished, age: 5n * S, now });
  conn6({ client: '2001:db8::1', cport: 40001, state: NAT_STATE.tcpEstablished, age: 3n * S, now, backendId: 11 });
  conn6({ client: '2001:db8::2', cport: 40002, src: 'fd09::1', sport: 20002, state: NAT_STATE.tcpNew, age: 1n * S, now, backendId: 11 });
  conn6({ client: '2001:db8::3', cport: 53, proto: 17, state: NAT_STATE.udp, age: 40n * S, now, backendId: 12 });
  const list = lb.nat.connections(now);
  t.equal(list.length, 4, 'one IPv4 and three IPv6 connections');
  t.match(list.find((x) => x.clientPort === 40001), {
    proto: 'tcp', client: '2001:db8::1', vip: 'fd00:1::1', vipPort: 80, backend: 'fd02::11', backendPort: 8080,
    source: '2001:db8::1', sourcePort: 40001, fullNat: false, state: 'tcpEstablished', idleMs: 3000, expiresInMs: 297000, backendId: 11,
  });
  t.match(list.find((x) => x.clientPort === 40002), { fullNat: true, source: 'fd09::1', sourcePort: 20002, state: 'tcpNew' });
  t.match(list.find((x) => x.clientPort === 53), { proto: 'udp', client: '2001:db8::3', expiresInMs: -10000 });
  t.same(list.map((x) => x.idleMs), [40000, 5000, 3000, 1000], 'both families in one list, longest idle first');
  // What `lbctl list` counts per backend (src/daemon: one per connection by backendId).
  const perBackend = new Map<number, number>();
  for (const c of list) perBackend.set(c.backendId, (perBackend.get(c.backendId) ?? 0) + 1);
  t.same([...perBackend.entries()].sort(), [[11, 2], [12, 1], [7, 1]], 'NAT66 connections count for their backends');
  t.same(lb.nat.count(now), {
    connections: 4, entries: 8, orphans: 0, fullNat: 1, expired: 1,
    byState: { tcpNew: 1, tcpEstablished: 2, tcpClosing: 0, udp: 1 },
  }, 'count() covers both tables');
});

t.test('sweep covers nat6_conns: idle NAT66 pairs go together, live ones and young orphans stay', async (t) => {
  clearTable();
  const now = monotonicNs();
  const past = (sec: bigint) => sec * S + SWEEP_GRACE_NS + S;
  const keep6 = [
    conn6({ client: 'fd01::1', cport: 1, state: NAT_STATE.tcpEstablished, age: 299n * S, now }),
    conn6({ client: 'fd01::2', cport: 2, state: NAT_STATE.udp, age: 29n * S, now, proto: 17 }),
  ];
  const gone6 = [
    conn6({ client: 'fd01::11', cport: 11, state: NAT_STATE.tcpClosing, age: past(10n), now }),
    conn6({ client: 'fd01::12', cport: 12, state: NAT_STATE.tcpNew, age: past(30n), now, src: 'fd09::1', sport: 20012 }),
  ];
  const gone4 = conn({ client: '192.0.2.11', cport: 11, state: NAT_STATE.udp, age: past(30n), now, proto: 17 });
  // Two NAT66 pairs that differ only in the last address word: the pairing must use all 128 bits.
  const twinA = conn6({ client: 'fd01::21', cport: 21, state: NAT_STATE.tcpEstablished, age: 1n * S, now });
  const twinB = conn6({ client: 'fd01::1:21', cport: 21, state: NAT_STATE.tcpEstablished, age: past(300n), now });
  const young = conn6({ client: 'fd01::31', cport: 31, state: NAT_STATE.tcpNew, age: 0n, now });
  lb.maps.nat6_conns.delete(nat6Key.encode(young.fwd));
  const old = conn6({ client: 'fd01::32', cport: 32, state: NAT_STATE.tcpNew, age: ORPHAN_GRACE_NS + S, now });
  lb.maps.nat6_conns.delete(nat6Key.encode(old.fwd));

  t.match(lb.nat.count(now), { connections: 7, orphans: 2 });
  const r = lb.nat.sweep(now);
  t.equal(r.connections, 4, 'three NAT66 pairs and one IPv4 pair deleted');
  t.equal(r.orphans, 1, 'the old lone NAT66 reverse entry deleted');
  t.equal(r.remaining, 2 * 3 + 1, 'left: three live NAT66 pairs and the young reverse entry');
  for (const c of [...keep6, twinA]) t.ok(has6(c.fwd) && has6(c.rev), `kept ${c.fwd.saddr}`);
  for (const c of [...gone6, twinB]) t.ok(!has6(c.fwd) && !has6(c.rev), `deleted ${c.fwd.saddr} (both entries)`);
  t.ok(!has(gone4.fwd) && !has(gone4.rev), 'the IPv4 pair too');
  t.ok(has6(young.rev) && !has6(old.rev), 'young orphan kept, old one gone');
});
