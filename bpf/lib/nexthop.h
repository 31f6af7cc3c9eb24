/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nexthop.h - bpf_fib_lookup() with a short-lived per-CPU cache of its answers.
 *
 * IPIP and NAT send every packet toward an address the kernel routes to, and bpf_fib_lookup()
 * costs ~50 ns for IPv4 and ~350 ns for IPv6 here: more than the rest of the balancer. Its answer
 * changes only when a route or a neighbour does, so nexthop_fib_lookup() (and its IPv6 twin) keeps
 * successful answers per CPU, keyed by everything the lookup is asked (destination, source,
 * DSCP, ingress interface), for LB_NEXTHOP_TTL_NS, and answers from there. It is a drop-in for
 * the helper on the input fields its callers set (they ask without ports, so that one answer
 * serves every flow to a destination), and fills the same output fields (ifindex, dmac, smac).
 * The callers that already read the coarse clock pass their reading (the *_at variants).
 *
 * What the cache costs in behaviour: after a route or neighbour change, packets may follow the
 * old answer for up to LB_NEXTHOP_TTL_NS on each CPU; ECMP spreads by destination (and source),
 * not by flow. Only SUCCESS is cached: an unresolved neighbour, a missing route or a packet over
 * the MTU ask the kernel again every time.
 *
 * The MTU: a hit is only answered for a packet no longer than the longest one the kernel has let
 * through for this entry (ok_len); a longer one asks the kernel, which either lets it through
 * (ok_len grows) or answers FRAG_NEEDED with the MTU, exactly as without the cache. So every hit
 * is checked against a length the route took, and a miss costs one kernel lookup, not two (no
 * separate probe for the MTU): a cache that thrashes (many destinations per CPU, as NAT replies
 * to many clients) costs little more than no cache.
 *
 * The ECN bits are masked out of the TOS/traffic class before the lookup: the kernel ignores them,
 * and keeping them in the key would make ECN-capable data and its non-ECT control packets of one
 * flow evict each other's entry. Nothing outside this file reads or writes the cache: no
 * control-plane change.
 */
#ifndef LB_NEXTHOP_H
#define LB_NEXTHOP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* How stale an answer may get: a second, like the flow table's clock. */
#ifndef LB_NEXTHOP_TTL_NS
#define LB_NEXTHOP_TTL_NS 1000000000ULL
#endif
/* Direct-mapped by destination and source; more of them than this only costs more helper calls. */
#ifndef LB_NEXTHOP_SLOTS
#define LB_NEXTHOP_SLOTS 1024
#endif
/* DSCP: the TOS byte and the IPv6 flowinfo word without ECN (and, for IPv6, the flow label). */
#define LB_NEXTHOP_DSCP 0xfc
#define LB_NEXTHOP_DSCP6 0x0fc00000U

struct lb_nexthop {
	__be32 dst;
	__be32 src;
	__u32 iif;
	__u32 oif;
	__u64 expires; /* bpf_ktime_get_coarse_ns() time; 0 = empty */
	__u8 dmac[6];
	__u8 smac[6];
	__u16 ok_len; /* the longest tot_len the kernel answered SUCCESS for */
	__u8 tos;
	__u8 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_NEXTHOP_SLOTS);
	__type(key, __u32);
	__type(value, struct lb_nexthop);
} nexthop_cache SEC(".maps");

/*
 * Returns what bpf_fib_lookup(ctx, fib, sizeof(*fib), 0) would for an AF_INET lookup; now is a
 * bpf_ktime_get_coarse_ns() reading of this packet.
 */
