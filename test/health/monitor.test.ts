// HealthMonitor with real timers: scripted probes for the bookkeeping, a real HTTP server on
// 127.0.0.1 for up -> down -> up with the timing bounds the config promises.
import t from 'tap';
import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { HealthCheck } from '../../src/config/types.js';
import { HealthMonitor, HISTORY_LENGTH, type CheckFn, type HealthTransition, type ProbeResult } from '../../src/health/index.js';
import { grown, hTarget, httpCheck, httpServer, mkCheck, portOf, resources, sleep, until, type Teardownable } from './fixtures/helpers.js';

function monitor(t: Teardownable, opts: ConstructorParameters<typeof HealthMonitor>[0] = {}): { mon: HealthMonitor; transitions: HealthTransition[] } {
  const mon = new HealthMonitor({ datapath: false, ...opts });
  const transitions: HealthTransition[] = [];
  mon.on('transition', (e) => transitions.push(e));
  t.teardown(() => mon.stop());
  return { mon, transitions };
}

/** A probe function whose answer the test flips, counting calls and overlap per key. */
function scripted(initial = true): { check: CheckFn; set(ok: boolean): void; calls: Map<string, number>; maxInFlight: Map<string, number> } {
  let ok = initial;
  const calls = new Map<string, number>();
  const inFlight = new Map<string, number>();
  const maxInFlight = new Map<string, number>();
  const check: CheckFn = async (target, signal) => {
    const k = target.key;
    calls.set(k, (calls.get(k) ?? 0) + 1);
    inFlight.set(k, (inFlight.get(k) ?? 0) + 1);
    maxInFlight.set(k, Math.max(maxInFlight.get(k) ?? 0, inFlight.get(k) ?? 0));
    // slower than the interval, so a second probe would overlap if the loop allowed it
    await new Promise<void>((r) => {
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        r();
      };
      const timer = setTimeout(done, target.check.intervalMs * 1.5);
      signal.addEventListener('abort', done, { once: true });
    });
    inFlight.set(k, (inFlight.get(k) ?? 1) - 1);
    return { ok, ms: 1, detail: ok ? 'scripted ok' : 'scripted failure' } satisfies ProbeResult;
  };
  return { check, set: (v) => (ok = v), calls, maxInFlight };
}

t.test('scripted probes: rise, fall, history, counters, one probe in flight per key', async (t) => {
  const s = scripted(true);
  const { mon, transitions } = monitor(t, { check: s.check });
  const check = mkCheck({ intervalMs: 20, rise: 2, fall: 3, jitter: 0.2 });
  await mon.set([hTarget('a', 1, check), hTarget('b', 2, check)]);
  t.equal(mon.stateOf('a'), 'unknown');
  t.ok(await until(() => mon.stateOf('a') === 'up' && mon.stateOf('b') === 'up', 2000), 'both up');
  s.set(false);
  t.ok(await until(() => mon.stateOf('a') === 'down' && mon.stateOf('b') === 'down', 2000), 'both down');
  const snap = mon.snapshotOf('a');
  t.equal(snap?.consecutiveFailures, 3);
  t.equal(snap?.consecutiveSuccesses, 0);
  t.ok((snap?.failures ?? 0) >= 3 && (snap?.probes ?? 0) >= 5);
  t.equal(snap?.detail, 'scripted failure');
  t.same(snap?.history.map((h) => `${h.from}>${h.to}`), ['unknown>up', 'up>down']);
  t.equal(snap?.since, new Date(snap?.history[1]?.at ?? 0).toISOString());
  t.same(
    transitions.filter((e) => e.key === 'a').map((e) => [e.from, e.to, e.detail]),
    [
      ['unknown', 'up', 'scripted ok'],
      ['up', 'down', 'scripted failure'],
    ],
  );
  t.same([...s.maxInFlight.values()], [1, 1], 'never two probes of one key at once');

  // flap until the history is full: it keeps only the last HISTORY_LENGTH
  for (let i = 0; i < 6; i++) {
    s.set(true);
    t.ok(await until(() => mon.stateOf('a') === 'up', 2000));
    s.set(false);
    t.ok(await until(() => mon.stateOf('a') === 'down', 2000));
  }
  t.equal(mon.snapshotOf('a')?.history.length, HISTORY_LENGTH);
  t.same(Object.keys(mon.snapshot()), ['a', 'b']);
});

