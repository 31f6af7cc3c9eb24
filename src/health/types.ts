/**
 * Shapes shared by the probes, the state machine and the monitor. The check itself is the
 * normalized `HealthCheck` of src/config/types.ts; nothing here re-reads the config file.
 */
import type { HealthCheck, Mode, Proto } from '../config/types.js';

/** One probe's outcome. `detail` is short and meant for people (`connect ECONNREFUSED`). */
export interface ProbeResult {
  ok: boolean;
  /** wall time the probe took, in milliseconds (0.1 ms resolution) */
  ms: number;
  detail: string;
}

export interface HealthService {
  name: string;
  vip: string;
  port: number;
  proto: Proto;
  mode: Mode;
}

export interface HealthBackend {
  address: string;
  /** nat only: the backend's port when it differs from the service's */
  port?: number;
}

/** What the monitor watches: one backend of one service, under a caller-chosen unique key. */
export interface HealthTarget {
  key: string;
  service: HealthService;
  backend: HealthBackend;
  check: HealthCheck;
}

/** What a probe needs to know about its target (a HealthTarget is one). */
export type ProbeTarget = Pick<HealthTarget, 'service' | 'backend'>;

export type Probe = (target: ProbeTarget, check: HealthCheck, signal: AbortSignal) => Promise<ProbeResult>;

/**
 * Where a probe connects, and from where. The plain check connects to the backend's address from
 * wherever the kernel likes; the data-path check connects to the VIP from a fixed local address
 * and port, so that one policy-routing rule steers exactly its packets (see datapath-routes.ts).
 */
export interface Endpoint {
  address: string;
  port: number;
  localAddress?: string;
  localPort?: number;
}

/** The port a check probes: its own, else the backend's (nat), else the service's. */
export function probePort(target: ProbeTarget, check: HealthCheck): number {
  return check.port ?? target.backend.port ?? target.service.port;
}
