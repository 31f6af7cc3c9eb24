/**
 * make demo: the lab, the balancer attached to the LB's interface, real HTTP traffic from the
 * client to every service, and a short report. Tears everything down unless --keep is given.
 */
import { clientRequests, labDown, labUp, startLabBalancer, type LabBalancer } from './index.js';
import { sumCounters, u32Key } from '../dataplane/abi.js';

const PREFIX = 'xlb-';
const REQUESTS = 300;

function say(s: string): void {
  process.stdout.write(`${s}\n`);
}

async function main(): Promise<number> {
  const keep = process.argv.includes('--keep');
  say('demo: cleaning up any earlier lab');
  await labDown(PREFIX);
  say('demo: building the namespace lab (client, router, lb, 3 L2 backends, 3 routed backends)');
  const lab = await labUp({ prefix: PREFIX });
  let bal: LabBalancer | undefined;
  try {
    say(`demo: loading the XDP balancer onto ${lab.lb.ns}/${lab.lb.ifname}`);
    bal = startLabBalancer(lab);
    say('');
    for (const svc of bal.services) {
      say(`demo: ${REQUESTS} HTTP requests from ${lab.client} to ${svc.vip}:${svc.port} (${svc.mode})`);
      const res = await clientRequests(lab, svc.vip, svc.port, REQUESTS, { concurrency: 10 });
      say(`  answered ${res.ok}/${res.total} in ${res.elapsedMs} ms; backends saw client ${Object.keys(res.clientAddrs).join(', ')}`);
      for (const [name, n] of Object.entries(res.byBackend).sort()) {
        say(`  ${name.padEnd(8)} ${String(n).padStart(4)}  ${'#'.repeat(Math.round((n / REQUESTS) * 60))} ${((n / REQUESTS) * 100).toFixed(0)}%`);
      }
    }
    say('');
    say('per-service counters from the data path (packets client -> backends; replies bypass the LB):');
    for (const svc of bal.services) {
      const id = bal.lb.dataplane.serviceId(svc.vip, svc.port, svc.proto);
      if (id === undefined) continue;
      const c = sumCounters(bal.lb.maps.service_stats.lookupPerCpu(u32Key(id)) ?? []);
      say(`  ${`${svc.mode} ${svc.vip}:${svc.port}`.padEnd(26)} packets ${String(c.packets).padStart(7)}  bytes ${String(c.bytes).padStart(9)}  new flows ${c.newFlows}`);
    }
    const r = bal.lb.reasons();
    say('verdicts: ' + Object.entries(r).filter(([, v]) => v > 0n).map(([k, v]) => `${k}=${v}`).join(' '));
    if (keep) {
      say('');
      say(`demo: lab kept. Try:  ip netns exec ${lab.client} curl http://${bal.services[0]?.vip}:80/`);
      say('      The XDP program stays attached; remove everything with: make demo-down');
      return 0;
    }
  } finally {
    if (!keep) {
      bal?.stop();
      say('demo: tearing the lab down');
      await labDown(PREFIX);
    }
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`demo failed: ${e instanceof Error ? e.message : String(e)}\n`);
    labDown(PREFIX).finally(() => process.exit(1));
  },
);
