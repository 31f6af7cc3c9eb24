/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * svcindex.h - (VIP, port, protocol) -> service in two array loads, in front of the services hash.
 *
 * The hash map lookup (jhash over the 20-byte key, then a byte-wise memcmp) was ~16 ns of the
 * ~35 ns the balancer spent on an established flow. The index is a direct-mapped array of
 * one 64-bit word per slot, holding the whole IPv4 key and the service id, plus the services'
 * values by id. Both are written by the control plane (src/dataplane/svcindex.ts) through mmap
 * with single 8-byte stores. The hash map stays the source of truth: a key that is not in its
 * slot (two services folding to one slot, an id past LB_SVC_INDEX_IDS, a control plane that
 * never fills the index) is looked up there, so the index can only make a lookup faster, never
 * different.
 *
 * Slot word (host order): bits 63..32 VIP as loaded from the packet, 31..16 port as loaded,
 * bit 15 valid, bit 14 UDP (else TCP), bits 13..0 service id. 0 is an empty slot.
 *
 * Ordering (the control plane's side is in svcindex.ts): a slot is cleared before its service
 * leaves the hash map or its id can be reused, and svc_by_id[id] is written before a slot names
 * the id. The reader loads the slot, copies svc_by_id[id] in one 8-byte load, then loads the slot
 * again: if it still holds the same word, the copy belongs to that key. That argument needs loads
 * to stay in program order, which x86 guarantees (the only target we build for); a weakly ordered
 * CPU would need load-acquire there.
 *
 * IPv6 (service_lookup6): a 128-bit VIP does not fit a word, and a folded one cannot tell two
 * VIPs apart, nor can a slot word plus a re-load: the same (fold, port, protocol, id) word could
 * name one VIP before a reader's first load and another by its second (an id handed from a VIP to
 * another with an equal fold), with the copy taken from either. So IPv6 keys get records of their
 * own, struct lb_svc_rec6, direct-mapped by the slot hash of (lb_fold6(VIP), port, protocol): the
 * whole key and the value, guarded by a sequence count in the record's first word. One array load
 * then finds the record, and the reader trusts nothing it did not compare: it loads the first
 * word, the address and the value, loads the first word again, and answers from the record only
 * if the word did not change (the copy is one record's, not a mix of two) and the record's port,
 * protocol and full address are the packet's. So a record checks itself: whatever a slot holds
 * (another key's record, a torn rewrite), the answer is the hash map's or this key's own value.
 * It rests on the same in-order loads as above; the 32-bit count could only fool a reader that
 * slept through 2^31 rewrites of one record.
 * Ordering for records: a record names a key only while the hash map holds that key: it is
 * written after the service is in the hash map, and invalidated before the service leaves it.
 * Every store to a record's first word (invalidate, then publish) changes its sequence count,
 * so a reader that overlaps any rewrite sees the word change. IPv4 does not pay for any of this.
 */
#ifndef LB_SVCINDEX_H
#define LB_SVCINDEX_H

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "lb_abi.h"
#include "maps.h"

/*
 * svc_by_id holds struct lb_service as one 8-byte word, copied and stored whole; a bigger
 * lb_service needs a seqlock-style copy here and in svcindex.ts instead.
 */
_Static_assert(sizeof(struct lb_service) == 8, "svcindex.h copies struct lb_service as one u64");

/* 4096 slots in 32 KiB: a few hundred services fold into them with few collisions. */
#ifndef LB_SVC_INDEX_SHIFT
#define LB_SVC_INDEX_SHIFT 12
#endif
#define LB_SVC_INDEX_SLOTS (1U << LB_SVC_INDEX_SHIFT)
/* Ids that fit the slot word's 14 bits; services with larger ids use the hash map only. */
#define LB_SVC_INDEX_IDS (1U << 14)

#define LB_SVC_SLOT_VALID (1ULL << 15)
#define LB_SVC_SLOT_UDP (1ULL << 14)
#define LB_SVC_SLOT_ID_MASK (LB_SVC_INDEX_IDS - 1)
/* Spreads the key word over the slot bits (the 64-bit golden ratio, odd). */
#define LB_SVC_INDEX_MULT 0x9e3779b97f4a7c15ULL

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_SVC_INDEX_SLOTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
} svc_index SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_SVC_INDEX_IDS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct lb_service);
} svc_by_id SEC(".maps");

