/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * forward.h - send a packet to its backend by the service's mode. Each returns an XDP verdict
 * and sets *reason.
 */
#ifndef LB_FORWARD_H
#define LB_FORWARD_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lb_abi.h"
#include "csum.h"
#include "nexthop.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

#define LB_IPV6_FLOWLABEL_MASK 0x000fffffU
#define LB_IPV6_TCLASS_MASK 0x0ff00000U

/* Outer TTL: enough for a backend "several routers away", as for any locally sent packet. */
#define LB_IPIP_TTL 64

/* L2 DSR: the frame came to our MAC, so that becomes the source; the backend's is the target. */
static __always_inline int fwd_l2dsr(struct ethhdr *eth, const struct lb_backend *be, __u32 *reason)
{
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, be->mac, ETH_ALEN);
	*reason = LB_R_TX_L2DSR;
	return XDP_TX;
}

/* What the outer header copies from the inner one, read before the packet moves. */
struct ipip_inner {
	__be16 tot_len;
	__be16 df;
	__u8 tos;
	__u8 vlan;
};

/*
 * Sends an encapsulated packet where the next-hop lookup (rc, fib) says, for either outer family.
 * What XDP cannot send itself (unresolved neighbour, a VLAN device on the way out) goes to the
 * kernel already encapsulated, which forwards it: the LB needs forwarding on for that.
 */
static __always_inline int tunnel_xmit(struct xdp_md *ctx, struct ethhdr *eth,
				       const struct bpf_fib_lookup *fib, int rc, int vlan, __u32 *reason)
{
	switch (rc) {
	case BPF_FIB_LKUP_RET_SUCCESS:
		if (vlan && fib->ifindex != ctx->ingress_ifindex)
			break;
		__builtin_memcpy(eth->h_dest, fib->dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, fib->smac, ETH_ALEN);
		if (fib->ifindex == ctx->ingress_ifindex) {
			*reason = LB_R_TX_IPIP;
			return XDP_TX;
		}
		*reason = LB_R_REDIRECT_IPIP;
		return bpf_redirect(fib->ifindex, 0);
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		break;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		*reason = LB_R_DROP_IPIP_MTU;
		return XDP_DROP;
	default:
		*reason = LB_R_DROP_IPIP_NO_ROUTE;
		return XDP_DROP;
	}
	*reason = LB_R_PASS_IPIP_KERNEL;
	return XDP_PASS;
}

/*
 * IPIP DSR: push an outer IPv4 header (us -> backend) and send it toward the next hop the kernel
 * would use (tunnel_xmit).
 */
static __always_inline int fwd_ipip(struct xdp_md *ctx, const struct lb_backend *be, __be32 src,
				    const struct ipip_inner *in, __u32 *reason)
{
	struct bpf_fib_lookup fib = {};
	struct ethhdr *eth, *old_eth;
	struct iphdr *outer;
	void *data, *end;
	__u32 l2_len = in->vlan ? sizeof(struct ethhdr) + 4 : sizeof(struct ethhdr);
	__be32 dst = be->addr[0];
	int rc;

	if (!src || bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr))) {
		*reason = LB_R_DROP_ENCAP;
		return XDP_DROP;
	}
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	old_eth = data + sizeof(struct iphdr);
	if ((void *)old_eth + sizeof(struct ethhdr) + 4 + sizeof(struct iphdr) > end) {
		*reason = LB_R_DROP_ENCAP;
		return XDP_DROP;
	}
	/* The L2 header moves to the new front; a VLAN tag comes along. */
	__builtin_memcpy(eth, old_eth, sizeof(struct ethhdr));
	if (in->vlan)
		__builtin_memcpy((void *)(eth + 1), (void *)(old_eth + 1), 4);
	outer = data + l2_len;
	if ((void *)(outer + 1) > end) {
		*reason = LB_R_DROP_ENCAP;
		return XDP_DROP;
	}
	outer->version = 4;
	outer->ihl = 5;
	outer->tos = in->tos;
	outer->tot_len = bpf_htons(bpf_ntohs(in->tot_len) + sizeof(struct iphdr));
	outer->id = 0;
	outer->frag_off = in->df;
	outer->ttl = LB_IPIP_TTL;
	outer->protocol = IPPROTO_IPIP;
	outer->check = 0;
	outer->saddr = src;
	outer->daddr = dst;
	outer->check = csum_ipv4_hdr(outer);

	fib.family = AF_INET;
	fib.tos = in->tos;
	fib.l4_protocol = IPPROTO_IPIP;
	fib.tot_len = bpf_ntohs(outer->tot_len);
	fib.ipv4_src = src;
	fib.ipv4_dst = dst;
	fib.ifindex = ctx->ingress_ifindex;
	rc = nexthop_fib_lookup(ctx, &fib); /* bpf_fib_lookup(), answers cached for a second */
	return tunnel_xmit(ctx, eth, &fib, rc, in->vlan, reason);
}

