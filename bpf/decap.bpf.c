// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * decap.bpf.c - the backend side of IPIP DSR, for hosts without the ipip driver (no tunl0).
 *
 * Strips the outer IPv4 header of IPv4-in-IPv4 packets that reached this host and passes the
 * inner packet up the stack, where the VIP on lo accepts it. Like tunl0 it takes any IPIP packet
 * delivered to this interface's MAC: a backend is not a router, so none is meant for anyone else.
 * An outer header with options or fragmentation is left to the kernel (which drops it without a
 * tunnel driver): the load balancer never sends one.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lib/parse.h"

enum decap_counter {
	DECAP_OK = 0,       /* outer header stripped */
	DECAP_PASS,         /* not IPIP, passed untouched */
	DECAP_UNSUPPORTED,  /* IPIP with outer options/fragments or a short inner header */
	DECAP_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, DECAP_MAX);
	__type(key, __u32);
	__type(value, __u64);
} decap_stats SEC(".maps");

static __always_inline int decap(struct xdp_md *ctx, __u32 *counter)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct hdr_cursor cur = { .pos = data };
	struct ethhdr *eth;
	struct iphdr *outer, *inner;
	__u8 l2[sizeof(struct ethhdr) + 4];
	int vlan;

	*counter = DECAP_PASS;
	if (parse_ethhdr(&cur, end, &eth, &vlan) != ETH_P_IP)
		return XDP_PASS;
	if (parse_iphdr(&cur, end, &outer) != IPPROTO_IPIP)
		return XDP_PASS;
	*counter = DECAP_UNSUPPORTED;
	inner = (void *)(outer + 1);
	if (outer->ihl != 5 || (outer->frag_off & bpf_htons(IP_MF | IP_OFFSET)) ||
	    (void *)(inner + 1) > end || inner->version != 4)
		return XDP_PASS;

	/* Keep the L2 header (and its VLAN tag) and drop the 20 bytes behind it. */
	__builtin_memcpy(l2, eth, sizeof(l2) - 4);
	if (vlan)
		__builtin_memcpy(l2 + sizeof(struct ethhdr), (void *)(eth + 1), 4);
	if (bpf_xdp_adjust_head(ctx, sizeof(struct iphdr)))
		return XDP_PASS;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + sizeof(l2) > end)
		return XDP_DROP;
	__builtin_memcpy(data, l2, sizeof(struct ethhdr));
	if (vlan)
		__builtin_memcpy(data + sizeof(struct ethhdr), l2 + sizeof(struct ethhdr), 4);
	*counter = DECAP_OK;
	return XDP_PASS;
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
