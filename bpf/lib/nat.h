/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nat.h - NAT mode: translate a client's packet toward its backend, remember the connection in
 * both directions, translate the backend's replies back.
 *
 * nat_forward() takes a packet to a nat service, nat_reply() a packet from a NAT backend's
 * address, nat_icmp_forward() an ICMP error to a nat service's VIP about a connection's packet;
 * each returns an XDP verdict and sets *reason. All send with the kernel's next hop
 * (bpf_fib_lookup, through nexthop.h's per-CPU cache: see nat_xmit()): XDP_TX when the packet
 * leaves by the interface it came in on, XDP_REDIRECT through the tx_ports devmap when it leaves
 * by another, XDP_PASS (already translated) when XDP cannot send it itself (neighbour not resolved
 * yet, a VLAN in the way, egress not in tx_ports).
 *
 * Connection entries (struct lb_nat_entry in lb_abi.h) are written here and deleted by the
 * control plane's sweeper (src/dataplane/nat.ts). Between sweeps, an entry idle for longer than
 * its state's timeout counts as absent, so a slow sweeper never lengthens a timeout. Both entries
 * of a connection carry the same state and last-seen time: the direction that changes them writes
 * both, and only when the state changes or LB_NAT_TOUCH_NS have passed, so that most packets of
 * an established connection only read the table.
 *
 * NAT66 (nat6.h) behaves the same on its own table and shares the helpers here that do not
 * depend on the address family: nat_l4, nat_next_state, nat_timed_out, nat_no_route, nat_egress,
 * nat_sent_reason.
 */
#ifndef LB_NAT_H
#define LB_NAT_H

#include <linux/bpf.h>
#include <linux/errno.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lb_abi.h"
#include "maps.h"
#include "hash.h"
#include "csum.h"
#include "parse.h"
#include "nexthop.h"

#ifndef AF_INET
#define AF_INET 2
#endif

/* Full-NAT source ports tried per new connection: bounds the work a SYN flood can cause. */
#ifndef LB_NAT_PROBES
#define LB_NAT_PROBES 8
#endif
/* Last-seen precision: ~1.07 s is far below any timeout and keeps the hit path read-only. */
#define LB_NAT_TOUCH_NS (1ULL << 30)

#define TCP_FL_FIN 0x01
#define TCP_FL_SYN 0x02
#define TCP_FL_RST 0x04
#define TCP_FL_ACK 0x10

/* What a translation needs of a TCP or UDP header. */
struct nat_l4 {
	__be16 *ports;  /* source, destination */
	__sum16 *check; /* NULL for UDP sent without a checksum: it stays without one */
	__u8 flags;     /* TCP flags, 0 for UDP */
	__u8 udp;
};

/* 0 and *l filled for TCP/UDP (proto) with a complete header at l4, -1 otherwise. Both families. */
static __always_inline int nat_l4(__u8 proto, void *l4, void *end, struct nat_l4 *l)
{
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > end || th->doff < 5)
			return -1;
		l->ports = l4;
		l->check = &th->check;
		l->flags = ((__u8 *)th)[13];
		l->udp = 0;
		return 0;
	}
	if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > end)
			return -1;
		l->ports = l4;
		l->check = uh->check ? &uh->check : NULL;
		l->flags = 0;
		l->udp = 1;
		return 0;
	}
	return -1;
}

/* The same fold as the VIP filter, over a NAT backend's (source) address. */
static __always_inline int nat_filter_hit(__be32 saddr)
{
	__u32 bit = ((__u32)saddr * 0x9E3779B1U) >> (32 - LB_VIP_FILTER_SHIFT);
	__u32 word = bit >> 6;
	__u64 *w = bpf_map_lookup_elem(&nat_filter, &word);

	return w && (*w & (1ULL << (bit & 63)));
}

/* Signed, because another CPU may have stamped a coarse time slightly ahead of ours. Both families. */
static __always_inline int nat_timed_out(__u8 state, __u64 last_seen, const struct lb_nat_cfg *cfg,
					 __u64 now)
{
	return (__s64)(now - last_seen) > (__s64)cfg->timeout_ns[(state - 1) & 3];
}

