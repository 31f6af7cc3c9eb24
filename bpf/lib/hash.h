/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * hash.h - the flow hash: Bob Jenkins' lookup3 final mix over three 32-bit words.
 *
 * Whole-tuple mixing matters: Linux picks even ephemeral ports, so anything that looks only at
 * low port bits sends every connection to one backend (shared/LAB-NOTES.md, quirk 3).
 * The words are the raw values as loaded from the packet on a little-endian host; the control
 * plane's src/dataplane/hash.ts computes the same function, and the fixtures check they agree.
 * Returns two independent 32-bit results: h1 picks the ring slot and the flow-table bucket,
 * h2 is the flow's fingerprint inside the bucket.
 */
#ifndef LB_HASH_H
#define LB_HASH_H

#include <linux/types.h>

#define LB_HASH_INIT 0xdeadbeef

static __always_inline __u32 rol32(__u32 w, unsigned int s)
{
	return (w << s) | (w >> (32 - s));
}

struct lb_hash {
	__u32 h1;
	__u32 h2;
};

static __always_inline struct lb_hash lb_hash3(__u32 a, __u32 b, __u32 c, __u32 seed)
{
	struct lb_hash h;

	a += LB_HASH_INIT + 12 + seed;
	b += LB_HASH_INIT + 12 + seed;
	c += LB_HASH_INIT + 12 + seed;
	c ^= b; c -= rol32(b, 14);
	a ^= c; a -= rol32(c, 11);
	b ^= a; b -= rol32(a, 25);
	c ^= b; c -= rol32(b, 16);
	a ^= c; a -= rol32(c, 4);
	b ^= a; b -= rol32(a, 14);
	c ^= b; c -= rol32(b, 24);
	h.h1 = c;
	h.h2 = b;
	return h;
}

/* Ring slot in [0, size) from a 32-bit hash: multiply-shift, no division on the hot path. */
static __always_inline __u32 lb_reduce(__u32 h, __u32 size)
{
	return (__u32)(((__u64)h * size) >> 32);
}

#endif /* LB_HASH_H */
