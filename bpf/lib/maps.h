/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * maps.h - the balancer's maps and load-time settings. Layouts are in lb_abi.h. The sizes here are
 * defaults: the control plane sets max_entries and the const volatile settings before load.
 */
#ifndef LB_MAPS_H
#define LB_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "lb_abi.h"

/* Enough for a typical LB node; a deployment with more sets it in the config. */
#ifndef LB_MAX_SERVICES
#define LB_MAX_SERVICES 256
#endif
/* Maglev's default table size: prime, and > 100x any realistic backend count per service. */
#ifndef LB_RING_SIZE
#define LB_RING_SIZE 65537
#endif
#define LB_RING_CHUNKS ((LB_RING_SIZE + LB_RING_CHUNK - 1) / LB_RING_CHUNK)
/* 2^18 buckets x 4 ways: a million tracked flows in 8 MiB. */
#ifndef LB_FLOW_BUCKETS
#define LB_FLOW_BUCKETS (1U << 18)
#endif
/* 65536 bits: one in about 2^16 non-VIP addresses costs a service lookup to reject. */
#define LB_VIP_FILTER_WORDS 1024
#define LB_VIP_FILTER_SHIFT 16

/* Set before load by the control plane; the verifier sees them as constants. */
const volatile __u32 ring_size = LB_RING_SIZE;
const volatile __u32 flow_mask = LB_FLOW_BUCKETS - 1;
const volatile __u32 hash_seed = 0;
/* Never read: keeps enum lb_reason in the object's BTF, where the control plane finds the names. */
const volatile enum lb_reason lb_reason_names = LB_R_MAX;
const volatile enum lb_mode lb_mode_names = LB_MODE_L2DSR;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_MAX_SERVICES);
	__type(key, struct lb_service_key);
	__type(value, struct lb_service);
} services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAX_SERVICES * LB_RING_CHUNKS);
	/* The control plane maps it and changes single slots: a ring update is a few stores. */
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct lb_ring_chunk);
} rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_MAX_BACKEND_ID + 1);
	__type(key, __u32);
	__type(value, struct lb_backend);
} backends SEC(".maps");

/* Mmapable so the control plane can count flows per backend and clear a dead backend's ways
 * with one compare-and-swap each, without a syscall per bucket. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_FLOW_BUCKETS);
	/*
	 * Also for the data path: an mmapable array's values start on a page, a plain one's 312 bytes
	 * into it (after struct bpf_array), which puts every other 32-byte bucket across two cache lines.
	 */
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct lb_flow_bucket);
} flows SEC(".maps");

/* A bit per folded destination address (IPv6: of its lb_filter6()): lets non-VIP traffic pass
 * without a hash lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_VIP_FILTER_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} vip_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_ctl);
} ctl SEC(".maps");

/*
 * Per-backend only: a service's counters are the sum of its backends', which the control plane
 * adds up (src/dataplane/apply.ts), so a forwarded packet costs one counter update, not two.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_MAX_BACKEND_ID + 1);
	__type(key, __u32);
	__type(value, struct lb_counters);
} backend_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, LB_R_MAX);
	__type(key, __u32);
	__type(value, __u64);
} reasons SEC(".maps");

/*
 * NAT. A plain (preallocated) hash, not an LRU one: an LRU map could evict one entry of a pair
 * behind our back, and an evicted full-NAT reverse entry would free a port that the forward entry
 * still uses. Here an insert into a full table fails, and that failure gets a counted verdict.
 * Two entries per connection: 2^18 entries hold 131072 connections (about 25 MiB).
 */
#ifndef LB_NAT_ENTRIES
#define LB_NAT_ENTRIES (1U << 18)
#endif
/* Interfaces XDP_REDIRECT may send translated packets out of (key and value: ifindex). */
#define LB_TX_PORTS 64
const volatile enum lb_nat_state lb_nat_state_names = LB_NAT_TCP_NEW;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_NAT_ENTRIES);
	__type(key, struct lb_nat_key);
	__type(value, struct lb_nat_entry);
} nat_conns SEC(".maps");

/* NAT66 connections, same rules. Smaller by default: each entry is ~2.5x an IPv4 one. */
#ifndef LB_NAT6_ENTRIES
#define LB_NAT6_ENTRIES (1U << 16)
#endif

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, LB_NAT6_ENTRIES);
	__type(key, struct lb_nat6_key);
	__type(value, struct lb_nat6_entry);
} nat6_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct lb_nat_cfg);
} nat_cfg SEC(".maps");

/*
 * A bit per folded NAT backend address (the VIP filter's fold, on the source; an IPv6 address is
 * first folded to 32 bits by lb_filter6()): replies come from backends, so traffic from anywhere
 * else skips the connection-table lookup.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, LB_VIP_FILTER_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} nat_filter SEC(".maps");

/*
 * A devmap rather than bpf_redirect(): the kernel batches frames per destination device. Not
 * pinned (src/dataplane/loader.ts): the control plane fills it from the interfaces it attaches to.
 */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, LB_TX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

/* A forwarded packet on its backend's per-CPU counters (the only per-packet counter besides the verdict). */
static __always_inline void count_backend(__u32 be_id, __u64 bytes, int is_new)
{
	struct lb_counters *c = bpf_map_lookup_elem(&backend_stats, &be_id);

	if (c) {
		c->packets++;
		c->bytes += bytes;
		c->new_flows += is_new;
	}
}

/*
 * One more of a verdict counted beside the packet's own (ICMP too-big). The exit's own count in
 * balancer_entry() stays written out: through this helper (reason by value, a new stack slot)
 * clang lays the whole program out anew, 79 instructions longer; a build with that change and
 * one more such helper measured 3-5 ns slower on the established path.
 */
static __always_inline void count_reason(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&reasons, &reason);

	if (n)
		*n += 1;
}

#endif /* LB_MAPS_H */
