// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Attached to the veth peers of interfaces that XDP_TX or XDP_REDIRECT: a veth delivers frames
 * sent that way only when its peer has an XDP program (shared/LAB-NOTES.md, quirk 1).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
