/**
 * Starts the balancer of a lab whose hosts are machines (machine.ts), as the Vagrant LB's provisioning
 * does, as root, on the LB:
 *
 *   node dist/lab/machine-lb.js [--topology vagrant/topology.json] [--xdp-mode auto|native|generic]
 *                               [--wait-sec 120] [--via local|netns --prefix P]
 *
 * `--via netns` drives the LB namespace of a namespace lab instead (how the tests run this code).
 * Exits once the program is attached; it stays attached (re-running replaces it).
 */
import { join } from 'node:path';
import { LbError } from '../errors.js';
import { choiceOption, intOption, parseCli, runMain } from './entry.js';
import { loadMachineTopology } from './export.js';
import { LocalRunner, NetnsRunner, type HostRunner } from './hosts.js';
import { REPO_ROOT } from './lab.js';
import { startMachineBalancer } from './machine.js';
import { DEFAULT_PREFIX } from './topology.js';

const USAGE = `usage: machine-lb.js [--topology FILE] [--xdp-mode auto|native|generic] [--wait-sec N]
                     [--via local|netns] [--prefix P]
  Learns the MACs of the LB's neighbours, loads the XDP balancer with the lab's services and
  attaches it to the LB's lab interface (auto: native XDP, else generic). Run as root on the LB.
`;

function say(s: string): void {
  process.stdout.write(`machine-lb: ${s}\n`);
}

runMain('machine-lb', async () => {
  const a = parseCli(process.argv.slice(2), USAGE, {
    topology: { type: 'string' },
    'xdp-mode': { type: 'string' },
    'wait-sec': { type: 'string' },
    via: { type: 'string' },
    prefix: { type: 'string' },
  });
  const via = choiceOption('via', a.via, ['local', 'netns'] as const, 'local');
  const xdpMode = choiceOption('xdp-mode', a['xdp-mode'], ['auto', 'native', 'generic'] as const, 'auto');
  const waitMs = intOption('wait-sec', a['wait-sec'], 120) * 1000;
  if (process.getuid?.() !== 0) throw new LbError('ERR_LB_USAGE', 'loading and attaching XDP programs needs root');

  const prefix = a.prefix ?? DEFAULT_PREFIX;
  const loaded = loadMachineTopology(a.topology ?? join(REPO_ROOT, 'vagrant', 'topology.json'), prefix);
  const lbHost = loaded.topology.hosts.find((h) => h.role === 'lb');
  if (!lbHost) throw new LbError('ERR_LB_LAB', 'the lab topology has no lb');
  const runner: HostRunner = via === 'netns' ? new NetnsRunner(prefix) : new LocalRunner();
  const lbNs = via === 'netns' ? lbHost.ns : '/proc/self/ns/net';

  const { lab, balancer, xdpMode: mode } = await startMachineBalancer(loaded, { runner, lbNs, xdpMode, waitMs, log: say });
  say(`${lbHost.name}: ${lab.lb.ifname} ${lab.lb.addr} ${lab.lb.mac}; gateway ${lab.lb.gateway.addr} at ${lab.lb.gateway.mac}`);
  for (const b of lab.backends) say(`backend ${b.name} ${b.addr} at ${b.mac}`);
  const names = new Map(lab.backends.map((b) => [b.addr, b.name]));
  for (const s of balancer.services) {
    say(`service ${s.vip}:${s.port}/${s.proto} ${s.mode} -> ${s.backends.map((b) => names.get(b.address) ?? b.address).join(', ')}`);
  }
  say(`attached to ${lab.lb.ifname} (${mode} XDP); it stays attached after this process exits`);
  // No balancer.stop(): detaching is what the next run (replace) or a reboot does.
  return 0;
});
