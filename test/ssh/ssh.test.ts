/**
 * `lbctl server prep|check|unprep` over real SSH: OpenSSH's sshd in two backend namespaces (fixtures/sshnet.ts),
 * key authentication, host keys checked against a known_hosts file of the test. What the script did
 * is verified inside the namespaces with `ip netns exec`, never from its own report.
 */
import t from 'tap';
import { Command } from 'commander';
import { spawn } from 'node:child_process';
import { readFileSync, existsSync, writeFileSync } from 'node:fs';
import { run } from '../../src/lab/exec.js';
import { join } from 'node:path';
import { registerServer, serverCommand, type ServerOptions } from '../../src/cli/commands/server.js';
import { runPrepJobs, parseHostSpec } from '../../src/serverprep/index.js';
import {
  BLACKHOLE,
  VIP,
  keygen,
  leftovers,
  loAddrs,
  setSysctl,
  snapshot,
  sshNetDown,
  sshNetUp,
  startSshd,
  stopSshd,
  sysctl,
  type SshNet,
} from './fixtures/sshnet.js';

// Only the key files given here: an operator's agent must not make these results differ.
delete process.env['SSH_AUTH_SOCK'];

let net: SshNet;
t.before(async () => {
  net = await sshNetUp();
});
t.teardown(async () => {
  await sshNetDown(net);
  const left = leftovers();
  if (left.length > 0) throw new Error(`left behind: ${left.join(' ')}`);
});

const be = (i: number) => net.backends[i]!;
const opts = (extra: ServerOptions = {}): ServerOptions => ({
  vip: [VIP],
  mode: 'l2dsr',
  identity: [net.clientKey],
  knownHosts: net.knownHosts,
  stateDir: net.stateDir,
  connectTimeout: '5',
  timeout: '30',
  ...extra,
});

let before: string[] = [];

t.test('unknown host key without --accept-new: refused, nothing run', async (t) => {
  before = await Promise.all(net.backends.map((b) => snapshot(b.ns)));
  const r = await serverCommand('prep', [be(0).addr], opts());
  t.equal(r.ok, false);
  t.equal(r.hosts[0]?.status, 'hostkey');
  t.match(r.hosts[0]?.detail, /host key for 10\.202\.0\.11 is not known \(ssh-ed25519 SHA256:/);
  t.match(r.hosts[0]?.detail, /--accept-new/);
  t.notMatch(await loAddrs(be(0).ns), VIP, 'the VIP was not added');
  t.equal(await sysctl(be(0).ns, 'all', 'arp_ignore'), '0', 'arp_ignore untouched');
  t.notOk(existsSync(net.knownHosts), 'known_hosts not written');
});

t.test('prep over SSH on two backends with --accept-new', async (t) => {
  const r = await serverCommand('prep', net.backends.map((b) => b.addr), opts({ acceptNew: true }));
  t.equal(r.ok, true, JSON.stringify(r.hosts));
  for (const [i, h] of r.hosts.entries()) {
    t.equal(h.status, 'done', h.host);
    t.match(h.detail, `added ${VIP}/32 on lo`);
    t.match(h.detail, /new host key ssh-ed25519 SHA256:\S+ added to/);
    t.match(await loAddrs(be(i).ns), `inet ${VIP}/32`, `${h.host}: VIP on lo (seen in the namespace)`);
    t.equal(await sysctl(be(i).ns, 'all', 'arp_ignore'), '1', `${h.host}: arp_ignore all=1`);
    t.equal(await sysctl(be(i).ns, 'eth0', 'arp_ignore'), '1', `${h.host}: arp_ignore eth0=1`);
    t.equal(await sysctl(be(i).ns, 'all', 'arp_announce'), '2', `${h.host}: arp_announce all=2`);
  }
  const kh = readFileSync(net.knownHosts, 'utf8').trim().split('\n');
  t.equal(kh.length, 2, 'both host keys recorded');
  for (const b of net.backends) {
    const pub = readFileSync(`${b.hostKey}.pub`, 'utf8').split(' ').slice(0, 2).join(' ');
    t.ok(kh.includes(`${b.addr} ${pub}`), `${b.name}: the real host key, plain line`);
  }
  // the second prep changes nothing and no longer needs --accept-new
  const again = await serverCommand('prep', net.backends.map((b) => b.addr), opts());
  t.equal(again.ok, true);
  t.same(again.hosts.map((h) => h.detail), ['nothing to change', 'nothing to change']);
});

t.test('check passes on both', async (t) => {
  const r = await serverCommand('check', net.backends.map((b) => b.addr), opts());
  t.equal(r.ok, true, JSON.stringify(r.hosts));
  for (const h of r.hosts) t.match(h.detail, /^all \d+ checks ok$/);
  t.same(r.counts, { done: 2 });
});

t.test('ssh-agent instead of a key file', async (t) => {
  const sock = join(net.dir, 'agent.sock');
  const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: 'ignore' });
  t.teardown(() => {
    agent.kill('SIGKILL');
  });
  for (let i = 0; i < 100 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 50));
  t.ok(existsSync(sock), 'agent listening');
  const job = [{ target: parseHostSpec(be(0).addr), args: { action: 'check' as const, vips: [VIP], mode: 'l2dsr' as const } }];
  const runOpts = { agent: sock, knownHostsFiles: [net.knownHosts], connectTimeoutMs: 5000 };
  const [empty] = await runPrepJobs(job, runOpts);
  t.equal(empty?.status, 'auth', 'an agent without our key: refused');
  t.match(empty?.detail, /tried ssh-agent\)/);
  await run(['env', `SSH_AUTH_SOCK=${sock}`, 'ssh-add', '-q', net.clientKey]);
  const [loaded] = await runPrepJobs(job, runOpts);
  t.equal(loaded?.status, 'done', `with the key in the agent: ${loaded?.detail}`);
  t.match(loaded?.detail, /^all \d+ checks ok$/);
});

