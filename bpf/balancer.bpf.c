// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * balancer.bpf.c - the XDP load balancer.
 *
 * Packet's way: parse -> is the destination a VIP (bit filter, then service lookup)? -> flow table
 * or Maglev ring picks the backend -> forward by the service's mode (l2dsr, ipip). nat services
 * branch off after the service lookup to their own connection table (lib/nat.h); replies from NAT
 * backends are recognised by a second bit filter on the source, checked only for traffic that is
 * not to a service. Anything not for a service passes untouched; anything for a service that we
 * cannot handle safely gets a counted verdict (enum lb_reason). One exit: every path counts its
 * reason in balancer_entry().
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/ipv6.h>
#include <linux/icmpv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "lb_abi.h"
#include "lib/parse.h"
#include "lib/maps.h"
#include "lib/flow.h"
#include "lib/forward.h"
#include "lib/nat.h"
#include "lib/nat6.h"
#include "lib/svcindex.h"

/* Multiplicative fold of the destination address into the VIP filter's bit index. */
static __always_inline int vip_filter_hit(__be32 daddr)
{
	__u32 bit = ((__u32)daddr * 0x9E3779B1U) >> (32 - LB_VIP_FILTER_SHIFT);
	__u32 word = bit >> 6;
	__u64 *w = bpf_map_lookup_elem(&vip_filter, &word);

	return w && (*w & (1ULL << (bit & 63)));
}

/*
 * The IPv6 path, a branch of its own off the ethertype test. Inlined: as a BPF subprogram it
 * (and fwd_ipip6 below it) would stack its frame on the entry's, which the IPv4 path and NAT
 * already fill to ~320 of the 512 bytes the verifier allows for the whole call chain; inlined,
 * the compiler overlaps its locals with the IPv4 branch's. Same steps as balance(): the VIP
 * filter (on lb_filter6(), a XOR of the address's words) comes before any extension header is
 * walked, so non-VIP IPv6 costs three XORs and one bit test. Addresses enter the flow hash folded
 * by lb_fold6(), so
 * the flow table, the ring and hash-source-only work on one word as for IPv4.
 */