static __always_inline int nat_expired(const struct lb_nat_entry *e, const struct lb_nat_cfg *cfg,
				       __u64 now)
{
	return nat_timed_out(e->state, e->last_seen, cfg, now);
}

/* The other direction's key: the packet that entry e produces, seen coming back. */
static __always_inline void nat_partner_key(const struct lb_nat_entry *e, const struct lb_nat_key *k,
					    struct lb_nat_key *p)
{
	p->saddr = e->daddr;
	p->daddr = e->saddr;
	p->sport = e->dport;
	p->dport = e->sport;
	p->proto = k->proto;
	p->dir = k->dir ^ 1;
	p->pad = 0;
}

/* Whether entry p (at the partner key of k) translates back to k: the pair belongs together. */
static __always_inline int nat_points_to(const struct lb_nat_entry *p, const struct lb_nat_key *k)
{
	return p->saddr == k->daddr && p->daddr == k->saddr && p->sport == k->dport &&
	       p->dport == k->sport;
}

static __always_inline __u8 nat_next_state(__u8 state, __u8 tcp_flags, int reply)
{
	if (state == LB_NAT_UDP || state == LB_NAT_TCP_CLOSING)
		return state;
	if (tcp_flags & (TCP_FL_FIN | TCP_FL_RST))
		return LB_NAT_TCP_CLOSING;
	return reply ? LB_NAT_TCP_EST : state;
}

/* Writes state and time into e and its partner. */
static __always_inline void nat_touch(struct lb_nat_entry *e, const struct lb_nat_key *k, __u8 state,
				      __u64 now)
{
	struct lb_nat_key pk;
	struct lb_nat_entry *p;

	e->state = state;
	e->last_seen = now;
	nat_partner_key(e, k, &pk);
	p = bpf_map_lookup_elem(&nat_conns, &pk);
	if (p && nat_points_to(p, k)) {
		p->state = state;
		p->last_seen = now;
	}
}

/* Removes the partner of a stale entry, unless it already belongs to another connection. */
static __always_inline void nat_unlink_partner(const struct lb_nat_entry *e, const struct lb_nat_key *k)
{
	struct lb_nat_key pk;
	struct lb_nat_entry *p;

	nat_partner_key(e, k, &pk);
	p = bpf_map_lookup_elem(&nat_conns, &pk);
	if (p && nat_points_to(p, k))
		bpf_map_delete_elem(&nat_conns, &pk);
}

/*
 * Makes rv the reverse entry at rk unless a live connection of another client holds that key.
 * Returns 0 when the key is ours now, -EEXIST when it is taken, another negative errno when the
 * table is full. NOEXIST is what keeps two connections from sharing a full-NAT port when CPUs
 * race: only one insert of a key can succeed. An entry of the same client tuple is ours already
 * (its forward entry was lost or went stale): taking it over keeps the connection's port. An
 * expired one is removed with its partner first, so that the partner cannot later remove ours.
 */
static __always_inline long nat_claim(const struct lb_nat_key *rk, const struct lb_nat_entry *rv,
				      const struct lb_nat_cfg *cfg, __u64 now)
{
	struct lb_nat_entry *old;
	long rc = bpf_map_update_elem(&nat_conns, rk, rv, BPF_NOEXIST);

	if (rc != -EEXIST)
		return rc;
	old = bpf_map_lookup_elem(&nat_conns, rk);
	if (!old)
		return bpf_map_update_elem(&nat_conns, rk, rv, BPF_NOEXIST);
	if (old->saddr == rv->saddr && old->daddr == rv->daddr && old->sport == rv->sport &&
	    old->dport == rv->dport)
		return bpf_map_update_elem(&nat_conns, rk, rv, BPF_ANY);
	if (!nat_expired(old, cfg, now))
		return -EEXIST;
	nat_unlink_partner(old, rk);
	bpf_map_delete_elem(&nat_conns, rk);
	return bpf_map_update_elem(&nat_conns, rk, rv, BPF_NOEXIST);
}

