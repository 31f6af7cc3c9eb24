// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * decap.bpf.c - the backend side of IPIP DSR, for hosts without the ipip driver (no tunl0).
 *
 * Strips the outer header of IPv4-in-IPv4, IPv6-in-IPv6 and IPv4-in-IPv6 packets that reached
 * this host and passes the inner packet up the stack, where the VIP on lo accepts it. Like tunl0 it takes any IPIP packet
 * delivered to this interface's MAC: a backend is not a router, so none is meant for anyone else.
 * An outer header with options or fragmentation is left to the kernel (which drops it without a
 * tunnel driver): the load balancer never sends one.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/parse.h"

enum decap_counter {
	DECAP_OK = 0,       /* outer header stripped */
	DECAP_PASS,         /* not IPIP, passed untouched */
	DECAP_UNSUPPORTED,  /* a tunnel packet with outer options/fragments/extension headers or a short inner header */
	DECAP_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DECAP_MAX);
	__type(key, __u32);
	__type(value, __u64);
} decap_stats SEC(".maps");

/*
 * Drops the outer_len bytes behind the L2 header (and its VLAN tag), which stays, and sets the
 * ethertype to the inner packet's. The caller has checked the inner header is there.
 */
static __always_inline int strip_outer(struct xdp_md *ctx, struct ethhdr *eth, int vlan,
				       int outer_len, __be16 inner_type, __u32 *counter)
{
	__u8 l2[sizeof(struct ethhdr) + sizeof(struct vlan_hdr)];
	struct vlan_hdr *vh;
	void *data, *end;

	__builtin_memcpy(l2, eth, sizeof(struct ethhdr));
	if (vlan)
		__builtin_memcpy(l2 + sizeof(struct ethhdr), (void *)(eth + 1), sizeof(*vh));
	if (bpf_xdp_adjust_head(ctx, outer_len))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + sizeof(l2) > end)
		return XDP_DROP;
	eth = data;
	__builtin_memcpy(eth, l2, sizeof(struct ethhdr));
	if (vlan) {
		vh = (void *)(eth + 1);
		__builtin_memcpy(vh, l2 + sizeof(struct ethhdr), sizeof(*vh));
		vh->encap_proto = inner_type;
	} else {
		eth->h_proto = inner_type;
	}
	*counter = DECAP_OK;
	return XDP_PASS;
}

/*
 * An outer IPv6 header: 6in6 (next header 41) and 4in6 (next header 4), as the load balancer
 * sends to IPv6 backends. It never sends extension headers, so a tunnel packet behind one is
 * left to the kernel and counted as unsupported; other IPv6 traffic behind them (MLD behind
 * hop-by-hop, say) is simply not ours.
 */
static __always_inline int decap6(struct xdp_md *ctx, struct hdr_cursor *cur, void *end,
				  struct ethhdr *eth, int vlan, __u32 *counter)
{
	struct ipv6hdr *outer = cur->pos;
	__u32 used;
	int proto;

	if ((void *)(outer + 1) > end)
		return XDP_PASS;
	cur->pos = outer + 1;
	switch (outer->nexthdr) {
	case IPPROTO_IPV6: {
		struct ipv6hdr *inner = cur->pos;

		*counter = DECAP_UNSUPPORTED;
		if ((void *)(inner + 1) > end || inner->version != 6)
			return XDP_PASS;
		return strip_outer(ctx, eth, vlan, sizeof(*outer), bpf_htons(ETH_P_IPV6), counter);
	}
	case IPPROTO_IPIP: {
		struct iphdr *inner = cur->pos;

		*counter = DECAP_UNSUPPORTED;
		if ((void *)(inner + 1) > end || inner->version != 4)
			return XDP_PASS;
		return strip_outer(ctx, eth, vlan, sizeof(*outer), bpf_htons(ETH_P_IP), counter);
	}
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_FRAGMENT:
	case IPPROTO_DSTOPTS:
		proto = parse_ipv6_ext(cur, end, outer->nexthdr, bpf_ntohs(outer->payload_len), &used);
		if (proto < 0 || proto == IPPROTO_IPV6 || proto == IPPROTO_IPIP)
			*counter = DECAP_UNSUPPORTED;
		return XDP_PASS;
	}
	return XDP_PASS;
}

static __always_inline int decap(struct xdp_md *ctx, __u32 *counter)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct hdr_cursor cur = { .pos = data };
	struct ethhdr *eth;
	struct iphdr *outer, *inner;
	int vlan, proto;

	*counter = DECAP_PASS;
	proto = parse_ethhdr(&cur, end, &eth, &vlan);
	if (proto == ETH_P_IPV6)
		return decap6(ctx, &cur, end, eth, vlan, counter);
	if (proto != ETH_P_IP)
		return XDP_PASS;
	if (parse_iphdr(&cur, end, &outer) != IPPROTO_IPIP)
		return XDP_PASS;
	*counter = DECAP_UNSUPPORTED;
	inner = (void *)(outer + 1);
	if (outer->ihl != 5 || (outer->frag_off & bpf_htons(IP_MF | IP_OFFSET)) ||
	    (void *)(inner + 1) > end || inner->version != 4)
		return XDP_PASS;
	return strip_outer(ctx, eth, vlan, sizeof(*outer), bpf_htons(ETH_P_IP), counter);
}

SEC("xdp")
int xdp_decap(struct xdp_md *ctx)
{
	__u32 counter;
	int action = decap(ctx, &counter);
	__u64 *n = bpf_map_lookup_elem(&decap_stats, &counter);

	if (n)
		*n += 1;
	return action;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
