/** The issue's goals, checked against the figures, and the table make bench prints. */
import type { DatapathCase } from './datapath.js';
import type { Figure } from './controlplane.js';
import type { LabResult } from './lab.js';

export interface GoalResult {
  goal: string;
  figure: string;
  value: number;
  limit: number;
  unit: string;
  pass: boolean;
}

interface CaseLike {
  case: string;
  mode: string;
  ns_per_packet: number;
  ratio_to_floor: number;
}

export function evaluateGoals(cases: readonly DatapathCase[], cp: Record<string, Figure>, lab?: LabResult): GoalResult[] {
  const out: GoalResult[] = [];
  const ratio = (goal: string, pick: (c: DatapathCase) => boolean, limit: number) => {
    for (const c of cases.filter(pick)) {
      out.push({ goal, figure: `${c.case}/${c.mode}`, value: c.ratio_to_floor, limit, unit: 'x floor', pass: c.ratio_to_floor <= limit });
    }
  };
  ratio('established <= 3x floor', (c) => c.case.startsWith('established'), 3);
  ratio('new flow <= 6x floor', (c) => c.case === 'new_flow', 6);
  ratio('non-VIP pass <= 1.5x floor', (c) => c.case === 'non_vip_pass', 1.5);
  const m = cp['maglev_build_N1000_M65537'];
  if (m) out.push({ goal: 'Maglev N=1000 M=65537 <= 15 ms', figure: 'maglev_build_N1000_M65537', value: m.value, limit: 15, unit: 'ms', pass: m.value <= 15 });
  if (lab) {
    const v = lab.xdp_l2dsr_over_kernel;
    out.push({ goal: 'lab: XDP >= 3x kernel forwarding pps', figure: 'lab xdp_l2dsr / kernel_forward', value: v, limit: 3, unit: 'x', pass: v >= 3 });
    // The issue's own comparison: the balancer's NAT beside the kernel's DNAT (older results lack it).
    const n = lab.xdp_nat_over_kernel_dnat;
    if (n !== undefined) out.push({ goal: 'lab: XDP NAT >= 3x kernel DNAT pps', figure: 'lab xdp_nat / kernel_dnat', value: n, limit: 3, unit: 'x', pass: n >= 3 });
  }
  return out;
}

function table(head: string[], rows: string[][], right: boolean[]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (right[i] ? c.padStart(w[i] as number) : c.padEnd(w[i] as number))).join('  ').trimEnd();
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n') + '\n';
}

export function renderTable(r: {
  datapath: readonly CaseLike[];
  controlplane: Record<string, Figure>;
  goals: readonly GoalResult[];
  lab: object;
  meta: Record<string, unknown>;
  calibration?: object;
}): string {
  let s = `xdplb bench  ${String(r.meta['date'])}  kernel ${String(r.meta['kernel'])}  ${String(r.meta['cpus'])} CPUs\n\n`;
  s += 'Data path (BPF_PROG_TEST_RUN, ns/packet; median of each program\'s fast-mode samples, floor interleaved with every case)\n';
  const rows = r.datapath.map((c) => {
    const d = c as Partial<DatapathCase> & CaseLike;
    return [
      d.case,
      d.mode,
      d.tracked_flows !== undefined ? String(d.tracked_flows) : '',
      d.ns_per_packet.toFixed(1),
      d.raw_ns !== undefined ? d.raw_ns.toFixed(1) : '',
      d.floor_ns !== undefined ? d.floor_ns.toFixed(1) : '',
      `${d.ratio_to_floor.toFixed(2)}x`,
      d.ns_median !== undefined ? d.ns_median.toFixed(1) : '',
      d.counts ? `${d.counts.reason_count}/${d.counts.iterations} ${d.counts.expected_reason}, ${d.counts.new_flows} new` : '',
    ];
  });
  s += table(['case', 'mode', 'flows', 'ns/pkt', 'raw ns', 'floor ns', 'ratio', 'median', 'verified path'], rows, [false, false, true, true, true, true, true, true, false]);
  s += '  ns/pkt = raw ns (through the bench wrapper) minus the wrapper\'s own measured cost; ipip and ipip6 keep the wrapper\'s undo of the encapsulation; modes ending in 6 are IPv6 (6in6, NAT66)\n';
  if (r.calibration) {
    const c = r.calibration as Record<string, number>;
    s += `  calibration: floor ${c['floor_ns']} ns alone, ${c['floor_via_wrapper_ns']} ns through the wrapper; established l2dsr ${c['established_l2dsr_direct_ns']} ns direct, ${c['established_l2dsr_via_wrapper_ns']} ns through the wrapper; empty program ${c['empty_ns']} ns\n`;
    if ((r.calibration as { trustworthy?: boolean }).trustworthy === false) {
      s += `  WARNING: the wrapper figure is ${c['wrapper_error_ns']} ns off the direct run: the machine was too busy for this run's figures; run again\n`;
    }
    const short = (r.calibration as { phases_short_of_fast_samples?: string[] }).phases_short_of_fast_samples ?? [];
    if (short.length) s += `  phases that ran out of rounds before every program had 7 fast-mode samples: ${short.join(', ')}\n`;
  }
  s += '\n';
  s += 'Control plane\n';
  s += table(
    ['figure', 'value', 'unit'],
    Object.entries(r.controlplane).map(([k, v]) => [k, String(v.value), v.unit]),
    [false, true, false],
  );
  s += '\nGoals (from the issue; a miss is reported, never fatal)\n';
  s += table(
    ['goal', 'figure', 'value', 'limit', 'result'],
    r.goals.map((g) => [g.goal, g.figure, `${g.value} ${g.unit}`, `${g.limit} ${g.unit}`, g.pass ? 'PASS' : 'MISS']),
    [false, false, true, true, false],
  );
  s += '\n' + renderLab(r.lab);
  return s;
}

