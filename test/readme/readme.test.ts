/**
 * The README's lbctl examples (fenced as `sh lbctl-example`) run as written, in order, against
 * the real lab: a README that lies fails here.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../../src/lab/lab.js';
import { LBCTL } from '../daemon/harness.js';

const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/```sh lbctl-example\n([\s\S]*?)```/g)].map((m) => m[1]!);
const env: Record<string, string> = { ...(process.env as Record<string, string>), NODE_OPTIONS: '' };

t.teardown(() => {
  spawnSync(process.execPath, [LBCTL, 'lab', 'down'], { env, timeout: 60_000 });
});

t.test('the README has lbctl examples', async (t) => {
  t.ok(blocks.length >= 1, `${blocks.length} example blocks`);
});

for (const [i, block] of blocks.entries()) {
  t.test(`README example block ${i + 1}`, async (t) => {
    for (const raw of block.split('\n')) {
      const line = raw.replace(/\s+#.*$/, '').trim();
      if (!line || line.startsWith('#')) continue;
      const exp = /^export (\w+)=(\S+)$/.exec(line);
      if (exp) {
        env[exp[1]!] = exp[2]!;
        continue;
      }
      const words = line.split(/\s+/);
      if (words[0] !== 'lbctl') throw new Error(`README example line is not lbctl: ${line}`);
      const r = spawnSync(process.execPath, [LBCTL, ...words.slice(1)], { encoding: 'utf8', env, timeout: 120_000 });
      t.equal(r.status, 0, `${line}${r.status ? `\n${r.stdout}${r.stderr}` : ''}`);
    }
  });
}
