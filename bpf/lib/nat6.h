/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nat6.h - NAT66 and full NAT66: the IPv6 twin of nat.h, on nat6_conns (lb_abi.h).
 *
 * Same behaviour as nat.h, read that first: two entries per connection (reverse inserted first
 * with BPF_NOEXIST, the partner found by swapping a value), the same states, timeouts, expiry
 * (an entry past its timeout is absent here, the sweeper deletes it), touch rule, counters and
 * verdict reasons. nat.h's family-neutral helpers (nat_l4, nat_next_state, nat_timed_out,
 * nat_no_route, nat_egress, nat_sent_reason; count_backend in maps.h) are used as they are; what differs is the
 * 128-bit address handling and:
 *  - IPv6 has no header checksum: only TCP/UDP checksums change, over the pseudo header's
 *    addresses and the ports;
 *  - UDP over IPv6 must carry a checksum (RFC 8200, 8.1): a datagram with checksum 0 is invalid,
 *    is not translated and gets LB_R_DROP_MALFORMED;
 *  - the hop limit plays the TTL's part, and there is no header checksum to fix after it;
 *  - the flow hash and the ring see each address as its lb_fold6() word, as the control plane's
 *    flowHash() does (src/dataplane/hash.ts), so tests and full-NAT port prediction agree.
 *
 * nat6_forward() takes a TCP/UDP packet to a nat service's IPv6 VIP, nat6_icmp_forward() a
 * packet-too-big about one of its connections, nat6_reply() a packet from a NAT
 * backend's IPv6 address (nat_filter hit on lb_filter6(saddr)) that is not to a service; each
 * returns an XDP verdict and sets *reason. The caller (balance6() in balancer.bpf.c) has checked
 * the version and that the payload length fits the frame, and walked the extension headers:
 * p->l4 points behind them, and their bytes are neither read nor changed here (the L4 checksum
 * does not cover them). The L4 header's bounds are checked here.
 */
#ifndef LB_NAT6_H
#define LB_NAT6_H

#include <linux/bpf.h>
#include <linux/ipv6.h>
#include <linux/icmpv6.h>
#include "lb_abi.h"
#include "parse.h"
#include "maps.h"
#include "hash.h"
#include "csum.h"
#include "flow.h"
#include "nat.h"

#ifndef AF_INET6
#define AF_INET6 10
#endif
/* Traffic class: the lookup asks without the flow label (see nat6_xmit()). */
#define LB_NAT6_TCLASS_MASK bpf_htonl(0x0ff00000)

static __always_inline int addr6_eq(const __be32 *a, const __be32 *b)
{
	return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0;
}

static __always_inline void addr6_copy(__be32 *dst, const __be32 *src)
{
	dst[0] = src[0];
	dst[1] = src[1];
	dst[2] = src[2];
	dst[3] = src[3];
}

/* The other direction's key: the packet that entry e produces, seen coming back. */
static __always_inline void nat6_partner_key(const struct lb_nat6_entry *e,
					     const struct lb_nat6_key *k, struct lb_nat6_key *p)
{
	addr6_copy(p->saddr, e->daddr);
	addr6_copy(p->daddr, e->saddr);
	p->sport = e->dport;
	p->dport = e->sport;
	p->proto = k->proto;
	p->dir = k->dir ^ 1;
	p->pad = 0;
}

/* Whether entry p (at the partner key of k) translates back to k: the pair belongs together. */
static __always_inline int nat6_points_to(const struct lb_nat6_entry *p, const struct lb_nat6_key *k)
{
	return addr6_eq(p->saddr, k->daddr) && addr6_eq(p->daddr, k->saddr) && p->sport == k->dport &&
	       p->dport == k->sport;
}

static __always_inline int nat6_expired(const struct lb_nat6_entry *e, const struct lb_nat_cfg *cfg,
					__u64 now)
{
	return nat_timed_out(e->state, e->last_seen, cfg, now);
}