/*
 * For both families: whether the kernel's next-hop answer (bpf_fib_lookup's rc) leaves a
 * translated packet nowhere to go; *reason is then set and the packet is dropped.
 */
static __always_inline int nat_no_route(int rc, __u32 *reason)
{
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
		*reason = LB_R_DROP_NAT_MTU;
		return 1;
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) {
		*reason = LB_R_DROP_NAT_NO_ROUTE;
		return 1;
	}
	return 0;
}

/*
 * How a routable translated packet leaves (both families): XDP_TX or XDP_REDIRECT when XDP can
 * send it itself, XDP_PASS when the kernel must (neighbour unresolved, a VLAN tag that would have
 * to change, egress not in tx_ports).
 */
static __always_inline int nat_egress(struct xdp_md *ctx, const struct bpf_fib_lookup *fib, int rc,
				      int vlan)
{
	if (rc == BPF_FIB_LKUP_RET_SUCCESS && !(vlan && fib->ifindex != ctx->ingress_ifindex)) {
		if (fib->ifindex == ctx->ingress_ifindex)
			return XDP_TX;
		return bpf_redirect_map(&tx_ports, fib->ifindex, XDP_PASS);
	}
	return XDP_PASS;
}

/* The reason for a translated packet sent with action (nat_egress()); reply: a backend's reply. */
static __always_inline __u32 nat_sent_reason(int action, int reply)
{
	if (action == XDP_PASS)
		return LB_R_PASS_NAT_KERNEL;
	if (action == XDP_TX)
		return reply ? LB_R_TX_NAT_REPLY : LB_R_TX_NAT;
	return reply ? LB_R_REDIRECT_NAT_REPLY : LB_R_REDIRECT_NAT;
}

/*
 * Rewrites the packet to the tuple (saddr, daddr, sport, dport), fixes the checksums incrementally
 * and sends it toward daddr. The next hop is looked up first, so a packet that cannot be routed
 * leaves untouched. TTL goes down by one only when XDP sends the packet itself: the kernel
 * decrements what it forwards. reply selects the *_NAT_REPLY reasons. The tuple comes as values,
 * not as an entry pointer, so the caller's entry is dead here and its stack slot can hold fib.
 *
 * The next hop comes from nexthop.h's cache (now: the caller's clock reading), so the kernel is
 * asked what the cache can key on: destination, DSCP, ingress interface, and the source saddr
 * when by_src; no protocol, no ports. by_src is set where the translated source takes few values
 * (full NAT: one of the LB's sources; replies: the VIP) and clear where it is the client's own
 * address (gateway NAT toward the backend): there every client has its own source, and with it in the key the clients of one
 * backend would keep evicting the backend's one slot. The price, for NAT'd packets: ip rules
 * that select by protocol or port, and for gateway NAT's forward direction by source, do not
 * apply to them; ECMP spreads by destination, not by flow; and a route or neighbour change is
 * followed up to LB_NEXTHOP_TTL_NS late, as for ipip. The MTU is still checked on every packet.
 */
