// Arguments, the script's output and exit statuses, planning from a config, the CLI's usage errors,
// and a --local run (check only: it reads, never writes, this machine's network setup).
import t from 'tap';
import { run } from '../../src/lab/exec.js';
import { classifyRun, cleanText, parseScriptOutput, prepArgsProblems, scriptArgv, validVip } from '../../src/serverprep/script.js';
import { planBackendPrep, runPrepJobs, LOCAL_HOST, jobsForHosts } from '../../src/serverprep/run.js';
import { ProgressLine, formatServerReport, serverCommand, serverJobs } from '../../src/cli/commands/server.js';

t.test('VIPs and arguments are validated before anything is sent', async (t) => {
  for (const v of ['10.0.0.1', '10.0.0.1/32', '2001:db8::1', '2001:db8::1/128']) t.ok(validVip(v), v);
  for (const v of ['', '10.0.0.1/24', '010.0.0.1', '10.0.0', 'fe80::1%eth0', '2001:db8::1/64', "1.2.3.4'; reboot", '1.2.3.4\n', 'host']) {
    t.notOk(validVip(v), JSON.stringify(v));
  }
  t.same(prepArgsProblems({ action: 'add', vips: ['10.0.0.1'], mode: 'l2dsr' }), []);
  t.same(prepArgsProblems({ action: 'remove', vips: ['10.0.0.1'] }), [], 'remove needs no mode');
  const p = prepArgsProblems({
    action: 'check',
    vips: ['x', '2001:db8::1'],
    mode: 'ipip',
    devs: ['lo', 'eth0;x', 'eth0'],
    stateDir: 'relative',
    decapObj: '/a\nb',
    persist: true,
  });
  t.equal(p.length, 6, p.join('\n'));
  t.match(p.join('\n'), /--vip "x"/);
  t.notMatch(p.join('\n'), /2001:db8::1/, 'an IPv6 VIP is fine in ipip mode (6in6)');
  t.match(p.join('\n'), /--dev "lo"/);
  t.match(p.join('\n'), /--dev "eth0;x"/);
  t.match(p.join('\n'), /--state-dir/);
  t.match(p.join('\n'), /--decap-obj/);
  t.match(p.join('\n'), /--persist/);
  t.match(prepArgsProblems({ action: 'add', vips: [] }).join('\n'), /at least one --vip[\s\S]*--mode l2dsr\|ipip is required/);
  t.throws(() => scriptArgv({ action: 'add', vips: ['nope'], mode: 'l2dsr' }), { code: 'ERR_LB_USAGE' });
  t.same(scriptArgv({ action: 'add', vips: ['10.0.0.1', '10.0.0.2'], mode: 'ipip', devs: ['eth0'], stateDir: '/s', decapObj: '/d.o', persist: true }), [
    'add', '--vip', '10.0.0.1', '--vip', '10.0.0.2', '--mode', 'ipip', '--dev', 'eth0', '--state-dir', '/s', '--decap-obj', '/d.o', '--persist', '--json',
  ]);
});

