/**
 * The normalized configuration: what the schema (src/config/schema.ts) produces from a YAML or
 * JSON file once every default is filled in and every cross-check has passed. The daemon, the
 * health checker and lbctl only ever see this shape, never the raw file. Durations are
 * milliseconds here; the file spells them with a unit ("2s", "500ms").
 */

export type Mode = 'l2dsr' | 'ipip' | 'nat';
export type Proto = 'tcp' | 'udp';
export type XdpMode = 'native' | 'generic';
export type HealthType = 'none' | 'tcp' | 'http' | 'https' | 'udp' | 'exec';

/** A range of acceptable HTTP status codes, both ends included. */
export interface StatusRange {
  from: number;
  to: number;
}

export interface HealthCheck {
  type: HealthType;
  /** between the end of one probe and the start of the next, before jitter */
  intervalMs: number;
  timeoutMs: number;
  /** consecutive successes that bring a down (or unknown) backend up */
  rise: number;
  /** consecutive failures that take an up backend down */
  fall: number;
  /** each interval is stretched or shrunk by up to this fraction (0..0.5) so probes spread out */
  jitter: number;
  /** probe this port instead of the backend's service port */
  port?: number;
  /** http/https */
  http?: {
    method: 'GET' | 'HEAD' | 'POST' | 'OPTIONS';
    path: string;
    /** Host header; default the backend's address */
    host?: string;
    expect: StatusRange[];
    /** the body must contain this string */
    bodyContains?: string;
    /** https only: accept any certificate. Off unless asked for. */
    insecure: boolean;
  };
  /** udp: send payload; 'reply' needs an answer, 'no-unreachable' passes unless ICMP port unreachable comes back */
  udp?: {
    payload: Buffer;
    expect: 'reply' | 'no-unreachable';
  };
  /** exec: argv run without a shell; env XDPLB_BACKEND, XDPLB_PORT, XDPLB_VIP, XDPLB_SERVICE set */
  exec?: {
    command: string[];
  };
  /**
   * DSR services only: also probe VIP:port the way the data path delivers it (see src/health),
   * so a backend that answers on its own address but lacks the VIP is taken down.
   */
  datapath: boolean;
}

export interface Backend {
  address: string;
  /** 0 = drain: no new flows, established flows continue */
  weight: number;
  /** nat only: the backend's port when it differs from the VIP's */
  port?: number;
  /** l2dsr only: the backend's MAC; resolved from the neighbour table when absent */
  mac?: string;
  /** the service's check with this backend's overrides applied */
  healthCheck: HealthCheck;
}

export interface Service {
  /** unique name; default `${vip}:${port}/${proto}` */
  name: string;
  vip: string;
  port: number;
  proto: Proto;
  mode: Mode;
  /** hash the client address only (client persistence) */
  hashSourceOnly: boolean;
  /** nat only: also rewrite the source to an LB address and port (works when the LB is not the backends' gateway) */
  fullNat: boolean;
  /** new flows when no backend is usable: drop them, or pass them to the local stack */
  onAllDown: 'drop' | 'pass';
  healthCheck: HealthCheck;
  backends: Backend[];
}

export interface NodeSettings {
  /** interfaces the balancer attaches to */
  interfaces: string[];
  xdpMode: XdpMode;
  /** bpffs directory for the pinned maps and links, e.g. /sys/fs/bpf/xdplb */
  bpffs: string;
  /** Maglev table size per service (a prime) */
  ringSize: number;
  maxServices: number;
  /** flow-table buckets, a power of two; 4 flows each */
  flowBuckets: number;
  /** hash seed: the same on every LB node */
  seed: number;
  /** a flow not seen for this long stops counting as active (list, drain --wait, metrics) */
  flowIdleTimeoutMs: number;
  /**
   * outer source for ipip (ipv4 for IPv4 backends, ipv6 for IPv6 backends) and the default full-NAT
   * source; default: the first interface's first address (IPv6: its first global one)
   */
  sourceAddress?: { ipv4?: string; ipv6?: string };
  api: { socket: string };
  /** Prometheus endpoint; absent = off */
  metrics?: { listen: string; port: number };
  log: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' };
  /** NAT mode (bpf/lib/nat.h, src/dataplane/nat.ts) */
  nat: {
    /**
     * full-NAT source addresses (the LB's own), either family, at most 4 of each. Per family, when
     * the list has none of it: sourceAddress.ipv4/ipv6, else the first interface's address.
     */
    sources?: string[];
    portMin: number;
    portMax: number;
    /** connection-table entries (two per connection); fixed for the life of the pins */
    entries: number;
    /** the same for IPv6 connections (their own table, nat6_conns) */
    entries6: number;
    sweepIntervalMs: number;
    timeoutsMs: { tcpNew: number; tcpEstablished: number; tcpClosing: number; udp: number };
  };
  /** run scripts/server-prep.sh over SSH on every DSR backend (src/serverprep); absent = never */
  serverPrep?: {
    /** at start and after every config change */
    auto: boolean;
    /** SSH user; default the daemon's (root); others use sudo -n */
    user?: string;
    /** private key; default ssh-agent, then ~/.ssh/id_* */
    identityFile?: string;
    /** default ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts */
    knownHosts?: string;
    /** record unknown host keys (never a changed one), like ssh -o StrictHostKeyChecking=accept-new */
    acceptNew: boolean;
    connectTimeoutMs: number;
    timeoutMs: number;
    concurrency: number;
  };
}

export interface Config {
  node: NodeSettings;
  services: Service[];
}

/** The key a service is known by in the data path and in lbctl: `VIP:PORT/PROTO` ([VIP]:PORT/PROTO for IPv6). */
export function serviceKeyString(s: { vip: string; port: number; proto: Proto }): string {
  return s.vip.includes(':') ? `[${s.vip}]:${s.port}/${s.proto}` : `${s.vip}:${s.port}/${s.proto}`;
}