/* Writes state and time into e and its partner (nat_touch()). */
static __always_inline void nat6_touch(struct lb_nat6_entry *e, const struct lb_nat6_key *k,
				       __u8 state, __u64 now)
{
	struct lb_nat6_key pk;
	struct lb_nat6_entry *p;

	e->state = state;
	e->last_seen = now;
	nat6_partner_key(e, k, &pk);
	p = bpf_map_lookup_elem(&nat6_conns, &pk);
	if (p && nat6_points_to(p, k)) {
		p->state = state;
		p->last_seen = now;
	}
}

/* Removes the partner of a stale entry, unless it already belongs to another connection. */
static __always_inline void nat6_unlink_partner(const struct lb_nat6_entry *e,
						const struct lb_nat6_key *k)
{
	struct lb_nat6_key pk;
	struct lb_nat6_entry *p;

	nat6_partner_key(e, k, &pk);
	p = bpf_map_lookup_elem(&nat6_conns, &pk);
	if (p && nat6_points_to(p, k))
		bpf_map_delete_elem(&nat6_conns, &pk);
}

/* nat_claim() on nat6_conns: 0 when the reverse key rk is ours now, -EEXIST when a live
 * connection of another client holds it, another negative errno when the table is full. */
static __always_inline long nat6_claim(const struct lb_nat6_key *rk, const struct lb_nat6_entry *rv,
				       const struct lb_nat_cfg *cfg, __u64 now)
{
	struct lb_nat6_entry *old;
	long rc = bpf_map_update_elem(&nat6_conns, rk, rv, BPF_NOEXIST);

	if (rc != -EEXIST)
		return rc;
	old = bpf_map_lookup_elem(&nat6_conns, rk);
	if (!old)
		return bpf_map_update_elem(&nat6_conns, rk, rv, BPF_NOEXIST);
	if (addr6_eq(old->saddr, rv->saddr) && addr6_eq(old->daddr, rv->daddr) &&
	    old->sport == rv->sport && old->dport == rv->dport)
		return bpf_map_update_elem(&nat6_conns, rk, rv, BPF_ANY);
	if (!nat6_expired(old, cfg, now))
		return -EEXIST;
	nat6_unlink_partner(old, rk);
	bpf_map_delete_elem(&nat6_conns, rk);
	return bpf_map_update_elem(&nat6_conns, rk, rv, BPF_NOEXIST);
}

/*
 * nat_xmit() for IPv6: rewrites the packet to (saddr, daddr, sport, dport), fixes the L4 checksum
 * incrementally and sends it toward daddr, after the next hop is known (an unroutable packet is
 * dropped unchanged). The hop limit goes down by one only when XDP sends the packet itself.
 * The addresses are read before the lookup (which overwrites fib.ipv6_dst with the gateway) and
 * again for the rewrite, so they may point into a map entry.
 *
 * The next hop comes from nexthop.h's IPv6 cache, asked as nat_xmit() asks it (and with the same
 * price): destination, saddr when by_src (not for gateway NAT toward the backend), traffic class
 * (DSCP only: no flow label, or every flow would be an entry of its own), ingress interface.
 */
