// The Vagrant lab (vagrant/), as far as this machine allows: no VM is started here.
//  - vagrant/topology.json is exactly what buildTopology() generates now (the topology is written once);
//  - the Vagrantfile parses (ruby -c), defines one VM per host with the right networks and
//    provisioning (a Ruby stand-in for Vagrant records what it configures), and passes
//    `vagrant validate` for every provider this machine has; a provider that cannot be validated
//    here is a loud, top-level SKIP;
//  - the code the VMs run, against a real namespace lab of the same topology (prefix xvg-, torn down
//    even on failure): provision.sh's network part (client and router roles), machine-lb.js (learns
//    MACs, attaches the balancer, exits), and check.js through the netns runner and through ssh (an
//    sshd in the client namespace, reached with an OpenSSH config like `vagrant ssh-config` writes).
import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, openSync, closeSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkLab, shareBounds } from '../../src/lab/dsrcheck.js';
import { exportTopology, loadMachineTopology, vagrantTopologyText, VAGRANT_LAB_OPTIONS, type MachineTopology } from '../../src/lab/export.js';
import { NetnsRunner, SshRunner } from '../../src/lab/hosts.js';
import { shQuote } from '../../src/serverprep/quote.js';
import { labDown, labUp, run, type Lab } from '../../src/lab/index.js';
import { buildTopology } from '../../src/lab/topology.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const VDIR = join(REPO, 'vagrant');
const TOPO_FILE = join(VDIR, 'topology.json');
const PREFIX = 'xvg-';

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).status === 0;
}

/** Runs a TypeScript entry of src/lab the way tap runs this file (its TypeScript loader). */
function entryArgv(entry: string, args: string[]): string[] {
  const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
  return [process.execPath, ...loader, join(REPO, 'src', 'lab', entry), ...args];
}

