// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bench_balancer.bpf.c - timing wrappers around the balancer for make bench (src/bench/).
 *
 * BPF_PROG_TEST_RUN with repeat > 1 does not reset the packet between iterations
 * (shared/LAB-NOTES.md), so timing xdp_balancer directly would measure the wrong path from the
 * second iteration on: an IPIP packet it just built, passed as non-VIP; a "new" flow that the
 * first iteration already put in the flow table. The wrapper runs the balancer's real entry
 * (balancer_entry(), the body of xdp_balancer) and around it:
 *   - before: writes the iteration's client tuple into the packet (bench_cfg.mode);
 *   - after:  undoes an encapsulation (adjust_head back by 20) and restores the headers
 *             (Ethernet, IPv4, TCP: NAT rewrites all three), so the next iteration sees the
 *             original frame again;
 *   - after:  with bench_cfg.forget, removes the flow the balancer just inserted, so the flow
 *             table is left as it was and the next new flow misses for real.
 * xdp_bench_null does the same bookkeeping without the balancer: its time is the wrapper's own
 * cost, which the control plane subtracts. The object shares the balancer's maps, so the
 * balancer's own counters (reasons, service_stats) tell which path every iteration took.
 *
 * The packet must be Ethernet + IPv4 without options + TCP without options (or anything at least
 * that long); client tuple j becomes source address 10.128.0.0 + (j >> 16) and source port j & 0xffff.
 */
#include "balancer.bpf.c"

enum bench_mode {
	BENCH_FIXED = 0, /* the packet as given, every iteration */
	BENCH_SEQ = 1,   /* tuple j = base + iteration: a different flow each time */
	BENCH_TABLE = 2, /* tuple j = bench_tuples[i], i cycling over [0, n) */
};

#define BENCH_NET 0x0a800000U /* 10.128.0.0, host order */
#define BENCH_L2 14
#define BENCH_SADDR_OFF (BENCH_L2 + 12)
#define BENCH_DADDR_OFF (BENCH_L2 + 16)
#define BENCH_PORTS_OFF (BENCH_L2 + 20)
#define BENCH_ENCAP 20 /* sizeof(struct iphdr): what fwd_ipip pushes */
#define BENCH_HDR (BENCH_L2 + 20 + 20) /* what the wrapper saves and restores */

/* Written by user space between runs: array key 0. */
struct bench_cfg {
	__u32 mode;   /* enum bench_mode */
	__u32 n;      /* BENCH_TABLE: entries used in bench_tuples */
	__u32 base;   /* BENCH_SEQ: first tuple */
	__u32 forget; /* 1: remove the flow the balancer inserted, after each iteration */
};

/* Per CPU, read back by user space: what the wrapper did. */
struct bench_state {
	__u64 iter;      /* iterations run (also the BENCH_SEQ offset) */
	__u64 pos;       /* BENCH_TABLE position, wraps at n */
	__u64 undone;    /* encapsulations undone */
	__u64 forgotten; /* flows removed from the table again */
	__u64 bad;       /* packet not as the wrapper needs it, or undo failed */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_cfg);
} bench_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_state);
} bench_state SEC(".maps");

/* Client tuples for BENCH_TABLE, chosen by user space so that every one has a way in its bucket. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << 20);
	__type(key, __u32);
	__type(value, __u32);
} bench_tuples SEC(".maps");

static __always_inline int bench_run(struct xdp_md *ctx, int call)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0, len = end - data, j = 0;
	struct bench_state *st = bpf_map_lookup_elem(&bench_state, &zero);
	struct bench_cfg *cfg = bpf_map_lookup_elem(&bench_cfg, &zero);
	__u8 hdr[BENCH_HDR];
	__u32 saddr, daddr, ports;
	__u8 proto;
	int action = XDP_TX;

	if (!st || !cfg)
		return XDP_ABORTED;
	if (data + BENCH_HDR > end) {
		st->bad++;
		return XDP_ABORTED;
	}
	if (cfg->mode == BENCH_SEQ) {
		j = cfg->base + (__u32)st->iter;
	} else if (cfg->mode == BENCH_TABLE) {
		__u32 pos = st->pos;
		__u32 *t = bpf_map_lookup_elem(&bench_tuples, &pos);

		if (!t) {
			st->bad++;
			return XDP_ABORTED;
		}
		j = *t;
		st->pos = pos + 1 >= cfg->n ? 0 : pos + 1;
	}
	if (cfg->mode != BENCH_FIXED) {
		*(__be32 *)(data + BENCH_SADDR_OFF) = bpf_htonl(BENCH_NET + (j >> 16));
		*(__be16 *)(data + BENCH_PORTS_OFF) = bpf_htons(j & 0xffff);
	}
	st->iter++;
	__builtin_memcpy(hdr, data, BENCH_HDR);
	saddr = *(__u32 *)(data + BENCH_SADDR_OFF);
	daddr = *(__u32 *)(data + BENCH_DADDR_OFF);
	ports = ((__u32) * (__u16 *)(data + BENCH_PORTS_OFF) << 16) | *(__u16 *)(data + BENCH_PORTS_OFF + 2);
	proto = *(__u8 *)(data + BENCH_L2 + 9);

	if (call)
		action = balancer_entry(ctx);

	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (end - data == len + BENCH_ENCAP) {
		if (bpf_xdp_adjust_head(ctx, BENCH_ENCAP)) {
			st->bad++;
			return XDP_ABORTED;
		}
		st->undone++;
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
	}
	if (data + BENCH_HDR > end) {
		st->bad++;
		return XDP_ABORTED;
	}
	__builtin_memcpy(data, hdr, BENCH_HDR);

	if (cfg->forget) {
		struct lb_hash h = lb_hash3(saddr, daddr, ports, hash_seed ^ proto);
		__u32 idx = h.h1 & flow_mask;
		__u32 fp = h.h2 ? h.h2 : 1;
		struct lb_flow_bucket *b;

		/*
		 * Alone, the wrapper hashes but does not touch the bucket: that access would be a cache
		 * miss here and a hit after the balancer, so counting it as overhead would hide the
		 * balancer's own miss. (What stays uncounted, the hit, makes figures slightly high.)
		 */
		if (!call) {
			st->forgotten += (idx ^ fp) == 0;
			return action;
		}
		b = bpf_map_lookup_elem(&flows, &idx);
		if (b) {
#pragma unroll
			for (int i = 0; i < LB_FLOW_WAYS; i++) {
				if (WAY_FP(b->way[i]) == fp) {
					b->way[i] = 0;
					st->forgotten++;
					break;
				}
			}
		}
	}
	return action;
}

/* The balancer, with the bookkeeping above. */
SEC("xdp")
int xdp_bench_balancer(struct xdp_md *ctx)
{
	return bench_run(ctx, 1);
}

/* The bookkeeping alone: the wrapper's own cost. */
SEC("xdp")
int xdp_bench_null(struct xdp_md *ctx)
{
	return bench_run(ctx, 0);
}

/* Nothing at all: what test-run itself costs per iteration. */
SEC("xdp")
int xdp_bench_empty(struct xdp_md *ctx)
{
	return XDP_TX;
}
