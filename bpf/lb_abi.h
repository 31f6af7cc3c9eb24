/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * lb_abi.h - the map contract between the XDP programs and the control plane.
 *
 * Every key and value that user space reads or writes is declared here and nowhere else.
 * The TypeScript codecs in src/dataplane/abi.ts mirror these structs; test/dataplane/abi.test.ts
 * compares both against the BTF of the built object, so a change here that is not made there
 * fails the tests. Rules: fixed-width types only, explicit padding, byte order noted per field,
 * a _Static_assert on every size.
 */
#ifndef LB_ABI_H
#define LB_ABI_H

#include <linux/types.h>

/* Forwarding modes (lb_service.mode). */
enum lb_mode {
	LB_MODE_L2DSR = 1,
	LB_MODE_IPIP = 2,
	LB_MODE_NAT = 3,
};

/* lb_service.flags */
#define LB_SVC_F_HASH_SRC_ONLY (1U << 0) /* ring hash over the client address only */
#define LB_SVC_F_DOWN_PASS (1U << 1)     /* no usable backend: XDP_PASS instead of drop */

/* lb_backend.flags */
#define LB_BE_F_VALID (1U << 0) /* slot holds a live backend; flows to a cleared slot re-hash */

#define LB_FAMILY_V4 4
#define LB_FAMILY_V6 6

/*
 * Backend id 0 means "none": an empty ring slot, or a flow entry that holds nothing.
 * Ids are 16 bits wide because a flow entry packs one into a single atomic 64-bit word.
 */
#define LB_BACKEND_NONE 0
#define LB_MAX_BACKEND_ID 0xffff

/* Ring slots are stored 32 to a map value, so a 65537-slot ring is 2049 array entries. */
#define LB_RING_CHUNK 32

/* Flow table: 4-way set-associative, see the comment on lb_flow_bucket. */
#define LB_FLOW_WAYS 4

/* Service key: (VIP, port, protocol). IPv4 addresses sit in addr[0], addr[1..3] zero. */
struct lb_service_key {
	__be32 addr[4]; /* VIP, network byte order */
	__be16 port;    /* network byte order */
	__u8 proto;     /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;    /* LB_FAMILY_V4 or LB_FAMILY_V6 */
};
_Static_assert(sizeof(struct lb_service_key) == 20, "lb_service_key size");

struct lb_service {
	__u32 id;    /* host order; index into the ring and the per-service counters */
	__u8 mode;   /* enum lb_mode */
	__u8 flags;  /* LB_SVC_F_* */
	__u16 pad;
};
_Static_assert(sizeof(struct lb_service) == 8, "lb_service size");

/* Ring: array key = service id * ring_chunks + slot / LB_RING_CHUNK. */
struct lb_ring_chunk {
	__u16 backend[LB_RING_CHUNK]; /* host order backend ids; LB_BACKEND_NONE when empty */
};
_Static_assert(sizeof(struct lb_ring_chunk) == 64, "lb_ring_chunk size");

/* Backend: array key = backend id. */
struct lb_backend {
	__be32 addr[4]; /* network byte order; IPv4 in addr[0] */
	__u8 mac[6];    /* next-hop MAC for l2dsr, as on the wire */
	__u8 family;    /* LB_FAMILY_V4 or LB_FAMILY_V6 */
	__u8 flags;     /* LB_BE_F_* */
	__be16 port;    /* network byte order; NAT target port, 0 = keep the VIP's */
	__u16 pad;
	__u32 service_id; /* host order; the owning service, so a restarted daemon can adopt the map */
};
_Static_assert(sizeof(struct lb_backend) == 32, "lb_backend size");

/*
 * Flow table bucket: array key = flow hash & (buckets - 1).
 *
 * Each way is one 64-bit word, written with a single store, so two CPUs racing on a bucket can
 * lose an insert but can never leave a torn entry:
 *   bits 63..32  fingerprint: a second 32-bit flow hash, independent of the bucket index (never 0)
 *   bits 31..16  backend id
 *   bits 15..0   last seen, in ticks of the control plane's clock (lb_ctl.clock)
 * A word of 0 is an empty way. A miss replaces the empty or least recently seen way.
 */
struct lb_flow_bucket {
	__u64 way[LB_FLOW_WAYS]; /* host order */
};
_Static_assert(sizeof(struct lb_flow_bucket) == 32, "lb_flow_bucket size");

/* Node-wide settings and the clock, written by the control plane: array key 0. */
struct lb_ctl {
	__be32 src4;  /* outer source address for IPIP, network byte order */
	__u16 clock;  /* host order; advanced by the control plane about once a second */
	__u16 pad;
	__u32 pad2[2];
};
_Static_assert(sizeof(struct lb_ctl) == 16, "lb_ctl size");

/* Per-service and per-backend counters, per CPU: array key = service id / backend id. */
struct lb_counters {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows; /* flow-table misses that took a ring slot */
};
_Static_assert(sizeof(struct lb_counters) == 24, "lb_counters size");

/* Verdict counters, per CPU: array key = enum lb_reason. */
enum lb_reason {
	LB_R_PASS_NOT_IP = 0,     /* not IPv4 (ARP, LLDP, IPv6 for now ...) */
	LB_R_PASS_MALFORMED,      /* too short to tell the destination: left to the kernel */
	LB_R_PASS_NOT_VIP,        /* destination is not a VIP */
	LB_R_PASS_NOT_SERVICE,    /* VIP address, but no service on this port/protocol */
	LB_R_DROP_MALFORMED,      /* to a VIP, truncated or inconsistent header */
	LB_R_DROP_FRAGMENT,       /* IP fragment to a VIP */
	LB_R_DROP_IP_OPTIONS,     /* IPv4 options to a service */
	LB_R_DROP_NO_BACKEND,     /* service has no usable backend */
	LB_R_PASS_NO_BACKEND,     /* ... and asks for XDP_PASS in that case */
	LB_R_TX_L2DSR,            /* forwarded, MAC rewrite */
	LB_R_TX_IPIP,             /* forwarded, encapsulated, out the same interface */
	LB_R_REDIRECT_IPIP,       /* forwarded, encapsulated, out another interface */
	LB_R_PASS_IPIP_KERNEL,    /* encapsulated, handed to the kernel to forward (next hop unresolved, VLAN) */
	LB_R_DROP_IPIP_NO_ROUTE,  /* encapsulated, no route to the backend */
	LB_R_DROP_IPIP_MTU,       /* encapsulated packet exceeds the egress MTU */
	LB_R_DROP_ENCAP,          /* could not grow the packet, or no IPIP source address set */
	LB_R_ICMP_TOO_BIG,        /* ICMP fragmentation-needed about a VIP flow (also counted as forwarded) */
	LB_R_PASS_NOT_MODE,       /* service mode this program does not handle */
	LB_R_MAX,
};

#endif /* LB_ABI_H */
