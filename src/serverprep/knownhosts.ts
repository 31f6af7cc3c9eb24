/**
 * OpenSSH known_hosts, read and verified the way `ssh` does it (StrictHostKeyChecking=yes, or
 * accept-new when asked), so a host trusted by the operator's ssh is trusted here and nothing else is.
 *
 * Lines: `[@marker] hostpatterns keytype base64key [comment]`. Host patterns are a comma list with
 * `*`/`?` wildcards and `!` negation, or one hashed name `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`
 * (HashKnownHosts). A host on port 22 is looked up as `host`, elsewhere as `[host]:port`.
 * `@revoked` keys are refused; `@cert-authority` lines are ignored (host certificates are not
 * supported, so such a host counts as unknown). Keys are compared as the SSH wire blob, which is what
 * ssh2's hostVerifier receives and what the base64 field encodes.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import type { ServerHostKeyAlgorithm } from 'ssh2';
import { LbError } from '../errors.js';

export type HostPatterns =
  | { kind: 'hashed'; salt: Buffer; hash: Buffer }
  | { kind: 'patterns'; patterns: { negated: boolean; glob: string }[] };

export interface KnownHostEntry {
  file: string;
  /** 1-based */
  line: number;
  marker: 'revoked' | 'cert-authority' | null;
  hosts: HostPatterns;
  keyType: string;
  /** SSH wire-format public key */
  key: Buffer;
}

export interface KnownHostsProblem {
  file: string;
  line: number;
  reason: string;
}

export type HostKeyVerdict =
  /** the presented key is listed for this host */
  | { kind: 'known'; entry: KnownHostEntry }
  /** nothing is listed for this host (caOnly: only @cert-authority lines matched, which we ignore) */
  | { kind: 'unknown'; caOnly: boolean }
  /** keys of the presented type are listed for this host, and none is the presented one */
  | { kind: 'changed'; entries: KnownHostEntry[] }
  /** only keys of other types are listed for this host */
  | { kind: 'other-type'; entries: KnownHostEntry[] }
  /** the presented key is marked @revoked for this host */
  | { kind: 'revoked'; entry: KnownHostEntry };

// Bounds for hostile or broken files: a known_hosts line is a few hundred bytes, a pattern list short.
const MAX_FILE_BYTES = 16 * 1024 * 1024;
const MAX_LINE_CHARS = 64 * 1024;
const MAX_GLOB_CHARS = 1024;

/** The key type a wire blob names (its first SSH string), or null when the blob is malformed. */
export function keyTypeOfBlob(blob: Buffer): string | null {
  if (blob.length < 4) return null;
  const len = blob.readUInt32BE(0);
  if (len === 0 || len > 64 || 4 + len > blob.length) return null;
  const type = blob.subarray(4, 4 + len).toString('latin1');
  return /^[A-Za-z0-9@._+-]+$/.test(type) ? type : null;
}

/** `SHA256:...` as ssh-keygen -l prints it: public, safe to show. */
export function fingerprint(blob: Buffer): string {
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

function decodeBase64Strict(s: string): Buffer | null {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(s) || s.length % 4 !== 0) return null;
  return Buffer.from(s, 'base64');
}

function parseHosts(field: string): HostPatterns | string {
  if (field.startsWith('|')) {
    const m = /^\|1\|([^|]+)\|([^|]+)$/.exec(field);
    if (!m) return 'hashed host entry is not |1|salt|hash';
    const salt = decodeBase64Strict(m[1] ?? '');
    const hash = decodeBase64Strict(m[2] ?? '');
    if (!salt || !hash || hash.length !== 20) return 'hashed host entry has a bad salt or hash';
    return { kind: 'hashed', salt, hash };
  }
  const patterns: { negated: boolean; glob: string }[] = [];
  for (const p of field.split(',')) {
    if (p === '' || p === '!') continue;
    const negated = p.startsWith('!');
    const glob = (negated ? p.slice(1) : p).toLowerCase();
    if (glob.length > MAX_GLOB_CHARS) return 'host pattern too long';
    patterns.push({ negated, glob });
  }
  if (patterns.length === 0) return 'no host pattern';
  return { kind: 'patterns', patterns };
}

