/**
 * Health checks with real traffic in the lab, through the real daemon: a stopped server is taken
 * out within fall x interval + timeout while requests to the others keep working and it comes back
 * after `rise`; a backend without the VIP on lo is caught only by the data-path check; a drained
 * backend keeps its open connection, gets no new flows, and `drain --wait` returns when it closes.
 */
import t from 'tap';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removePinDir } from '../../src/bpf/index.js';
import { clientRequests, exec, labDown, labStatus, labUp, type Lab } from '../../src/lab/index.js';
import { BACKEND_SERVER_JS } from '../../src/lab/lab.js';
import type { ServiceView } from '../../src/daemon/daemon.js';
import { DaemonProc, LBCTL, lbctl, until } from './harness.js';

const PREFIX = 'xhl-';
const VIP = '10.200.100.1';
const INTERVAL = 300;
const TIMEOUT = 200;
const FALL = 2;
const RISE = 2;
const pins = `/sys/fs/bpf/xdplb-test-hl-${randomBytes(3).toString('hex')}`;
const dir = mkdtempSync(join(tmpdir(), 'xdplb-hl-'));
const cfgPath = join(dir, 'config.yaml');
const sock = join(dir, 'lbctl.sock');
let lab: Lab;
let daemon: DaemonProc | undefined;

t.before(async () => {
  await labDown(PREFIX);
  lab = await labUp({ prefix: PREFIX });
  const l2 = lab.backends.filter((b) => b.segment === 'l2');
  writeFileSync(
    cfgPath,
    `node:
  interfaces: [eth0]
  bpffs: ${pins}
  maxServices: 4
  flowBuckets: 16384
  flowIdleTimeout: 3s
  api: { socket: ${sock} }
services:
  - name: web
    vip: ${VIP}
    port: 80
    mode: l2dsr
    healthCheck: { type: tcp, interval: ${INTERVAL}ms, timeout: ${TIMEOUT}ms, rise: ${RISE}, fall: ${FALL}, datapath: true }
    backends:
${l2.map((b) => `      - address: ${b.addr}\n`).join('')}`,
  );
  daemon = new DaemonProc(lab.lb.ns, cfgPath, sock);
  await daemon.ready();
  await until('all backends up', () => list().usableBackends === 3, 20_000);
});
t.teardown(async () => {
  if (daemon) {
    lbctl(sock, ['stop', '--detach']);
    await Promise.race([daemon.exited, new Promise((r) => setTimeout(r, 5000))]);
    await daemon.kill();
  }
  removePinDir(pins);
  await labDown(PREFIX);
  rmSync(dir, { recursive: true, force: true });
});

function list(): ServiceView {
  const r = lbctl(sock, ['list', 'web', '--json']);
  if (r.status !== 0) throw new Error(`list: ${r.stderr}`);
  return r.json<ServiceView>();
}

function stateOf(addr: string): string | undefined {
  return list().backends.find((b) => b.address === addr)?.health.state;
}