static __always_inline int nat6_xmit(struct xdp_md *ctx, const struct lb_pkt6 *p,
				     const struct nat_l4 *l, const __be32 *saddr, const __be32 *daddr,
				     __be16 sport, __be16 dport, int by_src, int reply,
				     __u64 now, __u32 *reason)
{
	struct bpf_fib_lookup fib = {};
	struct ipv6hdr *ip6 = p->ip6;
	struct ethhdr *eth = p->eth;
	__u32 ports = (__u32)sport | ((__u32)dport << 16);
	__u64 acc;
	int rc, action;

	fib.family = AF_INET6;
	fib.flowinfo = *(__be32 *)ip6 & LB_NAT6_TCLASS_MASK;
	/* The whole packet, extension headers included: the lookup compares it with the MTU. */
	fib.tot_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	if (by_src)
		addr6_copy(fib.ipv6_src, saddr);
	addr6_copy(fib.ipv6_dst, daddr);
	fib.ifindex = ctx->ingress_ifindex;
	rc = nexthop_fib_lookup6_at(ctx, &fib, now);
	if (nat_no_route(rc, reason))
		return XDP_DROP;
	action = nat_egress(ctx, &fib, rc, p->vlan);

	/* The pseudo header holds both addresses; the ports are in the TCP/UDP header itself. */
	acc = csum_diff128(0, ip6->saddr.in6_u.u6_addr32, saddr);
	acc = csum_diff128(acc, ip6->daddr.in6_u.u6_addr32, daddr);
	acc = csum_diff32(acc, *(__u32 *)l->ports, ports);
	if (l->check) {
		__u16 c = csum_apply(*l->check, acc);

		/* A computed zero goes out as all ones (RFC 8200 8.1, as RFC 768). */
		if (l->udp && !c)
			c = 0xffff;
		*l->check = c;
	}
	addr6_copy(ip6->saddr.in6_u.u6_addr32, saddr);
	addr6_copy(ip6->daddr.in6_u.u6_addr32, daddr);
	l->ports[0] = sport;
	l->ports[1] = dport;

	if (action != XDP_PASS) {
		ip6->hop_limit--;
		__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	}
	*reason = nat_sent_reason(action, reply);
	return action;
}

/*
 * Packet-too-big to a nat service's VIP about a packet the LB sent to a client (quote: VIP:vport
 * -> client:cport, in both topologies: replies always leave from the VIP). PMTU discovery through
 * NAT needs it at the backend, which sent the packet; the kernel here knows no such connection and
 * would drop it. So, as LVS does: the quote becomes what the backend sent (backend:bport ->
 * client:cport, full NAT: -> LB source:lport), the outer destination the backend and, in full
 * NAT, the outer source our address, the one peer the backend knows. The connection is the
 * forward entry of the quote reversed; no live one: left to the kernel (PASS_NAT_ICMP) as before.
 * The entry is only read: an error is not traffic, so it neither keeps the connection alive nor
 * changes its state, and the per-service and per-backend counters do not count it.
 *
 * balance6() has checked the ICMPv6 header (type 2, code 0), and that a quoted IPv6 header with
 * TCP or UDP right behind it and the quote's ports are in the frame; the bounds are checked again
 * here for the verifier. The quoted TCP/UDP checksum is left as it is: a router may cut the
 * quote before it, and receivers do not verify it (Linux's icmpv6 handlers match the quote to a
 * socket by addresses and ports only); fixing it would cost a bounds check and two more updates.
 * The ICMPv6 checksum covers the outer addresses (pseudo header) and every quoted byte: each
 * changed word enters its incremental update.
 */