/** The lab's section of the table (also what `--lab-only` prints). */
export function renderLab(r: object): string {
  let s = 'Lab (packets/s through the namespace lab; generator, LB and counter share one CPU)\n';
  const lab = r as Partial<LabResult> & { error?: string };
  if (lab.error || !lab.cases) {
    s += `  not measured: ${lab.error ?? 'no result'}\n`;
    return s;
  }
  s += table(
    ['case', 'delivered', 'offered', 'ns/pkt', 'LB adds', 'path'],
    lab.cases.map((c) => [c.case, `${(c.delivered_pps / 1e6).toFixed(2)} Mpps`, `${(c.offered_pps / 1e6).toFixed(2)} Mpps`, c.ns_per_packet.toFixed(0), c.lb_ns_per_packet !== undefined ? `${c.lb_ns_per_packet.toFixed(0)} ns` : '', c.path]),
    [false, true, true, true, true, false],
  );
  s += `  XDP l2dsr / kernel forwarding: ${lab.xdp_l2dsr_over_kernel}x packets/s; ${lab.xdp_l2dsr_over_kernel_lb_only}x in what the LB adds per packet\n`;
  if (lab.xdp_nat_over_kernel_dnat !== undefined) {
    s += `  XDP NAT / nftables DNAT: ${lab.xdp_nat_over_kernel_dnat}x packets/s; ${lab.xdp_nat_over_kernel_dnat_lb_only}x in what the LB adds per packet\n`;
    s += `  XDP full NAT / nftables DNAT+SNAT: ${lab.xdp_fullnat_over_kernel_fullnat}x packets/s; ${lab.xdp_fullnat_over_kernel_fullnat_lb_only}x in what the LB adds per packet\n`;
  }
  for (const c of lab.cases) {
    const v = c.verified;
    if (!v) continue;
    if ('expected_reason' in v) {
      const others = Object.entries(v.other_reasons).map(([k, n]) => `${k} ${n}`).join(', ');
      s += `  verified ${c.case}: ${v.reason_count} ${v.expected_reason} for ${v.delivered} counted, ${v.new_flows} new${others ? `, others: ${others}` : ''}\n`;
    } else {
      const ct = v.conntrack ? `, conntrack inserts ${v.conntrack.insert}, invalid ${v.conntrack.invalid}, drops ${v.conntrack.drop}` : '';
      s += `  verified ${c.case}: ${v.forwarded} forwarded for ${v.delivered} counted${ct}\n`;
    }
  }
  s += `  limit: ${lab.limit}\n`;
  return s;
}