static __always_inline int nat_xmit(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *iph,
				    const struct nat_l4 *l, __be32 saddr, __be32 daddr, __be16 sport,
				    __be16 dport, int by_src, int vlan, int reply, __u64 now,
				    __u32 *reason)
{
	struct bpf_fib_lookup fib = {};
	__u32 ports = (__u32)sport | ((__u32)dport << 16);
	__u64 l3, l4;
	__u16 ttl_word;
	int rc, action;

	fib.family = AF_INET;
	fib.tos = iph->tos;
	fib.tot_len = bpf_ntohs(iph->tot_len);
	fib.ipv4_src = by_src ? saddr : 0;
	fib.ipv4_dst = daddr;
	fib.ifindex = ctx->ingress_ifindex;
	rc = nexthop_fib_lookup_at(ctx, &fib, now);
	if (nat_no_route(rc, reason))
		return XDP_DROP;
	action = nat_egress(ctx, &fib, rc, vlan);

	l3 = csum_diff32(0, iph->saddr, saddr);
	l3 = csum_diff32(l3, iph->daddr, daddr);
	/* The L4 checksum covers the addresses through the pseudo header, and the ports. */
	l4 = csum_diff32(l3, *(__u32 *)l->ports, ports);
	if (l->check) {
		__u16 c = csum_apply(*l->check, l4);

		/* RFC 768: a computed zero goes out as all ones; zero would mean "no checksum". */
		if (l->udp && !c)
			c = 0xffff;
		*l->check = c;
	}
	iph->saddr = saddr;
	iph->daddr = daddr;
	l->ports[0] = sport;
	l->ports[1] = dport;

	if (action != XDP_PASS) {
		ttl_word = *(__u16 *)&iph->ttl;
		iph->ttl--;
		l3 = csum_diff16(l3, ttl_word, *(__u16 *)&iph->ttl);
		__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	}
	*reason = nat_sent_reason(action, reply);
	iph->check = csum_apply(iph->check, l3);
	return action;
}

/*
 * An ICMP fragmentation-needed to a nat service's VIP about a packet the LB sent to a client
 * (balance() has checked the type, that the quote holds an option-less IPv4 header and the ports
 * of a TCP/UDP packet from the VIP, and found the service by the quote's source). If the
 * connection is live, the error goes to its backend as the backend would get it without us
 * (LVS does the same, ip_vs_core.c): the quote becomes the packet the backend sent, VIP:vport ->
 * backend:bport, and in full NAT client:cport -> LB source:lport, the outer destination the
 * backend, and in full NAT the outer source the LB's address, the only peer that backend knows.
 * Gateway NAT keeps the outer source, the router that sent the error. Without a live connection
 * the error stays with the kernel (PASS_NAT_ICMP), as before.
 *
 * The connection's state and last-seen time stay as they are: an error is not traffic, and must
 * not keep a connection alive. The quoted TCP/UDP checksum is left as it is: the quote is often
 * cut short of the data it covers, so it could not be checked anyway, and receivers do not check
 * it (Linux's tcp_v4_err/__udp4_lib_err read only the ports and, for TCP, the sequence number).
 *
 * Sent and counted like the connection's own packets (nat_xmit(): next hop, MTU rule, TTL, the
 * TX_NAT / REDIRECT_NAT / PASS_NAT_KERNEL reasons); balance() has counted ICMP_TOO_BIG already.
 * The per-service and per-backend counters are left alone: they count the connection's traffic.
 * A function of its own rather than a branch in nat_forward(): there, it changed the register
 * allocation of the TCP/UDP path (two more spills per packet) and grew the stack by 8 bytes.
 */
static __always_inline int nat_icmp_forward(struct xdp_md *ctx, struct ethhdr *eth,
					    struct iphdr *iph, void *end, int vlan, __u32 *reason)
{
	struct icmphdr *ic = (void *)(iph + 1);
	struct iphdr *q = (void *)(ic + 1);
	__be16 *qp = (void *)(q + 1);
	struct bpf_fib_lookup fib = {};
	struct lb_nat_key key = {};
	struct lb_nat_entry *e;
	struct lb_nat_cfg *cfg;
	__be32 saddr, daddr, qsrc, qdst;
	__u32 zero = 0, qports, nports;
	__u64 l3, ic_diff, q_diff, now;
	__u16 ttl_word, qcheck;
	int rc, action, full;

