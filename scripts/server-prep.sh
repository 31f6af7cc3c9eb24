#!/usr/bin/env bash
# server-prep.sh: prepares a real server (backend) for xdplb's direct server return, and undoes it.
#
#   server-prep.sh add|remove|check --vip ADDR [--vip ADDR ...] --mode l2dsr|ipip
#                  [--persist] [--json] [--state-dir DIR] [--decap-obj PATH] [--dev IFACE ...]
#
# Self-contained: the daemon sends it over SSH on stdin (`bash -s -- add --vip ...`), so it reads no
# other file of the repository (only the decap object, by path). Needs bash >= 4.4, iproute2 and
# coreutils; sysctls are read and written through /proc/sys/net (which is per network namespace,
# also under `nsenter --net`, and needs no name mangling for interfaces such as eth0.100).
#
# What a backend needs, and why:
#  - Every VIP on lo (/32, /128): the kernel then accepts packets for the VIP as local and the
#    service answers from the VIP, straight to the client.
#  - ARP (IPv4): the VIP must not be announced or answered on the shared segment, else the backend
#    steals the VIP from the load balancer. arp_ignore=1 (answer only for addresses of the interface
#    the request came in on; 2 is stricter and also fine) and arp_announce=2 (use the best local
#    address of the outgoing interface as ARP source, never the VIP), on `all` and on every real
#    interface. The kernel uses max(all, dev) for both, so `all` alone would do; dev is belt and braces.
#    Set when an add has an IPv4 VIP, restored when no IPv4 VIP is left.
#  - rp_filter: the kernel uses max(all, dev); 1 (strict) drops a packet whose source is not routed
#    back out of the interface it arrived on; 2 (loose) only wants the source routable at all.
#      l2dsr: the packet arrives on the real interface with the client's source, which is routed back
#        out of that same interface: strict is fine, nothing is relaxed.
#      ipip with tunl0: the decapsulated packet arrives on tunl0 but its source (the client) is routed
#        via the real interface, so strict drops it. tunl0 and `all` must not be 1: tunl0 1 -> 0,
#        all 1 -> 2 (loose keeps source checks on every other interface; 0 would silently disable
#        them wherever an interface relies on `all`).
#      ipip with the XDP decap program: the outer header is stripped before the stack sees the packet,
#        which then looks like l2dsr (real interface, client source): nothing is relaxed.
#      ipip with ip6tnl0 (IPv6 outer header: 6in6, 4in6): an IPv4 VIP reached 4in6 arrives on
#        ip6tnl0 just as on tunl0, so ip6tnl0 and `all` get the same treatment (only when an IPv4 VIP
#        is added in ipip mode). rp_filter does not exist for IPv6: a 6in6 packet needs nothing.
#  - IPv6 VIPs: the /128 on lo (nodad: lo does no duplicate address detection anyway, and a
#    tentative VIP would not accept connections), and nothing else. Linux's neighbour discovery
#    needs no arp_ignore/arp_announce equivalent: ndisc_recv_ns() looks the target up with
#    ipv6_get_ifaddr(net, target, dev, strict=1), so a solicitation is answered only for addresses of
#    the interface it came in on (or proxied ones: `check` reports a proxy entry for a VIP); and
#    ndisc_solicit() takes the packet's source as the solicitation's source only when
#    ipv6_chk_addr_and_flags(..., dev, skip_dev_check=false, strict=1) finds it on the outgoing
#    interface, so a reply from the VIP never makes the VIP a solicitation's source.
#    test/serverprep proves both in namespaces.
#  - ipip: the kernel's fallback tunnel devices when it has them: tunl0 (ipip driver, IPv4 outer)
#    and ip6tnl0 (ip6_tunnel driver, IPv6 outer, IPv4 or IPv6 inside). Which outer family the LB uses
#    follows the backend address in its config, which this host cannot know, so both are brought up.
#    A kernel with only one of them gets a note that the other family's tunnels are not decapsulated;
#    a kernel with neither gets the XDP decap program, which strips IPv4 and IPv6 outer headers.
#
# State: `add` writes, before each change, what it is about to change (previous sysctl values, which
# VIPs it adds, links it brings up, XDP programs it attaches) to STATE_DIR/<netns>.state, so `remove`
# undoes exactly that, and only where nobody changed it since. Exit: 0 ok, 1 failure (check: something
# missing), 2 usage error (then nothing was changed).
set -euo pipefail

