/**
 * Every lbctl command's help renders, with an example where the command changes something;
 * usage errors exit 2; a missing daemon is a clear runtime error (exit 1); completion covers
 * the whole tree.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LBCTL } from '../daemon/harness.js';

function run(args: string[]) {
  const r = spawnSync(process.execPath, [LBCTL, ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, NODE_OPTIONS: '' } });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

const COMMANDS = [
  [], ['daemon'], ['apply'], ['validate'], ['list'], ['get'], ['service'], ['service', 'add'], ['service', 'set'], ['service', 'del'],
  ['backend'], ['backend', 'add'], ['backend', 'set'], ['backend', 'del'], ['backend', 'drain'], ['stats'], ['status'], ['version'],
  ['stop'], ['completion'], ['lab'], ['lab', 'up'], ['lab', 'down'], ['lab', 'status'], ['server'], ['server', 'prep'], ['server', 'check'],
  ['server', 'unprep'],
];

t.test('help renders for every command', async (t) => {
  for (const c of COMMANDS) {
    const r = run([...c, '--help']);
    t.equal(r.status, 0, `lbctl ${c.join(' ')} --help exits 0`);
    t.match(r.out, /Usage: lbctl/, `lbctl ${c.join(' ')} --help shows usage`);
  }
  const top = run(['--help']).out;
  for (const c of ['daemon', 'apply', 'list', 'service', 'backend', 'stats', 'status', 'stop', 'version', 'lab', 'server', 'completion']) {
    t.match(top, new RegExp(`\\n\\s+${c}\\b`), `top-level help lists ${c}`);
  }
  t.match(top, /Exit status: 0 ok, 1 failure, 2 usage or config error/);
  for (const c of [['daemon'], ['apply'], ['service', 'add'], ['backend', 'drain'], ['list'], ['stop']]) {
    t.match(run([...c, '--help']).out, /Example/, `lbctl ${c.join(' ')} --help has an example`);
  }
});

t.test('usage errors exit 2, runtime errors exit 1, both say what to do', async (t) => {
  const unknown = run(['frobnicate']);
  t.equal(unknown.status, 2, 'unknown command: 2');
  t.match(unknown.err, /unknown command/);
  const badOpt = run(['list', '--bogus']);
  t.equal(badOpt.status, 2, 'unknown option: 2');
  const badMode = run(['service', 'add', '10.0.0.1:80', '--mode', 'dsr']);
  t.equal(badMode.status, 2, 'bad choice: 2');
  t.match(badMode.err, /l2dsr, ipip, nat/);
  const badVip = run(['--socket', '/nonexistent/s', 'service', 'add', 'nonsense', '--mode', 'l2dsr']);
  t.equal(badVip.status, 2, 'malformed VIP:PORT: 2');
  t.match(badVip.err, /VIP:PORT/);
  const noDaemon = run(['--socket', '/nonexistent/lbctl.sock', 'status']);
  t.equal(noDaemon.status, 1, 'no daemon: 1');
  t.match(noDaemon.err, /no daemon is listening on \/nonexistent\/lbctl.sock/);
  t.match(noDaemon.err, /hint: start it with `lbctl daemon/);
});

t.test('validate works offline and lists every problem', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xdplb-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const good = join(dir, 'good.yaml');
  writeFileSync(good, 'node: { interfaces: [eth0] }\nservices:\n  - { vip: 10.0.0.10, port: 80, mode: l2dsr, backends: [{ address: 10.0.0.11 }] }\n');
  const ok = run(['validate', '-f', good]);
  t.equal(ok.status, 0, ok.err);
  t.match(ok.out, /ok \(1 services, 1 backends\)/);
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'node: { interfaces: [eth0] }\nservices:\n  - { vip: 10.0.0.300, port: 80, mode: l2dsr, backends: [{ address: 10.0.0.11, weight: -1 }] }\n');
  const r = run(['validate', '-f', bad]);
  t.equal(r.status, 2, 'config error: 2');
  t.match(r.err, /services\[0\]\.vip/);
  t.match(r.err, /services\[0\]\.backends\[0\]\.weight/);
});

t.test('bash completion covers the command tree', async (t) => {
  const r = run(['completion', 'bash']);
  t.equal(r.status, 0);
  t.match(r.out, /complete -o default -F _lbctl lbctl/);
  t.match(r.out, /"backend"\) words="add set del drain/);
  const syntax = spawnSync('bash', ['-n'], { input: r.out, encoding: 'utf8' });
  t.equal(syntax.status, 0, `bash -n accepts it ${syntax.stderr}`);
});