t.test('a stopped server goes down within fall x interval + timeout, the others keep serving, it comes back after rise', async (t) => {
  const victim = lab.backends.find((b) => b.name === 'l2be1')!;
  const st = await labStatus(PREFIX);
  const pid = st.servers.find((s) => s.name === 'l2be1')!.pid!;
  const traffic = clientRequests(lab, VIP, 80, 600, { concurrency: 3, maxTimeSec: 2 });
  await new Promise((r) => setTimeout(r, 300));
  const killedAt = Date.now();
  process.kill(pid, 'SIGKILL');
  await until('victim down', () => stateOf(victim.addr) === 'down', 10_000, 25);
  // The daemon's own log line stamps the transition; polling lbctl would add its start-up time.
  const ev = await until('the transition in the log', () => daemon!.events().find((e) => e['msg'] === 'backend down' && e['backend'] === victim.addr), 5000, 50);
  const took = Number(ev?.['time']) - killedAt;
  const bound = FALL * INTERVAL * 1.1 + TIMEOUT + 200; // 10% jitter, and 200 ms of scheduling slack
  t.ok(took <= bound, `marked down ${took} ms after the kill (bound ${bound.toFixed(0)} ms = fall x interval (+10% jitter) + timeout + 200 ms slack)`);
  const res = await traffic;
  // Refused or reset connections, and requests cut off by the kill, can only come from the dead
  // server: the live ones never refuse. Anything else (a timeout) would be a healthy backend failing.
  const other = Object.keys(res.failures).filter((k) => !/Couldn't connect|refused|reset by peer|Empty reply/i.test(k));
  t.same(other, [], `the only failures come from the dead server (${JSON.stringify(res.failures)})`);
  t.ok(res.failed < 600 / 3, `${res.failed} of 600 failed, all during the detection window`);
  const after = await clientRequests(lab, VIP, 80, 200, { concurrency: 5 });
  t.equal(after.ok, 200, 'after detection every request succeeds');
  t.notOk(after.byBackend['l2be1'], 'and none goes to the dead backend');

  const restartedAt = Date.now();
  const child = spawn('ip', ['netns', 'exec', victim.ns, process.execPath, BACKEND_SERVER_JS, '--name', 'l2be1', '--port', '80'], {
    detached: true,
    stdio: 'ignore',
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  child.unref();
  await until('victim up again', () => stateOf(victim.addr) === 'up', 10_000, 25);
  t.comment(`back up ${Date.now() - restartedAt} ms after the restart (rise ${RISE} x interval ${INTERVAL} ms)`);
  const back = await clientRequests(lab, VIP, 80, 200, { concurrency: 5 });
  t.equal(back.ok, 200, 'all answered');
  t.ok((back.byBackend['l2be1'] ?? 0) > 20, `l2be1 serves again (${back.byBackend['l2be1']})`);
});

t.test('a backend without the VIP on lo: only the data-path check catches it', async (t) => {
  const victim = lab.backends.find((b) => b.name === 'l2be2')!;
  const plain = await exec(lab.lb.ns, ['curl', '-s', '--max-time', '2', `http://${victim.addr}/`], { allowFail: true });
  await exec(victim.ns, ['ip', 'addr', 'del', `${VIP}/32`, 'dev', 'lo']);
  await until('victim down by the data-path check', () => stateOf(victim.addr) === 'down', 10_000, 50);
  const stillAnswers = await exec(lab.lb.ns, ['curl', '-s', '--max-time', '2', `http://${victim.addr}/`], { allowFail: true });
  t.equal(plain.status, 0, 'before: the backend answers on its own address');
  t.equal(stillAnswers.status, 0, 'after: it still does, so a plain check would say healthy');
  const b = list().backends.find((x) => x.address === victim.addr)!;
  t.match(b.health.detail ?? '', /data ?path|VIP/i, `the detail names the data path: ${b.health.detail}`);
  const res = await clientRequests(lab, VIP, 80, 200, { concurrency: 5 });
  t.equal(res.ok, 200, 'traffic avoids it: all answered');
  await exec(victim.ns, ['ip', 'addr', 'add', `${VIP}/32`, 'dev', 'lo']);
  await until('victim up again', () => stateOf(victim.addr) === 'up', 10_000, 50);
  t.pass('back up once the VIP is back');
});

t.test('drain: the open connection keeps working, no new flows, --wait returns when it closes', async (t) => {
  // One keep-alive HTTP connection sending a request every 200 ms; prints which backend answered.
  const script = `
    const s = require('net').connect(80, '${VIP}');
    let buf = '';
    s.on('data', (d) => { buf += d; let m; while ((m = /x-lab-backend: (\\S+)/i.exec(buf))) { console.log(m[1]); buf = buf.slice(m.index + m[0].length); } });
    s.on('error', (e) => { console.log('ERROR ' + e.message); process.exit(1); });
    const iv = setInterval(() => s.write('GET / HTTP/1.1\\r\\nHost: lab\\r\\n\\r\\n'), 200);
    process.stdin.on('data', () => { clearInterval(iv); s.end(); setTimeout(() => process.exit(0), 100); });
    setTimeout(() => process.exit(2), 60000);`;
  const conn = spawn('ip', ['netns', 'exec', lab.client, process.execPath, '-e', script], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
  t.teardown(() => conn.kill('SIGKILL'));
  const lines: string[] = [];
  conn.stdout.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
  await until('long-lived connection answered', () => lines.length >= 2, 10_000, 50);
  const held = lab.backends.find((b) => b.name === lines[0])!;
  t.ok(held, `the connection is on ${lines[0]}`);

  const drain = spawn(process.execPath, [LBCTL, '--socket', sock, 'backend', 'drain', 'web', held.addr, '--wait', '--timeout', '40'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: '' },
  });
  let drainOut = '';
  drain.stdout.on('data', (d: Buffer) => (drainOut += d.toString()));
  drain.stderr.on('data', (d: Buffer) => (drainOut += d.toString()));
  const drained = new Promise<number | null>((r) => drain.once('exit', r));
  await until('weight 0 applied', () => list().backends.find((b) => b.address === held.addr)?.weight === 0, 10_000, 50);
  const before = lines.length;
  const res = await clientRequests(lab, VIP, 80, 150, { concurrency: 5 });
  t.equal(res.ok, 150, 'new requests all answered');
  t.notOk(res.byBackend[held.name], `no new flow reached the drained ${held.name} (${JSON.stringify(res.byBackend)})`);
  await until('the open connection keeps getting answers', () => lines.length >= before + 5, 10_000, 50);
  t.same([...new Set(lines)], [held.name], 'every answer on the open connection came from the drained backend');
  t.notOk(lines.some((l) => l.startsWith('ERROR')), 'the open connection never failed');
  let exited = false;
  void drained.then(() => (exited = true));
  await new Promise((r) => setTimeout(r, 1000));
  t.notOk(exited, 'drain --wait still waiting while the connection is open');
  const closedAt = Date.now();
  conn.stdin.write('close\n');
  const code = await drained;
  t.equal(code, 0, `drain --wait exited 0: ${drainOut.trim()}`);
  t.match(drainOut, /active flows/, 'it reported the remaining flows');
  t.match(drainOut, /drained/, 'and said when none were left');
  t.comment(`drain --wait returned ${Date.now() - closedAt} ms after the connection closed (idle window 3 s)`);
  t.equal(lbctl(sock, ['backend', 'set', 'web', held.addr, '--weight', '1']).status, 0, 'undrain');
});
