/**
 * Host specs as operators type them for ssh-like tools: `[user@]host[:port]`, with an IPv6 address in
 * brackets when a port or user follows (`root@[2001:db8::1]:2222`); a bare IPv6 address (more than one
 * colon, no brackets) is taken whole, with port 22. Everything is validated here, once: the host ends
 * up in known_hosts lines and in messages, so no whitespace, quotes or control characters get through.
 */
import { isIP } from 'node:net';
import { userInfo } from 'node:os';
import { LbError } from '../errors.js';

export interface HostSpec {
  /** what the operator wrote (shown in tables and progress) */
  spec: string;
  user: string;
  /** name or address, without brackets */
  host: string;
  port: number;
}

export const DEFAULT_SSH_PORT = 22;

// Labels of letters, digits, '-' and '_' (seen in internal names), not starting or ending with '-'.
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;
// POSIX portable user names (useradd's default rule), with the Samba-style trailing '$'.
const USER = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/;

export function validUser(user: string): boolean {
  return USER.test(user);
}

export function validHost(host: string): boolean {
  return isIP(host) !== 0 || HOSTNAME.test(host);
}

/** The login name used when a spec has no `user@`: the user running this process. */
export function currentUser(): string {
  try {
    return userInfo().username;
  } catch {
    return process.env['USER'] ?? 'root';
  }
}

function bad(spec: string, why: string): LbError {
  return new LbError('ERR_LB_USAGE', `host ${JSON.stringify(spec)}: ${why}`, {
    hint: 'write hosts as [user@]host[:port], IPv6 as [addr] or [addr]:port',
  });
}

export function parseHostSpec(spec: string, defaults: { user?: string; port?: number } = {}): HostSpec {
  if (spec.length === 0 || spec.length > 300) throw bad(spec, 'empty or too long');
  if (/[\s\x00-\x1f\x7f'"\\`$;&|<>(){}*?!]/.test(spec)) {
    throw bad(spec, 'contains whitespace, a control character or a shell/glob character');
  }
  let user = defaults.user ?? currentUser();
  let rest = spec;
  const at = spec.indexOf('@');
  if (at >= 0) {
    user = spec.slice(0, at);
    rest = spec.slice(at + 1);
    if (rest.includes('@')) throw bad(spec, "more than one '@'");
  }
  if (!validUser(user)) throw bad(spec, `${JSON.stringify(user)} is not a valid user name`);

  let host: string;
  let portText: string | undefined;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) throw bad(spec, "'[' without ']'");
    host = rest.slice(1, close);
    const after = rest.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) throw bad(spec, "only ':port' may follow ']'");
      portText = after.slice(1);
    }
  } else if ((rest.match(/:/g) ?? []).length > 1) {
    host = rest; // a bare IPv6 address
  } else {
    const colon = rest.indexOf(':');
    host = colon < 0 ? rest : rest.slice(0, colon);
    portText = colon < 0 ? undefined : rest.slice(colon + 1);
  }
  if (!validHost(host)) throw bad(spec, `${JSON.stringify(host)} is not a host name or IP address`);

  let port = defaults.port ?? DEFAULT_SSH_PORT;
  if (portText !== undefined) {
    if (!/^[0-9]{1,5}$/.test(portText)) throw bad(spec, `port ${JSON.stringify(portText)} is not a number`);
    port = Number(portText);
  }
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad(spec, `port ${port} is not in 1..65535`);
  return { spec, user, host, port };
}

/** The name OpenSSH looks a host up by in known_hosts: `host`, or `[host]:port` off port 22. */
export function knownHostsName(host: string, port: number): string {
  const h = host.toLowerCase();
  return port === DEFAULT_SSH_PORT ? h : `[${h}]:${port}`;
}

/** One key per distinct login (same user, host and port): the same host given twice runs once. */
export function hostKey(h: HostSpec): string {
  return `${h.user}@${knownHostsName(h.host, h.port)}`;
}