function runEntry(entry: string, args: string[], timeoutMs = 120_000): { status: number | null; stdout: string; stderr: string } {
  const [file, ...rest] = entryArgv(entry, args);
  const r = spawnSync(file ?? process.execPath, rest, { encoding: 'utf8', timeout: timeoutMs });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

const machines = JSON.parse(readFileSync(TOPO_FILE, 'utf8')) as MachineTopology;

// ------------------------------------------------------------------------------------------------
// The description

t.test('vagrant/topology.json is what buildTopology() generates now', async (t) => {
  const want = vagrantTopologyText();
  const have = readFileSync(TOPO_FILE, 'utf8');
  t.equal(have, want, 'vagrant/topology.json is stale: regenerate it with scripts/vagrant-topology.sh and commit it');
  t.same(JSON.parse(have), exportTopology(buildTopology(VAGRANT_LAB_OPTIONS)), 'same content');
  // The runtime guard refuses a file the code would not generate.
  const dir = t.testdir({ 'edited.json': have.replace('"10.200.2.11"', '"10.200.2.99"') });
  t.throws(() => loadMachineTopology(join(dir, 'edited.json')), { code: 'ERR_LB_LAB' }, 'a hand-edited file is refused');
  t.doesNotThrow(() => loadMachineTopology(TOPO_FILE, PREFIX));
});

t.test('the description is a usable lab', async (t) => {
  const names = machines.hosts.map((h) => h.name);
  t.equal(new Set(names).size, names.length, 'machine names are unique');
  for (const role of ['router', 'client', 'lb'] as const) t.equal(machines.hosts.filter((h) => h.role === role).length, 1, `one ${role}`);
  t.ok(machines.hosts.filter((h) => h.role === 'backend').length >= 2, 'two or more backends');
  const segs = new Map(machines.segments.map((s) => [s.name, s]));
  const router = machines.hosts.find((h) => h.role === 'router');
  t.same(router?.interfaces.map((i) => i.addr).sort(), machines.segments.map((s) => s.gateway).sort(), 'the router holds every gateway');
  for (const h of machines.hosts.filter((x) => x.role !== 'router')) {
    const seg = segs.get(h.interfaces[0]?.segment ?? 'client');
    t.equal(h.gateway, seg?.gateway, `${h.name}: its segment's gateway`);
    t.ok(h.routes.every((r) => r.via === h.gateway), `${h.name}: routes through its gateway`);
  }
  const dsr = machines.services.filter((s) => s.mode === 'l2dsr' || s.mode === 'ipip');
  t.ok(dsr.length >= 2, 'an l2dsr and an ipip service');
  for (const s of dsr) {
    t.ok(s.backends.length >= 2, `${s.mode} ${s.vip}: two or more backends`);
    for (const b of s.backends) {
      const h = machines.hosts.find((x) => x.name === b);
      t.ok(h?.role === 'backend' && h.vips.includes(s.vip) && h.prepMode === s.mode, `${b} is prepared for ${s.vip} (${s.mode})`);
    }
  }
  t.same(shareBounds(3, 300), [60, 140], 'three backends: 20-47% each, as test/e2e');
});

// ------------------------------------------------------------------------------------------------
// The Vagrantfile

const RUBY = have('ruby') ? null : 'ruby not installed (Debian: apt-get install ruby, or vagrant which pulls it in)';
const NO_VAGRANT = have('vagrant') ? null : 'vagrant not installed (Debian 12: apt-get install --no-install-recommends vagrant)';
const VAGRANT = NO_VAGRANT === null ? null : `${NO_VAGRANT}: Vagrantfile not validated`;

t.test('Vagrantfile parses (ruby -c)', { skip: RUBY ?? false }, async (t) => {
  const r = spawnSync('ruby', ['-c', join(VDIR, 'Vagrantfile')], { encoding: 'utf8' });
  t.equal(r.status, 0, 'exits 0', { output: r.stderr });
  t.match(r.stdout, /Syntax OK/);
});

interface ProbeMachine {
  name: string;
  hostname: string;
  networks: { type: string; opts: Record<string, unknown> }[];
  providers: Record<string, Record<string, unknown>>;
  provisions: { name: string; opts: { type?: string; run?: string; inline?: string; args?: string[] } }[];
}
interface Probe {
  global: { box: string; synced: { src: string; dst: string; opts: Record<string, unknown> }[] };
  machines: ProbeMachine[];
}

function probe(plugins: string): Probe {
  const r = spawnSync('ruby', [join(REPO, 'test', 'vagrant', 'vagrantfile-probe.rb'), join(VDIR, 'Vagrantfile')], {
    encoding: 'utf8',
    env: { ...process.env, PROBE_PLUGINS: plugins },
  });
  if (r.status !== 0) throw new Error(`vagrantfile-probe.rb: exit ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Probe;
}

t.test('Vagrantfile defines one Debian 12 VM per host of topology.json', { skip: RUBY ?? false }, async (t) => {
  const p = probe('vagrant-libvirt');
  t.equal(p.global.box, 'debian/bookworm64');
  const repo = p.global.synced.find((s) => s.dst === '/opt/xdplb');
  t.equal(repo?.src, REPO.replace(/\/$/, ''), 'the repository is synced to /opt/xdplb');
  t.equal(repo?.opts['type'], 'rsync');
  t.ok((repo?.opts['rsync__exclude'] as string[]).includes('node_modules/'), 'without the host node_modules (each VM builds its own)');
  t.same(p.global.synced.find((s) => s.dst === '/vagrant')?.opts, { disabled: true });

  t.same(p.machines.map((m) => m.name).sort(), machines.hosts.map((h) => h.name).sort(), 'one VM per host');
  const order = p.machines.map((m) => m.name);
  const idx = (n: string): number => order.indexOf(n);
  t.equal(order[0], 'router', 'the router comes up first');
  for (const b of machines.hosts.filter((h) => h.role === 'backend')) t.ok(idx(b.name) < idx('lb'), `${b.name} before the lb`);

  const segs = new Map(machines.segments.map((s) => [s.name, s]));
  for (const h of machines.hosts) {
    const m = p.machines.find((x) => x.name === h.name);
    if (!m) continue;
    t.same(
      m.networks.map((n) => [n.type, n.opts['ip'], n.opts['netmask'], n.opts['virtualbox__intnet'], n.opts['libvirt__network_name']]),
      h.interfaces.map((i) => ['private_network', i.addr, segs.get(i.segment)?.netmask, segs.get(i.segment)?.network, segs.get(i.segment)?.network]),
      `${h.name}: a NIC per interface, on its segment's network`,
    );
    t.ok(m.networks.every((n) => n.opts['libvirt__forward_mode'] === 'veryisolated' && n.opts['libvirt__dhcp_enabled'] === false), `${h.name}: isolated libvirt networks without DHCP or host address`);
    t.ok(m.networks.every((n) => n.opts['virtualbox__nic_type'] === 'virtio'), `${h.name}: virtio NICs on VirtualBox`);
    t.same(m.provisions.map((x) => [x.opts.type, x.opts.run, x.opts.args]), [['shell', 'always', [h.role, h.name]]], `${h.name}: provision.sh ${h.role} ${h.name}`);
    t.match(m.provisions[0]?.opts.inline ?? '', /\/opt\/xdplb\/vagrant\/provision\.sh/);
    t.same(Object.keys(m.providers).sort(), ['libvirt', 'virtualbox'], `${h.name}: both providers configured`);
  }
  const without = probe('');
  t.ok(without.machines.every((m) => !('libvirt' in m.providers)), 'without the vagrant-libvirt plugin no libvirt block is evaluated');
});

