/**
 * make demo: the namespace lab, the real daemon (lbctl daemon) in the LB's namespace with one
 * service per mode and family (IPv4, IPv6, and IPv4 over IPv6 backends), real HTTP traffic from the client to every service, and a short report with
 * the `lbctl list --stats` view. Tears everything down unless --keep is given.
 */
import { call } from '../api/client.js';
import type { ServiceView } from '../daemon/daemon.js';
import { formatServices } from '../cli/output.js';
import { clientRequests, labDown, labUp, udpRequests } from './index.js';
import { startLabDaemon, stopLabDaemon, waitLabHealthy, type LabDaemon } from './daemon.js';
import { stateDirOf } from './lab.js';

const PREFIX = 'xlb-';
const REQUESTS = 300;

function say(s: string): void {
  process.stdout.write(`${s}\n`);
}

async function cleanup(): Promise<void> {
  await stopLabDaemon(stateDirOf(PREFIX), PREFIX);
  await labDown(PREFIX);
}

async function main(): Promise<number> {
  const keep = process.argv.includes('--keep');
  const t0 = Date.now();
  say('demo: cleaning up any earlier lab');
  await cleanup();
  say('demo: building the namespace lab (client, router, lb; 3 L2, 3 routed and 3 NAT backends)');
  const lab = await labUp({ prefix: PREFIX });
  let d: LabDaemon | undefined;
  try {
    say(`demo: starting the daemon in ${lab.lb.ns} (lbctl daemon); it attaches XDP to ${lab.lb.ifname}`);
    d = await startLabDaemon(lab);
    say('demo: waiting for the health checks to bring the backends in');
    const services = await waitLabHealthy(d);
    say('');
    for (const svc of services) {
      const kind = `${svc.mode}${svc.mode === 'nat' ? (svc.name.includes('full') ? ', full NAT' : ', LB is the gateway') : ''}${svc.name.endsWith('-4in6') ? ', IPv6 backends (4in6)' : ''}`;
      const at = svc.vip.includes(':') ? `[${svc.vip}]:${svc.port}` : `${svc.vip}:${svc.port}`;
      say(`demo: ${REQUESTS} ${svc.proto === 'udp' ? 'UDP echoes' : 'HTTP requests'} from ${lab.client} to ${at} (${kind})`);
      const res =
        svc.proto === 'udp'
          ? await udpRequests(lab, svc.vip, svc.port, REQUESTS, { concurrency: 10 })
          : await clientRequests(lab, svc.vip, svc.port, REQUESTS, { concurrency: 10 });
      say(`  answered ${res.ok}/${res.total} in ${res.elapsedMs} ms; backends saw client ${Object.keys(res.clientAddrs).join(', ')}`);
      for (const [name, n] of Object.entries(res.byBackend).sort()) {
        say(`  ${name.padEnd(8)} ${String(n).padStart(4)}  ${'#'.repeat(Math.round((n / REQUESTS) * 60))} ${((n / REQUESTS) * 100).toFixed(0)}%`);
      }
      if (res.failed) say(`  FAILED: ${JSON.stringify(res.failures)}`);
    }
    say('');
    say('lbctl list --stats (packets client -> backends; DSR replies bypass the LB, NAT replies come back through it):');
    say(formatServices(await call<ServiceView[]>(d.socket, 'GET', '/v1/services?stats=1'), { stats: true }));
    const st = await call<{ reasons: Record<string, number> }>(d.socket, 'GET', '/v1/stats');
    say('verdicts: ' + Object.entries(st.reasons).filter(([, v]) => v > 0).map(([k, v]) => `${k}=${v}`).join(' '));
    const nat = await call<{ count: { connections: number; fullNat: number } }>(d.socket, 'GET', '/v1/nat?limit=0');
    say(`NAT table: ${nat.count.connections} connections (${nat.count.fullNat} full NAT); lbctl nat list shows them`);
    say(`demo: done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (keep) {
      say('');
      say('demo: lab kept, daemon running. Try:');
      say(`  ip netns exec ${lab.client} curl http://${services[0]?.vip}:80/`);
      say(`  node dist/cli/main.js --socket ${d.socket} list --stats --rate`);
      say(`  node dist/cli/main.js --socket ${d.socket} backend drain lab-l2dsr ${lab.backends[0]?.addr} --wait`);
      say('  remove everything with: make demo-down   (or: node dist/cli/main.js lab down)');
      return 0;
    }
  } finally {
    if (!keep) {
      say('demo: tearing the lab down');
      await cleanup();
    }
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    const detail = (e as { detail?: string }).detail;
    process.stderr.write(`demo failed: ${e instanceof Error ? e.message : String(e)}\n${detail ? `${detail}\n` : ''}`);
    cleanup().finally(() => process.exit(1));
  },
);
