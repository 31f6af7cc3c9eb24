// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * bench_balancer.bpf.c - timing wrappers around the balancer for make bench (src/bench/).
 *
 * BPF_PROG_TEST_RUN with repeat > 1 does not reset the packet between iterations
 * (shared/LAB-NOTES.md), so timing xdp_balancer directly would measure the wrong path from the
 * second iteration on for anything that encapsulates (it would pass its own IPIP packet as
 * non-VIP), and could not vary the flow. The wrapper runs the balancer's real entry
 * (balancer_entry(), the body of xdp_balancer) and around it:
 *   - before: writes the iteration's client tuple into the packet (bench_cfg.mode);
 *   - after:  undoes an encapsulation (adjust_head back by the outer header's size) and
 *             restores the headers (Ethernet, IP, TCP: NAT rewrites all three), so the next
 *             iteration sees the original frame again.
 * New-flow cases need no undo: every iteration carries a tuple never seen before, so it misses
 * whatever the table holds, and a miss into a full bucket runs the same code as into an empty one.
 *
 * The same bookkeeping runs around nothing (xdp_bench_null: the wrapper's own cost, subtracted
 * by user space) and around the floor (xdp_bench_floor: a check that the subtraction is fair, as
 * floor-through-wrapper minus wrapper must equal the floor alone). The undo of an encapsulation
 * is not in xdp_bench_null, so it stays charged to the ipip cases; xdp_bench_adjust_pair (the
 * bookkeeping plus a grow/shrink pair) lets user space report its size.
 *
 * The object shares the balancer's maps, so the balancer's own counters (reasons, backend_stats)
 * tell which path every iteration took.
 *
 * Two families, two sets of entry points (the family is a compile-time argument of bench_run(), so
 * the IPv4 programs are the same code as before IPv6 was added, and neither pays a branch on it):
 *   - IPv4 (xdp_bench_*): Ethernet + IPv4 without options + TCP without options, 54 bytes saved
 *     and restored, an encapsulation of 20 (IPIP) undone; client tuple j becomes source address
 *     10.128.0.0 + (j >> 16) and source port j & 0xffff.
 *   - IPv6 (xdp_bench_*6): Ethernet + IPv6 without extension headers + TCP without options, 74
 *     bytes, an encapsulation of 40 (6in6) undone; tuple j becomes the same 32-bit value in the
 *     last word of the source address (the rest of it is the packet's own) and the same port.
 * (Or anything at least that long: the wrapper reads nothing, it only writes at fixed offsets.)
 */
#include "balancer.bpf.c"
#include "floor.h"

enum bench_mode {
	BENCH_FIXED = 0, /* the packet as given, every iteration */
	BENCH_SEQ = 1,   /* tuple j = base + iteration: a different flow each time */
	BENCH_TABLE = 2, /* tuple j = bench_tuples[i], i cycling over [0, n) */
};

/* The frame's family: which offsets the wrapper writes and restores. */
enum bench_family {
	BENCH_V4 = 4,
	BENCH_V6 = 6,
};

enum bench_call {
	CALL_NONE = 0,
	CALL_BALANCER,
	CALL_FLOOR,
	CALL_ADJUST_PAIR,
};

#define BENCH_NET 0x0a800000U /* 10.128.0.0, host order; IPv6: the source address's last word */
#define BENCH_L2 14
/* IPv4: source address, source port; an IPIP header pushed; what is saved and restored */
#define BENCH_SADDR_OFF (BENCH_L2 + 12)
#define BENCH_PORTS_OFF (BENCH_L2 + 20)
#define BENCH_ENCAP 20 /* sizeof(struct iphdr): what fwd_ipip pushes */
#define BENCH_HDR (BENCH_L2 + 20 + 20)
/* IPv6: the source address's last 32 bits, source port; a 6in6 header; saved and restored */
#define BENCH_SADDR6_OFF (BENCH_L2 + 8 + 12)
#define BENCH_PORTS6_OFF (BENCH_L2 + 40)
#define BENCH_ENCAP6 40 /* sizeof(struct ipv6hdr): what fwd_ipip6 pushes */
#define BENCH_HDR6 (BENCH_L2 + 40 + 20)

/* Written by user space between runs: array key 0. */
struct bench_cfg {
	__u32 mode; /* enum bench_mode */
	__u32 n;    /* BENCH_TABLE: entries used in bench_tuples */
	__u32 base; /* BENCH_SEQ: first tuple */
	__u32 pad;
};

/* What the wrapper did, read back by user space. */
struct bench_state {
	__u64 iter;   /* iterations run (also the BENCH_SEQ offset) */
	__u64 pos;    /* BENCH_TABLE position, wraps at n */
	__u64 undone; /* encapsulations undone */
	__u64 bad;    /* packet not as the wrapper needs it, or undo failed */
	__u8 hdr6[BENCH_HDR6]; /* IPv6: the saved headers (see bench_run) */
	__u8 pad[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_cfg);
} bench_cfg SEC(".maps");

/*
 * Not per-CPU on purpose: a long test-run may be rescheduled onto the other CPU halfway
 * (cond_resched between iterations), and a per-CPU position would restart there, replaying
 * tuples the first CPU already inserted. Only one test-run uses it at a time.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
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

/*
 * fam is a constant at every call site: the offsets and sizes below fold, and each program holds
 * one family's code only. The IPv4 headers are saved on the stack; the IPv6 ones in bench_state,
 * because the stack has no 74 bytes left: the balancer inlined here with the IPv4 wrapper's 54
 * already takes 480 of the 512. bench_state is one value that only one test-run uses at a time
 * (see above), so it holds a copy as well as the stack would, at no extra lookup.
 */
static __always_inline int bench_run(struct xdp_md *ctx, enum bench_call call, const enum bench_family fam)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0, len = end - data, j = 0;
	struct bench_state *st = bpf_map_lookup_elem(&bench_state, &zero);
	struct bench_cfg *cfg = bpf_map_lookup_elem(&bench_cfg, &zero);
	const __u32 hdr_len = fam == BENCH_V6 ? BENCH_HDR6 : BENCH_HDR;
	const __u32 saddr_off = fam == BENCH_V6 ? BENCH_SADDR6_OFF : BENCH_SADDR_OFF;
	const __u32 ports_off = fam == BENCH_V6 ? BENCH_PORTS6_OFF : BENCH_PORTS_OFF;
	const int encap = fam == BENCH_V6 ? BENCH_ENCAP6 : BENCH_ENCAP;
	__u8 hdr4[BENCH_HDR], *hdr;
	int action = XDP_TX;

	if (!st || !cfg)
		return XDP_ABORTED;
	hdr = fam == BENCH_V6 ? st->hdr6 : hdr4;
	if (data + hdr_len > end) {
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
		*(__be32 *)(data + saddr_off) = bpf_htonl(BENCH_NET + (j >> 16));
		*(__be16 *)(data + ports_off) = bpf_htons(j & 0xffff);
	}
	st->iter++;
	__builtin_memcpy(hdr, data, hdr_len);

	switch (call) {
	case CALL_BALANCER:
		action = balancer_entry(ctx);
		break;
	case CALL_FLOOR:
		action = floor_swap_macs(ctx);
		break;
	case CALL_ADJUST_PAIR:
		if (bpf_xdp_adjust_head(ctx, -encap) || bpf_xdp_adjust_head(ctx, encap)) {
			st->bad++;
			return XDP_ABORTED;
		}
		break;
	default:
		break;
	}

	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (end - data == len + encap) {
		if (bpf_xdp_adjust_head(ctx, encap)) {
			st->bad++;
			return XDP_ABORTED;
		}
		st->undone++;
		data = (void *)(long)ctx->data;
		end = (void *)(long)ctx->data_end;
	}
	if (data + hdr_len > end) {
		st->bad++;
		return XDP_ABORTED;
	}
	__builtin_memcpy(data, hdr, hdr_len);
	return action;
}

/* The balancer, with the bookkeeping above. */
SEC("xdp")
int xdp_bench_balancer(struct xdp_md *ctx)
{
	return bench_run(ctx, CALL_BALANCER, BENCH_V4);
}

/* The bookkeeping alone: the wrapper's own cost. */
SEC("xdp")
int xdp_bench_null(struct xdp_md *ctx)
{
	return bench_run(ctx, CALL_NONE, BENCH_V4);
}

/* The floor through the same bookkeeping: checks that subtracting the wrapper is fair. */
SEC("xdp")
int xdp_bench_floor(struct xdp_md *ctx)
{
	return bench_run(ctx, CALL_FLOOR, BENCH_V4);
}

/* The bookkeeping plus one grow and one shrink: twice what undoing an encapsulation costs. */
SEC("xdp")
int xdp_bench_adjust_pair(struct xdp_md *ctx)
{
	return bench_run(ctx, CALL_ADJUST_PAIR, BENCH_V4);
}

/* The same for IPv6 frames: the balancer (balance6), the bookkeeping alone, and with a 40-byte pair. */
SEC("xdp")
int xdp_bench_balancer6(struct xdp_md *ctx)
{
	return bench_run(ctx, CALL_BALANCER, BENCH_V6);
}

SEC("xdp")
int xdp_bench_null6(struct xdp_md *ctx)
{
	return bench_run(ctx, CALL_NONE, BENCH_V6);
}

SEC("xdp")
int xdp_bench_adjust_pair6(struct xdp_md *ctx)
{
	return bench_run(ctx, CALL_ADJUST_PAIR, BENCH_V6);
}

/* Nothing at all: what test-run itself costs per iteration. */
SEC("xdp")
int xdp_bench_empty(struct xdp_md *ctx)
{
	return XDP_TX;
}
