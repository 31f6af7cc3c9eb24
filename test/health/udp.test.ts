// UDP probe against real sockets on 127.0.0.1: a reply, silence, and ICMP port unreachable.
import t from 'tap';
import { createSocket, type Socket } from 'node:dgram';
import { probeUdp } from '../../src/health/index.js';
import { grown, loTarget, mkCheck, resources, sleep, type Teardownable } from './fixtures/helpers.js';

const never = new AbortController().signal;
const PAYLOAD = Buffer.from('xdplb-health\x00\xff', 'latin1');

/** A UDP socket on 127.0.0.1:0 that records datagrams and, if `echo`, sends each back. */
async function udpServer(t: Teardownable, echo: boolean): Promise<{ port: number; got: Buffer[] }> {
  const sock: Socket = createSocket('udp4');
  const got: Buffer[] = [];
  sock.on('message', (msg, rinfo) => {
    got.push(msg);
    if (echo) sock.send(msg, rinfo.port, rinfo.address);
  });
  t.teardown(() => new Promise<void>((r) => sock.close(() => r())));
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  return { port: sock.address().port, got };
}

/** A UDP port nobody has bound (bound, read, released). */
async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const udpCheck = (expect: 'reply' | 'no-unreachable', timeoutMs = 300) => mkCheck({ type: 'udp', timeoutMs, udp: { payload: PAYLOAD, expect } });

t.test('an echo server: reply in both modes, the exact payload arrives', async (t) => {
  const { port, got } = await udpServer(t, true);
  const r = await probeUdp(loTarget(port), udpCheck('reply'), never);
  t.same({ ok: r.ok, detail: r.detail }, { ok: true, detail: `reply, ${PAYLOAD.length} bytes` });
  t.ok(r.ms < 100, `reply in ${r.ms} ms, not at the timeout`);
  const r2 = await probeUdp(loTarget(port), udpCheck('no-unreachable'), never);
  t.same({ ok: r2.ok, detail: r2.detail }, { ok: true, detail: `reply, ${PAYLOAD.length} bytes` });
  t.ok(r2.ms < 100, 'a reply settles no-unreachable at once too');
  t.same(got, [PAYLOAD, PAYLOAD]);
});

t.test('a silent server: reply fails at the timeout, no-unreachable passes at the timeout', async (t) => {
  const { port, got } = await udpServer(t, false);
  const r = await probeUdp(loTarget(port), udpCheck('reply', 200), never);
  t.same({ ok: r.ok, detail: r.detail }, { ok: false, detail: 'no reply within 200 ms' });
  t.ok(r.ms >= 195, `after ${r.ms} ms`);
  const r2 = await probeUdp(loTarget(port), udpCheck('no-unreachable', 200), never);
  t.same({ ok: r2.ok, detail: r2.detail }, { ok: true, detail: 'no ICMP unreachable within 200 ms' });
  t.equal(got.length, 2, 'both datagrams arrived');
});

t.test('nothing bound: ICMP port unreachable fails both modes, before the timeout', async (t) => {
  const port = await freeUdpPort();
  for (const mode of ['reply', 'no-unreachable'] as const) {
    const r = await probeUdp(loTarget(port), udpCheck(mode, 1000), never);
    t.same({ ok: r.ok, detail: r.detail }, { ok: false, detail: 'ICMP port unreachable' }, mode);
    t.ok(r.ms < 500, `${mode}: settled in ${r.ms} ms`);
  }
});

t.test('check.port, abort, and no socket or timer left behind', async (t) => {
  const { port } = await udpServer(t, true);
  const other = await freeUdpPort();
  await sleep(20);
  const before = resources();
  const r = await probeUdp(loTarget(other), { ...udpCheck('reply'), port }, never);
  t.equal(r.ok, true, 'check.port wins over the service port');
  const silent = await udpServer(t, false);
  const ctl = new AbortController();
  const p = probeUdp(loTarget(silent.port), udpCheck('reply', 5000), ctl.signal);
  await sleep(30);
  ctl.abort();
  t.equal((await p).detail, 'aborted');
  await probeUdp(loTarget(await freeUdpPort()), udpCheck('reply'), never);
  await sleep(50);
  const after = resources();
  // the silent server's own socket is the one UDP handle allowed to be new
  after.set('UDPWrap', (after.get('UDPWrap') ?? 0) - 1);
  t.same(grown(before, after), []);
});

t.test('IPv6: an echo server on ::1 replies; nothing bound there is ICMPv6 port unreachable', async (t) => {
  const sock: Socket = createSocket('udp6');
  sock.on('message', (msg, rinfo) => sock.send(msg, rinfo.port, rinfo.address));
  await new Promise<void>((r) => sock.bind(0, '::1', r));
  const port = sock.address().port;
  const r = await probeUdp(loTarget(port, '::1'), udpCheck('reply'), never);
  t.same({ ok: r.ok, detail: r.detail }, { ok: true, detail: `reply, ${PAYLOAD.length} bytes` });
  await new Promise<void>((r) => sock.close(() => r()));
  const gone = await probeUdp(loTarget(port, '::1'), udpCheck('no-unreachable'), never);
  t.same({ ok: gone.ok, detail: gone.detail }, { ok: false, detail: 'ICMP port unreachable' });
});
