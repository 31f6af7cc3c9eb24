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
#define LB_SVC_F_FULL_NAT (1U << 2)      /* nat: the source becomes an LB address and port too */

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
	__be32 src4;    /* outer source address for tunnels to IPv4 backends, network byte order */
	__u16 clock;    /* host order; advanced by the control plane about once a second */
	__u16 pad;
	__be32 src6[4]; /* outer source address for tunnels to IPv6 backends; all zero = none */
};
_Static_assert(sizeof(struct lb_ctl) == 24, "lb_ctl size");

/* Per-backend counters, per CPU: array key = backend id (a service's are the sum of its backends'). */
struct lb_counters {
	__u64 packets;
	__u64 bytes;
	__u64 new_flows; /* flow-table misses that took a ring slot */
};
_Static_assert(sizeof(struct lb_counters) == 24, "lb_counters size");

/* Verdict counters, per CPU: array key = enum lb_reason. */
enum lb_reason {
	LB_R_PASS_NOT_IP = 0,     /* neither IPv4 nor IPv6 (ARP, LLDP ...) */
	LB_R_PASS_MALFORMED,      /* too short to tell the destination: left to the kernel */
	LB_R_PASS_NOT_VIP,        /* destination is not a VIP */
	LB_R_PASS_NOT_SERVICE,    /* VIP address, but no service on this port/protocol */
	LB_R_DROP_MALFORMED,      /* to a VIP, truncated or inconsistent header */
	LB_R_DROP_FRAGMENT,       /* IP fragment to a VIP */
	LB_R_DROP_IP_OPTIONS,     /* IPv4 options to a service */
	LB_R_DROP_EXT_HDR,        /* IPv6 to a VIP: routing header with segments left, unknown or too many extension headers */
	LB_R_DROP_NO_BACKEND,     /* service has no usable backend */
	LB_R_PASS_NO_BACKEND,     /* ... and asks for XDP_PASS in that case */
	LB_R_TX_L2DSR,            /* forwarded, MAC rewrite */
	LB_R_TX_IPIP,             /* forwarded, encapsulated, out the same interface */
	LB_R_REDIRECT_IPIP,       /* forwarded, encapsulated, out another interface */
	LB_R_PASS_IPIP_KERNEL,    /* encapsulated, handed to the kernel to forward (next hop unresolved, VLAN) */
	LB_R_DROP_IPIP_NO_ROUTE,  /* encapsulated, no route to the backend */
	LB_R_DROP_IPIP_MTU,       /* encapsulated packet exceeds the egress MTU */
	LB_R_DROP_ENCAP,          /* could not grow the packet, or no IPIP source address set */
	LB_R_ICMP_TOO_BIG,        /* ICMP fragmentation-needed / ICMPv6 packet-too-big about a VIP flow (also counted as forwarded) */
	LB_R_PASS_NOT_MODE,       /* service mode this program does not handle */
	LB_R_TX_NAT,              /* nat: translated toward the backend, out the same interface */
	LB_R_REDIRECT_NAT,        /* nat: translated toward the backend, out another interface */
	LB_R_TX_NAT_REPLY,        /* nat: a backend's reply translated back, out the same interface */
	LB_R_REDIRECT_NAT_REPLY,  /* nat: a backend's reply translated back, out another interface */
	LB_R_PASS_NAT_KERNEL,     /* nat: translated, handed to the kernel to forward (next hop unresolved, VLAN, egress not in tx_ports) */
	LB_R_PASS_NOT_NAT,        /* from a NAT backend's address, but no live connection entry: untouched */
	LB_R_PASS_NAT_TTL,        /* nat: TTL would expire here: untouched, the kernel answers */
	LB_R_PASS_NAT_ICMP,       /* ICMP to a nat service that is not an error about a live connection: left to the kernel */
	LB_R_DROP_NAT_NO_ROUTE,   /* nat: no route to the translated destination */
	LB_R_DROP_NAT_MTU,        /* nat: the packet exceeds the egress MTU */
	LB_R_DROP_NAT_NO_PORT,    /* full NAT: every probed source port is taken */
	LB_R_DROP_NAT_NO_SOURCE,  /* full NAT: no source address or port range configured */
	LB_R_DROP_NAT_CONFLICT,   /* nat: the reply tuple belongs to a live connection of another client */
	LB_R_DROP_NAT_TABLE_FULL, /* nat: the connection table is full */
	LB_R_MAX,
};

