// known_hosts: plain, hashed (HMAC-SHA1, computed here and cross-checked with ssh-keygen -H),
// [host]:port, markers, comments, negation, wildcards; verdicts; accept-new appends with mode 0600.
import t from 'tap';
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run } from '../../src/lab/exec.js';
import {
  KnownHosts,
  checkHostKey,
  fingerprint,
  globMatch,
  hostKeyMessage,
  hostMatches,
  keyTypeOfBlob,
  parseKnownHosts,
} from '../../src/serverprep/knownhosts.js';

interface Key {
  type: string;
  b64: string;
  blob: Buffer;
  line: string;
}

async function keygen(dir: string, type: 'ed25519' | 'ecdsa' | 'rsa', name: string): Promise<Key> {
  const path = join(dir, name);
  await run(['ssh-keygen', '-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-C', 'test', '-f', path], { timeoutMs: 30_000 });
  const line = readFileSync(`${path}.pub`, 'utf8').trim();
  const [kt, b64] = line.split(' ');
  return { type: kt!, b64: b64!, blob: Buffer.from(b64!, 'base64'), line };
}

function hashed(name: string, salt = randomBytes(20)): string {
  const h = createHmac('sha1', salt).update(name).digest();
  return `|1|${salt.toString('base64')}|${h.toString('base64')}`;
}

t.test('parsing and verdicts', async (t) => {
  const dir = t.testdir();
  const k1 = await keygen(dir, 'ed25519', 'k1');
  const k2 = await keygen(dir, 'ed25519', 'k2');
  const k3 = await keygen(dir, 'ecdsa', 'k3');
  const k4 = await keygen(dir, 'rsa', 'k4');
  const text = [
    '# a comment',
    '',
    `   plain.example,10.0.0.1 ${k1.type} ${k1.b64} comment words`,
    `${hashed('hashed.example')} ${k1.type} ${k1.b64}`,
    `[10.0.0.2]:2222 ${k2.type} ${k2.b64}`,
    `*.wild.example,!bad.wild.example ${k3.type} ${k3.b64}`,
    `@revoked revoked.example ${k2.type} ${k2.b64}`,
    `revoked.example ${k2.type} ${k2.b64}`,
    `@cert-authority *.ca.example ${k1.type} ${k1.b64}`,
    `rsaonly.example ${k4.type} ${k4.b64}`,
    `@bogus x.example ${k1.type} ${k1.b64}`,
    'broken line',
    `mismatch.example ssh-rsa ${k1.b64}`,
    `notb64.example ${k1.type} !!!!`,
    `|1|bad ${k1.type} ${k1.b64}`,
  ].join('\n');
  const { entries, problems } = parseKnownHosts(text, 'kh');
  t.equal(entries.length, 8, 'eight good lines');
  t.same(problems.map((p) => p.line), [11, 12, 13, 14, 15], 'bad lines reported by number, and skipped');
  t.equal(keyTypeOfBlob(k1.blob), 'ssh-ed25519');
  t.equal(keyTypeOfBlob(k4.blob), 'ssh-rsa');
  t.equal(keyTypeOfBlob(Buffer.from([0, 0, 0])), null);

  const v = (name: string, k: Key) => checkHostKey(entries, name, k.blob).kind;
  t.equal(v('plain.example', k1), 'known');
  t.equal(v('PLAIN.example', k1), 'known', 'host names compare case-insensitively');
  t.equal(v('10.0.0.1', k1), 'known');
  t.equal(v('hashed.example', k1), 'known', 'hashed entry');
  t.equal(v('[10.0.0.2]:2222', k2), 'known', '[host]:port entry');
  t.equal(v('10.0.0.2', k2), 'unknown', 'port 22 is a different name than [host]:2222');
  t.equal(v('a.wild.example', k3), 'known', 'wildcard');
  t.equal(v('bad.wild.example', k3), 'unknown', 'negated pattern wins');
  t.equal(v('plain.example', k2), 'changed', 'same type, other key: changed');
  t.equal(v('hashed.example', k2), 'changed', 'hashed entry, other key: changed');
  t.equal(v('plain.example', k3), 'other-type', 'only other key types known');
  t.equal(v('rsaonly.example', k4), 'known', 'rsa');
  t.equal(v('revoked.example', k2), 'revoked', '@revoked wins over a plain line with the same key');
  t.equal(v('nobody.example', k1), 'unknown');
  const ca = checkHostKey(entries, 'x.ca.example', k1.blob);
  t.same(ca, { kind: 'unknown', caOnly: true }, '@cert-authority lines are ignored');

  t.match(hostKeyMessage(checkHostKey(entries, 'plain.example', k2.blob), 'plain.example', k2.blob, ['kh']), /REMOTE HOST IDENTIFICATION HAS CHANGED/);
  t.match(hostKeyMessage(checkHostKey(entries, 'plain.example', k2.blob), 'plain.example', k2.blob, ['kh']), /kh:3/, 'names the line');
  t.match(fingerprint(k1.blob), /^SHA256:[A-Za-z0-9+/]{43}$/);
  const fpOut = await run(['ssh-keygen', '-l', '-f', join(dir, 'k1.pub')]);
  t.ok(fpOut.stdout.includes(fingerprint(k1.blob)), 'fingerprint as ssh-keygen -l prints it');
});