static __always_inline int nat6_icmp_forward(struct xdp_md *ctx, const struct lb_pkt6 *p, void *end,
					     __u32 *reason)
{
	struct bpf_fib_lookup fib = {};
	struct lb_nat6_key key = {};
	struct ipv6hdr *ip6 = p->ip6;
	struct icmp6hdr *ic = p->l4;
	struct ipv6hdr *q = (void *)(ic + 1);
	__be16 *qports = (void *)(q + 1);
	struct lb_nat6_entry *e;
	struct lb_nat_cfg *cfg;
	__u32 zero = 0, ports;
	__u64 now, acc;
	int rc, action, full;

	*reason = LB_R_PASS_NAT_ICMP;
	if ((void *)(ip6 + 1) > end || (void *)(qports + 2) > end)
		return XDP_PASS;
	addr6_copy(key.saddr, q->daddr.in6_u.u6_addr32);
	addr6_copy(key.daddr, q->saddr.in6_u.u6_addr32);
	key.sport = qports[1];
	key.dport = qports[0];
	key.proto = q->nexthdr;
	key.dir = LB_NAT_DIR_FWD;
	e = bpf_map_lookup_elem(&nat6_conns, &key);
	if (!e)
		return XDP_PASS;
	cfg = bpf_map_lookup_elem(&nat_cfg, &zero);
	if (!cfg)
		return XDP_ABORTED;
	now = bpf_ktime_get_coarse_ns();
	if (nat6_expired(e, cfg, now))
		return XDP_PASS;
	if (ip6->hop_limit <= 1) {
		*reason = LB_R_PASS_NAT_TTL;
		return XDP_PASS;
	}

	/* The same next-hop question as nat6_xmit()'s for this connection's forward packets. */
	full = e->flags & LB_NAT_F_FULL;
	fib.family = AF_INET6;
	fib.flowinfo = *(__be32 *)ip6 & LB_NAT6_TCLASS_MASK;
	fib.tot_len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	if (full)
		addr6_copy(fib.ipv6_src, e->saddr);
	addr6_copy(fib.ipv6_dst, e->daddr);
	fib.ifindex = ctx->ingress_ifindex;
	rc = nexthop_fib_lookup6_at(ctx, &fib, now);
	if (nat_no_route(rc, reason))
		return XDP_DROP;
	action = nat_egress(ctx, &fib, rc, p->vlan);

	/* Quoted source VIP:vport -> backend:bport; quoted destination -> the entry's source, which
	 * gateway NAT leaves as it is (client:cport). Outer: destination the backend, and the
	 * source ours in full NAT only (gateway NAT keeps the router that sent it). */
	ports = (__u32)e->dport | ((__u32)e->sport << 16);
	acc = csum_diff128(0, ip6->daddr.in6_u.u6_addr32, e->daddr);
	acc = csum_diff128(acc, q->saddr.in6_u.u6_addr32, e->daddr);
	acc = csum_diff128(acc, q->daddr.in6_u.u6_addr32, e->saddr);
	acc = csum_diff32(acc, *(__u32 *)qports, ports);
	if (full) {
		acc = csum_diff128(acc, ip6->saddr.in6_u.u6_addr32, e->saddr);
		addr6_copy(ip6->saddr.in6_u.u6_addr32, e->saddr);
	}
	ic->icmp6_cksum = csum_apply(ic->icmp6_cksum, acc);
	addr6_copy(ip6->daddr.in6_u.u6_addr32, e->daddr);
	addr6_copy(q->saddr.in6_u.u6_addr32, e->daddr);
	addr6_copy(q->daddr.in6_u.u6_addr32, e->saddr);
	*(__u32 *)qports = ports;

	if (action != XDP_PASS) {
		ip6->hop_limit--;
		__builtin_memcpy(p->eth->h_dest, fib.dmac, ETH_ALEN);
		__builtin_memcpy(p->eth->h_source, fib.smac, ETH_ALEN);
	}
	*reason = nat_sent_reason(action, 0);
	return action;
}

/*
 * A packet to a nat service's IPv6 VIP: translate toward a backend, record the connection.
 * p->proto is TCP or UDP: balance6() sends ICMPv6 (packet-too-big about a NAT flow, the one
 * other protocol it lets through) to nat6_icmp_forward() instead.
 * Inlined, like nat_forward(), to keep the verifier's stack chain short.
 */
