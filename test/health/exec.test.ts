// Exec probe: real processes. The timeout must kill the whole process group, proven by the pid of
// a grandchild being gone afterwards.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execEnv, probeExec, STDERR_TAIL_BYTES } from '../../src/health/index.js';
import { processAlive } from '../../src/lab/index.js';
import { grown, mkCheck, resources, sleep, until } from './fixtures/helpers.js';

const never = new AbortController().signal;
const target = {
  service: { name: 'web', vip: '10.201.100.1', port: 80, proto: 'tcp' as const, mode: 'l2dsr' as const },
  backend: { address: '10.201.0.2' },
};
const execCheck = (command: string[], timeoutMs = 2000) => mkCheck({ type: 'exec', timeoutMs, exec: { command } });

/** `sh -c SCRIPT` that first starts `sleep 30` in the background and writes its pid to `pidFile`. */
function withGrandchild(pidFile: string, rest: string): string[] {
  return ['sh', '-c', `sleep 30 & echo $! > "$1"; ${rest}`, 'sh', pidFile];
}

t.test('exit 0 passes, exit 1 fails with the end of stderr', async (t) => {
  const ok = await probeExec(target, execCheck(['true']), never);
  t.same({ ok: ok.ok, detail: ok.detail }, { ok: true, detail: 'exit 0' });
  const bad = await probeExec(target, execCheck(['sh', '-c', 'echo "backend sick" >&2; echo "line two" >&2; exit 1']), never);
  t.same({ ok: bad.ok, detail: bad.detail }, { ok: false, detail: 'exit 1: backend sick | line two' });
});

t.test('the environment names the target; argv reaches the command untouched (no shell)', async (t) => {
  t.same(execEnv(target, mkCheck({ port: 8080 })), {
    XDPLB_BACKEND: '10.201.0.2',
    XDPLB_PORT: '8080',
    XDPLB_VIP: '10.201.100.1',
    XDPLB_SERVICE: 'web',
  });
  const r = await probeExec(
    target,
    execCheck(['sh', '-c', 'printf "%s %s %s %s\\n" "$XDPLB_BACKEND" "$XDPLB_PORT" "$XDPLB_VIP" "$XDPLB_SERVICE" >&2; exit 3']),
    never,
  );
  t.equal(r.detail, 'exit 3: 10.201.0.2 80 10.201.100.1 web');
  const literal = await probeExec(target, execCheck(['ls', '/nonexistent/$HOME;`id`*']), never);
  t.equal(literal.ok, false);
  t.match(literal.detail, /\/nonexistent\/\$HOME;`id`\*/, `the argument was not expanded: ${literal.detail}`);
});

t.test('IPv6: the environment carries the addresses as written in the config', async (t) => {
  const v6 = { service: { name: 'web6', vip: '2001:db8::10', port: 443, proto: 'tcp' as const, mode: 'l2dsr' as const }, backend: { address: '2001:db8::11' } };
  t.same(execEnv(v6, mkCheck()), { XDPLB_BACKEND: '2001:db8::11', XDPLB_PORT: '443', XDPLB_VIP: '2001:db8::10', XDPLB_SERVICE: 'web6' });
  const r = await probeExec(v6, execCheck(['sh', '-c', 'printf "%s %s %s\\n" "$XDPLB_BACKEND" "$XDPLB_PORT" "$XDPLB_VIP" >&2; exit 4']), never);
  t.equal(r.detail, 'exit 4: 2001:db8::11 443 2001:db8::10');
});

t.test(`only the last ${STDERR_TAIL_BYTES} bytes of stderr`, async (t) => {
  const r = await probeExec(target, execCheck(['sh', '-c', 'i=0; while [ $i -lt 300 ]; do printf "0123456789" >&2; i=$((i+1)); done; printf "THE-END" >&2; exit 2']), never);
  t.equal(r.ok, false);
  t.match(r.detail, /^exit 2: [0-9]+THE-END$/);
  t.equal(r.detail.length - 'exit 2: '.length, STDERR_TAIL_BYTES);
});

t.test('a command that does not exist', async (t) => {
  const r = await probeExec(target, execCheck(['/nonexistent/check-script']), never);
  t.same({ ok: r.ok, detail: r.detail }, { ok: false, detail: 'spawn /nonexistent/check-script ENOENT' });
});

t.test('timeout: SIGKILL to the whole process group, grandchild included', async (t) => {
  const pidFile = join(t.testdir(), 'pid');
  const r = await probeExec(target, execCheck(withGrandchild(pidFile, 'echo started >&2; wait'), 300), never);
  t.equal(r.ok, false);
  t.equal(r.detail, 'timeout after 300 ms (killed): started');
  t.ok(r.ms >= 295 && r.ms < 600, `after ${r.ms} ms`);
  const pid = Number(readFileSync(pidFile, 'utf8'));
  t.ok(pid > 0);
  t.ok(await until(() => !processAlive(pid), 2000), `background sleep ${pid} is gone`);
});

t.test('exit 0 with something left running: the leftover is killed too', async (t) => {
  const pidFile = join(t.testdir(), 'pid');
  const r = await probeExec(target, execCheck(withGrandchild(pidFile, 'exit 0')), never);
  t.same({ ok: r.ok, detail: r.detail }, { ok: true, detail: 'exit 0' });
  t.ok(r.ms < 1000, `did not wait for the leftover (${r.ms} ms)`);
  const pid = Number(readFileSync(pidFile, 'utf8'));
  t.ok(await until(() => !processAlive(pid), 2000), `leftover sleep ${pid} is gone`);
});

t.test('abort kills the group; no handle left behind', async (t) => {
  const pidFile = join(t.testdir(), 'pid');
  await sleep(20);
  const before = resources();
  const ctl = new AbortController();
  const p = probeExec(target, execCheck(withGrandchild(pidFile, 'wait'), 10_000), ctl.signal);
  t.ok(await until(() => readFileSafe(pidFile) !== '', 2000), 'started');
  ctl.abort();
  const r = await p;
  t.equal(r.detail, 'aborted');
  const pid = Number(readFileSafe(pidFile));
  t.ok(await until(() => !processAlive(pid), 2000), 'grandchild gone');
  await Promise.all([probeExec(target, execCheck(['true']), never), probeExec(target, execCheck(['false']), never)]);
  await sleep(100);
  t.same(grown(before, resources()), []);
});

function readFileSafe(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
}