/** Parse one file's text. Bad lines are reported and skipped, like ssh does. */
export function parseKnownHosts(text: string, file = 'known_hosts'): { entries: KnownHostEntry[]; problems: KnownHostsProblem[] } {
  const entries: KnownHostEntry[] = [];
  const problems: KnownHostsProblem[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = (lines[i] ?? '').replace(/\r$/, '');
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.length > MAX_LINE_CHARS) {
      problems.push({ file, line: lineNo, reason: 'line too long' });
      continue;
    }
    const fields = line.split(/[ \t]+/);
    let marker: KnownHostEntry['marker'] = null;
    if (fields[0]?.startsWith('@')) {
      const m = fields.shift();
      if (m === '@revoked') marker = 'revoked';
      else if (m === '@cert-authority') marker = 'cert-authority';
      else {
        problems.push({ file, line: lineNo, reason: `unknown marker ${m}` });
        continue;
      }
    }
    const [hostField, keyType, keyB64] = fields;
    if (hostField === undefined || keyType === undefined || keyB64 === undefined) {
      problems.push({ file, line: lineNo, reason: 'want: hostpatterns keytype base64key' });
      continue;
    }
    const hosts = parseHosts(hostField);
    if (typeof hosts === 'string') {
      problems.push({ file, line: lineNo, reason: hosts });
      continue;
    }
    const key = decodeBase64Strict(keyB64);
    if (!key) {
      problems.push({ file, line: lineNo, reason: 'key is not base64' });
      continue;
    }
    const blobType = keyTypeOfBlob(key);
    if (blobType !== keyType) {
      problems.push({ file, line: lineNo, reason: `key type ${keyType} does not match the key (${blobType ?? 'unreadable'})` });
      continue;
    }
    entries.push({ file, line: lineNo, marker, hosts, keyType, key });
  }
  return { entries, problems };
}

/** `*` and `?` wildcards, linear in practice: on a mismatch only the last `*` is retried further on. */
export function globMatch(glob: string, text: string): boolean {
  let g = 0;
  let t = 0;
  let starG = -1;
  let starT = 0;
  // Each retry from the last `*` starts one character further on: at most (|g|+2)*(|t|+2) steps.
  const maxSteps = (glob.length + 2) * (text.length + 2);
  for (let steps = 0; steps < maxSteps; steps++) {
    if (t < text.length && g < glob.length && (glob[g] === '?' || glob[g] === text[t])) {
      g++;
      t++;
    } else if (g < glob.length && glob[g] === '*') {
      starG = g++;
      starT = t;
    } else if (t < text.length && starG >= 0) {
      g = starG + 1;
      t = ++starT;
    } else if (t >= text.length) {
      while (g < glob.length && glob[g] === '*') g++;
      return g === glob.length;
    } else {
      return false;
    }
  }
  return false;
}

/** Whether an entry's host patterns select `name` (a negated match excludes it whatever else matches). */
export function hostMatches(hosts: HostPatterns, name: string): boolean {
  const n = name.toLowerCase();
  if (hosts.kind === 'hashed') {
    const h = createHmac('sha1', hosts.salt).update(n).digest();
    return timingSafeEqual(h, hosts.hash);
  }
  let positive = false;
  for (const p of hosts.patterns) {
    if (globMatch(p.glob, n)) {
      if (p.negated) return false;
      positive = true;
    }
  }
  return positive;
}

/** Decide about the key a host presented, from the entries of every known_hosts file. */
export function checkHostKey(entries: readonly KnownHostEntry[], name: string, key: Buffer): HostKeyVerdict {
  const mine = entries.filter((e) => hostMatches(e.hosts, name));
  const revoked = mine.find((e) => e.marker === 'revoked' && e.key.equals(key));
  if (revoked) return { kind: 'revoked', entry: revoked };
  const plain = mine.filter((e) => e.marker === null);
  const same = plain.find((e) => e.key.equals(key));
  if (same) return { kind: 'known', entry: same };
  if (plain.length === 0) return { kind: 'unknown', caOnly: mine.some((e) => e.marker === 'cert-authority') };
  const type = keyTypeOfBlob(key);
  const sameType = plain.filter((e) => e.keyType === type);
  if (sameType.length > 0) return { kind: 'changed', entries: sameType };
  return { kind: 'other-type', entries: plain };
}

/** ssh2's host key algorithms, and which of them a known_hosts key type can be verified with. */
const ALL_HOST_KEY_ALGORITHMS: readonly ServerHostKeyAlgorithm[] = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-512',
  'rsa-sha2-256',
  'ssh-rsa',
];

function algorithmsFor(keyType: string): string[] {
  return keyType === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [keyType];
}

function where(e: KnownHostEntry): string {
  return `${e.file}:${e.line}`;
}