t.test('check finds a VIP removed by hand (be1) and arp_ignore reset (be2)', async (t) => {
  await run(['ip', '-n', be(0).ns, 'addr', 'del', `${VIP}/32`, 'dev', 'lo']);
  await setSysctl(be(1).ns, 'all', 'arp_ignore', '0');
  const r = await serverCommand('check', net.backends.map((b) => b.addr), opts());
  t.equal(r.ok, false);
  const [h1, h2] = r.hosts;
  t.equal(h1?.status, 'failed');
  t.match(h1?.detail, `missing: vip ${VIP}/32 on lo (not on lo)`);
  t.notMatch(h1?.detail, /arp_ignore/, 'be1 lacks only the VIP');
  t.equal(h2?.status, 'failed');
  t.match(h2?.detail, /arp_ignore all \(is 0, want 1 \(or 2\)\)/);
  t.notMatch(h2?.detail, /vip/, 'be2 lacks only arp_ignore');
  t.same(r.counts, { failed: 2 });
  const result = h1?.result;
  t.ok(result && 'checks' in result && result.checks.some((c) => !c.ok && c.name === `vip ${VIP}/32 on lo`), 'the script\'s JSON is passed on');
});

t.test('prep repairs, unprep restores exactly what was there', async (t) => {
  const fix = await serverCommand('prep', net.backends.map((b) => b.addr), opts());
  t.equal(fix.ok, true, JSON.stringify(fix.hosts));
  t.match(fix.hosts[0]?.detail, `added ${VIP}/32 on lo`);
  t.match(fix.hosts[1]?.detail, 'arp_ignore all: 0 -> 1');
  t.equal((await serverCommand('check', net.backends.map((b) => b.addr), opts())).ok, true, 'check passes again');

  const un = await serverCommand('unprep', net.backends.map((b) => b.addr), opts({ mode: undefined }));
  t.equal(un.ok, true, JSON.stringify(un.hosts));
  for (const [i, b] of net.backends.entries()) {
    t.notMatch(await loAddrs(b.ns), VIP, `${b.name}: VIP gone`);
    t.equal(await snapshot(b.ns), before[i], `${b.name}: sysctls and addresses as before prep`);
  }
  const check = await serverCommand('check', [be(0).addr], opts());
  t.equal(check.hosts[0]?.status, 'failed', 'check fails after unprep');
});

t.test('a host that does not answer times out; the other host completes', async (t) => {
  const t0 = Date.now();
  const r = await serverCommand('check', [be(0).addr, BLACKHOLE, be(1).addr], opts({ connectTimeout: '2', mode: 'l2dsr' }));
  const elapsed = Date.now() - t0;
  const byHost = Object.fromEntries(r.hosts.map((h) => [h.host, h]));
  t.equal(byHost[BLACKHOLE]?.status, 'timeout');
  t.match(byHost[BLACKHOLE]?.detail, `no answer from ${BLACKHOLE} within 2 s (connect timeout)`);
  t.ok((byHost[BLACKHOLE]?.durationMs ?? 0) >= 1900, 'waited the connect timeout');
  t.ok(elapsed < 2000 + 3000, `whole run within the connect timeout + slack (${elapsed} ms)`);
  // after unprep, check reports what is missing: the point is that they ran to the end
  t.equal(byHost[be(0).addr]?.status, 'failed');
  t.match(byHost[be(0).addr]?.detail, /^missing: /);
  t.equal(byHost[be(1).addr]?.status, 'failed');
  t.match(byHost[be(1).addr]?.detail, /^missing: /);
  t.ok((byHost[be(0).addr]?.durationMs ?? 1e9) < 1900, 'be1 did not wait for the dead host');
  t.same(r.counts, { failed: 2, timeout: 1 });
});