t.test('provision.sh parses (bash -n)', async (t) => {
  const r = spawnSync('bash', ['-n', join(VDIR, 'provision.sh')], { encoding: 'utf8' });
  t.equal(r.status, 0, 'exits 0', { output: r.stderr });
});

// `vagrant validate`, never touching the repository or ~/.vagrant.d.
function validate(home: string, env: Record<string, string | undefined>, args: string[] = []): { status: number | null; out: string } {
  const e: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, VAGRANT_HOME: join(home, 'home'), VAGRANT_DOTFILE_PATH: join(home, 'dot'), VAGRANT_CHECKPOINT_DISABLE: '1', ...env })) {
    if (v !== undefined) e[k] = v;
  }
  delete e['VAGRANT_DEFAULT_PROVIDER'];
  if (env['VAGRANT_DEFAULT_PROVIDER']) e['VAGRANT_DEFAULT_PROVIDER'] = env['VAGRANT_DEFAULT_PROVIDER'];
  const r = spawnSync('vagrant', ['validate', ...args], { cwd: VDIR, encoding: 'utf8', env: e, timeout: 120_000 });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

function plugins(): string {
  return spawnSync('vagrant', ['plugin', 'list'], { encoding: 'utf8', env: { ...process.env, VAGRANT_CHECKPOINT_DISABLE: '1' } }).stdout ?? '';
}

const LIBVIRT = VAGRANT ?? (/vagrant-libvirt/.test(plugins()) ? null : 'the vagrant-libvirt plugin is not installed: libvirt provider config not validated (Debian 12: apt-get install --no-install-recommends vagrant-libvirt)');
const VBOX = VAGRANT ?? (have('VBoxManage') ? null : 'VirtualBox (VBoxManage) is not installed: VirtualBox provider config not validated (Debian 12 has no virtualbox package); the rest of the Vagrantfile is validated with --ignore-provider');

t.test('vagrant validate (VAGRANT_DEFAULT_PROVIDER unset)', { skip: VAGRANT ?? false }, async (t) => {
  const r = validate(t.testdir(), {});
  t.equal(r.status, 0, 'exits 0', { output: r.out });
  t.match(r.out, /validated successfully/);
});

t.test('vagrant validate, provider libvirt', { skip: LIBVIRT ?? false }, async (t) => {
  const r = validate(t.testdir(), { VAGRANT_DEFAULT_PROVIDER: 'libvirt' });
  t.equal(r.status, 0, 'exits 0', { output: r.out });
  t.match(r.out, /validated successfully/);
});

t.test('vagrant validate, provider virtualbox', { skip: VBOX ?? false }, async (t) => {
  const r = validate(t.testdir(), { VAGRANT_DEFAULT_PROVIDER: 'virtualbox' });
  t.equal(r.status, 0, 'exits 0', { output: r.out });
});

t.test('vagrant validate --ignore-provider, without any plugin', { skip: VAGRANT ?? false }, async (t) => {
  const r = validate(t.testdir(), { VAGRANT_NO_PLUGINS: '1' }, ['--ignore-provider']);
  t.equal(r.status, 0, 'exits 0', { output: r.out });
  t.match(r.out, /validated successfully/);
});

// ------------------------------------------------------------------------------------------------
// The code the VMs run, against a namespace lab of the same topology