/** A message for every verdict but `known`, in the spirit of ssh's (the changed-key one as loud). */
export function hostKeyMessage(verdict: HostKeyVerdict, name: string, key: Buffer, files: readonly string[]): string {
  const type = keyTypeOfBlob(key) ?? 'unknown-type';
  const fp = fingerprint(key);
  const file = files[0] ?? '~/.ssh/known_hosts';
  switch (verdict.kind) {
    case 'known':
      return `host key ${type} ${fp} matches ${where(verdict.entry)}`;
    case 'unknown':
      return (
        `host key for ${name} is not known (${type} ${fp}${verdict.caOnly ? '; only @cert-authority lines match, and host certificates are not supported' : ''}); ` +
        `nothing was run. Check the fingerprint on the host (ssh-keygen -lf /etc/ssh/ssh_host_${type.replace(/^ssh-|-sha2-.*$/g, '')}_key.pub), ` +
        `then add it to ${file} or rerun with --accept-new`
      );
    case 'changed': {
      const lines = verdict.entries.map(where).join(', ');
      return (
        `WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED for ${name}! ` +
        `It presented ${type} ${fp}, but ${lines} lists a different ${type} key. ` +
        `Someone could be eavesdropping on you right now (man-in-the-middle), or the host key was just replaced. ` +
        `Refusing to connect (--accept-new never overrides a changed key); if the change is expected, ` +
        `remove the old key (ssh-keygen -R '${name}' -f ${file}) and connect again`
      );
    }
    case 'other-type': {
      const types = [...new Set(verdict.entries.map((e) => e.keyType))].join(', ');
      return (
        `host ${name} presented a ${type} key (${fp}), but known_hosts lists only ${types} keys for it ` +
        `(${verdict.entries.map(where).join(', ')}); refusing: verify the new key on the host and add it by hand`
      );
    }
    case 'revoked':
      return `host key ${type} ${fp} of ${name} is marked @revoked (${where(verdict.entry)}); refusing to connect`;
  }
}

/**
 * The known_hosts files of one run: read once, consulted for every connection, and (accept-new)
 * appended to, so two connections to the same new host in one run record it once.
 */
export class KnownHosts {
  private readonly entries: KnownHostEntry[];
  readonly problems: KnownHostsProblem[];

  /** files[0] is the user's file (written by accept-new); the others are only read. */
  private constructor(readonly files: readonly string[], entries: KnownHostEntry[], problems: KnownHostsProblem[]) {
    this.entries = entries;
    this.problems = problems;
  }

  static load(files: readonly string[]): KnownHosts {
    if (files.length === 0) throw new LbError('ERR_LB_USAGE', 'no known_hosts file given');
    const entries: KnownHostEntry[] = [];
    const problems: KnownHostsProblem[] = [];
    for (const file of files) {
      let text: string;
      try {
        text = readCapped(file);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') continue; // no file yet: every host is unknown
        throw new LbError('ERR_LB_SSH', `cannot read ${file}: ${(e as Error).message}`, { cause: e, ...(code ? { errno: code } : {}) });
      }
      const r = parseKnownHosts(text, file);
      entries.push(...r.entries);
      problems.push(...r.problems);
    }
    return new KnownHosts(files, entries, problems);
  }

  check(name: string, key: Buffer): HostKeyVerdict {
    return checkHostKey(this.entries, name, key);
  }

  /**
   * Host key algorithms to offer, the ones we hold keys for first (as ssh does), so a host with
   * several keys presents one we can verify instead of looking "changed".
   */
  preferredAlgorithms(name: string): ServerHostKeyAlgorithm[] {
    const known = this.entries.filter((e) => e.marker === null && hostMatches(e.hosts, name)).flatMap((e) => algorithmsFor(e.keyType));
    const first = ALL_HOST_KEY_ALGORITHMS.filter((a) => known.includes(a));
    return [...first, ...ALL_HOST_KEY_ALGORITHMS.filter((a) => !first.includes(a))];
  }

  /** accept-new: record the key of a host that had none (never call it for any other verdict). */
  add(name: string, key: Buffer): void {
    const type = keyTypeOfBlob(key);
    if (type === null) throw new LbError('ERR_LB_SSH', `host ${name} presented a malformed key`);
    const verdict = this.check(name, key);
    if (verdict.kind === 'known') return;
    if (verdict.kind !== 'unknown') {
      throw new LbError('ERR_LB_SSH', `refusing to add a key for ${name}: ${verdict.kind}`);
    }
    const file = this.files[0];
    if (file === undefined) throw new LbError('ERR_LB_SSH', 'no known_hosts file to write to');
    const line = `${name} ${type} ${key.toString('base64')}\n`;
    try {
      appendLine(file, line);
    } catch (e) {
      throw new LbError('ERR_LB_SSH', `cannot record the host key of ${name} in ${file}: ${(e as Error).message}`, { cause: e });
    }
    const parsed = parseKnownHosts(line, file);
    this.entries.push(...parsed.entries);
  }
}

function readCapped(file: string): string {
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size > MAX_FILE_BYTES) throw new Error(`larger than ${MAX_FILE_BYTES} bytes`);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** Append one line; the file is created 0600 (and ~/.ssh 0700) when missing, as ssh does. */
function appendLine(file: string, line: string): void {
  const dir = dirname(file);
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  const fd = openSync(file, 'a+', 0o600);
  try {
    const size = fstatSync(fd).size;
    let prefix = '';
    if (size > 0) {
      const last = Buffer.alloc(1);
      readSync(fd, last, 0, 1, size - 1);
      if (last[0] !== 0x0a) prefix = '\n';
    }
    writeSync(fd, prefix + line);
  } finally {
    closeSync(fd);
  }
}