/* What the outer IPv6 header takes from the inner packet and its flow. */
struct ipip6_inner {
	__be32 word0; /* version, traffic class, flow label: the outer header's first 4 bytes */
	__u16 len;    /* the inner packet's length, header included: the outer payload length */
	__u8 proto;   /* IPPROTO_IPV6 (6in6) or IPPROTO_IPIP (4in6) */
	__u8 vlan;
};

/* The inner IPv6 header's traffic class (it straddles the first two bytes). */
static __always_inline __u8 ip6_tclass(const struct ipv6hdr *ip6)
{
	return (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
}

/*
 * The outer header's first word: the inner traffic class (or TOS) copied, as for the IPv4 outer
 * header, and a flow label from the flow hash. Every flow from the LB to one backend has the same
 * outer addresses, so the label is all that lets ECMP routers between us and the backend spread
 * them (RFC 6438); it is the same for every packet of a flow, so a flow keeps one path.
 */
static __always_inline __be32 ipv6_outer_word0(__u8 tclass, __u32 flow_hash)
{
	return bpf_htonl((6U << 28) | ((__u32)tclass << 20) | (flow_hash & LB_IPV6_FLOWLABEL_MASK));
}

/*
 * IPIP DSR to an IPv6 backend: push an outer IPv6 header (ctl.src6 -> backend) in front of an
 * IPv6 (6in6) or IPv4 (4in6) packet and send it as fwd_ipip() does, with the same reasons.
 * It serves both families' paths (4in6 from balance(), 6in6 from balance6()).
 */
static __always_inline int fwd_ipip6(struct xdp_md *ctx, const struct lb_backend *be,
				const struct lb_ctl *cfg, const struct ipip6_inner *in, __u32 *reason)
{
	struct bpf_fib_lookup fib = {};
	struct ethhdr *eth, *old_eth;
	struct ipv6hdr *outer;
	void *data, *end;
	__u32 l2_len = in->vlan ? sizeof(struct ethhdr) + 4 : sizeof(struct ethhdr);
	__be16 *l2_proto;
	int rc;

	if (!(cfg->src6[0] | cfg->src6[1] | cfg->src6[2] | cfg->src6[3]) ||
	    bpf_xdp_adjust_head(ctx, -(int)sizeof(struct ipv6hdr))) {
		*reason = LB_R_DROP_ENCAP;
		return XDP_DROP;
	}
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	old_eth = data + sizeof(struct ipv6hdr);
	if ((void *)old_eth + sizeof(struct ethhdr) + 4 + sizeof(struct iphdr) > end) {
		*reason = LB_R_DROP_ENCAP;
		return XDP_DROP;
	}
	/* The L2 header moves to the new front; a VLAN tag comes along. */
	__builtin_memcpy(eth, old_eth, sizeof(struct ethhdr));
	if (in->vlan)
		__builtin_memcpy((void *)(eth + 1), (void *)(old_eth + 1), 4);
	outer = data + l2_len;
	if ((void *)(outer + 1) > end) {
		*reason = LB_R_DROP_ENCAP;
		return XDP_DROP;
	}
	/* 4in6 turns an IPv4 frame into an IPv6 one. */
	l2_proto = (void *)outer - 2;
	*l2_proto = bpf_htons(ETH_P_IPV6);
	*(__be32 *)outer = in->word0;
	outer->payload_len = bpf_htons(in->len);
	outer->nexthdr = in->proto;
	outer->hop_limit = LB_IPIP_TTL;
	__builtin_memcpy(outer->saddr.in6_u.u6_addr32, cfg->src6, 16);
	__builtin_memcpy(outer->daddr.in6_u.u6_addr32, be->addr, 16);

	fib.family = AF_INET6;
	/* The traffic class only: our own next hop for a backend must not depend on the flow
	 * (nexthop.h caches it per backend), as for IPv4, which asks without ports. */
	fib.flowinfo = in->word0 & bpf_htonl(LB_IPV6_TCLASS_MASK);
	fib.l4_protocol = in->proto;
	fib.tot_len = sizeof(struct ipv6hdr) + in->len;
	__builtin_memcpy(fib.ipv6_src, cfg->src6, 16);
	__builtin_memcpy(fib.ipv6_dst, be->addr, 16);
	fib.ifindex = ctx->ingress_ifindex;
	rc = nexthop_fib_lookup6(ctx, &fib);
	return tunnel_xmit(ctx, eth, &fib, rc, in->vlan, reason);
}

#endif /* LB_FORWARD_H */
