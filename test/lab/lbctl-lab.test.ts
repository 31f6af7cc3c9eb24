/**
 * `lbctl lab up --json` / `lab down` as a user runs them: the JSON is enough to point curl at
 * every service, and down leaves nothing behind, also after the daemon was killed (a crash).
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { LBCTL } from '../daemon/harness.js';
import { exec, listLabNamespaces, udpRequests } from '../../src/lab/index.js';
import type { LabSummary } from '../../src/lab/daemon.js';

const PREFIX = 'xll-';
const PINS = '/sys/fs/bpf/xdplb-lab-xll';

function lbctl(args: string[]) {
  const r = spawnSync(process.execPath, [LBCTL, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, NODE_OPTIONS: '' } });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

function leftovers(): string[] {
  const out = listLabNamespaces(PREFIX).map((n) => `netns ${n}`);
  if (existsSync(PINS)) out.push(`pins ${PINS}: ${readdirSync(PINS).join(' ')}`);
  return out;
}

t.teardown(() => {
  lbctl(['lab', 'down', '--prefix', PREFIX]);
});

t.test('lab up --json describes a lab that just works; lab down removes all of it', async (t) => {
  const up = lbctl(['lab', 'up', '--prefix', PREFIX, '--json']);
  t.equal(up.status, 0, up.err);
  const s = JSON.parse(up.out) as LabSummary;
  t.equal(s.client, `${PREFIX}client`);
  t.ok(s.backends.length >= 6 && s.backends.every((b) => b.namespace.startsWith(PREFIX) && b.address), 'backends with namespace and address');
  t.ok(s.services.length >= 2, 'services listed');
  t.same([...new Set(s.services.map((x) => x.mode))].sort(), ['ipip', 'l2dsr', 'nat'], 'a service per mode');
  for (const svc of s.services) {
    t.ok(svc.vip && svc.port && svc.proto && svc.mode, `${svc.name}: vip, port, proto, mode`);
    if (svc.proto === 'udp') {
      const u = await udpRequests({ client: s.client }, svc.vip, svc.port, 5);
      t.equal(u.ok, 5, `${svc.name}: UDP echoes through ${svc.vip}:${svc.port}`);
      continue;
    }
    const host = svc.vip.includes(':') ? `[${svc.vip}]` : svc.vip;
    const r = await exec(s.client, ['curl', '-s', '-g', '--max-time', '3', `http://${host}:${svc.port}/`], { allowFail: true });
    t.equal(r.status, 0, `${svc.name}: ip netns exec ${s.client} curl -g http://${host}:${svc.port}/ works`);
    t.match(r.stdout, /"backend":"/, `${svc.name}: a backend answered`);
  }
  const st = lbctl(['lab', 'status', '--prefix', PREFIX, '--json']);
  t.equal(st.status, 0, 'status: up');
  const down = lbctl(['lab', 'down', '--prefix', PREFIX]);
  t.equal(down.status, 0, down.err);
  t.same(leftovers(), [], 'no namespace or pin left');
  t.equal(lbctl(['lab', 'status', '--prefix', PREFIX]).status, 1, 'status says down (exit 1)');
});

t.test('after a crash (daemon SIGKILLed, lab abandoned), lab down still cleans up everything', async (t) => {
  const up = lbctl(['lab', 'up', '--prefix', PREFIX, '--json']);
  t.equal(up.status, 0, up.err);
  const s = JSON.parse(up.out) as LabSummary;
  process.kill(s.daemon!.pid, 'SIGKILL');
  const down = lbctl(['lab', 'down', '--prefix', PREFIX]);
  t.equal(down.status, 0, down.err);
  t.same(leftovers(), [], 'no namespace or pin left');
  t.notOk(existsSync(s.daemon!.socket), 'state dir (and socket) gone');
});
