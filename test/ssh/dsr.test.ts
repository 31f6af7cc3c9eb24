/**
 * Real DSR traffic to a backend prepared over SSH: the namespace lab (prefix xssh-) with one l2dsr
 * backend, whose local prep is undone first; requests through the balancer then fail. sshd runs in
 * the backend's namespace, reached from this process over a management veth (xssh-h1, 10.202.1.0/24,
 * which the prep leaves alone: --dev eth0). After `lbctl server prep` over SSH, 50 curl requests to
 * the VIP all reach the backend through the XDP balancer, and the backend sees the client's address.
 */
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serverCommand } from '../../src/cli/commands/server.js';
import { SERVER_PREP_SCRIPT } from '../../src/serverprep/script.js';
import { clientRequests, ipBatch, labDown, labUp, run, startLabBalancer, type Lab, type LabBalancer } from '../../src/lab/index.js';
import { keygen, leftovers, loAddrs, startSshd, stopSshd, type Backend } from './fixtures/sshnet.js';

delete process.env['SSH_AUTH_SOCK'];

const PREFIX = 'xssh-';
const MGMT_ROOT = 'xssh-h1';
const VIP = '10.200.100.1';
const MGMT_ADDR = '10.202.1.2';

let lab: Lab | undefined;
let bal: LabBalancer | undefined;
let sshd: Backend | undefined;
let dir: string | undefined;

t.teardown(async () => {
  bal?.stop();
  if (sshd) await stopSshd(sshd);
  await labDown(PREFIX);
  await run(['ip', 'link', 'del', MGMT_ROOT], { allowFail: true });
  if (dir) rmSync(dir, { recursive: true, force: true });
  const left = leftovers([MGMT_ROOT]);
  if (left.length > 0) throw new Error(`left behind: ${left.join(' ')}`);
});

t.test('l2dsr backend prepared over SSH serves 50 requests through the balancer', async (t) => {
  await labDown(PREFIX);
  await run(['ip', 'link', 'del', MGMT_ROOT], { allowFail: true });
  lab = await labUp({ prefix: PREFIX, l2Backends: 1, routedBackends: 0, services: [{ vip: VIP, port: 80, proto: 'tcp', mode: 'l2dsr' }] });
  const be = lab.backends[0]!;
  const prepState = join(lab.stateDir, be.name, 'prep');

  // Undo the lab's local prep: from here on only the SSH prep can make the VIP work.
  await run(['ip', 'netns', 'exec', be.ns, 'bash', SERVER_PREP_SCRIPT, 'remove', '--vip', VIP, '--state-dir', prepState]);
  t.notMatch(await loAddrs(be.ns), VIP, 'VIP removed from the backend');

  // Management path from this process to the backend, and sshd on it.
  await ipBatch(null, [
    `link add ${MGMT_ROOT} type veth peer name mgmt0 netns ${be.ns}`,
    `addr add 10.202.1.1/24 dev ${MGMT_ROOT}`,
    `link set ${MGMT_ROOT} up`,
  ]);
  await ipBatch(be.ns, [`addr add ${MGMT_ADDR}/24 dev mgmt0`, 'link set mgmt0 up']);
  dir = mkdtempSync(join(tmpdir(), 'xssh-dsr-'));
  const clientKey = join(dir, 'client');
  await keygen(clientKey);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${clientKey}.pub`));
  sshd = { name: be.name, ns: be.ns, addr: MGMT_ADDR, hostKey: join(dir, 'host'), config: join(dir, 'sshd_config'), log: join(dir, 'sshd.log') };
  await keygen(sshd.hostKey);
  writeFileSync(
    sshd.config,
    [
      `ListenAddress ${MGMT_ADDR}`,
      `HostKey ${sshd.hostKey}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'PermitRootLogin prohibit-password',
      'StrictModes no',
      `PidFile ${join(dir, 'sshd.pid')}`,
      'UseDNS no',
      '',
    ].join('\n'),
  );
  await startSshd(sshd);

  bal = startLabBalancer(lab);
  const unprepared = await clientRequests(lab, VIP, 80, 10, { concurrency: 10, maxTimeSec: 1 });
  t.equal(unprepared.ok, 0, 'without the VIP on the backend nothing is answered');

  const opts = { vip: [VIP], mode: 'l2dsr', dev: ['eth0'], identity: [clientKey], knownHosts: join(dir, 'known_hosts'), acceptNew: true, stateDir: prepState };
  const r = await serverCommand('prep', [MGMT_ADDR], opts);
  t.equal(r.ok, true, JSON.stringify(r.hosts));
  t.match(await loAddrs(be.ns), `inet ${VIP}/32`, 'VIP on lo, seen in the namespace');
  t.equal((await run(['ip', 'netns', 'exec', be.ns, 'cat', '/proc/sys/net/ipv4/conf/mgmt0/arp_ignore'])).stdout.trim(), '0', '--dev eth0: the management interface left alone');

  const before = bal.lb.reasons();
  const res = await clientRequests(lab, VIP, 80, 50, { concurrency: 10 });
  t.equal(res.ok, 50, `all 50 answered (failures: ${JSON.stringify(res.failures)})`);
  t.same(res.byBackend, { [be.name]: 50 }, 'by the backend prepared over SSH');
  t.same(Object.keys(res.clientAddrs), [lab.clientAddr], 'which saw the real client address (DSR)');
  const after = bal.lb.reasons();
  const tx = (after['TX_L2DSR'] ?? 0n) - (before['TX_L2DSR'] ?? 0n);
  t.ok(tx >= 50n * 3n, `the XDP program forwarded them (TX_L2DSR +${tx})`);

  const check = await serverCommand('check', [MGMT_ADDR], { ...opts, acceptNew: false });
  t.equal(check.ok, true, 'check over SSH agrees');
});
