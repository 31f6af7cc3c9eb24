// TCP probe against real sockets on 127.0.0.1. (A probe that times out needs a peer that drops
// SYNs, which loopback cannot give: that case runs in a namespace, in datapath.test.ts.)
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { probeTcp, probePort } from '../../src/health/index.js';
import { freePort, grown, loTarget, mkCheck, resources, sleep, tcpServer, until } from './fixtures/helpers.js';

const never = new AbortController().signal;

/** TIME_WAIT sockets towards or from a port on 127.0.0.1 (root namespace, read only). */
function timeWait(port: number): number {
  const r = spawnSync('ss', ['-Htan', 'state', 'time-wait', `( sport = :${port} or dport = :${port} )`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ss failed: ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l.trim() !== '').length;
}

t.test('a listening port: connected, then closed with a RST (no TIME_WAIT anywhere)', async (t) => {
  const { port, accepted } = await tcpServer(t);
  for (let i = 0; i < 5; i++) {
    const r = await probeTcp(loTarget(port), mkCheck(), never);
    t.same({ ok: r.ok, detail: r.detail }, { ok: true, detail: 'connected' }, `probe ${i + 1}`);
    t.ok(r.ms >= 0 && r.ms < 500, `took ${r.ms} ms`);
  }
  t.ok(await until(() => accepted.length === 5 && accepted.every((s) => s.destroyed || s.readyState === 'closed'), 2000), 'the server saw 5 connections, all closed');
  t.equal(timeWait(port), 0, 'no TIME_WAIT left by 5 probes');
});

t.test('check.port overrides the backend and service port', async (t) => {
  const { port } = await tcpServer(t);
  const closed = await freePort();
  t.equal(probePort(loTarget(closed), mkCheck({ port })), port);
  t.equal(probePort({ ...loTarget(closed), backend: { address: '127.0.0.1', port: 7 } }, mkCheck()), 7);
  t.equal((await probeTcp(loTarget(closed), mkCheck({ port }), never)).ok, true);
});

t.test('nothing listening: connect ECONNREFUSED', async (t) => {
  const r = await probeTcp(loTarget(await freePort()), mkCheck(), never);
  t.same({ ok: r.ok, detail: r.detail }, { ok: false, detail: 'connect ECONNREFUSED' });
});

t.test('abort: settles at once as aborted; an aborted signal does not even start', async (t) => {
  const { port } = await tcpServer(t);
  const ctl = new AbortController();
  ctl.abort();
  const r = await probeTcp(loTarget(port), mkCheck(), ctl.signal);
  t.same(r, { ok: false, ms: 0, detail: 'aborted' });
  const ctl2 = new AbortController();
  const p = probeTcp(loTarget(port), mkCheck(), ctl2.signal);
  ctl2.abort();
  t.equal((await p).detail, 'aborted');
});

t.test('leaves no handle behind (sockets, timers)', async (t) => {
  const { port } = await tcpServer(t);
  const closed = await freePort();
  await sleep(20);
  const before = resources();
  await Promise.all(Array.from({ length: 10 }, (_, i) => probeTcp(loTarget(i % 2 ? port : closed), mkCheck(), never)));
  await sleep(50);
  t.same(grown(before, resources()), []);
});

t.test('IPv6: a listening port on ::1 connects, a closed one is refused', async (t) => {
  const accepted: (string | undefined)[] = [];
  const server = (await import('node:net')).createServer((s) => {
    s.on('error', () => {});
    accepted.push(s.remoteAddress);
  });
  await new Promise<void>((r) => server.listen(0, '::1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const port = (server.address() as import('node:net').AddressInfo).port;
  const r = await probeTcp(loTarget(port, '::1'), mkCheck(), never);
  t.same({ ok: r.ok, detail: r.detail }, { ok: true, detail: 'connected' });
  t.ok(await until(() => accepted.length === 1, 2000), 'the IPv6 server saw the connection');
  t.equal(accepted[0], '::1');
  await new Promise<void>((r) => server.close(() => r()));
  const closed = await probeTcp(loTarget(port, '::1'), mkCheck(), never);
  t.same({ ok: closed.ok, detail: closed.detail }, { ok: false, detail: 'connect ECONNREFUSED' });
});
