// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * labgen.bpf.c - traffic generator and counter for the lab's packets-per-second figure
 * (src/bench/lab.ts).
 *
 * xdp_lab_gen runs under BPF_PROG_TEST_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES):
 * the kernel runs it `repeat` times on page-pool frames and sends what it returns XDP_TX out of
 * the ctx's ingress interface, in batches, as a driver would. Each run writes the whole header
 * from lab_cfg and gives it the next of `flows` source ports, so the balancer sees many flows.
 * The header is written every time because a recycled page keeps whatever was last done to it
 * (kernel's bpf_prog_run.rst), and pages come back from the path under test: rewritten by the
 * balancer or by the kernel's forwarding (TTL, MACs), and would otherwise go out again like that.
 * A TCP frame's checksum is kept right for its port (hdr carries it for port_base): the kernel's
 * connection tracking checks it (the nftables DNAT case), and a frame it finds bad is INVALID and
 * never translated. UDP frames go without a checksum (zero), which nothing checks.
 *
 * xdp_lab_count sits where the forwarded frames arrive, counts those of the generator's flows
 * (source and destination address, also inside an IPIP outer header) and drops them; anything
 * else (ARP, the lab's own traffic) passes.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "lib/csum.h"

#define LAB_HDR_LEN 54 /* Ethernet + IPv4 + TCP, no options */

/* Written by user space before each case: array key 0. */
struct lab_cfg {
	__u8 hdr[LAB_HDR_LEN];  /* the frame's first bytes, as on the wire */
	__u16 port_base;        /* host order: first source port */
	__u32 flows_mask;       /* flows - 1, flows a power of two */
	__be32 match_src;       /* what xdp_lab_count counts */
	__be32 match_dst;
};

struct lab_state {
	__u64 seq; /* frames generated */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lab_cfg);
} lab_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lab_state);
} lab_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} lab_count SEC(".maps");

SEC("xdp")
int xdp_lab_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *iph = data + sizeof(struct ethhdr);
	struct tcphdr *th = (void *)(iph + 1);
	__u32 zero = 0;
	__be16 port;
	struct lab_cfg *cfg = bpf_map_lookup_elem(&lab_cfg, &zero);
	struct lab_state *st = bpf_map_lookup_elem(&lab_state, &zero);

	if (!cfg || !st || data + LAB_HDR_LEN > end)
		return XDP_ABORTED;
	__builtin_memcpy(data, cfg->hdr, LAB_HDR_LEN);
	port = bpf_htons(cfg->port_base + (st->seq++ & cfg->flows_mask));
	/* The source port sits at the same offset in UDP; there, hdr's checksum stays zero. */
	th->source = port;
	if (iph->protocol == IPPROTO_TCP)
		th->check = csum_apply(th->check, csum_diff16(0, bpf_htons(cfg->port_base), port));
	return XDP_TX;
}

SEC("xdp")
int xdp_lab_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	__u32 zero = 0;
	struct lab_cfg *cfg = bpf_map_lookup_elem(&lab_cfg, &zero);
	__u64 *n;

	if (!cfg || (void *)(iph + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	if (iph->protocol == IPPROTO_IPIP) {
		iph = iph + 1;
		if ((void *)(iph + 1) > end)
			return XDP_PASS;
	}
	if (iph->saddr != cfg->match_src || iph->daddr != cfg->match_dst)
		return XDP_PASS;
	n = bpf_map_lookup_elem(&lab_count, &zero);
	if (n)
		*n += 1;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