	*reason = LB_R_PASS_NAT_ICMP;
	/* The quote must lie inside the IP packet: the ICMP checksum covers no more. */
	if ((void *)(qp + 2) > end || (void *)(qp + 2) > (void *)iph + bpf_ntohs(iph->tot_len)) {
		*reason = LB_R_DROP_MALFORMED;
		return XDP_DROP;
	}
	/* Sent to the address the quoted packet came from; a later fragment quotes no ports. */
	if (q->saddr != iph->daddr || (q->frag_off & bpf_htons(IP_OFFSET)))
		return XDP_PASS;
	key.saddr = q->daddr;
	key.daddr = q->saddr;
	key.sport = qp[1];
	key.dport = qp[0];
	key.proto = q->protocol;
	key.dir = LB_NAT_DIR_FWD;
	e = bpf_map_lookup_elem(&nat_conns, &key);
	if (!e)
		return XDP_PASS;
	cfg = bpf_map_lookup_elem(&nat_cfg, &zero);
	if (!cfg)
		return XDP_ABORTED;
	now = bpf_ktime_get_coarse_ns();
	if (nat_expired(e, cfg, now))
		return XDP_PASS;
	if (iph->ttl <= 1) {
		*reason = LB_R_PASS_NAT_TTL;
		return XDP_PASS;
	}
	full = e->flags & LB_NAT_F_FULL;
	daddr = e->daddr;
	saddr = full ? e->saddr : iph->saddr;
	/* What the backend sent: its address and port to the client's (gateway) or ours (full). */
	qsrc = e->daddr;
	qdst = e->saddr;
	nports = (__u32)e->dport | ((__u32)e->sport << 16);

	/* Asked as nat_xmit() asks for the connection's own packets: the same next hop and MTU rule. */
	fib.family = AF_INET;
	fib.tos = iph->tos;
	fib.tot_len = bpf_ntohs(iph->tot_len);
	fib.ipv4_src = full ? saddr : 0;
	fib.ipv4_dst = daddr;
	fib.ifindex = ctx->ingress_ifindex;
	rc = nexthop_fib_lookup_at(ctx, &fib, now);
	if (nat_no_route(rc, reason))
		return XDP_DROP;
	action = nat_egress(ctx, &fib, rc, vlan);

	/* The quoted header's own checksum, then ICMP's over every changed word of the quote
	 * (ICMP has no pseudo header: the outer addresses are not in it). All are 16-bit aligned. */
	q_diff = csum_diff32(0, q->saddr, qsrc);
	q_diff = csum_diff32(q_diff, q->daddr, qdst);
	qcheck = csum_apply(q->check, q_diff);
	qports = *(__u32 *)qp;
	ic_diff = csum_diff16(q_diff, q->check, qcheck);
	ic_diff = csum_diff32(ic_diff, qports, nports);
	ic->checksum = csum_apply(ic->checksum, ic_diff);
	q->saddr = qsrc;
	q->daddr = qdst;
	q->check = qcheck;
	*(__u32 *)qp = nports;

	l3 = csum_diff32(0, iph->saddr, saddr);
	l3 = csum_diff32(l3, iph->daddr, daddr);
	iph->saddr = saddr;
	iph->daddr = daddr;
	if (action != XDP_PASS) {
		ttl_word = *(__u16 *)&iph->ttl;
		iph->ttl--;
		l3 = csum_diff16(l3, ttl_word, *(__u16 *)&iph->ttl);
		__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	}
	*reason = nat_sent_reason(action, 0);
	iph->check = csum_apply(iph->check, l3);
	return action;
}

/*
 * A packet to a nat service. The caller has checked the IPv4 header (no options, no fragment,
 * total length within the frame) and the bounds of the TCP/UDP header.
 *
 * Inlined like everything else: as a BPF-to-BPF call it would add its stack frame to the
 * caller's, and with the bench wrapper's frame that chain exceeds the verifier's 512 bytes.
 */
