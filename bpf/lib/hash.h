/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * hash.h - the flow hash: the tuple folded into 64 bits, then MurmurHash3's 64-bit finalizer.
 *
 * Whole-tuple mixing matters: Linux picks even ephemeral ports, so anything that looks only at
 * low port bits sends every connection to one backend (shared/LAB-NOTES.md, quirk 3).
 * The fold keeps (client, ports) exact for a given VIP, seed and protocol: x = client:ports XOR
 * (vip ^ seed) * K, a bijection of (client, ports) once the rest is fixed. The finalizer is a
 * bijection of 64 bits with full avalanche (every input bit flips each output bit with p ~ 1/2),
 * so its two halves serve as two hashes: two flows that share a bucket (low bits of h1) have
 * unrelated fingerprints (h2). On the BPF target that is 2 multiplies and 3 shift-xors, where
 * lookup3's final mix was 21 dependent operations with rotates spelt out as shift, shift, or.
 *
 * The words are the raw values as loaded from the packet on a little-endian host; the control
 * plane's src/dataplane/hash.ts computes the same function, and the fixtures check they agree.
 * h1 picks the ring slot (its high bits, lb_reduce) and the flow-table bucket (its low bits);
 * h2 is the flow's fingerprint inside the bucket.
 */
#ifndef LB_HASH_H
#define LB_HASH_H

#include <linux/types.h>

/* An odd constant with well-spread bits (the 64-bit golden ratio): spreads vip ^ seed over 64 bits. */
#define LB_HASH_FOLD 0x9e3779b97f4a7c15ULL
/* MurmurHash3 fmix64 constants. */
#define LB_FMIX_C1 0xff51afd7ed558ccdULL
#define LB_FMIX_C2 0xc4ceb9fe1a85ec53ULL

struct lb_hash {
	__u32 h1;
	__u32 h2;
};

static __always_inline __u64 lb_fmix64(__u64 x)
{
	x ^= x >> 33;
	x *= LB_FMIX_C1;
	x ^= x >> 33;
	x *= LB_FMIX_C2;
	x ^= x >> 33;
	return x;
}

/* a: client address, b: VIP, c: client port << 16 | VIP port, all raw; seed: node seed ^ protocol. */
static __always_inline struct lb_hash lb_hash3(__u32 a, __u32 b, __u32 c, __u32 seed)
{
	__u64 x = (((__u64)a << 32) | c) ^ ((__u64)(b ^ seed) * LB_HASH_FOLD);
	struct lb_hash h;

	x = lb_fmix64(x);
	h.h1 = (__u32)x;
	h.h2 = (__u32)(x >> 32);
	return h;
}

/*
 * An IPv6 address folded to the one 32-bit word that stands for it in lb_hash3(), the VIP filter
 * and the NAT reply filter: every bit of the 128 reaches the result (two fmix64 rounds, chained),
 * so flows from addresses that share a /64 or differ only in the low bits still spread.
 * a: the address as four raw words, as loaded from the packet.
 */
static __always_inline __u32 lb_fold6(const __u32 *a)
{
	__u64 lo = ((__u64)a[1] << 32) | a[0];
	__u64 hi = ((__u64)a[3] << 32) | a[2];
	__u64 x = lb_fmix64(lo ^ lb_fmix64(hi ^ LB_HASH_FOLD));

	return (__u32)x ^ (__u32)(x >> 32);
}

/*
 * The word that stands for an IPv6 address in the VIP and NAT-reply filters: its four words XORed.
 * Weak as a hash, but a filter only needs a spread that makes false hits rare (each costs one
 * lookup), and every non-VIP IPv6 packet pays it: one fold here instead of lb_fold6()'s four
 * multiplies, which only a filter hit goes on to compute.
 */
static __always_inline __u32 lb_filter6(const __u32 *a)
{
	return a[0] ^ a[1] ^ a[2] ^ a[3];
}

/* Ring slot in [0, size) from a 32-bit hash: multiply-shift, no division on the hot path. */
static __always_inline __u32 lb_reduce(__u32 h, __u32 size)
{
	return (__u32)(((__u64)h * size) >> 32);
}

#endif /* LB_HASH_H */
