/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * parse.h - bounds-checked header parsing with a cursor.
 *
 * Every parse_*() checks the header fits before anything reads it, advances the cursor past it,
 * and returns the next protocol (host order) or -1 when the packet is too short or the header
 * contradicts itself. Callers decide what -1 means for their packet.
 */
#ifndef LB_PARSE_H
#define LB_PARSE_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/ipv6.h>
#include <bpf/bpf_endian.h>

struct hdr_cursor {
	void *pos;
};

struct vlan_hdr {
	__be16 tci;
	__be16 encap_proto;
};

/* linux/icmp.h drags in libc's socket headers, which do not build for the BPF target. */
struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 rest;
};
#define ICMP_DEST_UNREACH 3
#define ICMP_FRAG_NEEDED 4

#define IP_MF 0x2000
#define IP_DF 0x4000
#define IP_OFFSET 0x1fff

/*
 * An IPv6 packet as the balancer hands it to the mode code: the upper-layer header found behind
 * the extension headers (hop-by-hop, destination options) that were skipped.
 */
struct lb_pkt6 {
	struct ethhdr *eth;
	struct ipv6hdr *ip6;
	void *l4;   /* the TCP/UDP/ICMPv6 header; bounds are the user's to check */
	__u8 proto; /* its protocol number */
	__u8 vlan;  /* 1 if the frame carries an 802.1Q/802.1ad tag */
};

/* Ethernet plus at most one 802.1Q/802.1ad tag: returns the inner ethertype. */
static __always_inline int parse_ethhdr(struct hdr_cursor *c, void *end, struct ethhdr **ethp,
					 int *vlan)
{
	struct ethhdr *eth = c->pos;
	__u16 proto;

	if ((void *)(eth + 1) > end)
		return -1;
	c->pos = eth + 1;
	*ethp = eth;
	*vlan = 0;
	proto = bpf_ntohs(eth->h_proto);
	if (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
		struct vlan_hdr *vh = c->pos;

		if ((void *)(vh + 1) > end)
			return -1;
		c->pos = vh + 1;
		*vlan = 1;
		proto = bpf_ntohs(vh->encap_proto);
	}
	return proto;
}

/* The fixed 20 bytes of IPv4 only: options and fragments are the caller's policy. */
static __always_inline int parse_iphdr(struct hdr_cursor *c, void *end, struct iphdr **iphp)
{
	struct iphdr *iph = c->pos;

	if ((void *)(iph + 1) > end)
		return -1;
	*iphp = iph;
	return iph->protocol;
}

/*
 * IPv6 extension headers a packet to a VIP may carry before its upper-layer header. RFC 8200's
 * order allows hop-by-hop, destination options, routing, destination options before a fragment,
 * AH or ESP header: 4 is the longest chain we forward (a fragment header ends the walk anyway).
 */
#ifndef LB_IPV6_MAX_EXT
#define LB_IPV6_MAX_EXT 4
#endif

/* What parse_ipv6_ext() returns instead of a protocol when it gives up. */
enum parse6_err {
	PARSE6_MALFORMED = -1, /* truncated, longer than the payload, or hop-by-hop not first */
	PARSE6_EXT_HDR = -2,   /* routing header with segments left, or more than LB_IPV6_MAX_EXT */
	PARSE6_FRAGMENT = -3,  /* a fragment header */
};

/*
 * Walks the extension headers behind an IPv6 header whose payload (room bytes, already checked
 * against the frame) starts at c->pos. Skips hop-by-hop and destination options, and a routing
 * header that has no segments left (we are its final destination); anything else is the
 * upper-layer protocol, returned with c->pos at its header and *used set to the bytes skipped.
 * The caller checks the upper-layer header against end and against room - *used.
 */
static __always_inline int parse_ipv6_ext(struct hdr_cursor *c, void *end, __u8 nexthdr,
					  __u32 room, __u32 *used)
{
	__u32 off = 0;

#pragma unroll
	for (int i = 0; i < LB_IPV6_MAX_EXT; i++) {
		struct ipv6_rt_hdr *h = c->pos; /* nexthdr and hdrlen are common to all three */
		__u32 len;

		switch (nexthdr) {
		case IPPROTO_HOPOPTS:
			if (i != 0)
				return PARSE6_MALFORMED;
			break;
		case IPPROTO_DSTOPTS:
		case IPPROTO_ROUTING:
			break;
		case IPPROTO_FRAGMENT:
			return PARSE6_FRAGMENT;
		default:
			*used = off;
			return nexthdr;
		}
		/* Every extension header is at least 8 bytes, and must fit in the payload. */
		if ((void *)h + 8 > end)
			return PARSE6_MALFORMED;
		len = ((__u32)h->hdrlen + 1) * 8;
		off += len;
		if (off > room)
			return PARSE6_MALFORMED;
		if (nexthdr == IPPROTO_ROUTING && h->segments_left)
			return PARSE6_EXT_HDR;
		nexthdr = h->nexthdr;
		c->pos = (void *)h + len;
	}
	switch (nexthdr) {
	case IPPROTO_FRAGMENT:
		return PARSE6_FRAGMENT;
	case IPPROTO_HOPOPTS:
	case IPPROTO_DSTOPTS:
	case IPPROTO_ROUTING:
		return PARSE6_EXT_HDR;
	}
	*used = off;
	return nexthdr;
}

static __always_inline int parse_tcphdr(struct hdr_cursor *c, void *end, struct tcphdr **thp)
{
	struct tcphdr *th = c->pos;

	if ((void *)(th + 1) > end)
		return -1;
	if (th->doff < 5)
		return -1;
	c->pos = th + 1;
	*thp = th;
	return 0;
}

static __always_inline int parse_udphdr(struct hdr_cursor *c, void *end, struct udphdr **uhp)
{
	struct udphdr *uh = c->pos;

	if ((void *)(uh + 1) > end)
		return -1;
	c->pos = uh + 1;
	*uhp = uh;
	return 0;
}

#endif /* LB_PARSE_H */