t.test('set(): removed keys stop, unchanged keys keep state, changed keys restart from unknown', async (t) => {
  const s = scripted(true);
  const { mon, transitions } = monitor(t, { check: s.check });
  const check = mkCheck({ intervalMs: 20, rise: 1, fall: 1 });
  await mon.set([hTarget('keep', 1, check), hTarget('drop', 2, check), hTarget('change', 3, check)]);
  t.ok(await until(() => ['keep', 'drop', 'change'].every((k) => mon.stateOf(k) === 'up'), 2000));
  const n = transitions.length;

  // equal by value (a copy, even of the Buffer-free check) is unchanged
  await mon.set([hTarget('keep', 1, { ...check }), hTarget('change', 3, { ...check, timeoutMs: 400 })]);
  t.equal(mon.stateOf('keep'), 'up', 'unchanged key kept its state');
  t.equal(mon.stateOf('drop'), undefined, 'removed key is gone');
  t.equal(mon.stateOf('change'), 'unknown', 'changed key starts over');
  t.same(transitions.slice(n).map((e) => [e.key, e.from, e.to, e.detail]), [['change', 'up', 'unknown', 'check changed']]);
  const dropCalls = s.calls.get('drop');
  await sleep(150);
  t.equal(s.calls.get('drop'), dropCalls, 'no probe of a removed key after set()');
  t.equal(mon.stateOf('change'), 'up', 'the changed key came back up');
  t.equal(s.maxInFlight.get('change'), 1, 'the restarted key waited for its old probe');
  t.throws(() => mon.set([hTarget('x', 1, check), hTarget('x', 2, check)]), { code: 'ERR_LB_HEALTH' }, 'duplicate keys are refused');
});

t.test('udp payloads compare by content', async (t) => {
  const s = scripted(true);
  const { mon, transitions } = monitor(t, { check: s.check });
  const udp = (hex: string): HealthCheck => mkCheck({ type: 'udp', intervalMs: 20, rise: 1, udp: { payload: Buffer.from(hex, 'hex'), expect: 'reply' } });
  await mon.set([hTarget('u', 1, udp('0102'))]);
  t.ok(await until(() => mon.stateOf('u') === 'up', 2000));
  await mon.set([hTarget('u', 1, udp('0102'))]);
  t.equal(mon.stateOf('u'), 'up', 'an equal payload in a new Buffer is no change');
  await mon.set([hTarget('u', 1, udp('0103'))]);
  t.equal(mon.stateOf('u'), 'unknown', 'another payload is');
  t.equal(transitions.at(-1)?.detail, 'check changed');
});

t.test('type none: up at once, never probed', async (t) => {
  const s = scripted(false);
  const { mon, transitions } = monitor(t, { check: s.check });
  await mon.set([hTarget('n', 1, mkCheck({ type: 'none' }))]);
  t.equal(mon.stateOf('n'), 'up');
  t.same(transitions.map((e) => [e.from, e.to, e.detail]), [['unknown', 'up', 'no health check']]);
  await sleep(250);
  t.equal(s.calls.size, 0);
});

t.test('first probes spread over one interval; later ones interval x (1 ± jitter) after the previous ended', async (t) => {
  const starts = new Map<string, number[]>();
  const check: CheckFn = async (target) => {
    const l = starts.get(target.key) ?? [];
    l.push(performance.now());
    starts.set(target.key, l);
    return { ok: true, ms: 0, detail: 'ok' };
  };
  const { mon } = monitor(t, { check });
  const c = mkCheck({ intervalMs: 200, jitter: 0.25 });
  const t0 = performance.now();
  await mon.set(Array.from({ length: 20 }, (_, i) => hTarget(`k${i}`, i, c)));
  await sleep(1000);
  await mon.stop();
  const firsts = [...starts.values()].map((l) => (l[0] ?? 0) - t0);
  t.equal(firsts.length, 20, 'every key probed');
  t.ok(firsts.every((d) => d >= 0 && d < 200 + 30), `first probes within one interval: ${firsts.map((d) => d.toFixed(0)).join(' ')}`);
  t.ok(Math.max(...firsts) - Math.min(...firsts) > 80, 'and spread out');
  const gaps = [...starts.values()].flatMap((l) => l.slice(1).map((x, i) => x - (l[i] ?? 0)));
  t.ok(gaps.length >= 40);
  // timers never fire early; late by a scheduler tick at most
  t.ok(gaps.every((g) => g >= 150 - 1 && g <= 250 + 30), `gaps ${Math.min(...gaps).toFixed(0)}..${Math.max(...gaps).toFixed(0)} ms`);
});

