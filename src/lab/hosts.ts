/**
 * How lab code reaches a lab host. One interface, `HostRunner.exec(host, argv)`, with three
 * transports, so the same checks run against namespaces and against machines:
 *
 *  - NetnsRunner: `ip netns exec <prefix><host> argv...` (the namespace lab, lab.ts);
 *  - LocalRunner: argv on this machine (code that runs ON a lab machine, e.g. the LB VM);
 *  - SshRunner:   `ssh -F <config> <host> 'argv...'` (the Vagrant lab: `vagrantSshRunner` takes the
 *                 config from `vagrant ssh-config`; any OpenSSH config works, ProxyCommand included).
 *
 * `host` is a topology host name (client, lb, l2be1 ...). Output, status, timeouts and errors are
 * those of exec.ts (`ExecResult`, `LbError`); stdin (`opts.input`) reaches the remote command.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LbError } from '../errors.js';
import { exec, run, type ExecOptions, type ExecResult } from './exec.js';
import { shJoin } from '../serverprep/quote.js';

export interface HostRunner {
  /** the transport, for reports: netns, local, ssh */
  readonly via: string;
  exec(host: string, argv: readonly string[], opts?: ExecOptions): Promise<ExecResult>;
  /** release what the runner holds (a temporary ssh config); idempotent */
  close(): void;
}

/** Hosts are network namespaces named `<prefix><host>`; the default prefix '' takes names as they are. */
export class NetnsRunner implements HostRunner {
  readonly via = 'netns';
  constructor(readonly prefix = '') {}
  exec(host: string, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return exec(`${this.prefix}${host}`, argv, opts);
  }
  close(): void {}
}

/** Every host is this machine (run on the lab machine itself). */
export class LocalRunner implements HostRunner {
  readonly via = 'local';
  exec(_host: string, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return run(argv, opts);
  }
  close(): void {}
}

export interface SshRunnerOptions {
  /** OpenSSH client config naming every host (`Host client` ...), e.g. from `vagrant ssh-config` */
  configFile: string;
  /** run remote commands through `sudo -n` (the Vagrant user is not root). Default false. */
  sudo?: boolean;
  /** ssh connect timeout in seconds. Default 15. */
  connectTimeoutSec?: number;
  /** a file or directory written for this runner, removed on close() */
  removeOnClose?: string;
}

/** ssh's own exit status for "could not connect / authenticate": never a remote command's. */
const SSH_FAILED = 255;

export class SshRunner implements HostRunner {
  readonly via = 'ssh';
  private closed = false;
  constructor(private readonly o: SshRunnerOptions) {}

  async exec(host: string, argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    if (!/^[A-Za-z0-9][\w.-]*$/.test(host)) throw new LbError('ERR_LB_USAGE', `invalid host name ${JSON.stringify(host)}`);
    const remote = shJoin([...(this.o.sudo ? ['sudo', '-n'] : []), ...argv]);
    const ssh = [
      'ssh', '-F', this.o.configFile, '-T',
      '-o', 'BatchMode=yes', '-o', `ConnectTimeout=${this.o.connectTimeoutSec ?? 15}`,
      host, '--', remote,
    ];
    // allowFail is decided here, after telling ssh's own failure from the command's.
    const r = await run(ssh, { ...opts, allowFail: true, code: 'ERR_LB_EXEC' });
    if (r.status === SSH_FAILED) {
      throw new LbError('ERR_LB_SSH', `ssh to ${host} failed: ${r.stderr.trim().split('\n').pop() ?? ''}`, {
        detail: r.stderr.trim() || undefined,
        hint: `is the machine up? try: ssh -F ${this.o.configFile} ${host} true`,
      });
    }
    if (r.status !== 0 && !opts.allowFail) {
      throw new LbError(opts.code ?? 'ERR_LB_EXEC', `command failed on ${host} (exit status ${r.status ?? r.signal ?? '?'}): ${remote}`, {
        detail: r.stderr.trim() || undefined,
      });
    }
    return r;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.o.removeOnClose) rmSync(this.o.removeOnClose, { recursive: true, force: true });
  }
}

/**
 * An SshRunner for the machines of the Vagrantfile in `vagrantDir`: asks `vagrant ssh-config` for
 * `hosts` (they must be up) and keeps the answer in a private temporary file until close().
 */
export async function vagrantSshRunner(vagrantDir: string, hosts: readonly string[], opts: { sudo?: boolean } = {}): Promise<SshRunner> {
  // VAGRANT_CWD instead of a working directory: run() has no cwd, and `env` is POSIX.
  const r = await run(['env', `VAGRANT_CWD=${vagrantDir}`, 'vagrant', 'ssh-config', ...hosts], {
    allowFail: true,
    timeoutMs: 120_000,
  });
  if (r.status !== 0) {
    throw new LbError('ERR_LB_SSH', `vagrant ssh-config ${hosts.join(' ')} failed (exit status ${r.status ?? '?'})`, {
      detail: r.stderr.trim() || undefined,
      hint: `bring the lab up first: cd ${vagrantDir} && vagrant up`,
    });
  }
  const dir = mkdtempSync(join(tmpdir(), 'xdplb-ssh-'));
  const configFile = join(dir, 'config');
  writeFileSync(configFile, r.stdout, { mode: 0o600 });
  return new SshRunner({ configFile, sudo: opts.sudo ?? false, removeOnClose: dir });
}
