/**
 * Running scripts/server-prep.sh on one host: over SSH (ssh2), or on this machine (`--local`). Both
 * send the script's text on stdin to `bash -s -- ARGS` (through `sudo -n` when not root), so nothing
 * needs to be installed on the host and local and remote runs behave the same.
 *
 * SSH: public keys only (ssh-agent and key files; never passwords or keyboard-interactive), host keys
 * verified against known_hosts before anything is sent (knownhosts.ts), a connect timeout that covers
 * TCP, key exchange and authentication, and a command timeout after which the channel is killed.
 * Nothing here throws for a host's failure: every way a host can fail becomes a `HostResult`.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import type { AnyAuthMethod, ClientChannel, ParsedKey } from 'ssh2';
import { LbError, isLbError } from '../errors.js';
import { knownHostsName, type HostSpec } from './hostspec.js';
import { fingerprint, hostKeyMessage, keyTypeOfBlob, type KnownHosts } from './knownhosts.js';
import { shJoin } from './quote.js';
import { classifyRun, cleanText, type Classified, type RawRun } from './script.js';

const { Client, utils } = ssh2;

/** What a host run ends in, before the runner adds host and timing. */
export type HostResult = Classified;

/** A key file, parsed once per run (its text is never logged or shown). */
export interface IdentityKey {
  file: string;
  key: ParsedKey;
}

export interface Credentials {
  /** ssh-agent socket, when one is used */
  agent?: string;
  keys: IdentityKey[];
}

export interface SshContext {
  credentials: Credentials;
  knownHosts: KnownHosts;
  /** record the key of a host that has none in known_hosts (never of one whose key changed) */
  acceptNew: boolean;
  /** TCP connect + key exchange + authentication. */
  connectTimeoutMs: number;
  /** the script, from the end of authentication to its exit */
  commandTimeoutMs: number;
  keepaliveIntervalMs?: number;
}

const MAX_OUTPUT = 1024 * 1024;
/** ssh's own default identities, tried when no -i is given (OpenSSH's order, minus DSA). */
const DEFAULT_IDENTITIES = ['id_ed25519', 'id_ecdsa', 'id_rsa'];