/*
 * The service for key, or NULL. The returned pointer is either the hash map's value or *copy,
 * so the caller reads it exactly like a hash map lookup's result.
 */
static __always_inline struct lb_service *service_lookup(const struct lb_service_key *key,
							 struct lb_service *copy)
{
	__u64 kw = ((__u64)key->addr[0] << 32) | ((__u64)key->port << 16) | LB_SVC_SLOT_VALID |
		   (key->proto == IPPROTO_UDP ? LB_SVC_SLOT_UDP : 0);
	__u32 slot = (__u32)((kw * LB_SVC_INDEX_MULT) >> (64 - LB_SVC_INDEX_SHIFT));
	__u64 *sw = bpf_map_lookup_elem(&svc_index, &slot);

	if (sw && key->family == LB_FAMILY_V4) {
		__u64 w = *(volatile __u64 *)sw;

		if ((w & ~(__u64)LB_SVC_SLOT_ID_MASK) == kw) {
			__u32 id = w & LB_SVC_SLOT_ID_MASK;
			__u64 *v = bpf_map_lookup_elem(&svc_by_id, &id);

			if (v) {
				__u64 val = *(volatile __u64 *)v;

				__builtin_memcpy(copy, &val, sizeof(*copy));
				if (*(volatile __u64 *)sw == w)
					return copy;
			}
		}
	}
	return bpf_map_lookup_elem(&services, key);
}

/*
 * An IPv6 service's record, in host order. word: bits 63..32 a sequence count the control plane
 * advances on every store of the word, 31..16 port as loaded, bit 15 valid, bit 14 UDP; the
 * low 32 bits are built like the IPv4 slot word's, without an id (the record has the value).
 * addr: the VIP's 16 bytes as loaded from the packet. value: the struct lb_service the hash map
 * holds for the key, as one word.
 */
struct lb_svc_rec6 {
	__u64 word;
	__u64 addr[2];
	__u64 value;
};
_Static_assert(sizeof(struct lb_svc_rec6) == 32, "lb_svc_rec6 size (svcindex.ts)");

#define LB_SVC_REC6_KEY_MASK 0xffffffffULL

/* As many records as IPv4 slots: the same few collisions for a few hundred IPv6 services. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_SVC_INDEX_SLOTS);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct lb_svc_rec6);
} svc_index6 SEC(".maps");

/*
 * The service for an IPv6 key, or NULL, like service_lookup(). fold: lb_fold6(key->addr), which
 * the caller has already computed for the VIP filter and the flow hash.
 */
static __always_inline struct lb_service *service_lookup6(const struct lb_service_key *key, __u32 fold,
							  struct lb_service *copy)
{
	__u64 kw = ((__u64)key->port << 16) | LB_SVC_SLOT_VALID |
		   (key->proto == IPPROTO_UDP ? LB_SVC_SLOT_UDP : 0);
	__u32 slot = (__u32)(((((__u64)fold << 32) | kw) * LB_SVC_INDEX_MULT) >> (64 - LB_SVC_INDEX_SHIFT));
	struct lb_svc_rec6 *r = bpf_map_lookup_elem(&svc_index6, &slot);

	if (r) {
		__u64 w = *(volatile __u64 *)&r->word;

		if ((w & LB_SVC_REC6_KEY_MASK) == kw) {
			__u64 a0 = *(volatile __u64 *)&r->addr[0];
			__u64 a1 = *(volatile __u64 *)&r->addr[1];
			__u64 val = *(volatile __u64 *)&r->value;

			/* key->addr is only 4-byte aligned: compare it word by word. */
			if (*(volatile __u64 *)&r->word == w &&
			    (__u32)a0 == key->addr[0] && (__u32)(a0 >> 32) == key->addr[1] &&
			    (__u32)a1 == key->addr[2] && (__u32)(a1 >> 32) == key->addr[3]) {
				__builtin_memcpy(copy, &val, sizeof(*copy));
				return copy;
			}
		}
	}
	return bpf_map_lookup_elem(&services, key);
}

#endif /* LB_SVCINDEX_H */