t.test('connection refused and a key the server does not accept', async (t) => {
  const refused = await serverCommand('check', [`${be(0).addr}:2222`], opts());
  t.equal(refused.hosts[0]?.status, 'refused');
  t.match(refused.hosts[0]?.detail, /connection refused by 10\.202\.0\.11 port 2222/);
  const auth = await serverCommand('check', [be(0).addr], opts({ identity: [net.strangerKey] }));
  t.equal(auth.hosts[0]?.status, 'auth');
  t.match(auth.hosts[0]?.detail, /root@10\.202\.0\.11 accepted none of our keys \(tried \S+stranger_ed25519/);
  t.notMatch(auth.hosts[0]?.detail, /PRIVATE KEY|AAAA/, 'no key material in messages');
});

t.test('command timeout kills the run and says so', async (t) => {
  const slow = join(net.dir, 'slow.sh');
  writeFileSync(slow, 'sleep 20\n');
  const t0 = Date.now();
  const [o] = await runPrepJobs([{ target: parseHostSpec(be(0).addr), args: { action: 'check', vips: [VIP], mode: 'l2dsr' } }], {
    scriptPath: slow,
    identityFiles: [net.clientKey],
    knownHostsFiles: [net.knownHosts],
    agent: false,
    commandTimeoutMs: 1000,
  });
  t.equal(o?.status, 'timeout');
  t.match(o?.detail, /did not finish on 10\.202\.0\.11 within 1 s \(command timeout\)/);
  t.ok(Date.now() - t0 < 5000, 'returned soon after the command timeout');
});

t.test('changed host key: refused, even with --accept-new; the other host is fine', async (t) => {
  const b2 = be(1);
  await stopSshd(b2);
  await keygen(b2.hostKey, 'be2-new-host-key');
  await startSshd(b2);
  const khBefore = readFileSync(net.knownHosts, 'utf8');
  const r = await serverCommand('prep', net.backends.map((b) => b.addr), opts({ acceptNew: true }));
  t.equal(r.hosts[0]?.status, 'done', 'be1 prepared');
  t.equal(r.hosts[1]?.status, 'hostkey', 'be2 refused');
  t.match(r.hosts[1]?.detail, /WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED for 10\.202\.0\.12!/);
  t.match(r.hosts[1]?.detail, /--accept-new never overrides a changed key/);
  t.notMatch(await loAddrs(b2.ns), VIP, 'nothing ran on be2');
  t.equal(readFileSync(net.knownHosts, 'utf8'), khBefore, 'known_hosts unchanged');
  t.equal(r.ok, false);
  const un = await serverCommand('unprep', [be(0).addr], opts());
  t.equal(un.ok, true);
});

t.test('the registered command: table on stdout, exit status 1 when a host fails', async (t) => {
  const program = new Command('lbctl').exitOverride();
  registerServer(program);
  const out: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  const savedExit = process.exitCode;
  process.stdout.write = ((s: string | Uint8Array) => {
    out.push(String(s));
    return true;
  }) as typeof process.stdout.write;
  try {
    await program.parseAsync(
      ['server', 'check', be(0).addr, BLACKHOLE, '--vip', VIP, '--mode', 'l2dsr', '-i', net.clientKey, '--known-hosts', net.knownHosts, '--connect-timeout', '1'],
      { from: 'user' },
    );
  } finally {
    process.stdout.write = write;
  }
  const exit = process.exitCode;
  process.exitCode = savedExit;
  const text = out.join('');
  t.equal(exit, 1, 'exit status 1');
  t.match(text, /^HOST\s+RESULT\s+DETAIL\n/);
  t.match(text, new RegExp(`\\n10\\.202\\.0\\.11\\s+failed\\s+missing: vip ${VIP.replace(/\./g, '\\.')}/32 on lo`));
  t.match(text, /\n10\.202\.0\.99\s+timeout\s+no answer from 10\.202\.0\.99 within 1 s/);
  t.match(text, /server check: 2 hosts, 0 ok, 2 failed \(failed 1, timeout 1\)\n$/);

  out.length = 0;
  process.stdout.write = ((s: string | Uint8Array) => {
    out.push(String(s));
    return true;
  }) as typeof process.stdout.write;
  try {
    await program.parseAsync(['server', 'prep', be(0).addr, '--vip', VIP, '--mode', 'l2dsr', '-i', net.clientKey, '--known-hosts', net.knownHosts, '--state-dir', net.stateDir, '--json'], { from: 'user' });
    await program.parseAsync(['server', 'unprep', be(0).addr, '--vip', VIP, '-i', net.clientKey, '--known-hosts', net.knownHosts, '--state-dir', net.stateDir, '--json'], { from: 'user' });
  } finally {
    process.stdout.write = write;
  }
  const exit2 = process.exitCode;
  process.exitCode = savedExit;
  t.not(exit2, 1, 'no failure exit status');
  const [prep, unprep] = out.map((s) => JSON.parse(s) as { ok: boolean; hosts: { status: string; result?: { changes: string[] } }[] });
  t.equal(prep?.ok, true);
  t.ok(prep?.hosts[0]?.result?.changes.includes(`added ${VIP}/32 on lo`), 'JSON carries the script result');
  t.equal(unprep?.ok, true);
  t.ok(unprep?.hosts[0]?.result?.changes.includes(`removed ${VIP}/32 from lo`));
});
