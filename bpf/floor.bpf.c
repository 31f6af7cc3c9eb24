// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The benchmark floor: the least an XDP forwarder can do (swap MACs, XDP_TX). make bench reports
 * every data-path figure as a ratio to this program measured in the same run.
 */
#include "floor.h"

SEC("xdp")
int xdp_floor(struct xdp_md *ctx)
{
	return floor_swap_macs(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