static __always_inline int nexthop_fib_lookup_at(struct xdp_md *ctx, struct bpf_fib_lookup *fib,
						 __u64 now)
{
	__u32 slot = ((__u32)(fib->ipv4_dst ^ fib->ipv4_src) * 0x9E3779B1U) >> 22 &
		     (LB_NEXTHOP_SLOTS - 1);
	struct lb_nexthop *nh = bpf_map_lookup_elem(&nexthop_cache, &slot);
	__u16 len = fib->tot_len;
	int same, rc;

	fib->tos &= LB_NEXTHOP_DSCP;
	if (!nh)
		return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	same = nh->expires > now && nh->dst == fib->ipv4_dst && nh->src == fib->ipv4_src &&
	       nh->iif == fib->ifindex && nh->tos == fib->tos;
	if (same && len <= nh->ok_len) {
		fib->ifindex = nh->oif;
		__builtin_memcpy(fib->dmac, nh->dmac, ETH_ALEN);
		__builtin_memcpy(fib->smac, nh->smac, ETH_ALEN);
		return BPF_FIB_LKUP_RET_SUCCESS;
	}
	/* The key is kept before the lookup, which overwrites ipv4_dst with the gateway. */
	if (!same) {
		nh->expires = 0;
		nh->dst = fib->ipv4_dst;
		nh->src = fib->ipv4_src;
		nh->iif = fib->ifindex;
		nh->tos = fib->tos;
	}
	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	/* Not cached; a live entry stays good for the lengths it knows (a longer packet's FRAG_NEEDED
	 * must not cost the connection's smaller packets a lookup each). */
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return rc;
	nh->oif = fib->ifindex;
	__builtin_memcpy(nh->dmac, fib->dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib->smac, ETH_ALEN);
	nh->ok_len = len; /* longer than before when the entry was live: that is why it asked */
	nh->expires = now + LB_NEXTHOP_TTL_NS;
	return rc;
}

static __always_inline int nexthop_fib_lookup(struct xdp_md *ctx, struct bpf_fib_lookup *fib)
{
	return nexthop_fib_lookup_at(ctx, fib, bpf_ktime_get_coarse_ns());
}

/*
 * The same cache for IPv6 destinations, in a map of its own so that the IPv4 entries stay small.
 * The traffic class is asked as its DSCP only, without the flow label (in flowinfo), so that one
 * answer serves every flow to a destination.
 */
struct lb_nexthop6 {
	__be32 dst[4];
	__be32 src[4];
	__be32 flowinfo;
	__u32 iif;
	__u32 oif;
	__u16 ok_len; /* the longest tot_len the kernel answered SUCCESS for */
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
static __always_inline int nexthop_fib_lookup6_at(struct xdp_md *ctx, struct bpf_fib_lookup *fib,
						  __u64 now)
{
	__u32 fold = fib->ipv6_dst[0] ^ fib->ipv6_dst[1] ^ fib->ipv6_dst[2] ^ fib->ipv6_dst[3] ^
		     fib->ipv6_src[0] ^ fib->ipv6_src[1] ^ fib->ipv6_src[2] ^ fib->ipv6_src[3];
	__u32 slot = (fold * 0x9E3779B1U) >> 22 & (LB_NEXTHOP_SLOTS - 1);
	struct lb_nexthop6 *nh = bpf_map_lookup_elem(&nexthop6_cache, &slot);
	__u16 len = fib->tot_len;
	int same, rc;

	fib->flowinfo &= bpf_htonl(LB_NEXTHOP_DSCP6);
	if (!nh)
		return bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	same = nh->expires > now && nexthop6_same(nh->dst, fib->ipv6_dst) &&
	       nexthop6_same(nh->src, fib->ipv6_src) && nh->iif == fib->ifindex &&
	       nh->flowinfo == fib->flowinfo;
	if (same && len <= nh->ok_len) {
		fib->ifindex = nh->oif;
		__builtin_memcpy(fib->dmac, nh->dmac, ETH_ALEN);
		__builtin_memcpy(fib->smac, nh->smac, ETH_ALEN);
		return BPF_FIB_LKUP_RET_SUCCESS;
	}
	if (!same) {
		nh->expires = 0;
		__builtin_memcpy(nh->dst, fib->ipv6_dst, 16);
		__builtin_memcpy(nh->src, fib->ipv6_src, 16);
		nh->iif = fib->ifindex;
		nh->flowinfo = fib->flowinfo;
	}
	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return rc; /* as in nexthop_fib_lookup_at() */
	nh->oif = fib->ifindex;
	__builtin_memcpy(nh->dmac, fib->dmac, ETH_ALEN);
	__builtin_memcpy(nh->smac, fib->smac, ETH_ALEN);
	nh->ok_len = len;
	nh->expires = now + LB_NEXTHOP_TTL_NS;
	return rc;
}

static __always_inline int nexthop_fib_lookup6(struct xdp_md *ctx, struct bpf_fib_lookup *fib)
{
	return nexthop_fib_lookup6_at(ctx, fib, bpf_ktime_get_coarse_ns());
}

#endif /* LB_NEXTHOP_H */
