/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nexthop.h - bpf_fib_lookup() with a short-lived per-CPU cache of its answers.
 *
 * IPIP sends every packet toward a backend the kernel routes to, and bpf_fib_lookup() costs
 * ~50 ns here: more than the rest of the balancer. Its answer for a backend changes only when
 * a route or a neighbour does, so nexthop_fib_lookup() keeps successful answers per CPU, keyed by
 * everything the lookup was asked (destination, source, TOS, ingress interface), for
 * LB_NEXTHOP_TTL_NS, and answers from there. It is a drop-in for the helper on the input fields
 * fwd_ipip() sets, and fills the same output fields (ifindex, dmac, smac).
 *
 * What the cache costs in behaviour: after a route or neighbour change, packets may follow the
 * old answer for up to LB_NEXTHOP_TTL_NS on each CPU. Only SUCCESS is cached: an unresolved
 * neighbour, a missing route or a packet over the MTU ask the kernel again every time, and the
 * egress MTU learnt with the answer is checked on every hit, so FRAG_NEEDED comes out as before.
 * Nothing outside this file reads or writes the cache: no control-plane change.
 */
#ifndef LB_NEXTHOP_H
#define LB_NEXTHOP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

/* How stale an answer may get: a second, like the flow table's clock. */
#ifndef LB_NEXTHOP_TTL_NS
#define LB_NEXTHOP_TTL_NS 1000000000ULL
#endif
/* Direct-mapped by destination; a backend set larger than this only costs more helper calls. */
#ifndef LB_NEXTHOP_SLOTS
#define LB_NEXTHOP_SLOTS 1024
#endif

struct lb_nexthop {
	__be32 dst;
	__be32 src;
	__u32 iif;
	__u32 oif;
	__u64 expires; /* bpf_ktime_get_coarse_ns() time; 0 = empty */
	__u8 dmac[6];
	__u8 smac[6];
	__u16 mtu;
	__u8 tos;
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_NEXTHOP_SLOTS);
	__type(key, __u32);
	__type(value, struct lb_nexthop);
} nexthop_cache SEC(".maps");

/* Returns what bpf_fib_lookup(ctx, fib, sizeof(*fib), 0) would for an AF_INET lookup. */
static __always_inline int nexthop_fib_lookup(struct xdp_md *ctx, struct bpf_fib_lookup *fib)
{
	__u32 slot = ((__u32)fib->ipv4_dst * 0x9E3779B1U) >> 22 & (LB_NEXTHOP_SLOTS - 1);
	struct lb_nexthop *nh = bpf_map_lookup_elem(&nexthop_cache, &slot);
	__u16 tot_len = fib->tot_len;
	__u64 now;
	int rc;

	if (!nh)
		return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	now = bpf_ktime_get_coarse_ns();
	if (nh->expires > now && nh->dst == fib->ipv4_dst && nh->src == fib->ipv4_src &&
	    nh->iif == fib->ifindex && nh->tos == fib->tos) {
		if (tot_len > nh->mtu) {
			fib->mtu_result = nh->mtu;
			return BPF_FIB_LKUP_RET_FRAG_NEEDED;
		}
		fib->ifindex = nh->oif;
		__builtin_memcpy(fib->dmac, nh->dmac, ETH_ALEN);
		__builtin_memcpy(fib->smac, nh->smac, ETH_ALEN);
		return BPF_FIB_LKUP_RET_SUCCESS;
	}

	nh->expires = 0;
	nh->dst = fib->ipv4_dst;
	nh->src = fib->ipv4_src;
	nh->iif = fib->ifindex;
	nh->tos = fib->tos;
	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return rc;
	nh->oif = fib->ifindex;
	__builtin_memcpy(nh->dmac, fib->dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib->smac, ETH_ALEN);

	/*
	 * The answer does not carry the route's MTU; asking again with the largest length does
	 * (FRAG_NEEDED puts it in mtu_result), and it is asked once per TTL. Only the inputs are
	 * restored in between; the outputs above are already kept.
	 */
	{
		struct bpf_fib_lookup probe = {};

		probe.family = fib->family;
		probe.tos = nh->tos;
		probe.l4_protocol = fib->l4_protocol;
		probe.tot_len = 0xffff;
		probe.ipv4_src = nh->src;
		probe.ipv4_dst = nh->dst;
		probe.ifindex = nh->iif;
		if (bpf_fib_lookup(ctx, &probe, sizeof(probe), 0) == BPF_FIB_LKUP_RET_FRAG_NEEDED)
			nh->mtu = probe.mtu_result;
		else
			nh->mtu = 0xffff;
	}
	nh->expires = now + LB_NEXTHOP_TTL_NS;
	return rc;
}