static __always_inline int nat6_forward(struct xdp_md *ctx, const struct lb_service *svc,
					const struct lb_pkt6 *p, void *end, __u32 *reason)
{
	struct lb_nat6_key key = {}, rk = {};
	struct lb_nat6_entry ne = {};
	struct ipv6hdr *ip6 = p->ip6;
	struct lb_backend *be = NULL;
	struct lb_nat6_entry *e;
	struct lb_nat_cfg *cfg;
	struct nat_l4 l;
	struct lb_hash h;
	__u32 zero = 0, be_id, client, bytes = ctx->data_end - ctx->data;
	__u64 now;
	long rc;

	/*
	 * A UDP datagram without checksum (l.check NULL) is invalid over IPv6 (RFC 8200, 8.1):
	 * translating it would hand the backend a datagram its stack drops anyway.
	 */
	if ((void *)(ip6 + 1) > end || nat_l4(p->proto, p->l4, end, &l) < 0 || !l.check) {
		*reason = LB_R_DROP_MALFORMED;
		return XDP_DROP;
	}
	if (ip6->hop_limit <= 1) {
		*reason = LB_R_PASS_NAT_TTL;
		return XDP_PASS;
	}
	cfg = bpf_map_lookup_elem(&nat_cfg, &zero);
	if (!cfg)
		return XDP_ABORTED;
	now = bpf_ktime_get_coarse_ns();
	addr6_copy(key.saddr, ip6->saddr.in6_u.u6_addr32);
	addr6_copy(key.daddr, ip6->daddr.in6_u.u6_addr32);
	key.sport = l.ports[0];
	key.dport = l.ports[1];
	key.proto = p->proto;
	key.dir = LB_NAT_DIR_FWD;

	e = bpf_map_lookup_elem(&nat6_conns, &key);
	if (e) {
		int reopen = (l.flags & (TCP_FL_SYN | TCP_FL_ACK)) == TCP_FL_SYN &&
			     e->state == LB_NAT_TCP_CLOSING;

		be_id = e->backend_id;
		be = bpf_map_lookup_elem(&backends, &be_id);
		/* Pinned to its backend while that exists, like a DSR flow; re-hashed when it is gone. */
		if (be && (be->flags & LB_BE_F_VALID) && addr6_eq(be->addr, e->daddr) &&
		    !nat6_expired(e, cfg, now) && !reopen) {
			__u8 st = nat_next_state(e->state, l.flags, 0);

			if (st != e->state || (__s64)(now - e->last_seen) > (__s64)LB_NAT_TOUCH_NS)
				nat6_touch(e, &key, st, now);
			count_backend(be_id, bytes, 0);
			return nat6_xmit(ctx, p, &l, e->saddr, e->daddr, e->sport, e->dport,
					 e->flags & LB_NAT_F_FULL, 0, now, reason);
		}
		/* Stale: a new connection replaces it (BPF_ANY below); its old partner goes now. */
		nat6_unlink_partner(e, &key);
		be = NULL;
	}

	client = lb_fold6(key.saddr);
	h = lb_hash3(client, lb_fold6(key.daddr), ((__u32)key.sport << 16) | key.dport,
		     hash_seed ^ key.proto);
	be_id = ring_pick(svc, h.h1, client, &be);
	if (be_id == LB_BACKEND_NONE || !be) {
		if (svc->flags & LB_SVC_F_DOWN_PASS) {
			*reason = LB_R_PASS_NO_BACKEND;
			return XDP_PASS;
		}
		*reason = LB_R_DROP_NO_BACKEND;
		return XDP_DROP;
	}

	/* One entry buffer, reverse value first, then the forward value: see nat_forward(). */
	addr6_copy(ne.saddr, key.daddr);
	addr6_copy(ne.daddr, key.saddr);
	ne.sport = key.dport;
	ne.dport = key.sport;
	ne.service_id = svc->id;
	ne.backend_id = be_id;
	ne.state = l.udp ? LB_NAT_UDP : nat_next_state(LB_NAT_TCP_NEW, l.flags, 0);
	ne.last_seen = now;
	addr6_copy(rk.saddr, be->addr);
	rk.sport = be->port ? be->port : key.dport;
	rk.proto = key.proto;
	rk.dir = LB_NAT_DIR_REV;

	if (svc->flags & LB_SVC_F_FULL_NAT) {
		__u32 n = cfg->n_sources6, lo = cfg->port_min, range, start, idx;

		if (n == 0 || n > LB_NAT_MAX_SOURCES || lo == 0 || cfg->port_max < lo) {
			*reason = LB_R_DROP_NAT_NO_SOURCE;
			return XDP_DROP;
		}
		range = cfg->port_max - lo + 1;
		idx = h.h1 % n;
		/* clang knows idx < n <= 4 and would drop the mask the verifier needs to see. */
		asm volatile("" : "+r"(idx));
		addr6_copy(rk.daddr, cfg->source6[idx & (LB_NAT_MAX_SOURCES - 1)]);
		ne.flags = LB_NAT_F_FULL;
		/* The first port is a function of the client tuple, as in nat_forward(). */
		start = lb_reduce(h.h2, range);
		rc = -EEXIST;
		for (int i = 0; i < LB_NAT_PROBES; i++) {
			rk.dport = bpf_htons((__u16)(lo + (start + i) % range));
			rc = nat6_claim(&rk, &ne, cfg, now);
			if (rc != -EEXIST)
				break;
		}
		if (rc == -EEXIST) {
			*reason = LB_R_DROP_NAT_NO_PORT;
			return XDP_DROP;
		}
	} else {
		addr6_copy(rk.daddr, key.saddr);
		rk.dport = key.sport;
		rc = nat6_claim(&rk, &ne, cfg, now);
		if (rc == -EEXIST) {
			*reason = LB_R_DROP_NAT_CONFLICT;
			return XDP_DROP;
		}
	}
	if (rc) {
		*reason = LB_R_DROP_NAT_TABLE_FULL;
		return XDP_DROP;
	}
	addr6_copy(ne.saddr, rk.daddr);
	addr6_copy(ne.daddr, rk.saddr);
	ne.sport = rk.dport;
	ne.dport = rk.sport;
	if (bpf_map_update_elem(&nat6_conns, &key, &ne, BPF_ANY)) {
		bpf_map_delete_elem(&nat6_conns, &rk);
		*reason = LB_R_DROP_NAT_TABLE_FULL;
		return XDP_DROP;
	}
	count_backend(be_id, bytes, 1);
	return nat6_xmit(ctx, p, &l, rk.daddr, rk.saddr, rk.dport, rk.sport,
			 ne.flags & LB_NAT_F_FULL, 0, now, reason);
}