static __always_inline int balance6(struct xdp_md *ctx, struct ethhdr *eth, struct ipv6hdr *ip6, int vlan,
			       __u32 *reason)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct hdr_cursor cur = { .pos = ip6 + 1 };
	struct lb_pkt6 pkt = { .eth = eth, .ip6 = ip6, .vlan = vlan };
	struct lb_service_key key = {};
	struct lb_flow flow = {};
	struct lb_flow_probe probe;
	struct lb_service svc_copy;
	struct lb_backend *be = NULL;
	struct lb_service *svc;
	struct lb_ctl *cfg;
	__u32 zero = 0, be_id, vip, plen, used, room;
	int proto, is_new;

	if ((void *)(ip6 + 1) > end) {
		*reason = LB_R_PASS_MALFORMED;
		return XDP_PASS;
	}
	if (!vip_filter_hit(lb_filter6(ip6->daddr.in6_u.u6_addr32))) {
		*reason = LB_R_PASS_NOT_VIP;
		goto not_service;
	}
	vip = lb_fold6(ip6->daddr.in6_u.u6_addr32);

	/* From here on the packet is addressed to a VIP: every oddity gets a counted verdict. */
	*reason = LB_R_DROP_MALFORMED;
	plen = bpf_ntohs(ip6->payload_len);
	if (ip6->version != 6 || (void *)(ip6 + 1) + plen > end)
		return XDP_DROP;
	proto = parse_ipv6_ext(&cur, end, ip6->nexthdr, plen, &used);
	if (proto < 0) {
		if (proto == PARSE6_EXT_HDR)
			*reason = LB_R_DROP_EXT_HDR;
		else if (proto == PARSE6_FRAGMENT)
			*reason = LB_R_DROP_FRAGMENT;
		return XDP_DROP;
	}
	room = plen - used;
	pkt.l4 = cur.pos;
	pkt.proto = proto;

	key.family = LB_FAMILY_V6;
	__builtin_memcpy(key.addr, ip6->daddr.in6_u.u6_addr32, sizeof(key.addr));
	key.proto = proto;
	flow.client = lb_fold6(ip6->saddr.in6_u.u6_addr32);
	flow.vip = vip;
	flow.proto = proto;
	switch (proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = cur.pos;

		if ((void *)(th + 1) > end || room < sizeof(*th) || th->doff < 5)
			return XDP_DROP;
		key.port = th->dest;
		flow.ports = ((__u32)th->source << 16) | th->dest;
		flow.syn = th->syn && !th->ack;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = cur.pos;

		if ((void *)(uh + 1) > end || room < sizeof(*uh))
			return XDP_DROP;
		key.port = uh->dest;
		flow.ports = ((__u32)uh->source << 16) | uh->dest;
		break;
	}
	case IPPROTO_ICMPV6: {
		/*
		 * Packet-too-big about a reply the backend sent from the VIP: the quoted header is
		 * VIP -> client, so the flow is the quote reversed, and its backend must see it.
		 */
		struct icmp6hdr *ic = cur.pos;
		struct ipv6hdr *q = (void *)(ic + 1);
		__be16 *qports = (void *)(q + 1);

		if ((void *)(ic + 1) > end || room < sizeof(*ic))
			return XDP_DROP;
		if (ic->icmp6_type != ICMPV6_PKT_TOOBIG || ic->icmp6_code != 0) {
			*reason = LB_R_PASS_NOT_SERVICE;
			return XDP_PASS;
		}
		if ((void *)(qports + 2) > end ||
		    room < sizeof(*ic) + sizeof(*q) + 4 ||
		    (q->nexthdr != IPPROTO_TCP && q->nexthdr != IPPROTO_UDP))
			return XDP_DROP;
		__builtin_memcpy(key.addr, q->saddr.in6_u.u6_addr32, sizeof(key.addr));
		key.port = qports[0];
		key.proto = q->nexthdr;
		flow.client = lb_fold6(q->daddr.in6_u.u6_addr32);
		flow.vip = lb_fold6(q->saddr.in6_u.u6_addr32);
		flow.proto = q->nexthdr;
		flow.ports = ((__u32)qports[1] << 16) | qports[0];
		count_reason(LB_R_ICMP_TOO_BIG);
		break;
	}
	default:
		*reason = LB_R_PASS_NOT_SERVICE;
		return XDP_PASS;
	}

	flow_probe_start(&probe, &flow);
	svc = service_lookup6(&key, flow.vip, &svc_copy); /* flow.vip: the key's VIP, folded */
	if (!svc) {
		*reason = LB_R_PASS_NOT_SERVICE;
		goto not_service;
	}
	if (svc->mode == LB_MODE_NAT) {
		/* Here, not in nat6_forward(): its locals and these do not share the stack. */
		if (__builtin_expect(proto == IPPROTO_ICMPV6, 0))
			return nat6_icmp_forward(ctx, &pkt, end, reason);
		return nat6_forward(ctx, svc, &pkt, end, reason);
	}
	cfg = bpf_map_lookup_elem(&ctl, &zero);
	if (!cfg)
		return XDP_ABORTED;

	be_id = pick_backend(svc, &flow, &probe, cfg->clock, &be, &is_new);
	if (be_id == LB_BACKEND_NONE || !be) {
		if (svc->flags & LB_SVC_F_DOWN_PASS) {
			*reason = LB_R_PASS_NO_BACKEND;
			return XDP_PASS;
		}
		*reason = LB_R_DROP_NO_BACKEND;
		return XDP_DROP;
	}
	count_backend(be_id, end - data, is_new);

	switch (svc->mode) {
	case LB_MODE_L2DSR:
		return fwd_l2dsr(eth, be, reason);
	case LB_MODE_IPIP: {
		struct ipip6_inner in = {};

		/* 6in4 is refused by the config; a map that holds one anyway gets a counted drop. */
		if (be->family != LB_FAMILY_V6) {
			*reason = LB_R_DROP_ENCAP;
			return XDP_DROP;
		}
		in.word0 = ipv6_outer_word0(ip6_tclass(ip6), probe.h.h1);
		in.len = sizeof(*ip6) + plen;
		in.proto = IPPROTO_IPV6;
		in.vlan = vlan;
		return fwd_ipip6(ctx, be, cfg, &in, reason);
	}
	default:
		*reason = LB_R_PASS_NOT_MODE;
		return XDP_PASS;
	}

