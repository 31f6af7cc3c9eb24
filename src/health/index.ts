/**
 * Health checking: whether each backend of each service should get new flows.
 *
 *   probes      tcp.ts http.ts (http, https) udp.ts exec.ts: `(target, check, signal) => ProbeResult`,
 *               each bounded by the check's timeout, abortable, leaving no socket, timer or process
 *   state.ts    rise/fall state machine (unknown, up, down), pure
 *   jitter.ts   when probes run
 *   datapath.ts the data-path check for DSR services, and one check cycle (plain + data path)
 *   datapath-routes.ts  the policy routing the data-path check needs (l2dsr)
 *   monitor.ts  HealthMonitor: the loops, set()/stop(), events
 *   probe-once.ts  command-line entry: one check, or a monitor, in the current network namespace
 *
 * Data flows one way: the monitor emits transitions, the daemon decides what they mean for the
 * data path (including what `unknown` means; see state.ts) and logs them. Nothing here writes
 * maps or logs.
 *
 * The data-path check (datapath.ts has the why): l2dsr is covered; ipip runs the plain check only
 * for now, with a notice, because this lab's kernel has no ipip driver to build and test it on.
 */
export type { Endpoint, HealthBackend, HealthService, HealthTarget, Probe, ProbeResult, ProbeTarget } from './types.js';
export { probePort } from './types.js';
export { probeTcp, tcpConnect } from './tcp.js';
export { probeHttp, httpRequest, defaultHost, formatRanges, statusInRanges, BODY_LIMIT } from './http.js';
export { probeUdp, udpExchange } from './udp.js';
export { probeExec, execEnv, STDERR_TAIL_BYTES } from './exec.js';
export { HISTORY_LENGTH, initialStatus, observe, type HealthState, type HealthStatus, type Thresholds, type Transition } from './state.js';
export { firstDelay, nextDelay, type Random } from './jitter.js';
export { ipipNote, planDatapath, plainProbe, probeDatapath, runCheck, type CheckResult, type DatapathPlan } from './datapath.js';
export {
  DatapathRoutes,
  pairKey,
  DEFAULT_PORT_BASE,
  DEFAULT_RULE_PRIORITY,
  DEFAULT_SLOTS,
  DEFAULT_TABLE_BASE,
  type DatapathEntry,
  type DatapathPair,
  type DatapathRoutesOptions,
  type DatapathSlot,
  type IpRoute,
  type RuleInfo,
} from './datapath-routes.js';
export {
  HealthMonitor,
  type CheckFn,
  type HealthEvents,
  type HealthMonitorOptions,
  type HealthNotice,
  type HealthProbeEvent,
  type HealthSnapshot,
  type HealthTransition,
} from './monitor.js';
