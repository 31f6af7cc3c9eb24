/**
 * The lab's end-to-end check from the command line (dsrcheck.ts), against any running lab:
 *
 *   node dist/lab/check.js --via vagrant                  the Vagrant lab (vagrant/, ssh to the client VM)
 *   node dist/lab/check.js --via netns [--prefix xlb-]    a namespace lab (e.g. make demo DEMO_ARGS=--keep)
 *   node dist/lab/check.js --via ssh --ssh-config FILE    machines reached with an OpenSSH config
 *
 * Exit status 0 when every DSR service passed (and at least one was checked), 1 otherwise.
 */
import { join } from 'node:path';
import { LbError } from '../errors.js';
import { checkLab, formatCheckReport } from './dsrcheck.js';
import { choiceOption, intOption, parseCli, runMain } from './entry.js';
import { exportTopology, loadMachineTopology, type MachineTopology } from './export.js';
import { NetnsRunner, SshRunner, vagrantSshRunner, type HostRunner } from './hosts.js';
import { labStatus, REPO_ROOT } from './lab.js';
import { DEFAULT_PREFIX } from './topology.js';

const USAGE = `usage: check.js [--via vagrant|netns|ssh] [--topology FILE] [--prefix P] [--vagrant-dir DIR]
                [--ssh-config FILE] [--sudo] [--requests N] [--concurrency N] [--json]
  Sends N HTTP requests (default 300) from the lab's client to every DSR service and checks that
  all are answered, that every backend of the service answers with a fair share, and that the
  backends see the client's own address.
  --via vagrant     ssh to the VMs of --vagrant-dir (default vagrant/ of this repository), default
  --via netns       the namespace lab of --prefix (default ${DEFAULT_PREFIX}); its recorded topology unless --topology
  --via ssh         hosts named as in the topology, reached with --ssh-config FILE
  --topology FILE   machine description (default vagrant/topology.json)
`;

runMain('check', async () => {
  const a = parseCli(process.argv.slice(2), USAGE, {
    via: { type: 'string' },
    topology: { type: 'string' },
    prefix: { type: 'string' },
    'vagrant-dir': { type: 'string' },
    'ssh-config': { type: 'string' },
    sudo: { type: 'boolean' },
    requests: { type: 'string' },
    concurrency: { type: 'string' },
    json: { type: 'boolean' },
  });
  const via = choiceOption('via', a.via, ['vagrant', 'netns', 'ssh'] as const, 'vagrant');
  const requests = intOption('requests', a.requests, 300);
  const concurrency = intOption('concurrency', a.concurrency, 10);
  const topologyFile = a.topology ?? join(REPO_ROOT, 'vagrant', 'topology.json');

  let mt: MachineTopology;
  let runner: HostRunner;
  if (via === 'netns') {
    const prefix = a.prefix ?? DEFAULT_PREFIX;
    if (a.topology) {
      mt = loadMachineTopology(a.topology, prefix).machines;
    } else {
      const st = await labStatus(prefix);
      if (!st.lab) {
        throw new LbError('ERR_LB_LAB', `no namespace lab with prefix ${prefix} is up`, { hint: 'make demo DEMO_ARGS=--keep brings one up' });
      }
      mt = exportTopology(st.lab.topology, {});
    }
    runner = new NetnsRunner(prefix);
  } else {
    mt = loadMachineTopology(topologyFile).machines;
    const client = mt.hosts.find((h) => h.role === 'client');
    if (!client) throw new LbError('ERR_LB_LAB', `${topologyFile} has no client`);
    if (via === 'ssh') {
      if (!a['ssh-config']) throw new LbError('ERR_LB_USAGE', '--via ssh needs --ssh-config FILE');
      runner = new SshRunner({ configFile: a['ssh-config'], sudo: a.sudo ?? false });
    } else {
      runner = await vagrantSshRunner(a['vagrant-dir'] ?? join(REPO_ROOT, 'vagrant'), [client.name], { sudo: a.sudo ?? false });
    }
  }
  try {
    const report = await checkLab(mt, runner, { requests, concurrency });
    process.stdout.write(a.json ? JSON.stringify(report, null, 2) + '\n' : formatCheckReport(report));
    return report.failed === 0 && report.passed > 0 ? 0 : 1;
  } finally {
    runner.close();
  }
});
