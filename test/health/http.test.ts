// HTTP and HTTPS probes against real servers on 127.0.0.1 (and ::1), port 0.
import t from 'tap';
import { createServer as createNetServer, type Socket } from 'node:net';
import { defaultHost, formatRanges, probeHttp, statusInRanges } from '../../src/health/index.js';
import { freePort, grown, httpCheck, httpServer, httpsServer, listen, loTarget, portOf, resources, selfSigned, sleep, until } from './fixtures/helpers.js';

const never = new AbortController().signal;

t.test('ranges and the default Host header', async (t) => {
  t.equal(formatRanges([{ from: 200, to: 399 }]), '200-399');
  t.equal(formatRanges([{ from: 200, to: 200 }, { from: 302, to: 302 }]), '200,302');
  t.ok(statusInRanges(302, [{ from: 200, to: 200 }, { from: 300, to: 399 }]));
  t.notOk(statusInRanges(404, [{ from: 200, to: 399 }]));
  t.equal(defaultHost('10.0.0.1', 80, false), '10.0.0.1');
  t.equal(defaultHost('10.0.0.1', 443, true), '10.0.0.1');
  t.equal(defaultHost('10.0.0.1', 443, false), '10.0.0.1:443');
  t.equal(defaultHost('2001:db8::1', 8080, false), '[2001:db8::1]:8080');
  t.equal(defaultHost('2001:db8::1', 443, true), '[2001:db8::1]');
});

t.test('status against the expected ranges', async (t) => {
  let status = 200;
  const { port } = await httpServer(t, (_req, res) => {
    res.statusCode = status;
    res.end('x');
  });
  const probe = (expect = [{ from: 200, to: 399 }]): Promise<{ ok: boolean; detail: string }> =>
    probeHttp(loTarget(port), httpCheck({ expect }), never).then((r) => ({ ok: r.ok, detail: r.detail }));
  t.same(await probe(), { ok: true, detail: 'HTTP 200' });
  status = 503;
  t.same(await probe(), { ok: false, detail: 'HTTP 503 (want 200-399)' });
  status = 302;
  t.same(await probe([{ from: 200, to: 200 }, { from: 302, to: 302 }]), { ok: true, detail: 'HTTP 302' });
  status = 301;
  t.same(await probe([{ from: 200, to: 200 }, { from: 302, to: 302 }]), { ok: false, detail: 'HTTP 301 (want 200,302)' });
  status = 503;
  t.same(await probe([{ from: 500, to: 599 }]), { ok: true, detail: 'HTTP 503' }, 'any range, not just 2xx');
});

t.test('method, path, Host header (default and configured), a fresh connection per probe', async (t) => {
  const { port, rec } = await httpServer(t, (_req, res) => res.end('ok'));
  await probeHttp(loTarget(port), httpCheck({ method: 'HEAD', path: '/healthz?deep=1' }), never);
  await probeHttp(loTarget(port), httpCheck({ host: 'app.example.test' }), never);
  t.same(
    rec.requests.map((r) => [r.method, r.url, r.host]),
    [
      ['HEAD', '/healthz?deep=1', `127.0.0.1:${port}`],
      ['GET', '/', 'app.example.test'],
    ],
  );
  t.equal(rec.connections, 2, 'two probes, two connections');
  t.not(rec.requests[0]?.remotePort, rec.requests[1]?.remotePort);
  t.ok(await until(() => rec.open === 0, 2000), 'no connection stays open after a probe');
});

t.test('IPv6 backend: Host in brackets', async (t) => {
  const s = await httpServer(t, (_req, res) => res.end('ok'), 0, '::1').catch((e: Error) => e);
  if (s instanceof Error) {
    t.fail(`cannot listen on ::1 in this namespace: ${s.message}`);
    return;
  }
  const r = await probeHttp(loTarget(s.port, '::1'), httpCheck(), never);
  t.equal(r.ok, true, r.detail);
  t.equal(s.rec.requests[0]?.host, `[::1]:${s.port}`);
});

