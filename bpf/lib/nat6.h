/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * nat6.h - NAT66 and full NAT66: the IPv6 twin of nat.h, on nat6_conns (lb_abi.h).
 *
 * Placeholder until the NAT66 data path lands: IPv6 to a nat service is passed untouched.
 */
#ifndef LB_NAT6_H
#define LB_NAT6_H

#include <linux/bpf.h>
#include "lb_abi.h"
#include "parse.h"
#include "maps.h"

/* A packet to a nat service's IPv6 VIP: translate toward a backend, record the connection. */
static __always_inline int nat6_forward(struct xdp_md *ctx, const struct lb_service *svc,
					const struct lb_pkt6 *p, void *end, __u32 *reason)
{
	*reason = LB_R_PASS_NOT_MODE;
	return XDP_PASS;
}

/* A packet from a NAT backend's IPv6 address (nat_filter hit): translate a reply back. */
static __always_inline int nat6_reply(struct xdp_md *ctx, const struct lb_pkt6 *p, void *end,
				      __u32 *reason)
{
	*reason = LB_R_PASS_NOT_NAT;
	return XDP_PASS;
}

#endif /* LB_NAT6_H */
