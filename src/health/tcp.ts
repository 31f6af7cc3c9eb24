/**
 * TCP probe: the handshake completes, then the connection is closed with a RST. A RST instead of a
 * FIN leaves no TIME_WAIT behind on either side, which matters for the data-path check (it reuses
 * one fixed local port, and a 4-tuple in TIME_WAIT cannot connect again for a minute) and keeps a
 * busy LB from piling up TIME_WAIT sockets (HAProxy closes its checks the same way).
 */
import { connect, type Socket } from 'node:net';
import type { HealthCheck } from '../config/types.js';
import { bounded, errorDetail } from './bounded.js';
import { probePort, type Endpoint, type ProbeResult, type ProbeTarget } from './types.js';

/** Start a TCP connection to `ep`. The caller owns it: close it with closeTcp(). */
export function openTcp(ep: Endpoint): Socket {
  const sock = connect({
    host: ep.address,
    port: ep.port,
    ...(ep.localAddress === undefined ? {} : { localAddress: ep.localAddress }),
    ...(ep.localPort === undefined ? {} : { localPort: ep.localPort }),
  });
  // errors after the probe settled (a RST racing a late packet) must not crash the daemon
  sock.on('error', () => {});
  return sock;
}

/** RST a connected socket; a socket still connecting is destroyed (its SYN_SENT has no TIME_WAIT). */
export function closeTcp(sock: Socket): void {
  if (sock.destroyed) return;
  if (!sock.connecting && sock.readyState !== 'closed') {
    try {
      sock.resetAndDestroy();
      return;
    } catch {
      // not a TCP handle any more (closing): fall through
    }
  }
  sock.destroy();
}

export function tcpConnect(ep: Endpoint, timeoutMs: number, signal: AbortSignal): Promise<ProbeResult> {
  return bounded(signal, timeoutMs, (scope) => {
    const sock = openTcp(ep);
    scope.defer(() => closeTcp(sock));
    sock.once('connect', () => scope.finish(true, 'connected'));
    sock.once('error', (e) => scope.finish(false, errorDetail(e)));
  });
}

export function probeTcp(target: ProbeTarget, check: HealthCheck, signal: AbortSignal): Promise<ProbeResult> {
  return tcpConnect({ address: target.backend.address, port: probePort(target, check) }, check.timeoutMs, signal);
}