static __always_inline int nat_forward(struct xdp_md *ctx, const struct lb_service *svc,
				       struct ethhdr *eth, struct iphdr *iph, void *end, int vlan,
				       __u32 *reason)
{
	struct lb_nat_key key = {}, rk = {};
	struct lb_nat_entry ne = {};
	struct lb_backend *be = NULL;
	struct lb_nat_entry *e;
	struct lb_nat_cfg *cfg;
	struct nat_l4 l;
	struct lb_hash h;
	__u32 zero = 0, be_id, bytes = ctx->data_end - ctx->data;
	__u64 now;
	long rc;

	if (nat_l4(iph->protocol, iph + 1, end, &l) < 0) {
		*reason = LB_R_PASS_NAT_ICMP;
		return XDP_PASS;
	}
	if (iph->ttl <= 1) {
		*reason = LB_R_PASS_NAT_TTL;
		return XDP_PASS;
	}
	cfg = bpf_map_lookup_elem(&nat_cfg, &zero);
	if (!cfg)
		return XDP_ABORTED;
	now = bpf_ktime_get_coarse_ns();
	key.saddr = iph->saddr;
	key.daddr = iph->daddr;
	key.sport = l.ports[0];
	key.dport = l.ports[1];
	key.proto = iph->protocol;
	key.dir = LB_NAT_DIR_FWD;

	e = bpf_map_lookup_elem(&nat_conns, &key);
	if (e) {
		int reopen = (l.flags & (TCP_FL_SYN | TCP_FL_ACK)) == TCP_FL_SYN &&
			     e->state == LB_NAT_TCP_CLOSING;

		be_id = e->backend_id;
		be = bpf_map_lookup_elem(&backends, &be_id);
		/* Pinned to its backend while that exists, like a DSR flow; re-hashed when it is gone. */
		if (be && (be->flags & LB_BE_F_VALID) && be->addr[0] == e->daddr &&
		    !nat_expired(e, cfg, now) && !reopen) {
			__u8 st = nat_next_state(e->state, l.flags, 0);

			if (st != e->state || (__s64)(now - e->last_seen) > (__s64)LB_NAT_TOUCH_NS)
				nat_touch(e, &key, st, now);
			count_backend(be_id, bytes, 0);
			return nat_xmit(ctx, eth, iph, &l, e->saddr, e->daddr, e->sport, e->dport,
					e->flags & LB_NAT_F_FULL, vlan, 0, now, reason);
		}
		/* Stale: a new connection replaces it (BPF_ANY below); its old partner goes now. */
		nat_unlink_partner(e, &key);
		be = NULL;
	}

	h = lb_hash3(key.saddr, key.daddr, ((__u32)key.sport << 16) | key.dport, hash_seed ^ key.proto);
	be_id = ring_pick(svc, h.h1, key.saddr, &be);
	if (be_id == LB_BACKEND_NONE || !be) {
		if (svc->flags & LB_SVC_F_DOWN_PASS) {
			*reason = LB_R_PASS_NO_BACKEND;
			return XDP_PASS;
		}
		*reason = LB_R_DROP_NO_BACKEND;
		return XDP_DROP;
	}

	/*
	 * One entry buffer, built as the reverse value (the reply becomes VIP -> client) and turned
	 * into the forward value once the reverse key is claimed: that value is the reverse key
	 * swapped, (client or LB source) -> backend. One buffer keeps the stack within the verifier's
	 * limit for this call chain.
	 */
	ne.saddr = key.daddr;
	ne.daddr = key.saddr;
	ne.sport = key.dport;
	ne.dport = key.sport;
	ne.service_id = svc->id;
	ne.backend_id = be_id;
	ne.state = l.udp ? LB_NAT_UDP : nat_next_state(LB_NAT_TCP_NEW, l.flags, 0);
	ne.last_seen = now;
	rk.saddr = be->addr[0];
	rk.sport = be->port ? be->port : key.dport;
	rk.proto = key.proto;
	rk.dir = LB_NAT_DIR_REV;

	if (svc->flags & LB_SVC_F_FULL_NAT) {
		__u32 n = cfg->n_sources, lo = cfg->port_min, range, start, idx;

		if (n == 0 || n > LB_NAT_MAX_SOURCES || lo == 0 || cfg->port_max < lo) {
			*reason = LB_R_DROP_NAT_NO_SOURCE;
			return XDP_DROP;
		}
		range = cfg->port_max - lo + 1;
		idx = h.h1 % n;
		/* clang knows idx < n <= 4 and would drop the mask the verifier needs to see. */
		asm volatile("" : "+r"(idx));
		rk.daddr = cfg->source[idx & (LB_NAT_MAX_SOURCES - 1)];
		ne.flags = LB_NAT_F_FULL;
		/* The first port is a function of the client tuple: a connection whose entries were
		 * lost (or another LB node picking it up) gets the same port back if it is free. */
		start = lb_reduce(h.h2, range);
		rc = -EEXIST;
		for (int i = 0; i < LB_NAT_PROBES; i++) {
			rk.dport = bpf_htons((__u16)(lo + (start + i) % range));
			rc = nat_claim(&rk, &ne, cfg, now);
			if (rc != -EEXIST)
				break;
		}
		if (rc == -EEXIST) {
			*reason = LB_R_DROP_NAT_NO_PORT;
			return XDP_DROP;
		}
	} else {
		rk.daddr = key.saddr;
		rk.dport = key.sport;
		rc = nat_claim(&rk, &ne, cfg, now);
		if (rc == -EEXIST) {
			*reason = LB_R_DROP_NAT_CONFLICT;
			return XDP_DROP;
		}
	}
	if (rc) {
		*reason = LB_R_DROP_NAT_TABLE_FULL;
		return XDP_DROP;
	}
	ne.saddr = rk.daddr;
	ne.daddr = rk.saddr;
	ne.sport = rk.dport;
	ne.dport = rk.sport;
	if (bpf_map_update_elem(&nat_conns, &key, &ne, BPF_ANY)) {
		bpf_map_delete_elem(&nat_conns, &rk);
		*reason = LB_R_DROP_NAT_TABLE_FULL;
		return XDP_DROP;
	}
	count_backend(be_id, bytes, 1);
	return nat_xmit(ctx, eth, iph, &l, rk.daddr, rk.saddr, rk.dport, rk.sport,
			ne.flags & LB_NAT_F_FULL, vlan, 0, now, reason);
}

