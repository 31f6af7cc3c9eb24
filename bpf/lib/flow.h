/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * flow.h - pick the backend for a packet: flow table first, Maglev ring on a miss.
 *
 * The flow table is a set-associative array (lb_abi.h, struct lb_flow_bucket) rather than an
 * LRU hash map: an LRU insert costs ~250 ns on the machines we measured, more than the rest of
 * the balancer, while a bucket write here is one 64-bit store. Within a bucket the least
 * recently seen flow is replaced, so the table behaves as a per-bucket LRU.
 *
 * In a table of a million flows the bucket is a cache miss (and, on a VM, a TLB miss) for nearly
 * every packet, and it is the one miss on the established path. flow_probe_start() therefore
 * hashes the flow and loads its bucket before the caller looks up the service, so that the
 * CPU works on the service lookup while the line is on its way (BPF has no prefetch).
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

struct lb_flow_probe {
	struct lb_hash h;
	struct lb_flow_bucket *bucket; /* NULL only if the map lookup failed (never for an array) */
};

#define WAY_FP(w) ((__u32)((w) >> 32))
#define WAY_BACKEND(w) ((__u32)((w) >> 16) & 0xffff)
#define WAY_SEEN(w) ((__u16)(w))
#define WAY_MAKE(fp, be, seen) (((__u64)(fp) << 32) | ((__u64)(be) << 16) | (__u64)(seen))

static __always_inline void flow_probe_start(struct lb_flow_probe *p, const struct lb_flow *f)
{
	__u32 idx;

	p->h = lb_hash3(f->client, f->vip, f->ports, hash_seed ^ f->proto);
	idx = p->h.h1 & flow_mask;
	p->bucket = bpf_map_lookup_elem(&flows, &idx);
	if (p->bucket) {
		/* The value is not needed here: the load is what starts the miss early. */
		__u64 w = *(volatile __u64 *)&p->bucket->way[0];

		asm volatile("" : : "r"(w));
	}
}

/*
 * The Maglev ring's backend for a new flow (DSR) or connection (NAT): the slot from the flow
 * hash, or from the client address alone for hash-source-only services. LB_BACKEND_NONE when
 * the slot is empty or its backend is gone.
 */
static __always_inline __u32 ring_pick(const struct lb_service *svc, __u32 h1, __be32 client,
				       struct lb_backend **backend)
{
	__u32 ring_hash = h1, slot, chunk_idx, be_id;
	struct lb_ring_chunk *chunk;
	struct lb_backend *be;

	if (svc->flags & LB_SVC_F_HASH_SRC_ONLY)
		ring_hash = lb_hash3(client, 0, 0, hash_seed).h1;
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
	*backend = be;
	return be_id;
}

/*
 * Returns the backend id for the flow (LB_BACKEND_NONE when the service has none) and sets
 * *backend to its entry. *is_new tells whether the flow took a ring slot.
 */
static __always_inline __u32 pick_backend(const struct lb_service *svc, const struct lb_flow *f,
					  const struct lb_flow_probe *p, __u16 clock,
					  struct lb_backend **backend, int *is_new)
{
	struct lb_flow_bucket *bucket = p->bucket;
	__u32 fp = p->h.h2 ? p->h.h2 : 1;
	struct lb_backend *be;
	__u32 be_id;
	int victim = 0;

	*is_new = 0;
	if (bucket) {
		__u16 oldest_age = 0;

		/*
		 * Hits first, in a loop of their own: the established path scans and leaves.
		 * A SYN skips it: it starts a new connection even when its tuple is still in the
		 * table (clients reuse ports), so it takes the ring's choice and overwrites its
		 * way below, and a drained or removed backend gets no new connection through a
		 * stale entry. A retransmitted SYN lands on the same slot unless the ring changed
		 * meanwhile, and then the first backend never completed the handshake anyway.
		 */
#pragma unroll
		for (int i = 0; i < LB_FLOW_WAYS && !f->syn; i++) {
			__u64 w = bucket->way[i];

			if (WAY_FP(w) != fp)
				continue;
			be_id = WAY_BACKEND(w);
			be = bpf_map_lookup_elem(&backends, &be_id);
			if (!be || !(be->flags & LB_BE_F_VALID))
				break; /* its backend is gone: take the ring, and this way */
			/* Touch the line only when the clock moved: keeps hits read-only. */
			if (WAY_SEEN(w) != clock)
				*(volatile __u64 *)&bucket->way[i] = WAY_MAKE(fp, be_id, clock);
			*backend = be;
			return be_id;
		}
		/* Miss: the empty way, else the least recently seen (empty ways count as oldest). */
#pragma unroll
		for (int i = 0; i < LB_FLOW_WAYS; i++) {
			__u64 w = bucket->way[i];
			__u16 age;

			if (WAY_FP(w) == fp) {
				victim = i;
				break;
			}
			age = w ? (__u16)(clock - WAY_SEEN(w)) : 0xffff;
			if (age > oldest_age) {
				oldest_age = age;
				victim = i;
			}
		}
	}

	be_id = ring_pick(svc, p->h.h1, f->client, &be);
	if (be_id == LB_BACKEND_NONE)
		return LB_BACKEND_NONE;
	if (bucket)
		*(volatile __u64 *)&bucket->way[victim & (LB_FLOW_WAYS - 1)] =
			WAY_MAKE(fp, be_id, clock);
	*is_new = 1;
	*backend = be;
	return be_id;
}

#endif /* LB_FLOW_H */