t.test("the script's JSON and exit status become a host status", async (t) => {
  const add = '{"action":"add","changed":true,"changes":["added 10.0.0.1/32 on lo","arp_ignore all: 0 -> 1"],"unchanged":[],"notes":["n1"]}';
  const checkBad = '{"ok":false,"checks":[{"name":"lo up","ok":true,"detail":"up"},{"name":"vip 10.0.0.1/32 on lo","ok":false,"detail":"not on lo"}]}';
  const checkOk = '{"ok":true,"checks":[{"name":"lo up","ok":true,"detail":"up"}]}';
  t.same(parseScriptOutput(`noise\n${add}\n`), JSON.parse(add));
  t.equal(parseScriptOutput('{"ok":"yes"}'), undefined, 'wrong shape');
  t.equal(parseScriptOutput('{broken'), undefined);

  let c = classifyRun({ stdout: add, stderr: '', code: 0, signal: null }, false);
  t.same([c.ok, c.status, c.detail], [true, 'done', 'changed: added 10.0.0.1/32 on lo; arp_ignore all: 0 -> 1; note: n1']);
  c = classifyRun({ stdout: checkOk, stderr: '', code: 0, signal: null }, false);
  t.same([c.ok, c.status, c.detail], [true, 'done', 'all 1 checks ok']);
  c = classifyRun({ stdout: checkBad, stderr: '', code: 1, signal: null }, false);
  t.same([c.ok, c.status, c.detail], [false, 'failed', 'missing: vip 10.0.0.1/32 on lo (not on lo)']);
  t.ok(c.result, 'the result is kept');
  c = classifyRun({ stdout: '', stderr: 'server-prep: error: cannot add 10.0.0.1/32 to lo\n', code: 1, signal: null }, false);
  t.same([c.status, c.detail], ['failed', 'server-prep failed (exit status 1): cannot add 10.0.0.1/32 to lo']);
  c = classifyRun({ stdout: '', stderr: "server-prep: usage error: --vip '1': not an IPv4 or IPv6 address\nrun ...\n", code: 2, signal: null }, false);
  t.same([c.status, c.detail], ['failed', "server-prep refused the arguments: --vip '1': not an IPv4 or IPv6 address"]);
  c = classifyRun({ stdout: '', stderr: 'sudo: a password is required\n', code: 1, signal: null }, true);
  t.equal(c.status, 'auth');
  t.match(c.detail, /sudo: a password is required: the login user needs passwordless sudo/);
  c = classifyRun({ stdout: '', stderr: 'sudo: a password is required\n', code: 1, signal: null }, false);
  t.equal(c.status, 'failed', 'no sudo was used: not an auth problem');
  c = classifyRun({ stdout: '', stderr: 'sh: 1: bash: not found\n', code: 127, signal: null }, false);
  t.match(c.detail, /^bash not found on the host/);
  c = classifyRun({ stdout: '', stderr: '', code: null, signal: 'KILL' }, false);
  t.equal(c.detail, 'server-prep failed (killed by KILL)');
  c = classifyRun({ stdout: 'hello', stderr: '', code: 0, signal: null }, false);
  t.same([c.ok, c.status], [false, 'failed'], 'exit 0 without a result is not success');
  t.equal(cleanText('a\x1b[2J\x07b\r\nc'), 'a [2J b c', 'a host cannot drive the terminal');
  t.equal(cleanText('x'.repeat(3000)).length, 2000);
});

t.test('planning from a config: one job per backend and mode', async (t) => {
  const b = (address: string) => ({ address }) as never;
  const jobs = planBackendPrep([
    { vip: '10.0.0.10', mode: 'l2dsr', backends: [b('10.1.0.2'), b('10.1.0.1')] },
    { vip: '10.0.0.11', mode: 'l2dsr', backends: [b('10.1.0.1')] },
    { vip: '10.0.0.12', mode: 'ipip', backends: [b('10.1.0.1'), b('2001:db8::5')] },
    { vip: '10.0.0.13', mode: 'nat', backends: [b('10.1.0.9')] },
  ], 'add', { user: 'ops' });
  t.same(
    jobs.map((j) => [j.target === LOCAL_HOST ? 'local' : `${j.target.user}@${j.target.host}:${j.target.port}`, j.args.mode, j.args.vips.join(',')]),
    [
      ['ops@10.1.0.1:22', 'ipip', '10.0.0.12'],
      ['ops@10.1.0.1:22', 'l2dsr', '10.0.0.10,10.0.0.11'],
      ['ops@10.1.0.2:22', 'l2dsr', '10.0.0.10'],
      ['ops@2001:db8::5:22', 'ipip', '10.0.0.12'],
    ],
  );
  t.equal(jobsForHosts(['h1', 'root@h1:22', 'h1:2222'], { action: 'check', vips: ['10.0.0.1'], mode: 'l2dsr' }, { user: 'root' }).length, 2, 'duplicates run once');
});