/*
 * The same cache for IPv6 backends (fwd_ipip6), in a map of its own so that the IPv4 entries
 * stay small. The lookup costs as much per packet for IPv6 as for IPv4, and the answer depends
 * on the same things: the addresses, the traffic class (in flowinfo: fwd_ipip6 leaves the flow
 * label out of the lookup so that one answer serves every flow to a backend) and the interface.
 */
struct lb_nexthop6 {
	__be32 dst[4];
	__be32 src[4];
	__be32 flowinfo;
	__u32 iif;
	__u32 oif;
	__u16 mtu;
	__u16 pad;
	__u64 expires; /* bpf_ktime_get_coarse_ns() time; 0 = empty */
	__u8 dmac[6];
	__u8 smac[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_NEXTHOP_SLOTS);
	__type(key, __u32);
	__type(value, struct lb_nexthop6);
} nexthop6_cache SEC(".maps");

static __always_inline int nexthop6_same(const __be32 *a, const __u32 *b)
{
	return !((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]));
}

/* Returns what bpf_fib_lookup(ctx, fib, sizeof(*fib), 0) would for an AF_INET6 lookup. */
static __always_inline int nexthop_fib_lookup6(struct xdp_md *ctx, struct bpf_fib_lookup *fib)
{
	__u32 fold = fib->ipv6_dst[0] ^ fib->ipv6_dst[1] ^ fib->ipv6_dst[2] ^ fib->ipv6_dst[3];
	__u32 slot = (fold * 0x9E3779B1U) >> 22 & (LB_NEXTHOP_SLOTS - 1);
	struct lb_nexthop6 *nh = bpf_map_lookup_elem(&nexthop6_cache, &slot);
	__u16 tot_len = fib->tot_len;
	__u64 now;
	int rc;

	if (!nh)
		return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	now = bpf_ktime_get_coarse_ns();
	if (nh->expires > now && nexthop6_same(nh->dst, fib->ipv6_dst) &&
	    nexthop6_same(nh->src, fib->ipv6_src) && nh->iif == fib->ifindex &&
	    nh->flowinfo == fib->flowinfo) {
		if (tot_len > nh->mtu) {
			fib->mtu_result = nh->mtu;
			return BPF_FIB_LKUP_RET_FRAG_NEEDED;
		}
		fib->ifindex = nh->oif;
		__builtin_memcpy(fib->dmac, nh->dmac, ETH_ALEN);
		__builtin_memcpy(fib->smac, nh->smac, ETH_ALEN);
		return BPF_FIB_LKUP_RET_SUCCESS;
	}

	nh->expires = 0;
	__builtin_memcpy(nh->dst, fib->ipv6_dst, 16);
	__builtin_memcpy(nh->src, fib->ipv6_src, 16);
	nh->iif = fib->ifindex;
	nh->flowinfo = fib->flowinfo;
	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return rc;
	nh->oif = fib->ifindex;
	__builtin_memcpy(nh->dmac, fib->dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib->smac, ETH_ALEN);

	/* The route's MTU, asked once per TTL, as in nexthop_fib_lookup(). */
	{
		struct bpf_fib_lookup probe = {};

		probe.family = fib->family;
		probe.flowinfo = nh->flowinfo;
		probe.l4_protocol = fib->l4_protocol;
		probe.tot_len = 0xffff;
		__builtin_memcpy(probe.ipv6_src, nh->src, 16);
		__builtin_memcpy(probe.ipv6_dst, nh->dst, 16);
		probe.ifindex = nh->iif;
		if (bpf_fib_lookup(ctx, &probe, sizeof(probe), 0) == BPF_FIB_LKUP_RET_FRAG_NEEDED)
			nh->mtu = probe.mtu_result;
		else
			nh->mtu = 0xffff;
	}
	nh->expires = now + LB_NEXTHOP_TTL_NS;
	return rc;
}

#endif /* LB_NEXTHOP_H */
