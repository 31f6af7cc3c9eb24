/**
 * The daemon for real, in the namespace lab: lbctl apply/list/backend through the root-only API,
 * list matching the pinned maps, traffic surviving a SIGKILL and restart with zero writes, a
 * broken apply changing nothing, SIGTERM leaving the data path forwarding, and stop --detach.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BpfMap, inNetns, queryXdp, removePinDir } from '../../src/bpf/index.js';
import { backendValue, serviceKey, serviceValue, u32Key, BE_F_VALID } from '../../src/dataplane/abi.js';
import { clientRequests, exec, labDown, labUp, type Lab } from '../../src/lab/index.js';
import type { ServiceView, StatusView } from '../../src/daemon/daemon.js';
import { DaemonProc, lbctl, until } from './harness.js';

const PREFIX = 'xdm-';
const pins = `/sys/fs/bpf/xdplb-test-dm-${randomBytes(3).toString('hex')}`;
const dir = mkdtempSync(join(tmpdir(), 'xdplb-dm-'));
chmodSync(dir, 0o755); // so the socket's own mode is what keeps other users out
const cfgPath = join(dir, 'config.yaml');
const sock = join(dir, 'lbctl.sock');
let lab: Lab;
let daemon: DaemonProc | undefined;

function config(l2: string[], rt: string[]): string {
  const be = (a: string) => `      - address: ${a}\n`;
  return `# xdplb test config: comments must survive lbctl edits
node:
  interfaces: [eth0]
  bpffs: ${pins}
  maxServices: 8
  flowBuckets: 16384
  api: { socket: ${sock} }
  metrics: { listen: 127.0.0.1, port: 9723 }
services:
  - name: web-l2
    vip: 10.200.100.1
    port: 80
    mode: l2dsr
    healthCheck: { type: tcp, interval: 300ms, timeout: 200ms, rise: 1, fall: 2, datapath: false }
    backends:
${l2.map(be).join('')}  - name: web-ipip   # routed backends, decap program
    vip: 10.200.100.2
    port: 80
    mode: ipip
    healthCheck: { type: http, path: /, interval: 300ms, timeout: 200ms, rise: 1, fall: 2, datapath: false }
    backends:
${rt.map(be).join('')}`;
}

t.before(async () => {
  await labDown(PREFIX);
  lab = await labUp({ prefix: PREFIX });
});
t.teardown(async () => {
  await daemon?.kill();
  try {
    inNetns(lab.lb.ns, () => queryXdp(lab.lb.ifname).progId && lbctl(sock, ['stop', '--detach', '-c', cfgPath]));
  } catch {
    // lab already gone
  }
  removePinDir(pins);
  await labDown(PREFIX);
  rmSync(dir, { recursive: true, force: true });
});

const l2 = () => lab.backends.filter((b) => b.segment === 'l2');
const rt = () => lab.backends.filter((b) => b.segment === 'routed');

async function start(): Promise<DaemonProc> {
  const d = new DaemonProc(lab.lb.ns, cfgPath, sock);
  await d.ready();
  return d;
}

function list(): ServiceView[] {
  const r = lbctl(sock, ['list', '--json']);
  if (r.status !== 0) throw new Error(`list failed: ${r.stderr}`);
  return r.json<ServiceView[]>();
}

function allUp(n: number) {
  return () => {
    const l = list();
    return l.every((s) => s.usableBackends === s.backends.length) && l.reduce((a, s) => a + s.usableBackends, 0) === n && l;
  };
}

t.test('start, health checks bring backends in, real traffic through both modes', async (t) => {
  writeFileSync(cfgPath, config(l2().map((b) => b.addr), rt().map((b) => b.addr)));
  daemon = await start();
  await until('all 6 backends up', allUp(6), 20_000);
  const st = lbctl(sock, ['status', '--json']).json<StatusView>();
  t.ok(st.interfaces[0]?.attached, 'XDP attached to the LB interface');
  for (const vip of ['10.200.100.1', '10.200.100.2']) {
    const res = await clientRequests(lab, vip, 80, 150, { concurrency: 10 });
    t.equal(res.ok, 150, `${vip}: 150/150 answered (${JSON.stringify(res.failures)})`);
    t.equal(Object.keys(res.byBackend).length, 3, `${vip}: all three backends served`);
  }
  const m = await exec(lab.lb.ns, ['curl', '-sf', 'http://127.0.0.1:9723/metrics']);
  t.match(m.stdout, /xdplb_service_packets_total\{service="web-l2",vip="10\.200\.100\.1",port="80",proto="tcp",mode="l2dsr"\} [1-9]/, 'metrics: per-service packets');
  t.match(m.stdout, /xdplb_backend_up\{[^}]*backend="10\.200\.3\.11"\} 1/, 'metrics: backend health');
  t.match(m.stdout, /xdplb_verdicts_total\{reason="TX_IPIP"\} [1-9]/, 'metrics: verdicts');
  t.match(m.stdout, /xdplb_daemon_info\{version="/, 'metrics: daemon info');
  const human = lbctl(sock, ['list', '--stats']);
  t.equal(human.status, 0);
  t.match(human.stdout, /TCP\s+10\.200\.100\.1:80\s+l2dsr/, 'ipvsadm-like listing');
  t.comment(human.stdout);
});

t.test('list --json matches what the pinned maps hold', async (t) => {
  const views = list();
  const services = BpfMap.openPinned(join(pins, 'services'));
  const backends = BpfMap.openPinned(join(pins, 'backends'));
  const rings = BpfMap.openPinned(join(pins, 'rings'));
  t.teardown(() => [services, backends, rings].forEach((m) => m.close()));
  const inMap = [...services.keys()].map((k) => ({ key: serviceKey.decode(k), id: serviceValue.decode(services.lookup(k)!).id }));
  t.equal(inMap.length, views.length, 'same number of services');
  const ringMem = rings.mmap();
  const chunks = Math.ceil(65537 / 32);
  for (const v of views) {
    const m = inMap.find((x) => x.key.addr === v.vip && x.key.port === v.port);
    t.ok(m, `${v.key} is in the services map`);
    t.equal(m?.id, v.id, `${v.key}: same id`);
    const counts = new Map<number, number>();
    for (let i = 0; i < 65537; i++) {
      const id = ringMem.readUInt16LE(((m?.id ?? 0) * chunks * 32 + i) * 2);
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    for (const b of v.backends) {
      const e = backendValue.decode(backends.lookup(u32Key(b.id!))!);
      t.equal(e.addr, b.address, `${b.address}: backend entry ${b.id} holds its address`);
      t.ok(e.flags & BE_F_VALID, `${b.address}: valid`);
      if (v.mode === 'l2dsr') t.equal(e.mac, b.mac, `${b.address}: the MAC list shows is the one in the map`);
      t.equal(counts.get(b.id!) ?? 0, b.slots, `${b.address}: ${b.slots} ring slots, as the ring holds`);
    }
  }
  rings.unmap();
});

t.test('backend add and drain+delete while a client sends traffic: no request fails', async (t) => {
  const spare = l2()[2]!.addr;
  // start from two l2 backends: delete the third (drain first, then delete)
  const traffic = clientRequests(lab, '10.200.100.1', 80, 400, { concurrency: 4 });
  await new Promise((r) => setTimeout(r, 150));
  t.equal(lbctl(sock, ['backend', 'drain', 'web-l2', spare]).status, 0, 'drain');
  await new Promise((r) => setTimeout(r, 150));
  t.equal(lbctl(sock, ['backend', 'del', 'web-l2', spare]).status, 0, 'del');
  await new Promise((r) => setTimeout(r, 150));
  const add = lbctl(sock, ['backend', 'add', 'web-l2', spare]);
  t.equal(add.status, 0, `add: ${add.stdout}${add.stderr}`);
  const res = await traffic;
  t.equal(res.ok, 400, `400/400 answered during the changes (${JSON.stringify(res.failures)})`);
  const file = readFileSync(cfgPath, 'utf8');
  t.match(file, /comments must survive/, 'the operator\'s comment survived the edits');
  t.match(file, new RegExp(spare.replace(/\./g, '\\.')), 'the re-added backend is persisted');
  await until('spare back in the ring', allUp(6), 10_000);
});

t.test('a broken apply changes nothing: not the state, not the file', async (t) => {
  const before = readFileSync(cfgPath, 'utf8');
  const stateBefore = list().map((s) => ({ key: s.key, b: s.backends.map((b) => [b.address, b.weight, b.slots]) }));
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, before.replace('mode: ipip', 'mode: ipipp').replace('port: 80', 'port: 99999'));
  const r = lbctl(sock, ['apply', '-f', bad]);
  t.equal(r.status, 2, 'exit 2: config error');
  t.match(r.stderr, /mode/, `names the bad mode: ${r.stderr}`);
  t.match(r.stderr, /port/, 'and the bad port');
  t.equal(readFileSync(cfgPath, 'utf8'), before, 'config file unchanged');
  const stateAfter = list().map((s) => ({ key: s.key, b: s.backends.map((b) => [b.address, b.weight, b.slots]) }));
  t.same(stateAfter, stateBefore, 'running state unchanged');
});

t.test('SIGHUP reloads a hand-edited file; a broken one is logged and changes nothing', async (t) => {
  const orig = readFileSync(cfgPath, 'utf8');
  const target = l2()[0]!.addr;
  writeFileSync(cfgPath, orig.replace(`      - address: ${target}\n`, `      - address: ${target}\n        weight: 3\n`));
  daemon!.proc.kill('SIGHUP');
  await until('weight 3 after SIGHUP', () => list().find((s) => s.name === 'web-l2')?.backends.find((b) => b.address === target)?.weight === 3, 5000);
  t.pass('hand edit applied on SIGHUP');
  const before = JSON.stringify(list().map((s) => s.backends.map((b) => [b.address, b.weight])));
  writeFileSync(cfgPath, 'node: { interfaces: [eth0] }\nservices: [ { vip: nonsense } ]\n');
  daemon!.proc.kill('SIGHUP');
  await until('refusal logged', () => daemon!.events().find((e) => /reload refused/.test(String(e['msg']))), 5000, 50);
  t.equal(JSON.stringify(list().map((s) => s.backends.map((b) => [b.address, b.weight]))), before, 'running state unchanged');
  writeFileSync(cfgPath, orig);
  daemon!.proc.kill('SIGHUP');
  await until('weight back to 1', () => list().find((s) => s.name === 'web-l2')?.backends.find((b) => b.address === target)?.weight === 1, 5000);
});

t.test('the API refuses a non-root caller', async (t) => {
  const r = lbctl(sock, ['status'], { asUser: 65534 });
  t.equal(r.status, 1, 'exit 1');
  t.match(r.stderr, /permission denied/i, r.stderr.trim());
});

t.test('kill -9 during traffic: no request fails; the restarted daemon adopts and writes nothing', async (t) => {
  const traffic = clientRequests(lab, '10.200.100.2', 80, 400, { concurrency: 4 });
  await new Promise((r) => setTimeout(r, 200));
  await daemon!.kill('SIGKILL');
  inNetns(lab.lb.ns, () => t.ok(queryXdp(lab.lb.ifname).progId > 0, 'XDP still attached with no daemon'));
  daemon = await start();
  const res = await traffic;
  t.equal(res.ok, 400, `400/400 answered across the kill and restart (${JSON.stringify(res.failures)})`);
  const st = lbctl(sock, ['status', '--json']).json<StatusView>();
  t.same(st.adopted, { services: 2, backends: 6 }, 'adopted the pinned state');
  const w = st.lastApply!.writes;
  t.equal(w.services + w.backends + w.ringSlots + w.ringChunks + w.vipFilter + w.stats, 0, `start-up apply wrote nothing (${JSON.stringify(w)})`);
  t.ok(st.interfaces[0]?.attached, 'its own program is attached now');
});

t.test('SIGTERM leaves the data path forwarding; stop --detach removes it', async (t) => {
  t.equal(await daemon!.kill('SIGTERM'), 0, 'clean exit on SIGTERM');
  daemon = undefined;
  const res = await clientRequests(lab, '10.200.100.1', 80, 50);
  t.equal(res.ok, 50, 'traffic still balanced with the daemon stopped');
  daemon = await start();
  const stop = lbctl(sock, ['stop', '--detach']);
  t.equal(stop.status, 0, stop.stdout + stop.stderr);
  t.equal(await daemon.exited, 0, 'daemon exited');
  daemon = undefined;
  inNetns(lab.lb.ns, () => t.equal(queryXdp(lab.lb.ifname).progId, 0, 'XDP detached'));
  t.notOk(existsSync(join(pins, 'services')), 'pins removed');
});