t.test('CLI usage errors (exit 2), before any host is contacted', async (t) => {
  const base = { vip: ['10.0.0.1'], mode: 'l2dsr' };
  t.throws(() => serverJobs('prep', [], base), { code: 'ERR_LB_USAGE', message: /no host given/ });
  t.throws(() => serverJobs('prep', ['h'], { ...base, local: true }), { code: 'ERR_LB_USAGE', message: /not both/ });
  t.throws(() => serverJobs('prep', ['h'], { ...base, mode: 'nat' }), { code: 'ERR_LB_USAGE', message: /--mode "nat"/ });
  t.throws(() => serverJobs('check', ['h'], { ...base, persist: true }), { code: 'ERR_LB_USAGE' });
  t.throws(() => serverJobs('prep', ['bad host'], base), { code: 'ERR_LB_USAGE' });
  await t.rejects(serverCommand('prep', ['10.0.0.1'], { ...base, vip: ['1.2.3.4; reboot'] }), { code: 'ERR_LB_USAGE', message: /--vip/ });
  await t.rejects(serverCommand('prep', ['10.0.0.1'], { ...base, timeout: '-1' }), { code: 'ERR_LB_USAGE', message: /--timeout/ });
  await t.rejects(serverCommand('prep', ['10.0.0.1'], { ...base, connectTimeout: 'soon' }), { code: 'ERR_LB_USAGE', message: /--connect-timeout/ });
  await t.rejects(serverCommand('prep', ['10.0.0.1'], { ...base, concurrency: '0' }), { code: 'ERR_LB_USAGE', message: /--concurrency/ });
  await t.rejects(serverCommand('prep', ['10.0.0.1'], { ...base, identity: ['/nonexistent/key'] }), { code: 'ERR_LB_USAGE', message: /identity file/ });
  const dir = t.testdir({ 'pub.key': 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHN4Yp1R1hzgQ8r9ZtVg2mGn1xL8l0fX3v8Wm0hV8XqM x\n' });
  await t.rejects(serverCommand('prep', ['10.0.0.1'], { ...base, identity: [`${dir}/pub.key`] }), { code: 'ERR_LB_USAGE', message: /public key, not a private key/ });
  await run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', 'secret words', '-f', `${dir}/locked`], { timeoutMs: 30_000 });
  await t.rejects(serverCommand('prep', ['10.0.0.1'], { ...base, identity: [`${dir}/locked`] }), {
    code: 'ERR_LB_USAGE',
    message: /protected by a passphrase/,
    hint: /ssh-agent/,
  });
});

t.test('--local check runs the same script the same way (read-only here)', async (t) => {
  // 10.202.100.77 is nobody's VIP on this machine: check must say so, naming it.
  const r = await serverCommand('check', [], { local: true, vip: ['10.202.100.77'], mode: 'l2dsr', stateDir: t.testdir() });
  t.equal(r.hosts.length, 1);
  t.equal(r.hosts[0]?.host, 'local');
  t.equal(r.hosts[0]?.status, 'failed');
  t.match(r.hosts[0]?.detail, 'vip 10.202.100.77/32 on lo (not on lo)');
  t.ok(r.hosts[0]?.result && 'checks' in r.hosts[0].result, 'parsed the JSON result');
  t.match(formatServerReport(r), /^HOST\s+RESULT\s+DETAIL\nlocal\s+failed\s+missing: /);
  const t0 = Date.now();
  const [timeout] = await runPrepJobs([{ target: LOCAL_HOST, args: { action: 'check', vips: ['10.202.100.77'], mode: 'l2dsr' } }], {
    scriptPath: `${t.testdir({ 'slow.sh': 'sleep 5\n' })}/slow.sh`,
    commandTimeoutMs: 300,
  });
  t.equal(timeout?.status, 'timeout');
  t.match(timeout?.detail, /within 0.3 s \(command timeout\)/);
  t.ok(Date.now() - t0 < 3000, `returned at the timeout, not when the script's sleep ended (${Date.now() - t0} ms)`);
});

t.test('the progress line: redrawn in place, cleared at the end', async (t) => {
  const written: string[] = [];
  const out = { columns: 60, write: (s: string) => written.push(s) } as unknown as NodeJS.WriteStream;
  const p = new ProgressLine(out, 'server prep');
  const outcome = { host: 'a', action: 'add', ok: false, status: 'timeout', detail: '', durationMs: 1 } as const;
  p.event({ type: 'start', host: 'a', index: 0, total: 2 });
  p.event({ type: 'start', host: 'b', index: 1, total: 2 });
  p.event({ type: 'finish', outcome, index: 0, total: 2 });
  p.stop();
  t.ok(written.every((w) => w.startsWith('\r\x1b[2K')), 'every write returns to the start of the line and clears it');
  t.match(written[1], /server prep: 0\/2 done, 0 failed, \d+s; running: a b$/);
  t.match(written[2], /server prep: 1\/2 done, 1 failed, \d+s; running: b$/);
  t.equal(written.at(-1), '\r\x1b[2K', 'cleared');
  const long = new ProgressLine(out, 'x'.repeat(100));
  long.event({ type: 'start', host: 'a', index: 0, total: 1 });
  long.stop();
  t.ok((written.at(-2) ?? '').length <= 60 + 5, 'fits the terminal width');
});