t.test('bodyContains: found, missing, only beyond 64 KiB, split across chunks', async (t) => {
  let body: (res: import('node:http').ServerResponse) => void = (res) => res.end('status: ready');
  const { port } = await httpServer(t, (_req, res) => body(res));
  const probe = (needle: string): Promise<{ ok: boolean; detail: string }> =>
    probeHttp(loTarget(port), httpCheck({ bodyContains: needle }), never).then((r) => ({ ok: r.ok, detail: r.detail }));
  t.same(await probe('ready'), { ok: true, detail: 'HTTP 200, body has "ready"' });
  t.same(await probe('draining'), { ok: false, detail: 'HTTP 200, body lacks "draining"' });

  body = (res) => {
    res.write('x'.repeat(70 * 1024));
    res.end('ready');
  };
  t.same(await probe('ready'), { ok: false, detail: 'HTTP 200, first 64 KiB of the body lack "ready"' });

  body = (res) => {
    res.write('x'.repeat(1000) + 'rea');
    setTimeout(() => res.end('dy and more'), 30);
  };
  t.same(await probe('ready'), { ok: true, detail: 'HTTP 200, body has "ready"' }, 'a needle split over two chunks');

  // a server that streams forever: the probe stops reading at 64 KiB instead of waiting for the timeout
  body = (res) => {
    const timer = setInterval(() => res.write('y'.repeat(8192)), 1);
    res.on('close', () => clearInterval(timer));
  };
  const t0 = Date.now();
  t.same(await probe('ready'), { ok: false, detail: 'HTTP 200, first 64 KiB of the body lack "ready"' });
  t.ok(Date.now() - t0 < 450, 'settled before the timeout');
});

t.test('a server that never answers: timeout, saying where it hung', async (t) => {
  const { port } = await httpServer(t, () => {});
  const r = await probeHttp(loTarget(port), httpCheck({}, { timeoutMs: 200 }), never);
  t.same({ ok: r.ok, detail: r.detail }, { ok: false, detail: 'timeout after 200 ms (waiting for the response)' });
  t.ok(r.ms >= 195 && r.ms < 400, `after ${r.ms} ms`);
});

t.test('a server that closes without answering, and nothing listening', async (t) => {
  const sockets: Socket[] = [];
  const server = createNetServer((s) => {
    sockets.push(s);
    s.destroy();
  });
  await listen(server, t);
  const r = await probeHttp(loTarget(portOf(server)), httpCheck(), never);
  t.equal(r.ok, false);
  t.match(r.detail, /ECONNRESET|socket hang up/);
  const r2 = await probeHttp(loTarget(await freePort()), httpCheck(), never);
  t.same({ ok: r2.ok, detail: r2.detail }, { ok: false, detail: 'connect ECONNREFUSED' });
});

t.test('https with a self-signed certificate: refused unless insecure', async (t) => {
  const pems = selfSigned(t.testdir());
  const { port, rec } = await httpsServer(t, pems, (_req, res) => res.end('secure ready'));
  const tgt = loTarget(port);
  const strict = await probeHttp(tgt, httpCheck({}, { type: 'https' }), never);
  t.equal(strict.ok, false);
  t.equal(strict.detail, 'TLS: self-signed certificate');
  const lax = await probeHttp(tgt, httpCheck({ insecure: true, bodyContains: 'ready' }, { type: 'https' }), never);
  t.same({ ok: lax.ok, detail: lax.detail }, { ok: true, detail: 'HTTP 200, body has "ready"' });
  t.equal(rec.requests.length, 1, 'only the insecure probe got as far as a request');
  t.equal(rec.requests[0]?.host, `127.0.0.1:${port}`);
  t.ok(await until(() => rec.open === 0, 2000), 'no TLS connection stays open');
});

t.test('abort mid-request; no handle left behind', async (t) => {
  const { port } = await httpServer(t, () => {});
  const ok = await httpServer(t, (_req, res) => res.end('fine'));
  await sleep(20);
  const before = resources();
  const ctl = new AbortController();
  const p = probeHttp(loTarget(port), httpCheck({}, { timeoutMs: 5000 }), ctl.signal);
  await sleep(50);
  ctl.abort();
  const r = await p;
  t.equal(r.detail, 'aborted');
  t.ok(r.ms < 200);
  await Promise.all(Array.from({ length: 5 }, () => probeHttp(loTarget(ok.port), httpCheck(), never)));
  await sleep(50);
  t.same(grown(before, resources()), []);
});