/*
 * A packet from a NAT backend's IPv6 address (the caller's filter said so, maybe falsely):
 * translated back when it belongs to a live connection, otherwise passed untouched, whatever it
 * is. A UDP datagram without checksum on a live connection is dropped (see nat6_forward()).
 */
static __always_inline int nat6_reply(struct xdp_md *ctx, const struct lb_pkt6 *p, void *end,
				      __u32 *reason)
{
	struct lb_nat6_key key = {};
	struct ipv6hdr *ip6 = p->ip6;
	struct lb_nat6_entry *e;
	struct lb_nat_cfg *cfg;
	struct nat_l4 l;
	__u32 zero = 0;
	__u64 now;
	__u8 st;

	*reason = LB_R_PASS_NOT_NAT;
	if ((void *)(ip6 + 1) > end)
		return XDP_PASS;
	if (nat_l4(p->proto, p->l4, end, &l) < 0)
		return XDP_PASS;
	addr6_copy(key.saddr, ip6->saddr.in6_u.u6_addr32);
	addr6_copy(key.daddr, ip6->daddr.in6_u.u6_addr32);
	key.sport = l.ports[0];
	key.dport = l.ports[1];
	key.proto = p->proto;
	key.dir = LB_NAT_DIR_REV;
	e = bpf_map_lookup_elem(&nat6_conns, &key);
	if (!e)
		return XDP_PASS;
	cfg = bpf_map_lookup_elem(&nat_cfg, &zero);
	if (!cfg)
		return XDP_ABORTED;
	now = bpf_ktime_get_coarse_ns();
	if (nat6_expired(e, cfg, now))
		return XDP_PASS;
	if (!l.check) {
		/* UDP without checksum, invalid over IPv6: not translated (see nat6_forward()). */
		*reason = LB_R_DROP_MALFORMED;
		return XDP_DROP;
	}
	if (ip6->hop_limit <= 1) {
		*reason = LB_R_PASS_NAT_TTL;
		return XDP_PASS;
	}
	st = nat_next_state(e->state, l.flags, 1);
	if (st != e->state || (__s64)(now - e->last_seen) > (__s64)LB_NAT_TOUCH_NS)
		nat6_touch(e, &key, st, now);
	return nat6_xmit(ctx, p, &l, e->saddr, e->daddr, e->sport, e->dport, 1, 1, now, reason);
}

#endif /* LB_NAT6_H */
