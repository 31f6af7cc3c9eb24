/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * flow.h - pick the backend for a packet: flow table first, Maglev ring on a miss.
 *
 * The flow table is a set-associative array (lb_abi.h, struct lb_flow_bucket) rather than an
 * LRU hash map: an LRU insert costs ~250 ns on the machines we measured, more than the rest of
 * the balancer, while a bucket write here is one 64-bit store. Within a bucket the least
 * recently seen flow is replaced, so the table behaves as a per-bucket LRU.
 */
#ifndef LB_FLOW_H
#define LB_FLOW_H

#include "maps.h"
#include "hash.h"

struct lb_flow {
	__be32 client;  /* raw, as on the wire */
	__be32 vip;
	__u32 ports;    /* client port << 16 | VIP port, both raw __be16 */
	__u8 proto;
	/* a TCP SYN without ACK: the start of a new connection (see pick_backend) */
	__u8 syn;
};

#define WAY_FP(w) ((__u32)((w) >> 32))
#define WAY_BACKEND(w) ((__u32)((w) >> 16) & 0xffff)
#define WAY_SEEN(w) ((__u16)(w))
#define WAY_MAKE(fp, be, seen) (((__u64)(fp) << 32) | ((__u64)(be) << 16) | (__u64)(seen))

/*
 * Returns the backend id for the flow (LB_BACKEND_NONE when the service has none) and sets
 * *backend to its entry. *is_new tells whether the flow took a ring slot.
 */
static __always_inline __u32 pick_backend(const struct lb_service *svc, const struct lb_flow *f,
					  __u16 clock, struct lb_backend **backend, int *is_new)
{
	struct lb_hash h = lb_hash3(f->client, f->vip, f->ports, hash_seed ^ f->proto);
	__u32 bucket_idx = h.h1 & flow_mask;
	__u32 fp = h.h2 ? h.h2 : 1;
	struct lb_flow_bucket *bucket = bpf_map_lookup_elem(&flows, &bucket_idx);
	struct lb_backend *be = NULL;
	__u32 be_id = LB_BACKEND_NONE, slot, chunk_idx, ring_hash;
	struct lb_ring_chunk *chunk;
	int victim = 0;

	*is_new = 0;
	if (bucket) {
		__u16 oldest_age = 0;

#pragma unroll
		for (int i = 0; i < LB_FLOW_WAYS; i++) {
			__u64 w = bucket->way[i];

			if (WAY_FP(w) == fp) {
				/*
				 * A SYN starts a new connection even when its tuple is still in
				 * the table (clients reuse ports): it takes the ring's choice and
				 * overwrites this way, so a drained or removed backend gets no
				 * new connection through a stale entry. A retransmitted SYN
				 * lands on the same slot unless the ring changed meanwhile, and
				 * then the first backend never completed the handshake anyway.
				 */
				if (!f->syn)
					be_id = WAY_BACKEND(w);
				victim = i;
				break;
			}
			/* Empty ways have age 0xffff - seen: make them the first choice. */
			__u16 age = w ? (__u16)(clock - WAY_SEEN(w)) : 0xffff;
			if (age > oldest_age) {
				oldest_age = age;
				victim = i;
			}
		}
	}
	if (be_id != LB_BACKEND_NONE) {
		be = bpf_map_lookup_elem(&backends, &be_id);
		if (bucket && be && (be->flags & LB_BE_F_VALID)) {
			__u64 *wp = &bucket->way[victim & (LB_FLOW_WAYS - 1)];

			/* Touch the line only when the clock moved: keeps hits read-only. */
			if (WAY_SEEN(*wp) != clock)
				*(volatile __u64 *)wp = WAY_MAKE(fp, be_id, clock);
			*backend = be;
			return be_id;
		}
	}

	ring_hash = h.h1;
	if (svc->flags & LB_SVC_F_HASH_SRC_ONLY)
		ring_hash = lb_hash3(f->client, 0, 0, hash_seed).h1;
	slot = lb_reduce(ring_hash, ring_size);
	chunk_idx = svc->id * ((ring_size + LB_RING_CHUNK - 1) / LB_RING_CHUNK) + slot / LB_RING_CHUNK;
	chunk = bpf_map_lookup_elem(&rings, &chunk_idx);
	if (!chunk)
		return LB_BACKEND_NONE;
	be_id = chunk->backend[slot & (LB_RING_CHUNK - 1)];
	if (be_id == LB_BACKEND_NONE)
		return LB_BACKEND_NONE;
	be = bpf_map_lookup_elem(&backends, &be_id);
	if (!be || !(be->flags & LB_BE_F_VALID))
		return LB_BACKEND_NONE;
	if (bucket)
		*(volatile __u64 *)&bucket->way[victim & (LB_FLOW_WAYS - 1)] =
			WAY_MAKE(fp, be_id, clock);
	*is_new = 1;
	*backend = be;
	return be_id;
}

#endif /* LB_FLOW_H */
