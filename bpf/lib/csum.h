/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * csum.h - Internet checksum arithmetic (RFC 1071) without helper calls: an IPv4 header is ten
 * 16-bit words, cheaper to add inline than to hand to bpf_csum_diff().
 */
#ifndef LB_CSUM_H
#define LB_CSUM_H

#include <linux/types.h>

static __always_inline __u16 csum_fold32(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Checksum of a 20-byte IPv4 header whose check field is zero. */
static __always_inline __u16 csum_ipv4_hdr(const void *hdr)
{
	const __u16 *w = hdr;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	return csum_fold32(sum);
}

/*
 * Incremental update (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')). A rewrite collects ~old + new of
 * every changed field in a 64-bit accumulator: a 32-bit word adds as its two 16-bit halves would,
 * because 2^16 = 1 in one's complement arithmetic, so addresses and port pairs go in whole.
 * Fields are added as loaded from the packet (network order on any host), like the checksum itself.
 */
static __always_inline __u64 csum_diff32(__u64 acc, __u32 from, __u32 to)
{
	return acc + (__u32)~from + to;
}

static __always_inline __u64 csum_diff16(__u64 acc, __u16 from, __u16 to)
{
	return acc + (__u16)~from + to;
}

/*
 * An IPv6 address as four 32-bit words (RFC 1624 again): eight additions inline, against a
 * bpf_csum_diff() call per address. from and to are as loaded from packet or map, network order.
 */
static __always_inline __u64 csum_diff128(__u64 acc, const __u32 *from, const __u32 *to)
{
#pragma unroll
	for (int i = 0; i < 4; i++)
		acc = csum_diff32(acc, from[i], to[i]);
	return acc;
}

/* The checksum after the changes in diff; at most 2^32 additions fit before the folds overflow. */
static __always_inline __u16 csum_apply(__u16 check, __u64 diff)
{
	__u64 s = (__u16)~check + diff;

	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

#endif /* LB_CSUM_H */