/*
 * NAT connection table (hash map nat_conns): every connection has two entries, one per direction,
 * each keyed by the 5-tuple as it arrives in that direction:
 *   forward  client:port -> VIP:port                                      (LB_NAT_DIR_FWD)
 *   reverse  backend:port -> client:port, or -> LB source:port in full NAT  (LB_NAT_DIR_REV)
 * and each holding the tuple to rewrite that packet to. The partner of an entry is found by
 * swapping its value (source <-> destination), so neither stores the other's key.
 */
#define LB_NAT_DIR_FWD 0
#define LB_NAT_DIR_REV 1

/* lb_nat_entry.state; both entries of a connection carry the same state (see bpf/lib/nat.h). */
enum lb_nat_state {
	LB_NAT_TCP_NEW = 1,     /* TCP, the backend has not answered yet */
	LB_NAT_TCP_EST = 2,     /* TCP, the backend answered */
	LB_NAT_TCP_CLOSING = 3, /* TCP, FIN or RST seen in either direction */
	LB_NAT_UDP = 4,
};

/* lb_nat_entry.flags */
#define LB_NAT_F_FULL (1U << 0) /* full NAT: the forward rewrite changes the source too */

/* Full-NAT source addresses: a small array, chosen per connection by hash. */
#define LB_NAT_MAX_SOURCES 4

struct lb_nat_key {
	__be32 saddr; /* network byte order, as on the wire */
	__be32 daddr;
	__be16 sport; /* network byte order */
	__be16 dport;
	__u8 proto;   /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 dir;     /* LB_NAT_DIR_* */
	__u16 pad;
};
_Static_assert(sizeof(struct lb_nat_key) == 16, "lb_nat_key size");

struct lb_nat_entry {
	__be32 saddr;      /* the packet's new source, network byte order */
	__be32 daddr;      /* its new destination */
	__be16 sport;      /* network byte order */
	__be16 dport;
	__u32 service_id;  /* host order */
	__u16 backend_id;  /* host order; the forward entry pins its connection to this backend */
	__u8 state;        /* enum lb_nat_state */
	__u8 flags;        /* LB_NAT_F_* */
	__u32 pad;
	__u64 last_seen;   /* host order, ns of CLOCK_MONOTONIC (bpf_ktime_get_coarse_ns) */
};
_Static_assert(sizeof(struct lb_nat_entry) == 32, "lb_nat_entry size");

/*
 * NAT66: the same two entries per connection, in their own map (nat6_conns) so that IPv4 keeps
 * its 16-byte keys. Same fields and meaning as lb_nat_key / lb_nat_entry, with IPv6 addresses.
 */
struct lb_nat6_key {
	__be32 saddr[4]; /* network byte order, as on the wire */
	__be32 daddr[4];
	__be16 sport;    /* network byte order */
	__be16 dport;
	__u8 proto;      /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 dir;        /* LB_NAT_DIR_* */
	__u16 pad;
};
_Static_assert(sizeof(struct lb_nat6_key) == 40, "lb_nat6_key size");

struct lb_nat6_entry {
	__be32 saddr[4];   /* the packet's new source, network byte order */
	__be32 daddr[4];   /* its new destination */
	__be16 sport;      /* network byte order */
	__be16 dport;
	__u32 service_id;  /* host order */
	__u16 backend_id;  /* host order */
	__u8 state;        /* enum lb_nat_state */
	__u8 flags;        /* LB_NAT_F_* */
	__u32 pad;
	__u64 last_seen;   /* host order, ns of CLOCK_MONOTONIC (bpf_ktime_get_coarse_ns) */
};
_Static_assert(sizeof(struct lb_nat6_entry) == 56, "lb_nat6_entry size");

/* Node-wide NAT settings, written by the control plane: array key 0. */
struct lb_nat_cfg {
	__be32 source[LB_NAT_MAX_SOURCES]; /* full-NAT source addresses, network byte order */
	__u32 n_sources;                   /* host order; how many of source[] are set */
	__u16 port_min;                    /* host order; full-NAT source port range, inclusive (both families) */
	__u16 port_max;
	__u64 timeout_ns[4];               /* host order; idle timeout by state: index state - 1 */
	__be32 source6[LB_NAT_MAX_SOURCES][4]; /* full-NAT66 source addresses, network byte order */
	__u32 n_sources6;                  /* host order; how many of source6[] are set */
	__u32 pad;
};
_Static_assert(sizeof(struct lb_nat_cfg) == 128, "lb_nat_cfg size");

#endif /* LB_ABI_H */
