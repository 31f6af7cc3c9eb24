/**
 * Writes vagrant/topology.json, the machine description of the lab (export.ts), from buildTopology().
 * Run through scripts/vagrant-topology.sh, which builds first.
 *
 *   node dist/lab/vagrant-topology.js                 print it
 *   node dist/lab/vagrant-topology.js --out FILE      write FILE when it differs
 *   node dist/lab/vagrant-topology.js --check [--out FILE]   exit 1 when FILE is stale
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCli, runMain } from './entry.js';
import { vagrantTopologyText } from './export.js';
import { REPO_ROOT } from './lab.js';

const USAGE = `usage: vagrant-topology.js [--out FILE] [--check]
  prints the Vagrant lab's machine description; --out writes FILE when it differs;
  --check only compares (exit 1 when FILE, default vagrant/topology.json, is stale)
`;

function readOr(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

runMain('vagrant-topology', async () => {
  const args = parseCli(process.argv.slice(2), USAGE, { out: { type: 'string' }, check: { type: 'boolean' } });
  const text = vagrantTopologyText();
  if (!args.out && !args.check) {
    process.stdout.write(text);
    return 0;
  }
  const out = args.out ?? join(REPO_ROOT, 'vagrant', 'topology.json');
  const now = readOr(out);
  if (now === text) {
    process.stdout.write(`vagrant-topology: ${out} is up to date\n`);
    return 0;
  }
  if (args.check) {
    process.stderr.write(`vagrant-topology: ${out} is stale: regenerate it with scripts/vagrant-topology.sh\n`);
    return 1;
  }
  writeFileSync(`${out}.tmp`, text);
  renameSync(`${out}.tmp`, out);
  process.stdout.write(`vagrant-topology: wrote ${out}\n`);
  return 0;
});