t.test('a real HTTP server: up after rise, down within fall x interval + timeout after it stops, up again', async (t) => {
  const { server, port, rec } = await httpServer(t, (_req, res) => res.end('ok'));
  const check = httpCheck({}, { intervalMs: 100, timeoutMs: 200, rise: 2, fall: 3, jitter: 0.1 });
  const { mon, transitions } = monitor(t, { datapath: false });
  const t0 = Date.now();
  await mon.set([hTarget('web', port, check)]);
  t.ok(await until(() => mon.stateOf('web') === 'up', 2000), 'up');
  const upAfter = Date.now() - t0;
  // first probe < 1 interval, then rise-1 intervals of at most 110 ms, plus the probes themselves
  t.ok(upAfter < 100 + 110 + 200, `up after ${upAfter} ms`);
  t.ok(rec.maxOpen <= 1, 'one connection at a time');

  // stop the server (and its idle connections): refused from now on
  await new Promise<void>((r) => {
    server.close(() => r());
    server.closeAllConnections();
  });
  const tStop = Date.now();
  t.ok(await until(() => mon.stateOf('web') === 'down', 3000), 'down');
  const downAfter = Date.now() - tStop;
  const bound = 3 * 110 + 200 + 150;
  t.ok(downAfter <= bound, `down ${downAfter} ms after the server stopped (bound ${bound})`);
  t.match(transitions.at(-1), { key: 'web', from: 'up', to: 'down', detail: 'connect ECONNREFUSED' });

  // the same port again
  const again: Server = createServer((_req, res) => res.end('ok'));
  const socks = new Set<Socket>();
  again.on('connection', (s) => (socks.add(s), s.on('close', () => socks.delete(s))));
  await new Promise<void>((r) => again.listen(port, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => (socks.forEach((s) => s.destroy()), again.close(() => r()))));
  t.equal(portOf(again), port);
  const tStart = Date.now();
  t.ok(await until(() => mon.stateOf('web') === 'up', 3000), 'up again');
  t.ok(Date.now() - tStart <= 2 * 110 + 200 + 150, `up ${Date.now() - tStart} ms after the server came back`);
  t.same(
    transitions.map((e) => `${e.from}>${e.to}`),
    ['unknown>up', 'up>down', 'down>up'],
  );
});

t.test('a slow server: the monitor never has two probes of a key open at once', async (t) => {
  const { port, rec } = await httpServer(t, (_req, res) => setTimeout(() => res.end('slow'), 150));
  const { mon } = monitor(t);
  await mon.set([hTarget('slow', port, httpCheck({}, { intervalMs: 20, timeoutMs: 1000 }))]);
  await sleep(800);
  await mon.stop();
  t.ok(rec.requests.length >= 3, `${rec.requests.length} requests`);
  t.equal(rec.maxOpen, 1, 'at most one connection open at any time');
});

t.test('stop(): aborts probes in flight, no events after, no handle left', async (t) => {
  // a server that never answers, and a probe timeout far beyond the test's patience
  const { port } = await httpServer(t, () => {});
  const tcp = await httpServer(t, (_req, res) => res.end('ok'));
  await sleep(20);
  const before = resources();
  const mon = new HealthMonitor({ datapath: false });
  let events = 0;
  let stopped = false;
  mon.on('probe', () => {
    if (stopped) events++;
  });
  mon.on('transition', () => {
    if (stopped) events++;
  });
  await mon.set([
    hTarget('hang', port, httpCheck({}, { intervalMs: 20, timeoutMs: 60_000 })),
    hTarget('fine', tcp.port, mkCheck({ intervalMs: 20 })),
    hTarget('exec', 1, mkCheck({ type: 'exec', intervalMs: 20, timeoutMs: 60_000, exec: { command: ['sleep', '60'] } })),
  ]);
  await sleep(300);
  const t0 = Date.now();
  stopped = true;
  await mon.stop();
  t.ok(Date.now() - t0 < 500, `stop() took ${Date.now() - t0} ms`);
  await mon.stop();
  t.throws(() => mon.set([]), { code: 'ERR_LB_HEALTH' }, 'set() after stop() is a programming error');
  await sleep(150);
  t.equal(events, 0, 'nothing emitted after stop()');
  t.same(grown(before, resources()), [], 'no socket, timer or process left');
});