not_service:
	/* As for IPv4: a NAT reply is never to a VIP; its upper-layer header is behind the
	 * extension headers, which only a filter hit pays for walking. */
	if (__builtin_expect(nat_filter_hit(lb_filter6(ip6->saddr.in6_u.u6_addr32)), 0)) {
		if (!pkt.l4) {
			plen = bpf_ntohs(ip6->payload_len);
			proto = -1;
			if (ip6->version == 6 && (void *)(ip6 + 1) + plen <= end)
				proto = parse_ipv6_ext(&cur, end, ip6->nexthdr, plen, &used);
			if (proto < 0) {
				*reason = LB_R_PASS_NOT_NAT;
				return XDP_PASS;
			}
			pkt.l4 = cur.pos;
			pkt.proto = proto;
		}
		return nat6_reply(ctx, &pkt, end, reason);
	}
	return XDP_PASS;
}

static __always_inline int balance(struct xdp_md *ctx, __u32 *reason)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct hdr_cursor cur = { .pos = data };
	struct lb_service_key key = {};
	struct lb_flow flow = {};
	struct lb_flow_probe probe;
	struct lb_service svc_copy;
	struct ipip_inner inner = {};
	struct lb_backend *be = NULL;
	struct lb_service *svc;
	struct lb_ctl *cfg;
	struct ethhdr *eth;
	struct iphdr *iph;
	__u32 zero = 0, be_id, ihl_len;
	__u16 tot_len;
	void *l4;
	int proto, vlan, is_new;

	proto = parse_ethhdr(&cur, end, &eth, &vlan);
	if (proto != ETH_P_IP) {
		if (proto == ETH_P_IPV6)
			return balance6(ctx, eth, cur.pos, vlan, reason);
		*reason = LB_R_PASS_NOT_IP;
		return XDP_PASS;
	}
	if (parse_iphdr(&cur, end, &iph) < 0) {
		*reason = LB_R_PASS_MALFORMED;
		return XDP_PASS;
	}
	if (!vip_filter_hit(iph->daddr)) {
		*reason = LB_R_PASS_NOT_VIP;
		goto not_service;
	}

	/* From here on the packet is addressed to a VIP: every oddity gets a counted verdict. */
	*reason = LB_R_DROP_MALFORMED;
	ihl_len = iph->ihl * 4;
	tot_len = bpf_ntohs(iph->tot_len);
	if (iph->version != 4 || ihl_len < sizeof(*iph) || tot_len < ihl_len ||
	    (void *)iph + tot_len > end)
		return XDP_DROP;
	if (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET)) {
		*reason = LB_R_DROP_FRAGMENT;
		return XDP_DROP;
	}
	l4 = (void *)iph + ihl_len;

	key.family = LB_FAMILY_V4;
	key.addr[0] = iph->daddr;
	key.proto = iph->protocol;
	flow.client = iph->saddr;
	flow.vip = iph->daddr;
	flow.proto = iph->protocol;
	switch (iph->protocol) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > end || th->doff < 5)
			return XDP_DROP;
		key.port = th->dest;
		flow.ports = ((__u32)th->source << 16) | th->dest;
		flow.syn = th->syn && !th->ack;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > end)
			return XDP_DROP;
		key.port = uh->dest;
		flow.ports = ((__u32)uh->source << 16) | uh->dest;
		break;
	}
	case IPPROTO_ICMP: {
		/*
		 * Fragmentation-needed about a reply the backend sent from the VIP: the quoted header
		 * is VIP -> client, so the flow is the quote reversed, and its backend must see it.
		 * A nat service's connection is found the same way, by nat_icmp_forward().
		 */
		struct icmphdr *ic = l4;
		struct iphdr *q = (void *)(ic + 1);
		__be16 *qports = (void *)(q + 1);

		if ((void *)(ic + 1) > end)
			return XDP_DROP;
		if (ic->type != ICMP_DEST_UNREACH || ic->code != ICMP_FRAG_NEEDED) {
			*reason = LB_R_PASS_NOT_SERVICE;
			return XDP_PASS;
		}
		if ((void *)(qports + 2) > end || q->ihl != 5 ||
		    (q->protocol != IPPROTO_TCP && q->protocol != IPPROTO_UDP))
			return XDP_DROP;
		key.addr[0] = q->saddr;
		key.port = qports[0];
		key.proto = q->protocol;
		flow.client = q->daddr;
		flow.vip = q->saddr;
		flow.proto = q->protocol;
		flow.ports = ((__u32)qports[1] << 16) | qports[0];
		count_reason(LB_R_ICMP_TOO_BIG);
		break;
	}
	default:
		*reason = LB_R_PASS_NOT_SERVICE;
		return XDP_PASS;
	}

	flow_probe_start(&probe, &flow); /* before the service lookup, which hides its cache miss */
	svc = service_lookup(&key, &svc_copy);
	if (!svc) {
		*reason = LB_R_PASS_NOT_SERVICE;
		goto not_service;
	}
	if (ihl_len != sizeof(*iph)) {
		*reason = LB_R_DROP_IP_OPTIONS;
		return XDP_DROP;
	}
	/* Unlikely for the compiler: block layout and register spills favour the DSR paths. ICMP is
	 * told apart here, not in nat_forward(), whose TCP/UDP code it would cost spills. */
	if (__builtin_expect(svc->mode == LB_MODE_NAT, 0)) {
		if (__builtin_expect(iph->protocol == IPPROTO_ICMP, 0))
			return nat_icmp_forward(ctx, eth, iph, end, vlan, reason);
		return nat_forward(ctx, svc, eth, iph, end, vlan, reason);
	}
	cfg = bpf_map_lookup_elem(&ctl, &zero);
	if (!cfg)
		return XDP_ABORTED;

	be_id = pick_backend(svc, &flow, &probe, cfg->clock, &be, &is_new);
	if (be_id == LB_BACKEND_NONE || !be) {
		if (svc->flags & LB_SVC_F_DOWN_PASS) {
			*reason = LB_R_PASS_NO_BACKEND;
			return XDP_PASS;
		}
		*reason = LB_R_DROP_NO_BACKEND;
		return XDP_DROP;
	}
	count_backend(be_id, end - data, is_new);

	switch (svc->mode) {
	case LB_MODE_L2DSR:
		return fwd_l2dsr(eth, be, reason);
	case LB_MODE_IPIP:
		inner.tot_len = iph->tot_len;
		inner.df = iph->frag_off & bpf_htons(IP_DF);
		inner.tos = iph->tos;
		inner.vlan = vlan;
		if (__builtin_expect(be->family == LB_FAMILY_V6, 0)) {
			struct ipip6_inner in6 = {};

			in6.word0 = ipv6_outer_word0(iph->tos, probe.h.h1);
			in6.len = tot_len;
			in6.proto = IPPROTO_IPIP;
			in6.vlan = vlan;
			return fwd_ipip6(ctx, be, cfg, &in6, reason);
		}
		return fwd_ipip(ctx, be, cfg->src4, &inner, reason);
	default:
		*reason = LB_R_PASS_NOT_MODE;
		return XDP_PASS;
	}

not_service:
	/* A NAT reply goes to the client (or to our full-NAT address), never to a VIP: it lands here,
	 * also when its destination only collides with a VIP in the filter. */
	if (__builtin_expect(nat_filter_hit(iph->saddr), 0))
		return nat_reply(ctx, eth, iph, end, vlan, reason);
	return XDP_PASS;
}

/* The entry's whole work, kept apart so bpf/bench_balancer.bpf.c can include and time it. */
static __always_inline int balancer_entry(struct xdp_md *ctx)
{
	__u32 reason = LB_R_PASS_NOT_IP;
	int action = balance(ctx, &reason);
	__u64 *n = bpf_map_lookup_elem(&reasons, &reason);

	if (n)
		*n += 1;
	return action;
}

SEC("xdp")
int xdp_balancer(struct xdp_md *ctx)
{
	return balancer_entry(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