/*
 * A packet from a NAT backend's address (the caller's filter said so, maybe falsely): translated
 * back when it belongs to a live connection, otherwise passed untouched, whatever it is.
 */
static __always_inline int nat_reply(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *iph,
				     void *end, int vlan, __u32 *reason)
{
	struct lb_nat_key key = {};
	struct lb_nat_entry *e;
	struct lb_nat_cfg *cfg;
	struct nat_l4 l;
	__u32 zero = 0;
	__u64 now;
	__u8 st;

	*reason = LB_R_PASS_NOT_NAT;
	if (iph->version != 4 || iph->ihl != 5 || (iph->frag_off & bpf_htons(IP_MF | IP_OFFSET)) ||
	    (void *)iph + bpf_ntohs(iph->tot_len) > end)
		return XDP_PASS;
	if (nat_l4(iph->protocol, iph + 1, end, &l) < 0)
		return XDP_PASS;
	key.saddr = iph->saddr;
	key.daddr = iph->daddr;
	key.sport = l.ports[0];
	key.dport = l.ports[1];
	key.proto = iph->protocol;
	key.dir = LB_NAT_DIR_REV;
	e = bpf_map_lookup_elem(&nat_conns, &key);
	if (!e)
		return XDP_PASS;
	cfg = bpf_map_lookup_elem(&nat_cfg, &zero);
	if (!cfg)
		return XDP_ABORTED;
	now = bpf_ktime_get_coarse_ns();
	if (nat_expired(e, cfg, now))
		return XDP_PASS;
	if (iph->ttl <= 1) {
		*reason = LB_R_PASS_NAT_TTL;
		return XDP_PASS;
	}
	st = nat_next_state(e->state, l.flags, 1);
	if (st != e->state || (__s64)(now - e->last_seen) > (__s64)LB_NAT_TOUCH_NS)
		nat_touch(e, &key, st, now);
	return nat_xmit(ctx, eth, iph, &l, e->saddr, e->daddr, e->sport, e->dport, 1, vlan, 1, now,
			reason);
}

#endif /* LB_NAT_H */
