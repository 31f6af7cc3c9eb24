/**
 * node.serverPrep.auto: the daemon prepares its DSR backends over SSH by itself, at start and
 * after a config change, against real sshd in namespaces (fixtures/sshnet.ts). Verified inside the
 * namespaces, not from the daemon's report.
 */
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removePinDir } from '../../src/bpf/index.js';
import type { StatusView } from '../../src/daemon/daemon.js';
import { DaemonProc, lbctl, until } from '../daemon/harness.js';
import { ROOT_VETH, VIP, loAddrs, sshNetDown, sshNetUp, sysctl, type SshNet } from './fixtures/sshnet.js';

const pins = `/sys/fs/bpf/xdplb-test-sp-${randomBytes(3).toString('hex')}`;
const dir = mkdtempSync(join(tmpdir(), 'xdplb-sp-'));
const sock = join(dir, 'lbctl.sock');
const cfg = join(dir, 'config.yaml');
let net: SshNet;
let daemon: DaemonProc | undefined;

t.before(async () => {
  net = await sshNetUp(['be1', 'be2']);
});
t.teardown(async () => {
  if (daemon) {
    lbctl(sock, ['stop', '--detach']);
    await Promise.race([daemon.exited, new Promise((r) => setTimeout(r, 5000))]);
    await daemon.kill();
  }
  removePinDir(pins);
  await sshNetDown(net);
  rmSync(dir, { recursive: true, force: true });
});

function config(backends: string[]): string {
  return `node:
  interfaces: [${ROOT_VETH}]
  bpffs: ${pins}
  maxServices: 4
  flowBuckets: 1024
  api: { socket: ${sock} }
  serverPrep:
    auto: true
    identityFile: ${net.clientKey}
    knownHosts: ${net.knownHosts}
    acceptNew: true
    connectTimeout: 3s
services:
  - name: web
    vip: ${VIP}
    port: 80
    mode: l2dsr
    healthCheck: { type: none }
    backends:
${backends.map((a) => `      - address: ${a}\n`).join('')}`;
}

t.test('at start: every DSR backend gets its VIP on lo and ARP suppressed, over SSH', async (t) => {
  const [be1, be2] = net.backends;
  writeFileSync(cfg, config([be1!.addr]));
  daemon = new DaemonProc(null, cfg, sock, { SSH_AUTH_SOCK: '' });
  await daemon.ready();
  const st = await until('prep finished', () => {
    const s = lbctl(sock, ['status', '--json']).json<StatusView>();
    return s.serverPrep && !s.serverPrep.running && s.serverPrep;
  }, 30_000);
  t.same(st.hosts.map((h) => [h.host, h.ok, h.status]), [[be1!.addr, true, 'done']], 'status reports the run');
  t.ok(st.hosts.length === 1 && st.hosts[0]!.ok, `be1 prepared: ${JSON.stringify(st.hosts)}`);
  t.match(await loAddrs(be1!.ns), new RegExp(`${VIP.replace(/\./g, '\\.')}/32`), 'VIP on be1 lo (seen in the namespace)');
  t.equal(await sysctl(be1!.ns, 'all', 'arp_ignore'), '1', 'arp_ignore=1 on be1');
  t.notMatch(await loAddrs(be2!.ns), new RegExp(VIP.replace(/\./g, '\\.')), 'be2 is not a backend yet: untouched');

  // A backend added through lbctl is prepared too.
  t.equal(lbctl(sock, ['backend', 'add', 'web', be2!.addr]).status, 0, 'backend add');
  await until('be2 prepared', () => {
    const s = lbctl(sock, ['status', '--json']).json<StatusView>().serverPrep;
    return s && !s.running && s.hosts.some((h) => h.host.includes(be2!.addr) && h.ok);
  }, 30_000);
  t.match(await loAddrs(be2!.ns), new RegExp(`${VIP.replace(/\./g, '\\.')}/32`), 'VIP on be2 lo after the change');
  const ev = daemon.events().filter((e) => e['component'] === 'serverprep');
  t.ok(ev.some((e) => e['msg'] === 'backend prepared'), 'log events per host');
});