t.test('hashed entries written by ssh-keygen -H are found', async (t) => {
  const dir = t.testdir();
  const k = await keygen(dir, 'ed25519', 'k');
  const file = join(dir, 'known_hosts');
  writeFileSync(file, `be1.example ${k.type} ${k.b64}\n[10.9.9.9]:2200 ${k.type} ${k.b64}\n`);
  await run(['ssh-keygen', '-q', '-H', '-f', file]);
  const text = readFileSync(file, 'utf8');
  t.notMatch(text, /be1\.example|10\.9\.9\.9/, 'names are hashed now');
  const { entries } = parseKnownHosts(text, file);
  t.equal(entries.length, 2);
  t.ok(entries.every((e) => e.hosts.kind === 'hashed'));
  t.equal(checkHostKey(entries, 'be1.example', k.blob).kind, 'known');
  t.equal(checkHostKey(entries, '[10.9.9.9]:2200', k.blob).kind, 'known');
  t.equal(checkHostKey(entries, '10.9.9.9', k.blob).kind, 'unknown');
});

t.test('hostMatches and globMatch', async (t) => {
  const salt = Buffer.alloc(20, 7);
  const h = createHmac('sha1', salt).update('host.example').digest();
  t.ok(hostMatches({ kind: 'hashed', salt, hash: h }, 'host.example'));
  t.ok(hostMatches({ kind: 'hashed', salt, hash: h }, 'HOST.example'), 'lowercased before hashing (as ssh does)');
  t.notOk(hostMatches({ kind: 'hashed', salt, hash: h }, 'host.example.'));
  t.ok(globMatch('*', ''));
  t.ok(globMatch('a*b*c', 'axxbyyc'));
  t.notOk(globMatch('a*b*c', 'axxbyy'));
  t.ok(globMatch('10.0.0.?', '10.0.0.7'));
  t.notOk(globMatch('10.0.0.?', '10.0.0.17'));
  t.ok(globMatch('[10.0.0.1]:*', '[10.0.0.1]:2222'), 'brackets are literal');
  // a pathological pattern must still answer quickly (bounded)
  const t0 = Date.now();
  t.notOk(globMatch(`${'*a'.repeat(200)}b`, 'a'.repeat(1000)));
  t.ok(Date.now() - t0 < 2000, 'pathological glob bounded');
});

t.test('KnownHosts: missing file, accept-new appends 0600, never over a changed key', async (t) => {
  const dir = t.testdir();
  const k1 = await keygen(dir, 'ed25519', 'k1');
  const k2 = await keygen(dir, 'ed25519', 'k2');
  const file = join(dir, 'sub', 'known_hosts');
  const kh = KnownHosts.load([file, join(dir, 'global_missing')]);
  t.equal(kh.check('10.0.0.5', k1.blob).kind, 'unknown', 'no file: unknown');
  kh.add('10.0.0.5', k1.blob);
  kh.add('10.0.0.5', k1.blob); // the same again: nothing new
  t.equal(kh.check('10.0.0.5', k1.blob).kind, 'known', 'known in memory at once');
  const st = statSync(file);
  t.equal(st.mode & 0o777, 0o600, 'created 0600');
  t.equal(statSync(join(dir, 'sub')).mode & 0o777, 0o700, 'directory created 0700');
  t.equal(readFileSync(file, 'utf8'), `10.0.0.5 ${k1.type} ${k1.b64}\n`, 'one plain line');
  t.throws(() => kh.add('10.0.0.5', k2.blob), { code: 'ERR_LB_SSH' }, 'a changed key is never added');
  const again = KnownHosts.load([file]);
  t.equal(again.check('10.0.0.5', k1.blob).kind, 'known', 'readable back');
  t.equal(again.check('10.0.0.5', k2.blob).kind, 'changed');
  // a file without a final newline gets one before the new line
  writeFileSync(file, `x.example ${k1.type} ${k1.b64}`);
  KnownHosts.load([file]).add('[10.0.0.6]:2222', k2.blob);
  t.equal(readFileSync(file, 'utf8'), `x.example ${k1.type} ${k1.b64}\n[10.0.0.6]:2222 ${k2.type} ${k2.b64}\n`);
  // host key algorithm preference: the known type first
  writeFileSync(file, `r.example ${k1.type} ${k1.b64}\n`);
  t.equal(KnownHosts.load([file]).preferredAlgorithms('r.example')[0], 'ssh-ed25519');
  const rsa = await keygen(dir, 'rsa', 'kr');
  writeFileSync(file, `r.example ${rsa.type} ${rsa.b64}\n`);
  t.same(KnownHosts.load([file]).preferredAlgorithms('r.example').slice(0, 3), ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
});
