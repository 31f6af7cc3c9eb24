/**
 * HTTP and HTTPS probes: one request on a fresh connection (no agent, nothing pooled), the status
 * must fall in one of the expected ranges, and the body, when asked, must contain a string within
 * its first 64 KiB.
 *
 * node:http runs the exchange over a socket we open ourselves (`createConnection`), TLS layered on
 * it for https. Holding the raw TCP socket lets the probe end with a RST (see tcp.ts) and lets the
 * data-path check bind the fixed local address and port its routing rule matches. The request
 * says `Connection: keep-alive` so the server does not close first: a server-side TIME_WAIT on the
 * data-path check's fixed 4-tuple could refuse the next probe's SYN.
 */
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import type { HealthCheck, StatusRange } from '../config/types.js';
import { bounded, errorDetail } from './bounded.js';
import { closeTcp, openTcp } from './tcp.js';
import { probePort, type Endpoint, type ProbeResult, type ProbeTarget } from './types.js';

export const BODY_LIMIT = 64 * 1024;
const USER_AGENT = 'xdplb-health';

export function formatRanges(ranges: readonly StatusRange[]): string {
  return ranges.map((r) => (r.from === r.to ? `${r.from}` : `${r.from}-${r.to}`)).join(',');
}

export function statusInRanges(status: number, ranges: readonly StatusRange[]): boolean {
  return ranges.some((r) => status >= r.from && status <= r.to);
}

/** The Host header curl would send: the address (IPv6 in brackets), with the port unless it is the scheme's default. */
export function defaultHost(address: string, port: number, tls: boolean): string {
  const host = isIP(address) === 6 ? `[${address}]` : address;
  return port === (tls ? 443 : 80) ? host : `${host}:${port}`;
}

/** The name a certificate must carry: the Host header's host part (without port or brackets). */
function hostName(hostHeader: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(hostHeader);
  if (bracketed?.[1] !== undefined) return bracketed[1];
  const i = hostHeader.lastIndexOf(':');
  return i > 0 && hostHeader.indexOf(':') === i ? hostHeader.slice(0, i) : hostHeader;
}

function quoteShort(s: string): string {
  return JSON.stringify(s.length > 40 ? `${s.slice(0, 40)}…` : s);
}

export function httpRequest(ep: Endpoint, check: HealthCheck, tls: boolean, signal: AbortSignal): Promise<ProbeResult> {
  return bounded(signal, check.timeoutMs, (scope) => {
    const http = check.http;
    if (http === undefined) {
      scope.finish(false, 'no http settings in the check');
      return;
    }
    const hostHeader = http.host ?? defaultHost(ep.address, ep.port, tls);
    const identity = hostName(hostHeader);
    let phase = 'connecting';
    scope.onTimeout(() => ({ ok: false, detail: `timeout after ${check.timeoutMs} ms (${phase})` }));

    const raw = openTcp(ep);
    let secure: TLSSocket | undefined;
    let req: ClientRequest | undefined;
    // one clean-up, in this order: the RST must go out before anything closes the socket politely
    scope.defer(() => {
      closeTcp(raw);
      secure?.destroy();
      req?.destroy();
    });
    raw.once('connect', () => {
      phase = tls ? 'TLS handshake' : 'waiting for the response';
    });
    raw.once('error', (e) => scope.finish(false, errorDetail(e)));

    if (tls) {
      secure = tlsConnect({
        socket: raw,
        host: identity,
        // SNI carries names only (RFC 6066); for an address the certificate is still checked against it
        ...(isIP(identity) === 0 ? { servername: identity } : {}),
        rejectUnauthorized: !http.insecure,
      });
      secure.on('error', (e) => scope.finish(false, errorDetail(e)));
      secure.once('secureConnect', () => {
        phase = 'waiting for the response';
      });
    }
    const stream = secure ?? raw;

    req = request({
      method: http.method,
      path: http.path,
      host: ep.address,
      port: ep.port,
      headers: { host: hostHeader, 'user-agent': USER_AGENT, accept: '*/*', connection: 'keep-alive' },
      createConnection: () => stream,
    });
    req.on('error', (e) => scope.finish(false, errorDetail(e)));
    req.on('response', (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      if (!statusInRanges(status, http.expect)) {
        scope.finish(false, `HTTP ${status} (want ${formatRanges(http.expect)})`);
        return;
      }
      const needle = http.bodyContains;
      if (needle === undefined || needle === '') {
        scope.finish(true, `HTTP ${status}`);
        return;
      }
      phase = 'reading the body';
      const want = Buffer.from(needle, 'utf8');
      const chunks: Buffer[] = [];
      let len = 0;
      res.on('data', (b: Buffer) => {
        if (scope.settled) return;
        chunks.push(b);
        len += b.length;
        const body = Buffer.concat(chunks, len).subarray(0, BODY_LIMIT);
        if (body.includes(want)) scope.finish(true, `HTTP ${status}, body has ${quoteShort(needle)}`);
        else if (len >= BODY_LIMIT) scope.finish(false, `HTTP ${status}, first 64 KiB of the body lack ${quoteShort(needle)}`);
      });
      res.on('end', () => scope.finish(false, `HTTP ${status}, body lacks ${quoteShort(needle)}`));
      res.on('error', (e) => scope.finish(false, `HTTP ${status}, body: ${errorDetail(e)}`));
    });
    req.end();
  });
}

export function probeHttp(target: ProbeTarget, check: HealthCheck, signal: AbortSignal): Promise<ProbeResult> {
  return httpRequest({ address: target.backend.address, port: probePort(target, check) }, check, check.type === 'https', signal);
}