sp_usage() {
	cat <<'EOF'
usage: server-prep.sh add|remove|check --vip ADDR [--vip ADDR ...] --mode l2dsr|ipip
         [--persist] [--json] [--state-dir DIR] [--decap-obj PATH] [--dev IFACE ...]

Prepares this host as a real server (backend) for xdplb's direct server return.
  add     put each VIP on lo (/32 or /128); arp_ignore=1, arp_announce=2 on all and on each
          real interface; for ipip also bring tunl0 and ip6tnl0 up (rp_filter not strict on them
          and all), or, if the kernel has neither the ipip nor the ip6_tunnel driver, attach the
          XDP decap program to each real interface. Records what it changes; running it again changes nothing.
  remove  undo what add did for these VIPs (a VIP that was on lo before add stays); when no
          VIP is left, restore every sysctl add changed and detach/unset what it attached.
  check   report each requirement as ok or missing (exit 0 all ok, 1 something missing)

options:
  --vip ADDR        IPv4 or IPv6 address (a /32 or /128 suffix is accepted); repeatable
  --mode MODE       l2dsr or ipip; optional for remove
  --dev IFACE       real interface to configure; repeatable
                    (default: every interface that is up, not lo, not NOARP, Ethernet-like)
  --persist         add: also write $XDPLB_SYSCTL_DIR/60-xdplb-server-prep.conf, install this
                    script as $XDPLB_SBIN_DIR/xdplb-server-prep and a oneshot unit
                    $XDPLB_SYSTEMD_DIR/xdplb-server-prep.service that re-adds the VIPs at boot;
                    remove deletes them when no VIP is left
  --json            print one JSON object instead of text lines
  --state-dir DIR   where add records its changes (default /var/lib/xdplb/server-prep;
                    one file per network namespace)
  --decap-obj PATH  XDP decap object for ipip without an ipip driver (default:
                    build/bpf/decap.bpf.o of this script's repo, else /usr/lib/xdplb/decap.bpf.o)
  -h, --help        this text

environment: XDPLB_SYSCTL_DIR (default /etc/sysctl.d), XDPLB_SYSTEMD_DIR (default
  /etc/systemd/system; when set, systemctl is not run), XDPLB_SBIN_DIR (default /usr/local/sbin)
exit status: 0 ok, 1 failure or (check) something missing, 2 usage error (nothing changed)
EOF
}

# ---------------------------------------------------------------------------------------------
# Output: text lines as things happen, or one JSON object at the end (--json).

sp_die() {
	printf 'server-prep: error: %s\n' "$1" >&2
	exit 1
}

sp_usage_error() {
	local m
	for m in "$@"; do printf 'server-prep: usage error: %s\n' "$m" >&2; done
	printf 'run "server-prep.sh --help" for usage; nothing was changed\n' >&2
	exit 2
}

sp_changed() {
	OUT_CHANGED+=("$1")
	((JSON)) || printf '%s\n' "$1"
}

sp_unchanged() {
	OUT_UNCHANGED+=("$1")
	((JSON)) || printf 'unchanged: %s\n' "$1"
}

sp_note() {
	OUT_NOTES+=("$1")
	((JSON)) || printf 'note: %s\n' "$1"
}

sp_json_str() {
	local s=$1
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//$'\n'/\\n}
	s=${s//$'\t'/\\t}
	s=${s//$'\r'/\\r}
	printf '"%s"' "$s"
}

sp_json_list() {
	local sep="" s
	printf '['
	for s in "$@"; do
		printf '%s' "$sep"
		sp_json_str "$s"
		sep=","
	done
	printf ']'
}

# The closing summary of add/remove.
sp_report() {
	local action=$1 nothing=$2 changed=false
	((${#OUT_CHANGED[@]})) && changed=true
	if ((JSON)); then
		printf '{"action":"%s","changed":%s,"changes":' "$action" "$changed"
		sp_json_list "${OUT_CHANGED[@]}"
		printf ',"unchanged":'
		sp_json_list "${OUT_UNCHANGED[@]}"
		printf ',"notes":'
		sp_json_list "${OUT_NOTES[@]}"
		printf '}\n'
	elif [[ $changed == false ]]; then
		printf '%s\n' "$nothing"
	fi
}

# ---------------------------------------------------------------------------------------------
# Addresses. sp_canon_vip sets CANON ("addr/plen", canonical text) and FAMILY, or SP_ERR and 1.

sp_canon_ipv4() {
	local a=$1 o
	local -a parts
	[[ $a =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || return 1
	IFS=. read -r -a parts <<<"$a"
	for o in "${parts[@]}"; do
		# No leading zeros: 010 means 8 to some tools and 10 to others.
		[[ $o =~ ^(0|[1-9][0-9]*)$ ]] || return 1
		((o <= 255)) || return 1
	done
	V4_FIRST=${parts[0]}
	return 0
}

sp_canon_ipv6() {
	local a=${1,,} v4 head tail g i best=-1 bestlen=0 run=0 start=0 out=""
	local -a hg=() tg=() groups=() p
	[[ $a == *:* && $a =~ ^[0-9a-f:.]+$ ]] || return 1
	if [[ $a == *.* ]]; then # dotted IPv4 in the last 32 bits (::ffff:192.0.2.1)
		v4=${a##*:}
		sp_canon_ipv4 "$v4" || return 1
		IFS=. read -r -a p <<<"$v4"
		a=$(printf '%s:%x:%x' "${a%:*}" $((p[0] * 256 + p[1])) $((p[2] * 256 + p[3])))
	fi
	[[ $a == *::*::* || $a == *:::* ]] && return 1
	[[ $a == :* && $a != ::* ]] && return 1
	[[ $a == *: && $a != *:: ]] && return 1
	if [[ $a == *::* ]]; then
		head=${a%%::*}
		tail=${a#*::}
		[[ -n $head ]] && IFS=: read -r -a hg <<<"$head"
		[[ -n $tail ]] && IFS=: read -r -a tg <<<"$tail"
		((${#hg[@]} + ${#tg[@]} <= 7)) || return 1
		groups=("${hg[@]}")
		for ((i = ${#hg[@]} + ${#tg[@]}; i < 8; i++)); do groups+=(0); done
		groups+=("${tg[@]}")
	else
		IFS=: read -r -a groups <<<"$a"
		((${#groups[@]} == 8)) || return 1
	fi
	for i in "${!groups[@]}"; do
		[[ ${groups[i]} =~ ^[0-9a-f]{1,4}$ ]] || return 1
		groups[i]=$(printf '%x' "0x${groups[i]}")
	done
	V6_FIRST=$((16#${groups[0]}))
	V6_MAPPED=0
	[[ ${groups[*]:0:6} == "0 0 0 0 0 ffff" ]] && V6_MAPPED=1
	# RFC 5952: the longest run (>= 2) of zero groups, the first on a tie, becomes "::".
	for i in 0 1 2 3 4 5 6 7; do
		if [[ ${groups[i]} == 0 ]]; then
			((run == 0)) && start=$i
			run=$((run + 1))
			if ((run > bestlen)); then bestlen=$run best=$start; fi
		else
			run=0
		fi
	done
	((bestlen >= 2)) || best=-1
	for ((i = 0; i < 8; i++)); do
		if ((i == best)); then
			out+="::"
			i=$((i + bestlen - 1))
			continue
		fi
		[[ -n $out && $out != *:: ]] && out+=":"
		out+=${groups[i]}
	done
	V6_CANON=$out
	return 0
}

sp_canon_vip() {
	local in=$1 addr plen=""
	SP_ERR=""
	addr=$in
	if [[ $in == */* ]]; then
		addr=${in%/*}
		plen=${in##*/}
	fi
	if [[ $addr != *:* ]] && sp_canon_ipv4 "$addr"; then
		if [[ -n $plen && $plen != 32 ]]; then
			SP_ERR="a VIP is a single address: the prefix length must be /32 (or none)"
			return 1
		fi
		if ((V4_FIRST == 0 || V4_FIRST == 127 || V4_FIRST >= 224)); then
			SP_ERR="not usable as a VIP (0/8, loopback, multicast, reserved or broadcast)"
			return 1
		fi
		CANON="$addr/32"
		FAMILY=4
		return 0
	fi
	if sp_canon_ipv6 "$addr"; then
		if [[ -n $plen && $plen != 128 ]]; then
			SP_ERR="a VIP is a single address: the prefix length must be /128 (or none)"
			return 1
		fi
		if [[ $V6_CANON == :: || $V6_CANON == ::1 ]] || ((V6_FIRST >= 0xff00 || (V6_FIRST & 0xffc0) == 0xfe80)); then
			SP_ERR="not usable as a VIP (unspecified, loopback, multicast or link-local)"
			return 1
		fi
		if ((V6_MAPPED)); then
			SP_ERR="an IPv4-mapped IPv6 address; give the IPv4 address instead"
			return 1
		fi
		CANON="$V6_CANON/128"
		FAMILY=6
		return 0
	fi
	SP_ERR="not an IPv4 or IPv6 address"
	return 1
}

# ---------------------------------------------------------------------------------------------
# Arguments. Every problem is collected and reported at once, before anything is changed.

sp_parse() {
	local -a errs=()
	local opt val v dev
	local -A seen=()
	ACTION=""
	MODE=""
	PERSIST=0
	JSON=0
	STATE_DIR=/var/lib/xdplb/server-prep
	DECAP_OBJ=""
	VIPS=()
	VIP_FAMILY=()
	DEVS=()
	if (($# == 0)); then sp_usage_error "missing action: add, remove or check"; fi
	case $1 in
	add | remove | check) ACTION=$1 ;;
	-h | --help)
		sp_usage
		exit 0
		;;
	*) errs+=("unknown action '$1' (want add, remove or check)") ;;
	esac
	shift
	while (($#)); do
		opt=$1
		val=""
		shift
		if [[ $opt == --*=* ]]; then # --vip=ADDR is --vip ADDR
			val=${opt#*=}
			opt=${opt%%=*}
			case $opt in
			--vip | --mode | --state-dir | --decap-obj | --dev) set -- "$val" "$@" ;;
			*) opt="$opt=$val" ;;
			esac
		fi
		case $opt in
		--vip | --mode | --state-dir | --decap-obj | --dev)
			if (($# == 0)) || [[ -z $1 || $1 == --* ]]; then
				errs+=("$opt needs a value")
				continue
			fi
			val=$1
			shift
			;;
		esac
		case $opt in
		--vip)
			if sp_canon_vip "$val"; then
				if [[ -z ${seen[$CANON]+x} ]]; then
					seen[$CANON]=1
					VIPS+=("$CANON")
					VIP_FAMILY+=("$FAMILY")
				fi
			else
				errs+=("--vip '$val': $SP_ERR")
			fi
			;;
		--mode)
			case $val in
			l2dsr | ipip) MODE=$val ;;
			*) errs+=("--mode '$val': unknown mode (want l2dsr or ipip)") ;;
			esac
			;;
		--state-dir) STATE_DIR=$val ;;
		--decap-obj) DECAP_OBJ=$val ;;
		--dev) DEVS+=("$val") ;;
		--persist) PERSIST=1 ;;
		--json) JSON=1 ;;
		-h | --help)
			sp_usage
			exit 0
			;;
		*) errs+=("unknown option '$opt'") ;;
		esac
	done
	((${#VIPS[@]})) || [[ ${errs[*]} == *"--vip "* ]] || errs+=("at least one --vip ADDR is required")
	if [[ -z $MODE && $ACTION != remove && ${errs[*]} != *"--mode "* ]]; then
		errs+=("--mode l2dsr|ipip is required")
	fi
	((PERSIST)) && [[ $ACTION != add ]] && errs+=("--persist is only for add (remove deletes what add --persist wrote)")
	if [[ $STATE_DIR == *[$'\n\t']* ]]; then errs+=("--state-dir: no tabs or newlines, please"); fi
	if [[ -n $DECAP_OBJ ]]; then
		if [[ $DECAP_OBJ == *[$'\n\t']* ]]; then
			errs+=("--decap-obj: no tabs or newlines, please")
		elif [[ ! -f $DECAP_OBJ || ! -r $DECAP_OBJ ]]; then
			errs+=("--decap-obj '$DECAP_OBJ': no such readable file")
		fi
	fi
	for dev in "${DEVS[@]}"; do
		if [[ ! $dev =~ ^[A-Za-z0-9_.:@+-]{1,15}$ || $dev == all || $dev == default || $dev == . || $dev == .. ]]; then
			errs+=("--dev '$dev': not an interface name")
		elif [[ $dev == lo ]]; then
			errs+=("--dev lo: lo is where the VIPs go, not a real interface")
		elif ! ip link show dev "$dev" >/dev/null 2>&1; then
			errs+=("--dev '$dev': no such interface")
		fi
	done
	((${#errs[@]} == 0)) || sp_usage_error "${errs[@]}"
	STATE_DIR=$(realpath -m -- "$STATE_DIR")
	[[ -z $DECAP_OBJ ]] || DECAP_OBJ=$(realpath -e -- "$DECAP_OBJ")
}

# ---------------------------------------------------------------------------------------------
# The host: interfaces, sysctls, addresses, XDP.

sp_real_devs() {
	local line name flags
	if ((${#DEVS[@]})); then
		printf '%s\n' "${DEVS[@]}"
		return
	fi
	while IFS= read -r line; do
		# 3: veth0@veth1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 ... link/ether ...
		name=${line#*: }
		name=${name%%: *}
		name=${name%%@*}
		flags=${line#*<}
		flags=${flags%%>*}
		[[ $name == lo ]] && continue
		[[ ,$flags, == *,NOARP,* ]] && continue
		[[ $line == *link/ether* ]] || continue
		printf '%s\n' "$name"
	done < <(ip -o link show up)
}

sp_sysctl_get() { # DEV KNOB -> value; 1 when the interface (or knob) does not exist
	local p="/proc/sys/net/ipv4/conf/$1/$2" v
	[[ -r $p ]] || return 1
	read -r v <"$p" || return 1
	printf '%s' "$v"
}

sp_sysctl_set() { # DEV KNOB VALUE
	local p="/proc/sys/net/ipv4/conf/$1/$2"
	printf '%s\n' "$3" 2>/dev/null >"$p"
}

sp_vip_on_lo() { # addr/plen
	local fam=-4
	[[ $1 == *:* ]] && fam=-6
	[[ -n $(ip -o "$fam" addr show dev lo to "$1" 2>/dev/null) ]]
}

sp_vip_elsewhere() { # addr/plen -> names of non-lo interfaces that also hold it
	local fam=-4 line name
	[[ $1 == *:* ]] && fam=-6
	while IFS= read -r line; do
		name=${line#*: }
		name=${name%% *}
		[[ $name == lo ]] || printf '%s ' "$name"
	done < <(ip -o "$fam" addr show to "$1" 2>/dev/null)
}

sp_link_up() { # DEV: is it administratively up?
	[[ -n $(ip -o link show dev "$1" up 2>/dev/null) ]]
}

sp_xdp_info() { # DEV -> XI_ID, XI_NAME, XI_MODE (empty when no XDP program)
	local out
	XI_ID="" XI_NAME="" XI_MODE=""
	out=$(ip -d -o link show dev "$1" 2>/dev/null) || return 0
	if [[ $out =~ prog/xdp\ id\ ([0-9]+) ]]; then XI_ID=${BASH_REMATCH[1]}; fi
	if [[ $out =~ prog/xdp\ id\ [0-9]+\ name\ ([^ ]+) ]]; then XI_NAME=${BASH_REMATCH[1]}; fi
	if [[ $out =~ \ (xdp|xdpgeneric|xdpoffload|xdpmulti)\  ]]; then XI_MODE=${BASH_REMATCH[1]}; fi
	return 0
}

sp_has_tunl0() {
	ip link show dev tunl0 >/dev/null 2>&1
}

sp_has_ip6tnl0() {
	ip link show dev ip6tnl0 >/dev/null 2>&1
}

sp_has_v4_vip() { # is any VIP of this run IPv4? (4in6 then needs ip6tnl0's rp_filter relaxed)
	local f
	for f in "${VIP_FAMILY[@]}"; do [[ $f == 4 ]] && return 0; done
	return 1
}

sp_decap_candidates() {
	local dir
	if [[ -n $DECAP_OBJ ]]; then
		printf '%s\n' "$DECAP_OBJ"
		return
	fi
	if [[ -n $SP_SELF && -f $SP_SELF ]]; then
		dir=$(dirname -- "$SP_SELF")
		printf '%s\n' "$(realpath -m -- "$dir/../build/bpf/decap.bpf.o")"
	fi
	printf '%s\n' /usr/lib/xdplb/decap.bpf.o
}

# ---------------------------------------------------------------------------------------------
# State: one tab-separated file per network namespace, rewritten atomically after each record.

sp_netns_key() {
	local self init name
	self=$(readlink /proc/self/ns/net)
	init=$(readlink /proc/1/ns/net 2>/dev/null || true)
	if [[ $self == "$init" ]]; then
		printf 'default'
		return
	fi
	name=$(ip netns identify "$$" 2>/dev/null || true)
	name=${name%%$'\n'*}
	if [[ -n $name && $name =~ ^[A-Za-z0-9_.-]+$ ]]; then
		printf 'netns-%s' "$name"
	else
		printf 'netns-ino%s' "${self//[!0-9]/}"
	fi
}

sp_state_init() {
	NETNS_KEY=$(sp_netns_key)
	STATE_FILE="$STATE_DIR/$NETNS_KEY.state"
	LOCK_DIR="$STATE_DIR/$NETNS_KEY.lock"
	ST_PERSIST=0
	ST_DEVS=""
	ST_DECAP=""
	ST_VIPS=()
	ST_SYS=()
	ST_UP=()
	ST_XDP=()
	declare -gA ST_VMODE=() ST_VOWN=() ST_SPREV=() ST_SNEW=() ST_SGROUP=() ST_XID=() ST_XMODE=()
}

sp_state_load() {
	local -a f
	local n=0
	[[ -f $STATE_FILE ]] || return 0
	while IFS=$'\t' read -r -a f; do
		n=$((n + 1))
		[[ ${#f[@]} -eq 0 || ${f[0]} == \#* ]] && continue
		case "${f[0]}:${#f[@]}" in
		persist:2) ST_PERSIST=${f[1]} ;;
		devs:*) ST_DEVS=${f[*]:1} ;;
		decap_obj:2) ST_DECAP=${f[1]} ;;
		vip:4)
			ST_VIPS+=("${f[1]}")
			ST_VMODE[${f[1]}]=${f[2]}
			ST_VOWN[${f[1]}]=${f[3]}
			;;
		sysctl:5)
			ST_SYS+=("${f[1]}")
			ST_SGROUP[${f[1]}]=${f[2]}
			ST_SPREV[${f[1]}]=${f[3]}
			ST_SNEW[${f[1]}]=${f[4]}
			;;
		up:2) ST_UP+=("${f[1]}") ;;
		xdp:4)
			ST_XDP+=("${f[1]}")
			ST_XID[${f[1]}]=${f[2]}
			ST_XMODE[${f[1]}]=${f[3]}
			;;
		*) sp_die "$STATE_FILE line $n is not understood; fix or delete it (it records what add changed)" ;;
		esac
	done <"$STATE_FILE"
}

sp_state_save() {
	local tmp="$STATE_FILE.tmp.$$" k
	mkdir -p -- "$STATE_DIR"
	{
		printf '# xdplb server-prep: what add changed in network namespace %s, so remove can undo it.\n' "$NETNS_KEY"
		printf 'persist\t%s\n' "$ST_PERSIST"
		[[ -z $ST_DEVS ]] || printf 'devs\t%s\n' "${ST_DEVS// /$'\t'}"
		[[ -z $ST_DECAP ]] || printf 'decap_obj\t%s\n' "$ST_DECAP"
		for k in "${ST_VIPS[@]}"; do printf 'vip\t%s\t%s\t%s\n' "$k" "${ST_VMODE[$k]}" "${ST_VOWN[$k]}"; done
		for k in "${ST_SYS[@]}"; do printf 'sysctl\t%s\t%s\t%s\t%s\n' "$k" "${ST_SGROUP[$k]}" "${ST_SPREV[$k]}" "${ST_SNEW[$k]}"; done
		for k in "${ST_UP[@]}"; do printf 'up\t%s\n' "$k"; done
		for k in "${ST_XDP[@]}"; do printf 'xdp\t%s\t%s\t%s\n' "$k" "${ST_XID[$k]}" "${ST_XMODE[$k]}"; done
	} >"$tmp" || sp_die "cannot write $tmp"
	mv -f -- "$tmp" "$STATE_FILE" || sp_die "cannot write $STATE_FILE"
}

# Drop one element from a state list: sp_list_del ARRAYNAME VALUE
sp_list_del() {
	local -n arr=$1
	local -a keep=()
	local x
	for x in "${arr[@]}"; do [[ $x == "$2" ]] || keep+=("$x"); done
	arr=("${keep[@]}")
}

sp_list_has() {
	local -n arr=$1
	local x
	for x in "${arr[@]}"; do [[ $x == "$2" ]] && return 0; done
	return 1
}

# A directory as a lock (mkdir is atomic; flock is not in coreutils). A dead holder's lock is taken over.
sp_lock() {
	local i pid
	mkdir -p -- "$STATE_DIR" || sp_die "cannot create $STATE_DIR"
	for ((i = 0; i < 300; i++)); do
		if mkdir -- "$LOCK_DIR" 2>/dev/null; then
			printf '%s\n' "$$" >"$LOCK_DIR/pid"
			trap 'rm -rf -- "$LOCK_DIR"' EXIT
			return 0
		fi
		pid=$(cat -- "$LOCK_DIR/pid" 2>/dev/null || true)
		if [[ $pid =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
			rm -rf -- "$LOCK_DIR"
			continue
		fi
		sleep 0.1
	done
	sp_die "another server-prep holds $LOCK_DIR for 30 s; if none runs, delete that directory"
}

# ---------------------------------------------------------------------------------------------
# add

# sp_ensure_sysctl DEV KNOB GROUP OK_REGEX NEW
sp_ensure_sysctl() {
	local dev=$1 knob=$2 group=$3 okre=$4 new=$5 key="$1/$2" cur
	cur=$(sp_sysctl_get "$dev" "$knob") || sp_die "cannot read net.ipv4.conf.$dev.$knob"
	if [[ $cur =~ $okre ]]; then
		sp_unchanged "$knob $dev: $cur"
		return
	fi
	if ! sp_list_has ST_SYS "$key"; then
		ST_SYS+=("$key")
		ST_SPREV[$key]=$cur
	fi
	ST_SNEW[$key]=$new
	ST_SGROUP[$key]=$group
	sp_state_save
	sp_sysctl_set "$dev" "$knob" "$new" || sp_die "cannot set net.ipv4.conf.$dev.$knob to $new"
	sp_changed "$knob $dev: $cur -> $new"
}

sp_ensure_up() { # DEV
	if sp_link_up "$1"; then
		sp_unchanged "$1 up"
		return
	fi
	sp_list_has ST_UP "$1" || ST_UP+=("$1")
	sp_state_save
	ip link set dev "$1" up || sp_die "cannot bring $1 up"
	sp_changed "$1: down -> up"
}

sp_ensure_vip() { # addr/plen mode
	local vip=$1 mode=$2 fam=-4 others
	[[ $vip == *:* ]] && fam=-6
	if sp_vip_on_lo "$vip"; then
		if ! sp_list_has ST_VIPS "$vip"; then
			ST_VIPS+=("$vip")
			ST_VOWN[$vip]=existing
			ST_VMODE[$vip]=$mode
			sp_state_save
		fi
		if [[ ${ST_VOWN[$vip]} == existing ]]; then
			sp_unchanged "$vip on lo (it was there before add; remove will leave it)"
		else
			sp_unchanged "$vip on lo"
		fi
	else
		sp_list_has ST_VIPS "$vip" || ST_VIPS+=("$vip")
		ST_VOWN[$vip]=added
		ST_VMODE[$vip]=$mode
		sp_state_save
		if [[ $fam == -6 ]]; then
			# nodad: never tentative, not even for the instant before lo's (skipped) DAD.
			ip -6 addr add "$vip" dev lo nodad || sp_die "cannot add $vip to lo"
		else
			ip -4 addr add "$vip" dev lo || sp_die "cannot add $vip to lo"
		fi
		sp_changed "added $vip on lo"
	fi
	if [[ ${ST_VMODE[$vip]} != "$mode" ]]; then
		sp_changed "mode of $vip: ${ST_VMODE[$vip]} -> $mode"
		ST_VMODE[$vip]=$mode
		sp_state_save
	fi
	others=$(sp_vip_elsewhere "$vip")
	[[ -z $others ]] || sp_note "$vip is also on ${others% }: that interface answers ARP/ND for it, so it can steal the VIP"
}

sp_ensure_decap() { # DEV OBJ
	local dev=$1 obj=$2 out
	sp_xdp_info "$dev"
	if [[ -n $XI_ID ]]; then
		if [[ ${ST_XID[$dev]:-} == "$XI_ID" ]]; then
			sp_unchanged "XDP decap on $dev (prog id $XI_ID)"
		else
			sp_unchanged "XDP program $XI_NAME on $dev (prog id $XI_ID, attached before add; remove will leave it)"
		fi
		return
	fi
	sp_list_has ST_XDP "$dev" || ST_XDP+=("$dev")
	ST_XID[$dev]=pending
	ST_XMODE[$dev]=xdp
	sp_state_save
	if ! out=$(ip link set dev "$dev" xdp obj "$obj" sec xdp 2>&1); then
		sp_list_del ST_XDP "$dev"
		sp_state_save
		sp_die "cannot attach $obj to $dev: ${out:-ip link failed}"
	fi
	sp_xdp_info "$dev"
	ST_XID[$dev]=${XI_ID:-pending}
	ST_XMODE[$dev]=${XI_MODE:-xdp}
	sp_state_save
	sp_changed "attached XDP decap $obj to $dev (prog id ${XI_ID:-?}, ${XI_MODE:-xdp})"
}

sp_add() {
	local -a devs
	local dev vip i obj="" cand tried="" ipip_via="" others relax_all=0
	mapfile -t devs < <(sp_real_devs)
	((${#devs[@]})) || sp_die "no real interface is up (and none given with --dev)"

	# Preflight: everything that can fail for a reason the operator must fix, before any change.
	for i in "${!VIPS[@]}"; do
		if [[ ${VIP_FAMILY[i]} == 6 ]]; then
			[[ -r /proc/sys/net/ipv6/conf/lo/disable_ipv6 ]] || sp_die "no IPv6 in this kernel or namespace, cannot add ${VIPS[i]}"
			[[ $(</proc/sys/net/ipv6/conf/lo/disable_ipv6) == 0 ]] || sp_die "IPv6 is disabled on lo (net.ipv6.conf.lo.disable_ipv6=1), cannot add ${VIPS[i]}"
		fi
	done
	if [[ $MODE == ipip ]]; then
		# Kernels built with modules create tunl0 and ip6tnl0 (in every namespace unless
		# net.core.fb_tunnels_only_for_init_net says otherwise) when ipip and ip6_tunnel load.
		if command -v modprobe >/dev/null 2>&1; then
			modprobe -q ipip >/dev/null 2>&1 || true
			modprobe -q ip6_tunnel >/dev/null 2>&1 || true
		fi
		if sp_has_tunl0 || sp_has_ip6tnl0; then
			ipip_via=kernel
		else
			ipip_via=xdp
			while IFS= read -r cand; do
				tried+="${tried:+, }$cand"
				if [[ -f $cand && -r $cand ]]; then
					obj=$cand
					break
				fi
			done < <(sp_decap_candidates)
			[[ -n $obj ]] || sp_die "this kernel has no ipip or ip6_tunnel driver (no tunl0 or ip6tnl0, even after modprobe) and no XDP decap object was found (tried: $tried); build it with 'make bpf' or pass --decap-obj PATH"
			for dev in "${devs[@]}"; do
				sp_xdp_info "$dev"
				if [[ -n $XI_ID && ${ST_XID[$dev]:-} != "$XI_ID" && $XI_NAME != xdp_decap ]]; then
					sp_die "$dev already has XDP program '$XI_NAME' (prog id $XI_ID), not the decap program; not replacing it (detach it or choose interfaces with --dev)"
				fi
			done
		fi
	fi

	if ((${#DEVS[@]})); then ST_DEVS=${DEVS[*]}; fi
	[[ -z $obj ]] || ST_DECAP=$obj
	((PERSIST)) && ST_PERSIST=1

	sp_ensure_up lo
	for vip in "${VIPS[@]}"; do sp_ensure_vip "$vip" "$MODE"; done
	# ARP is IPv4's: an add of IPv6 VIPs only leaves the ARP sysctls alone (see the top).
	if sp_has_v4_vip; then
		for dev in all "${devs[@]}"; do
			sp_ensure_sysctl "$dev" arp_ignore arp '^[12]$' 1
			sp_ensure_sysctl "$dev" arp_announce arp '^2$' 2
		done
	fi
	if [[ $ipip_via == kernel ]]; then
		if sp_has_tunl0; then
			sp_ensure_up tunl0
			sp_ensure_sysctl tunl0 rp_filter ipip '^[02]$' 0
			relax_all=1
		else
			sp_note "no tunl0 (no ipip driver): tunnels with an IPv4 outer header are not decapsulated here"
		fi
		if sp_has_ip6tnl0; then
			sp_ensure_up ip6tnl0
			if sp_has_v4_vip; then
				sp_ensure_sysctl ip6tnl0 rp_filter ipip '^[02]$' 0
				relax_all=1
			fi
		else
			sp_note "no ip6tnl0 (no ip6_tunnel driver): tunnels with an IPv6 outer header (6in6, 4in6) are not decapsulated here"
		fi
		((relax_all == 0)) || sp_ensure_sysctl all rp_filter ipip '^[02]$' 2
	elif [[ $ipip_via == xdp ]]; then
		for dev in "${devs[@]}"; do sp_ensure_decap "$dev" "$obj"; done
	fi
	((ST_PERSIST)) && sp_persist_write
	sp_report add "nothing to change: this host was already prepared for these VIPs"
}

# ---------------------------------------------------------------------------------------------
# remove

sp_restore_sysctl() { # key
	local key=$1 dev=${1%/*} knob=${1#*/} cur prev=${ST_SPREV[$1]} new=${ST_SNEW[$1]}
	if ! cur=$(sp_sysctl_get "$dev" "$knob"); then
		sp_note "$knob $dev: the interface is gone, nothing to restore"
	elif [[ $cur == "$new" ]]; then
		sp_sysctl_set "$dev" "$knob" "$prev" || sp_die "cannot set net.ipv4.conf.$dev.$knob to $prev"
		sp_changed "$knob $dev: $cur -> $prev (restored)"
	elif [[ $cur == "$prev" ]]; then
		sp_unchanged "$knob $dev: $cur (already the value before add)"
	else
		sp_note "left $knob $dev at $cur: changed since add (add set $new, it was $prev before)"
	fi
	sp_list_del ST_SYS "$key"
	sp_state_save
}

sp_restore_group() { # arp|ipip
	local key
	for key in "${ST_SYS[@]}"; do
		[[ ${ST_SGROUP[$key]} == "$1" ]] && sp_restore_sysctl "$key"
	done
	return 0
}

sp_restore_up() { # DEV: down again if add brought it up
	sp_list_has ST_UP "$1" || return 0
	if ! ip link show dev "$1" >/dev/null 2>&1; then
		sp_note "$1 is gone"
	elif sp_link_up "$1"; then
		ip link set dev "$1" down || sp_die "cannot set $1 down"
		sp_changed "$1: up -> down (restored)"
	fi
	sp_list_del ST_UP "$1"
	sp_state_save
}

sp_restore_xdp() {
	local dev
	for dev in "${ST_XDP[@]}"; do
		sp_xdp_info "$dev"
		if [[ ${ST_XID[$dev]} == pending ]]; then
			sp_note "$dev: an earlier add was interrupted while attaching XDP decap; check 'ip link show dev $dev' by hand"
		elif [[ -z $XI_ID ]]; then
			sp_unchanged "no XDP program on $dev (already detached)"
		elif [[ $XI_ID == "${ST_XID[$dev]}" ]]; then
			ip link set dev "$dev" "${ST_XMODE[$dev]:-xdp}" off || sp_die "cannot detach XDP from $dev"
			sp_changed "detached XDP decap from $dev (prog id $XI_ID)"
		else
			sp_note "left XDP program $XI_NAME (prog id $XI_ID) on $dev: not the one add attached (${ST_XID[$dev]})"
		fi
		sp_list_del ST_XDP "$dev"
		sp_state_save
	done
}

sp_remove() {
	local vip fam left_ipip=0 v
	local -a left_v4=()
	if [[ ! -f $STATE_FILE ]]; then
		sp_note "no record of an add in this network namespace ($STATE_FILE): nothing to undo"
		sp_report remove "nothing to remove"
		return
	fi
	for vip in "${VIPS[@]}"; do
		fam=-4
		[[ $vip == *:* ]] && fam=-6
		if ! sp_list_has ST_VIPS "$vip"; then
			sp_unchanged "$vip: not added by server-prep, left alone"
			continue
		fi
		if [[ ${ST_VOWN[$vip]} == existing ]]; then
			sp_unchanged "$vip on lo (it was there before add, left there)"
		elif sp_vip_on_lo "$vip"; then
			ip "$fam" addr del "$vip" dev lo || sp_die "cannot remove $vip from lo"
			sp_changed "removed $vip from lo"
		else
			sp_unchanged "$vip is not on lo (already removed)"
		fi
		sp_list_del ST_VIPS "$vip"
		sp_state_save
	done
	for v in "${ST_VIPS[@]}"; do [[ ${ST_VMODE[$v]} == ipip ]] && left_ipip=1; done
	if ((left_ipip)); then
		sp_note "kept the ipip setup: still needed by other VIPs"
	else
		sp_restore_xdp
		sp_restore_group ipip
		sp_restore_up tunl0
		sp_restore_up ip6tnl0
	fi
	for v in "${ST_VIPS[@]}"; do [[ $v == *:* ]] || left_v4+=("$v"); done
	if ((${#left_v4[@]})); then
		sp_note "kept the ARP sysctls: still needed by ${left_v4[*]}"
	else
		sp_restore_group arp
	fi
	if ((${#ST_VIPS[@]})); then
		((ST_PERSIST)) && sp_persist_write
	else
		sp_restore_up lo
		((ST_PERSIST)) && sp_persist_delete
		rm -f -- "$STATE_FILE"
	fi
	sp_report remove "nothing to change: these VIPs were already removed"
}

# ---------------------------------------------------------------------------------------------
# --persist: a sysctl.d file and a oneshot unit that runs this script's add at boot.

sp_persist_paths() {
	SYSCTL_FILE="${XDPLB_SYSCTL_DIR:-/etc/sysctl.d}/60-xdplb-server-prep.conf"
	UNIT_FILE="${XDPLB_SYSTEMD_DIR:-/etc/systemd/system}/xdplb-server-prep.service"
	SBIN_FILE="${XDPLB_SBIN_DIR:-/usr/local/sbin}/xdplb-server-prep"
	USE_SYSTEMCTL=0
	if [[ -z ${XDPLB_SYSTEMD_DIR:-} ]] && command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
		USE_SYSTEMCTL=1
	fi
}

# This script's own text: the file it runs from, or (run from stdin over SSH) rebuilt from its functions.
sp_self_text() {
	if [[ -n $SP_SELF && -f $SP_SELF && -r $SP_SELF ]]; then
		cat -- "$SP_SELF"
		return
	fi
	printf '#!/usr/bin/env bash\n'
	printf '# xdplb server-prep (see scripts/server-prep.sh in xdplb); rebuilt from a copy run on stdin.\n'
	printf 'set -euo pipefail\n'
	# shellcheck disable=SC2046 # one word per function name
	declare -f $(compgen -A function sp_)
	printf 'SP_SELF=${BASH_SOURCE[0]:-}\nsp_main "$@"\nexit $?\n'
}

sp_unit_arg() { # quote one ExecStart argument for systemd
	local s=$1
	if [[ $s =~ ^[A-Za-z0-9_./:=@+-]+$ ]]; then
		printf '%s' "$s"
		return
	fi
	s=${s//\\/\\\\}
	s=${s//\"/\\\"}
	s=${s//%/%%}
	s=${s//\$/\$\$}
	printf '"%s"' "$s"
}

sp_write_file() { # PATH MODE CONTENT
	local path=$1 mode=$2 content=$3 tmp
	if [[ -f $path && $(cat -- "$path") == "$content" ]]; then
		sp_unchanged "$path"
		return 1
	fi
	mkdir -p -- "$(dirname -- "$path")" || sp_die "cannot create $(dirname -- "$path")"
	tmp="$path.tmp.$$"
	printf '%s\n' "$content" >"$tmp" || sp_die "cannot write $tmp"
	chmod "$mode" -- "$tmp"
	mv -f -- "$tmp" "$path" || sp_die "cannot write $path"
	sp_changed "wrote $path"
	return 0
}

sp_persist_write() {
	local key dev knob conf unit mode vip line d changed=0
	local -a args
	sp_persist_paths
	conf="# Written by xdplb server-prep add --persist; server-prep remove deletes it."$'\n'
	conf+="# ARP settings for direct server return (and rp_filter for ipip's tunl0/ip6tnl0)."
	for key in "${ST_SYS[@]}"; do
		dev=${key%/*}
		knob=${key#*/}
		conf+=$'\n'"net.ipv4.conf.${dev//./\/}.$knob = ${ST_SNEW[$key]}"
	done
	unit="# Written by xdplb server-prep add --persist; server-prep remove deletes it.
[Unit]
Description=xdplb: prepare this host as a real server (VIPs on lo, ARP sysctls, ipip decap)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
RemainAfterExit=yes"
	for mode in l2dsr ipip; do
		args=("$SBIN_FILE" add --mode "$mode")
		for vip in "${ST_VIPS[@]}"; do
			[[ ${ST_VMODE[$vip]} == "$mode" ]] && args+=(--vip "${vip%/*}")
		done
		((${#args[@]} > 4)) || continue
		args+=(--state-dir "$STATE_DIR")
		for d in $ST_DEVS; do args+=(--dev "$d"); done
		[[ $mode == ipip && -n $ST_DECAP ]] && args+=(--decap-obj "$ST_DECAP")
		line="ExecStart="
		for d in "${args[@]}"; do line+="$(sp_unit_arg "$d") "; done
		unit+=$'\n'"${line% }"
	done
	unit+="

[Install]
WantedBy=multi-user.target"
	sp_write_file "$SYSCTL_FILE" 0644 "$conf" || true
	sp_write_file "$SBIN_FILE" 0755 "$(sp_self_text)" || true
	sp_write_file "$UNIT_FILE" 0644 "$unit" && changed=1
	if ((USE_SYSTEMCTL)); then
		((changed)) && { systemctl daemon-reload || sp_note "systemctl daemon-reload failed"; }
		if ! systemctl -q is-enabled xdplb-server-prep.service 2>/dev/null; then
			systemctl -q enable xdplb-server-prep.service && sp_changed "enabled xdplb-server-prep.service" ||
				sp_note "systemctl enable xdplb-server-prep.service failed"
		fi
	elif [[ -n ${XDPLB_SYSTEMD_DIR:-} ]]; then
		: # a test or staging directory: systemd is not told
	else
		sp_note "systemctl not found (or systemd not running): enable $UNIT_FILE by hand"
	fi
	[[ $NETNS_KEY == default ]] || sp_note "--persist in network namespace $NETNS_KEY: the unit runs in the root namespace at boot"
}

sp_persist_delete() {
	local f
	sp_persist_paths
	if ((USE_SYSTEMCTL)) && [[ -f $UNIT_FILE ]]; then
		systemctl -q disable xdplb-server-prep.service 2>/dev/null && sp_changed "disabled xdplb-server-prep.service" || true
	fi
	for f in "$UNIT_FILE" "$SYSCTL_FILE" "$SBIN_FILE"; do
		if [[ -e $f ]]; then
			rm -f -- "$f" || sp_die "cannot delete $f"
			sp_changed "deleted $f"
		fi
	done
	if ((USE_SYSTEMCTL)); then systemctl daemon-reload || true; fi
	ST_PERSIST=0
}

# ---------------------------------------------------------------------------------------------
# check

sp_check_add() { # name ok(0|1) detail
	CK_NAME+=("$1")
	CK_OK+=("$2")
	CK_DETAIL+=("$3")
}

sp_check_sysctl() { # DEV KNOB OK_REGEX WANT
	local cur
	if ! cur=$(sp_sysctl_get "$1" "$2"); then
		sp_check_add "$2 $1" 0 "no such interface"
	elif [[ $cur =~ $3 ]]; then
		sp_check_add "$2 $1" 1 "$cur"
	else
		sp_check_add "$2 $1" 0 "is $cur, want $4"
	fi
}

sp_check() {
	local -a devs
	local vip dev others cur i n_bad=0 sep="" line proxied relax_all=0
	CK_NAME=()
	CK_OK=()
	CK_DETAIL=()
	mapfile -t devs < <(sp_real_devs)
	if sp_link_up lo; then sp_check_add "lo up" 1 "up"; else sp_check_add "lo up" 0 "lo is down"; fi
	for vip in "${VIPS[@]}"; do
		if sp_vip_on_lo "$vip"; then
			line=$(ip -o -6 addr show dev lo to "$vip" 2>/dev/null || true)
			if [[ $vip == *:* && ($line == *tentative* || $line == *dadfailed*) ]]; then
				sp_check_add "vip $vip on lo" 0 "present but tentative or dadfailed (add it with nodad)"
			else
				sp_check_add "vip $vip on lo" 1 "present"
			fi
		else
			sp_check_add "vip $vip on lo" 0 "not on lo"
		fi
		others=$(sp_vip_elsewhere "$vip")
		if [[ -n $others ]]; then
			sp_check_add "vip $vip only on lo" 0 "also on ${others% } (that interface would answer ARP/ND for it)"
		fi
		if [[ $vip == *:* ]]; then
			# The one way neighbour discovery answers for an address that is not on the interface.
			proxied=""
			while IFS= read -r line; do
				[[ $line =~ \ dev\ ([^ ]+) ]] && proxied+="${BASH_REMATCH[1]} "
			done < <(ip -6 neigh show proxy to "${vip%/*}" 2>/dev/null)
			if [[ -n $proxied ]]; then
				sp_check_add "vip $vip not ND-proxied" 0 "proxy entry on ${proxied% }: this host answers neighbour solicitations for it"
			else
				sp_check_add "vip $vip not ND-proxied" 1 "no proxy entry"
			fi
		fi
	done
	((${#devs[@]})) || sp_check_add "real interfaces" 0 "no interface is up (other than lo)"
	if sp_has_v4_vip; then
		for dev in all "${devs[@]}"; do
			sp_check_sysctl "$dev" arp_ignore '^[12]$' "1 (or 2)"
			sp_check_sysctl "$dev" arp_announce '^2$' 2
		done
	fi
	if [[ $MODE == ipip ]]; then
		if sp_has_tunl0 || sp_has_ip6tnl0; then
			if sp_has_tunl0; then
				if sp_link_up tunl0; then sp_check_add "tunl0 up" 1 "up"; else sp_check_add "tunl0 up" 0 "tunl0 is down"; fi
				sp_check_sysctl tunl0 rp_filter '^[02]$' "0 (not 1: strict drops decapsulated packets)"
				relax_all=1
			fi
			if sp_has_ip6tnl0; then
				if sp_link_up ip6tnl0; then sp_check_add "ip6tnl0 up" 1 "up"; else sp_check_add "ip6tnl0 up" 0 "ip6tnl0 is down"; fi
				if sp_has_v4_vip; then
					sp_check_sysctl ip6tnl0 rp_filter '^[02]$' "0 (not 1: strict drops 4in6-decapsulated packets)"
					relax_all=1
				fi
			fi
			((relax_all == 0)) || sp_check_sysctl all rp_filter '^[02]$' "2 or 0 (not 1: strict drops decapsulated packets)"
		else
			for dev in "${devs[@]}"; do
				sp_xdp_info "$dev"
				if [[ -z $XI_ID ]]; then
					sp_check_add "xdp decap on $dev" 0 "no tunl0 or ip6tnl0 (no ipip or ip6_tunnel driver) and no XDP program on $dev"
				elif [[ ${ST_XID[$dev]:-} == "$XI_ID" ]]; then
					sp_check_add "xdp decap on $dev" 1 "prog id $XI_ID ($XI_NAME), attached by add"
				elif [[ $XI_NAME == xdp_decap ]]; then
					sp_check_add "xdp decap on $dev" 1 "prog id $XI_ID ($XI_NAME)"
				else
					sp_check_add "xdp decap on $dev" 0 "prog id $XI_ID is '$XI_NAME', not the decap program"
				fi
			done
		fi
	fi
	for i in "${!CK_OK[@]}"; do ((CK_OK[i])) || n_bad=$((n_bad + 1)); done
	if ((JSON)); then
		printf '{"ok":%s,"checks":[' "$( ((n_bad)) && echo false || echo true)"
		for i in "${!CK_NAME[@]}"; do
			printf '%s{"name":' "$sep"
			sp_json_str "${CK_NAME[i]}"
			printf ',"ok":%s,"detail":' "$( ((CK_OK[i])) && echo true || echo false)"
			sp_json_str "${CK_DETAIL[i]}"
			printf '}'
			sep=","
		done
		printf ']}\n'
	else
		printf '%-8s %-34s %s\n' STATUS CHECK DETAIL
		for i in "${!CK_NAME[@]}"; do
			printf '%-8s %-34s %s\n' "$( ((CK_OK[i])) && echo ok || echo missing)" "${CK_NAME[i]}" "${CK_DETAIL[i]}"
		done
		if ((n_bad)); then
			printf '%d of %d checks missing\n' "$n_bad" "${#CK_NAME[@]}"
		else
			printf 'all %d checks ok\n' "${#CK_NAME[@]}"
		fi
	fi
	((n_bad == 0)) || return 1
}

# ---------------------------------------------------------------------------------------------

sp_main() {
	OUT_CHANGED=()
	OUT_UNCHANGED=()
	OUT_NOTES=()
	JSON=0
	if ((BASH_VERSINFO[0] < 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] < 4))); then
		sp_die "needs bash 4.4 or newer (this is $BASH_VERSION)"
	fi
	command -v ip >/dev/null 2>&1 || sp_die "needs iproute2 ('ip' not found)"
	sp_parse "$@"
	sp_state_init
	if [[ $ACTION == check ]]; then
		sp_state_load
		sp_check
		return
	fi
	((EUID == 0)) || sp_die "$ACTION changes the network setup: run it as root"
	sp_lock
	sp_state_load
	case $ACTION in
	add) sp_add ;;
	remove) sp_remove ;;
	esac
}

SP_SELF=${BASH_SOURCE[0]:-}
sp_main "$@"
exit $?