t.test('against a namespace lab of the Vagrant topology', async (t) => {
  const sshd: ChildProcess[] = [];
  t.teardown(async () => {
    for (const c of sshd) c.kill('SIGKILL');
    await labDown(PREFIX);
  });
  await labDown(PREFIX);
  const lab: Lab = await labUp({ ...VAGRANT_LAB_OPTIONS, prefix: PREFIX });
  const netns = new NetnsRunner(PREFIX);

  await t.test('provision.sh (client and router roles) sets up the network as on a VM', async (t) => {
    const sysctlDir = t.testdir();
    for (const [role, name] of [['client', 'client'], ['router', 'router']] as const) {
      // XDPLB_REPO: this checkout stands for /opt/xdplb; sysctls go to a test dir, not /etc.
      const env = ['env', `XDPLB_REPO=${REPO}`, `XDPLB_SYSCTL_DIR=${sysctlDir}`];
      const p = await netns.exec(name, [...env, 'bash', join(VDIR, 'provision.sh'), role, name], { allowFail: true, timeoutMs: 60_000 });
      t.equal(p.status, 0, `provision.sh ${role} ${name} exits 0`, { output: `${p.stdout}${p.stderr}` });
      t.match(p.stdout, new RegExp(`provision ${name}: done \\(${role}\\)`));
    }
    const routes = (await netns.exec('client', ['ip', '-4', 'route', 'show'])).stdout;
    for (const r of machines.hosts.find((h) => h.name === 'client')?.routes ?? []) {
      t.match(routes, new RegExp(`^${r.dst.replace(/\./g, '\\.')} via ${r.via.replace(/\./g, '\\.')} `, 'm'), `client: route ${r.dst} via ${r.via}`);
    }
    const tx = (await netns.exec('client', ['ethtool', '-k', 'eth0'])).stdout;
    t.match(tx, /^tx-checksumming: off/m, 'client: TX checksum offload off');
    t.match(readFileSync(join(sysctlDir, '60-xdplb-lab.conf'), 'utf8'), /ip_forward = 1/, 'router: forwarding sysctls written');
    const fwd = (await netns.exec('router', ['sysctl', '-n', 'net.ipv4.ip_forward', 'net.ipv4.conf.all.rp_filter'])).stdout.trim().split(/\s+/);
    t.same(fwd, ['1', '2'], 'router: forwarding on, rp_filter loose');
    const bad = await netns.exec('client', ['env', `XDPLB_REPO=${REPO}`, 'bash', join(VDIR, 'provision.sh'), 'lb', 'client'], { allowFail: true });
    t.equal(bad.status, 1, 'a role that does not match the topology is refused');
    t.match(bad.stderr, /client has role client/);
  });

  await t.test('machine-lb.js learns the MACs and attaches the balancer, then exits', async (t) => {
    const r = runEntry('machine-lb.ts', ['--via', 'netns', '--prefix', PREFIX, '--topology', TOPO_FILE, '--wait-sec', '20']);
    t.equal(r.status, 0, 'machine-lb.js exits 0', { output: `${r.stdout}${r.stderr}` });
    for (const b of lab.backends.filter((x) => x.segment === 'l2')) {
      t.match(r.stdout, new RegExp(`backend ${b.name} ${b.addr.replace(/\./g, '\\.')} at ${b.mac}`), `${b.name}'s MAC learned by ARP`);
    }
    t.match(r.stdout, new RegExp(`gateway 10\\.200\\.2\\.1 at ${lab.lb.gateway.mac}`));
    t.match(r.stdout, /attached to eth0 \(native XDP\)/);
    const link = JSON.parse((await run(['ip', '-j', '-n', lab.lb.ns, 'link', 'show', 'dev', 'eth0'])).stdout) as { xdp?: { prog?: { name: string } } }[];
    t.equal(link[0]?.xdp?.prog?.name, 'xdp_balancer', 'the program stays attached after the process exited');
  });

  await t.test('checkLab through the netns runner: the spread and the client address', async (t) => {
    const report = await checkLab(machines, netns, { requests: 200 });
    t.equal(report.failed, 0, 'no service failed', { problems: report.services.map((s) => s.problems) });
    t.equal(report.passed, 2, 'l2dsr and ipip checked');
    t.equal(report.skipped, 0, 'nothing skipped: the VM lab has the DSR services only');
    for (const v of report.services.filter((s) => s.result)) {
      t.same(Object.keys(v.result?.clientAddrs ?? {}), ['10.200.1.2'], `${v.service.mode}: backends saw the client`);
      t.same(Object.keys(v.result?.byBackend ?? {}).sort(), [...v.service.backends].sort(), `${v.service.mode}: every backend answered`);
    }
  });

  await t.test('check.js --via netns (recorded lab, and topology.json)', async (t) => {
    for (const extra of [[], ['--topology', TOPO_FILE]]) {
      const r = runEntry('check.ts', ['--via', 'netns', '--prefix', PREFIX, '--requests', '100', ...extra]);
      t.equal(r.status, 0, `check.js --via netns ${extra.join(' ')} exits 0`, { output: `${r.stdout}${r.stderr}` });
      t.match(r.stdout, /check: 2 services passed, 0 failed, 0 skipped \(via netns\)/);
      t.match(r.stdout, /backends saw client 10\.200\.1\.2/);
      t.match(r.stdout, /^ {2}l2be1 /m);
    }
  });

  await t.test('check.js --via ssh: the transport the Vagrant lab uses', async (t) => {
    if (!have('sshd') && !existsSync('/usr/sbin/sshd')) {
      t.fail('sshd not installed (scripts/deps.sh installs openssh-server)');
      return;
    }
    const dir = t.testdir();
    chmodSync(dir, 0o700);
    await run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')]);
    await run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'id')]);
    writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'id.pub')));
    writeFileSync(
      join(dir, 'sshd_config'),
      [
        'ListenAddress 127.0.0.1', 'Port 22', `HostKey ${join(dir, 'host_key')}`, `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'PidFile none', 'StrictModes no', 'UsePAM no', 'PermitRootLogin prohibit-password', 'PasswordAuthentication no',
        'KbdInteractiveAuthentication no', 'LogLevel ERROR', '',
      ].join('\n'),
    );
    mkdirSync('/run/sshd', { recursive: true });
    const log = openSync(join(dir, 'sshd.log'), 'a');
    const child = spawn('ip', ['netns', 'exec', `${PREFIX}client`, '/usr/sbin/sshd', '-D', '-e', '-f', join(dir, 'sshd_config')], {
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    sshd.push(child);
    let up = false;
    for (let i = 0; i < 50 && !up; i++) {
      up = (await netns.exec('client', ['nc', '-z', '127.0.0.1', '22'], { allowFail: true })).status === 0;
      if (!up) await new Promise((r) => setTimeout(r, 100));
    }
    t.ok(up, `sshd listens in ${PREFIX}client`, { log: readFileSync(join(dir, 'sshd.log'), 'utf8') });
    // What `vagrant ssh-config client` writes, with the namespace as the way in.
    const config = join(dir, 'ssh_config');
    writeFileSync(
      config,
      [
        'Host client', '  HostName 127.0.0.1', '  User root', '  Port 22', '  UserKnownHostsFile /dev/null', '  StrictHostKeyChecking no',
        '  PasswordAuthentication no', `  IdentityFile ${join(dir, 'id')}`, '  IdentitiesOnly yes', '  LogLevel FATAL',
        `  ProxyCommand ip netns exec ${PREFIX}client nc %h %p`, '',
      ].join('\n'),
    );
    const ssh = new SshRunner({ configFile: config });
    const echo = await ssh.exec('client', ['printf', '%s|', "it's", 'a b', '$HOME'], { input: '' });
    t.equal(echo.stdout, "it's|a b|$HOME|", 'argv reaches the remote side word for word');
    const cat = await ssh.exec('client', ['cat'], { input: 'stdin\n' });
    t.equal(cat.stdout, 'stdin\n', 'stdin reaches the remote command');
    const st = await ssh.exec('client', ['sh', '-c', 'exit 3'], { allowFail: true });
    t.equal(st.status, 3, "the remote command's exit status");
    await t.rejects(ssh.exec('client', ['false']), { code: 'ERR_LB_EXEC' }, 'a failing command throws without allowFail');
    await t.rejects(ssh.exec('nosuchhost', ['true']), { code: 'ERR_LB_SSH' }, 'ssh failures are ERR_LB_SSH');
    t.equal(shQuote("a'b"), `'a'\\''b'`);

    const r = runEntry('check.ts', ['--via', 'ssh', '--ssh-config', config, '--topology', TOPO_FILE, '--requests', '100']);
    t.equal(r.status, 0, 'check.js --via ssh exits 0', { output: `${r.stdout}${r.stderr}` });
    t.match(r.stdout, /check: 2 services passed, 0 failed, 0 skipped \(via ssh\)/);
  });

  await t.test('check.js fails when the balancer is gone', async (t) => {
    await run(['ip', '-n', lab.lb.ns, 'link', 'set', 'dev', 'eth0', 'xdp', 'off']);
    const r = runEntry('check.ts', ['--via', 'netns', '--prefix', PREFIX, '--requests', '10', '--concurrency', '5']);
    t.equal(r.status, 1, 'check.js exits 1', { output: r.stdout });
    t.match(r.stdout, /FAIL: 10 of 10 requests failed/);
  });
});

t.test('check.js --via vagrant without VMs says how to bring them up', { skip: NO_VAGRANT ?? false }, async (t) => {
  const dot = t.testdir();
  const r = spawnSync(entryArgv('check.ts', [])[0] ?? process.execPath, entryArgv('check.ts', ['--via', 'vagrant', '--requests', '1']).slice(1), {
    encoding: 'utf8',
    timeout: 180_000,
    env: { ...process.env, VAGRANT_DOTFILE_PATH: dot, VAGRANT_CHECKPOINT_DISABLE: '1' },
  });
  t.equal(r.status, 1, 'check.js exits 1', { output: r.stderr });
  t.match(r.stderr, /vagrant ssh-config client failed/);
  t.match(r.stderr, /hint: bring the lab up first/);
});