function parseIdentity(file: string, explicit: boolean): IdentityKey | null {
  let text: Buffer;
  try {
    text = readFileSync(file);
  } catch (e) {
    if (!explicit) return null;
    throw new LbError('ERR_LB_USAGE', `cannot read identity file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const parsed = utils.parseKey(text);
  const key = Array.isArray(parsed) ? (parsed[0] as ParsedKey | undefined) : parsed;
  if (key instanceof Error || key === undefined) {
    if (!explicit) return null;
    const encrypted = key instanceof Error && /encrypted|passphrase/i.test(key.message);
    throw new LbError('ERR_LB_USAGE', encrypted ? `identity file ${file} is protected by a passphrase` : `identity file ${file} is not a private key ssh2 can read`, {
      hint: encrypted ? 'load it into ssh-agent (ssh-add) and leave out -i; passphrases are never asked for' : 'use an OpenSSH private key (ssh-keygen -t ed25519)',
    });
  }
  if (!key.isPrivateKey()) {
    if (!explicit) return null;
    throw new LbError('ERR_LB_USAGE', `identity file ${file} holds a public key, not a private key`);
  }
  return { file, key };
}

/**
 * The keys a run authenticates with: the -i files (any problem with them is a usage error), the
 * agent at `agent` (default $SSH_AUTH_SOCK; false for none), and when no -i is given ssh's default
 * identity files that exist and are not passphrase-protected. None at all is a usage error.
 */
export function loadCredentials(opts: { identityFiles?: readonly string[]; agent?: string | false } = {}): Credentials {
  const explicit = opts.identityFiles ?? [];
  const keys = explicit.map((f) => parseIdentity(f, true)).filter((k): k is IdentityKey => k !== null);
  const agentSock = opts.agent === false ? undefined : (opts.agent ?? process.env['SSH_AUTH_SOCK']);
  const agent = agentSock && existsSync(agentSock) ? agentSock : undefined;
  if (explicit.length === 0) {
    for (const name of DEFAULT_IDENTITIES) {
      const k = parseIdentity(join(homedir(), '.ssh', name), false);
      if (k) keys.push(k);
    }
  }
  if (keys.length === 0 && agent === undefined) {
    throw new LbError('ERR_LB_USAGE', 'no SSH key to log in with', {
      hint: 'pass -i FILE (a private key without passphrase) or run ssh-agent with your key loaded (SSH_AUTH_SOCK)',
    });
  }
  return { ...(agent ? { agent } : {}), keys };
}

/**
 * `bash -s -- ARGV`, through `sudo -n` when not running as root (never a password prompt: it would
 * wait for input that is the script). The words, before quoting.
 */
export function scriptCommand(sudo: boolean, scriptArgs: readonly string[]): string[] {
  return [...(sudo ? ['sudo', '-n', '--'] : []), 'bash', '-s', '--', ...scriptArgs];
}

function authMethods(user: string, c: Credentials): AnyAuthMethod[] {
  const methods: AnyAuthMethod[] = [];
  if (c.agent) methods.push({ type: 'agent', username: user, agent: c.agent });
  for (const k of c.keys) methods.push({ type: 'publickey', username: user, key: k.key });
  return methods;
}

function describeCredentials(c: Credentials): string {
  const parts = [...(c.agent ? ['ssh-agent'] : []), ...c.keys.map((k) => k.file)];
  return parts.join(', ');
}

interface SshError extends Error {
  level?: string;
  code?: string;
}

/** Run the script on `host` over SSH. Never throws for the host's sake. */
export function runOverSsh(host: HostSpec, script: string, scriptArgs: readonly string[], ctx: SshContext): Promise<HostResult> {
  const name = knownHostsName(host.host, host.port);
  const where = host.port === 22 ? host.host : `${host.host} port ${host.port}`;
  const sudo = host.user !== 'root';
  const command = shJoin(scriptCommand(sudo, scriptArgs));
  const connectS = ctx.connectTimeoutMs / 1000;
  const commandS = ctx.commandTimeoutMs / 1000;

  return new Promise<HostResult>((resolve) => {
    const sock = new Socket();
    const client = new Client();
    let settled = false;
    let tcpConnected = false;
    let ready = false;
    let hostRefusal: string | undefined;
    let hostNote: string | undefined;
    let commandTimer: NodeJS.Timeout | undefined;
    const authNotes: string[] = [];

    const finish = (r: HostResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(guard);
      if (commandTimer) clearTimeout(commandTimer);
      if (hostNote) r = { ...r, detail: `${r.detail}; ${hostNote}` };
      try {
        client.end();
      } catch {
        /* already closed */
      }
      // end() waits for the peer; a dead or hostile one must not keep the socket (and us) alive.
      setTimeout(() => sock.destroy(), 1000).unref();
      resolve(r);
    };
    const fail = (status: HostResult['status'], detail: string): void => finish({ ok: false, status, detail: cleanText(detail) });

    // ssh2's readyTimeout covers the whole connect phase; this guard covers everything, in case a
    // phase we did not foresee hangs (it can only fire late, never early).
    const guard = setTimeout(() => {
      fail('timeout', `no result from ${where} within ${connectS + commandS + 5} s`);
      sock.destroy();
    }, ctx.connectTimeoutMs + ctx.commandTimeoutMs + 5000);

    sock.once('connect', () => {
      tcpConnected = true;
    });

    client.on('error', (err: SshError) => {
      if (settled) return;
      // Agent and signing errors are followed by the next authentication method: only note them.
      if (err.level === 'agent' || (err.level === 'client-authentication' && !/^All configured authentication methods failed/.test(err.message))) {
        authNotes.push(err.message);
        return;
      }
      if (err.level === 'client-authentication') {
        const tried = describeCredentials(ctx.credentials);
        fail('auth', `${host.user}@${where} accepted none of our keys (tried ${tried || 'nothing'}${authNotes.length ? `; ${authNotes.join('; ')}` : ''}); is the public key in ~${host.user}/.ssh/authorized_keys?`);
        return;
      }
      if (hostRefusal !== undefined) {
        fail('hostkey', hostRefusal);
        return;
      }
      if (err.level === 'client-timeout') {
        if (ready) fail('timeout', `${where} stopped answering (SSH keepalive timed out)`);
        else if (tcpConnected) fail('timeout', `connected to ${where}, but the SSH handshake and login did not finish within ${connectS} s`);
        else fail('timeout', `no answer from ${where} within ${connectS} s (connect timeout): host down, unreachable, or port ${host.port} filtered`);
        return;
      }
      if (err.level === 'client-socket') {
        switch (err.code) {
          case 'ECONNREFUSED':
            fail('refused', `connection refused by ${where} (is sshd running and listening on port ${host.port}?)`);
            return;
          case 'ETIMEDOUT':
            fail('timeout', `no answer from ${where} (TCP connect timed out)`);
            return;
          case 'EHOSTUNREACH':
          case 'ENETUNREACH':
            fail('failed', `${where} is unreachable (${err.code}: no route, or nothing answers ARP/ND for it)`);
            return;
          case 'ENOTFOUND':
          case 'EAI_AGAIN':
            fail('failed', `cannot resolve ${host.host} (${err.code})`);
            return;
          default:
            fail('failed', `connection to ${where} failed: ${err.code ?? ''} ${err.message}`);
            return;
        }
      }
      fail('failed', `${ready ? 'SSH connection' : 'SSH handshake'} with ${where} failed: ${err.message}`);
    });

    client.on('close', () => {
      if (!settled) fail('failed', `${where} closed the connection${ready ? ' before the command finished' : ' during the handshake'}`);
    });

    client.on('ready', () => {
      ready = true;
      client.exec(command, (err: Error | undefined, stream: ClientChannel) => {
        if (settled) return;
        if (err) {
          fail('failed', `${where} refused to run the command: ${err.message}`);
          return;
        }
        const out: Buffer[] = [];
        const errOut: Buffer[] = [];
        let outLen = 0;
        let errLen = 0;
        let code: number | null = null;
        let signal: string | null = null;
        commandTimer = setTimeout(() => {
          try {
            stream.signal('KILL');
          } catch {
            /* not every server takes signals */
          }
          stream.close();
          fail('timeout', `server-prep did not finish on ${where} within ${commandS} s (command timeout); it may still be running there, and its state file records what it changed`);
        }, ctx.commandTimeoutMs);
        stream.on('data', (b: Buffer) => {
          if (outLen < MAX_OUTPUT) out.push(b);
          outLen += b.length;
        });
        stream.stderr.on('data', (b: Buffer) => {
          if (errLen < MAX_OUTPUT) errOut.push(b);
          errLen += b.length;
        });
        stream.on('exit', (c: number | null, sig?: string) => {
          code = typeof c === 'number' ? c : null;
          signal = sig ?? null;
        });
        stream.on('error', (e: Error) => fail('failed', `channel error on ${where}: ${e.message}`));
        stream.on('close', () => {
          if (settled) return;
          const raw: RawRun = {
            stdout: Buffer.concat(out).toString('utf8'),
            stderr: Buffer.concat(errOut).toString('utf8'),
            code,
            signal,
          };
          finish(classifyRun(raw, sudo));
        });
        // The script arrives on stdin; EOF tells bash it has it all.
        stream.end(script);
      });
    });

    try {
      client.connect({
        sock,
        host: host.host,
        port: host.port,
        username: host.user,
        readyTimeout: ctx.connectTimeoutMs,
        keepaliveInterval: ctx.keepaliveIntervalMs ?? 5000,
        keepaliveCountMax: 3,
        tryKeyboard: false,
        authHandler: authMethods(host.user, ctx.credentials),
        algorithms: { serverHostKey: ctx.knownHosts.preferredAlgorithms(name) },
        hostVerifier: (key: Buffer): boolean => {
          const verdict = ctx.knownHosts.check(name, key);
          if (verdict.kind === 'known') return true;
          if (verdict.kind === 'unknown' && ctx.acceptNew) {
            try {
              ctx.knownHosts.add(name, key);
              hostNote = `new host key ${keyTypeOfBlob(key) ?? '?'} ${fingerprint(key)} added to ${ctx.knownHosts.files[0] ?? 'known_hosts'}`;
              return true;
            } catch (e) {
              hostRefusal = isLbError(e) ? e.message : String(e);
              return false;
            }
          }
          hostRefusal = hostKeyMessage(verdict, name, key, ctx.knownHosts.files);
          return false;
        },
      });
      sock.connect({ host: host.host, port: host.port });
    } catch (e) {
      fail('failed', `cannot start an SSH connection to ${where}: ${(e as Error).message}`);
    }
  });
}

/**
 * Run the script on this machine, the same way it runs on a host (`bash -s` with the text on stdin).
 * Its own process group, so the command timeout kills whatever it started too (a child left holding
 * stdout would otherwise keep us waiting past the timeout).
 */
export function runLocally(script: string, scriptArgs: readonly string[], commandTimeoutMs: number): Promise<HostResult> {
  const sudo = process.getuid?.() !== 0;
  const [file, ...args] = scriptCommand(sudo, scriptArgs);
  return new Promise<HostResult>((resolve) => {
    const child = spawn(file!, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const out: Buffer[] = [];
    const errOut: Buffer[] = [];
    let outLen = 0;
    let errLen = 0;
    let settled = false;
    const done = (r: HostResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
      done({ ok: false, status: 'timeout', detail: `server-prep did not finish on this machine within ${commandTimeoutMs / 1000} s (command timeout)` });
    }, commandTimeoutMs);
    child.stdout.on('data', (b: Buffer) => {
      if (outLen < MAX_OUTPUT) out.push(b);
      outLen += b.length;
    });
    child.stderr.on('data', (b: Buffer) => {
      if (errLen < MAX_OUTPUT) errOut.push(b);
      errLen += b.length;
    });
    child.stdin.on('error', () => {}); // a script that exits before reading all of stdin
    child.stdin.end(script);
    child.on('error', (e) => done({ ok: false, status: 'failed', detail: cleanText(`cannot run ${file}: ${e.message}`) }));
    child.on('close', (code, signal) => {
      const raw: RawRun = {
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(errOut).toString('utf8'),
        code,
        signal,
      };
      done(classifyRun(raw, sudo));
    });
  });
}
