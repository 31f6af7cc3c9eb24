/**
 * UDP probe. The socket is connected to the target, which is what makes ICMP errors visible: on a
 * connected UDP socket Linux reports ICMP port unreachable as ECONNREFUSED on the next receive or
 * send (an unconnected socket never hears of it without IP_RECVERR).
 *
 *  - expect 'reply': any datagram back before the timeout is success; silence is failure.
 *  - expect 'no-unreachable': silence until the timeout is success (most UDP services do not answer
 *    arbitrary payloads); an ICMP error is failure; a reply is success at once.
 */
import { createSocket } from 'node:dgram';
import { isIP } from 'node:net';
import type { HealthCheck } from '../config/types.js';
import { bounded, errorDetail } from './bounded.js';
import { probePort, type Endpoint, type ProbeResult, type ProbeTarget } from './types.js';

function udpError(e: unknown): string {
  return (e as NodeJS.ErrnoException).code === 'ECONNREFUSED' ? 'ICMP port unreachable' : errorDetail(e);
}

export function udpExchange(ep: Endpoint, check: HealthCheck, signal: AbortSignal): Promise<ProbeResult> {
  return bounded(signal, check.timeoutMs, (scope) => {
    const udp = check.udp;
    if (udp === undefined) {
      scope.finish(false, 'no udp settings in the check');
      return;
    }
    scope.onTimeout(() =>
      udp.expect === 'reply'
        ? { ok: false, detail: `no reply within ${check.timeoutMs} ms` }
        : { ok: true, detail: `no ICMP unreachable within ${check.timeoutMs} ms` },
    );
    const bound = ep.localPort !== undefined || ep.localAddress !== undefined;
    // the data-path check's fixed port may still be held by a socket that is closing
    const sock = createSocket({ type: isIP(ep.address) === 6 ? 'udp6' : 'udp4', reuseAddr: bound });
    scope.defer(() => sock.close());
    sock.on('error', (e) => scope.finish(false, udpError(e)));
    sock.on('message', (msg) => scope.finish(true, `reply, ${msg.length} bytes`));

    const start = (): void => {
      if (scope.settled) return;
      sock.connect(ep.port, ep.address, () => {
        if (scope.settled) return;
        sock.send(udp.payload, (e) => {
          if (e) scope.finish(false, udpError(e));
        });
      });
    };
    if (bound) sock.bind({ port: ep.localPort ?? 0, ...(ep.localAddress === undefined ? {} : { address: ep.localAddress }) }, start);
    else start();
  });
}

export function probeUdp(target: ProbeTarget, check: HealthCheck, signal: AbortSignal): Promise<ProbeResult> {
  return udpExchange({ address: target.backend.address, port: probePort(target, check) }, check, signal);
}
