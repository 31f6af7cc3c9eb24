#!/usr/bin/env bash
# vagrant/provision.sh ROLE NAME: sets up one VM of the Vagrant lab, as root, from topology.json
# (generated from buildTopology(); see the Vagrantfile). Runs on every `vagrant up` and `vagrant
# provision`, and is idempotent: routes, sysctls and the XDP program do not survive a reboot.
#
# Every role: find the lab NIC by the address Vagrant gave it, TX checksum offload off on it (the
# lab's veth quirk 2: a forwarded packet must carry a full checksum), routes to the rest of the lab
# through the segment's gateway, and forwarding where the topology says so.
#   router   nothing more: it forwards between the segments and routes the VIP range to the LB
#   client   curl
#   backend  Node 20, scripts/deps.sh, make build, scripts/server-prep.sh add --persist (VIPs on lo,
#            ARP suppression, tunl0 for ipip), the lab's backend server as a systemd unit
#   lb       Node 20, scripts/deps.sh, make build, then dist/lab/machine-lb.js: learns the MACs of
#            its neighbours and attaches the balancer to the lab NIC (native XDP, else generic)
#
# Node: the project needs Node 20 (package.json engines); Debian 12 ships 18. The official build of
# NODE_VERSION is downloaded and checked against the release's SHASUMS256.txt, unless node >= 20 is
# already there. Offline: put the tarball in the repository and set XDPLB_NODE_TARBALL to its path
# on the VM (/opt/xdplb/...) when running vagrant; XDPLB_NODE_DIST names a mirror.
# XDPLB_XDP_MODE (auto|native|generic) picks the LB's XDP mode; XDPLB_SYSCTL_DIR (as server-prep.sh,
# default /etc/sysctl.d) is where the forwarding sysctls go.
set -euo pipefail

REPO=${XDPLB_REPO:-/opt/xdplb}
TOPO=$REPO/vagrant/topology.json
NODE_VERSION=${XDPLB_NODE_VERSION:-20.20.2}
NODE_DIST=${XDPLB_NODE_DIST:-https://nodejs.org/dist}
SYSCTL_DIR=${XDPLB_SYSCTL_DIR:-/etc/sysctl.d}

if (($# != 2)); then
	echo "usage: provision.sh ROLE NAME (run by the Vagrantfile)" >&2
	exit 2
fi
ROLE=$1
NAME=$2

log() { printf 'provision %s: %s\n' "$NAME" "$*"; }
die() {
	printf 'provision %s: error: %s\n' "$NAME" "$*" >&2
	exit 1
}

((EUID == 0)) || die "run as root"
[[ -r $TOPO ]] || die "no $TOPO: is the repository synced to $REPO? (vagrant rsync)"

# Debian packages, installed only when missing.
apt_need() {
	local p missing=()
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

apt_need jq iproute2 ethtool

HOST=$(jq -ce --arg n "$NAME" '.hosts[] | select(.name == $n)' "$TOPO") || die "$TOPO has no host $NAME"
[[ $(jq -r .role <<<"$HOST") == "$ROLE" ]] || die "$NAME has role $(jq -r .role <<<"$HOST") in $TOPO, not $ROLE"

# ---------------------------------------------------------------------------------------------
# Network: every host

ifname_of() { ip -o -4 addr show to "$1/32" | awk '{ print $2; exit }'; }

LAB_IFS=()
while read -r addr; do
	ifname=$(ifname_of "$addr")
	[[ -n $ifname ]] || die "no interface holds $addr (Vagrant configures the private networks at boot)"
	LAB_IFS+=("$ifname")
	ethtool -K "$ifname" tx off >/dev/null 2>&1 || log "warning: cannot turn TX checksum offload off on $ifname"
	log "$ifname $addr"
done < <(jq -r '.interfaces[].addr' <<<"$HOST")
LAB_IF=${LAB_IFS[0]}

while IFS=$'\t' read -r dst via; do
	ip route replace "$dst" via "$via"
done < <(jq -r '.routes[] | [.dst, .via] | @tsv' <<<"$HOST")

if [[ $(jq -r .forwarding <<<"$HOST") == true ]]; then
	# DSR makes paths asymmetric (replies bypass the LB): source checks loose, not strict.
	mkdir -p "$SYSCTL_DIR"
	printf '%s\n' 'net.ipv4.ip_forward = 1' 'net.ipv4.conf.all.rp_filter = 2' >"$SYSCTL_DIR/60-xdplb-lab.conf"
	sysctl -q -p "$SYSCTL_DIR/60-xdplb-lab.conf"
fi

# ---------------------------------------------------------------------------------------------
# Node and the project's own build

node_ok() {
	command -v node >/dev/null 2>&1 && node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'
}

install_node() {
	node_ok && return 0
	local arch dir name tmp tarball
	case $(uname -m) in
	x86_64) arch=x64 ;;
	aarch64) arch=arm64 ;;
	*) die "no Node.js build for $(uname -m)" ;;
	esac
	apt_need ca-certificates curl xz-utils
	name=node-v$NODE_VERSION-linux-$arch
	dir=/opt/$name
	if [[ ! -x $dir/bin/node ]]; then
		tmp=$(mktemp -d)
		tarball=${XDPLB_NODE_TARBALL:-}
		if [[ -z $tarball ]]; then
			log "downloading Node.js $NODE_VERSION ($NODE_DIST)"
			curl -fsSL --retry 3 -o "$tmp/$name.tar.xz" "$NODE_DIST/v$NODE_VERSION/$name.tar.xz"
			curl -fsSL --retry 3 -o "$tmp/SHASUMS256.txt" "$NODE_DIST/v$NODE_VERSION/SHASUMS256.txt"
			(cd "$tmp" && awk -v f="$name.tar.xz" '$2 == f' SHASUMS256.txt | grep -q . &&
				awk -v f="$name.tar.xz" '$2 == f' SHASUMS256.txt | sha256sum -c --quiet -) ||
				die "$name.tar.xz does not match its SHASUMS256.txt"
			tarball=$tmp/$name.tar.xz
		fi
		rm -rf "$dir.part"
		mkdir -p "$dir.part"
		tar -xJf "$tarball" -C "$dir.part" --strip-components=1
		mv "$dir.part" "$dir"
		rm -rf "$tmp"
	fi
	ln -sfn "$dir/bin/node" /usr/local/bin/node
	ln -sfn "$dir/bin/npm" /usr/local/bin/npm
	ln -sfn "$dir/bin/npx" /usr/local/bin/npx
	hash -r
	node_ok || die "node $NODE_VERSION from $dir does not run"
	log "node $(node --version)"
}

build_project() {
	install_node
	apt_need make # deps.sh is normally started by make
	log "scripts/deps.sh && make build"
	(cd "$REPO" && bash scripts/deps.sh && make build)
}

# ---------------------------------------------------------------------------------------------
# Roles

backend_server_unit() {
	local args=(--name "$NAME") p
	for p in $(jq -r '.serverPorts.tcp[]' "$TOPO"); do args+=(--port "$p"); done
	for p in $(jq -r '.serverPorts.udpEcho[]' "$TOPO"); do args+=(--udp-echo "$p"); done
	cat >/etc/systemd/system/xdplb-lab-backend.service <<EOF
# Written by $REPO/vagrant/provision.sh: the xdplb lab's backend server.
[Unit]
Description=xdplb lab backend server ($NAME)
After=network-online.target xdplb-server-prep.service
Wants=network-online.target

[Service]
ExecStart=$(command -v node) $REPO/dist/lab/backend-server.js ${args[*]}
Restart=on-failure

[Install]
WantedBy=multi-user.target
EOF
	systemctl daemon-reload
	systemctl enable --quiet xdplb-lab-backend.service
	systemctl restart xdplb-lab-backend.service
}

provision_backend() {
	local mode vips=() args=() v addr port i
	build_project
	mode=$(jq -r '.prepMode // empty' <<<"$HOST")
	mapfile -t vips < <(jq -r '.vips[]' <<<"$HOST")
	if [[ -n $mode && ${#vips[@]} -gt 0 ]]; then
		for v in "${vips[@]}"; do args+=(--vip "$v"); done
		bash "$REPO/scripts/server-prep.sh" add "${args[@]}" --mode "$mode" --dev "$LAB_IF" --persist
	fi
	backend_server_unit
	addr=$(jq -r '.interfaces[0].addr' <<<"$HOST")
	port=$(jq -r '.serverPorts.tcp[0]' "$TOPO")
	for ((i = 0; i < 30; i++)); do
		if curl -fsS --max-time 2 -o /dev/null "http://$addr:$port/"; then
			log "backend server answers on $addr:$port"
			return 0
		fi
		sleep 1
	done
	journalctl -u xdplb-lab-backend.service -n 20 --no-pager >&2 || true
	die "the backend server does not answer on $addr:$port"
}

provision_lb() {
	build_project
	# The balancer must see packets as they were on the wire, not merged by GRO.
	ethtool -K "$LAB_IF" gro off >/dev/null
	ethtool -K "$LAB_IF" lro off >/dev/null 2>&1 || true
	node "$REPO/dist/lab/machine-lb.js" --topology "$TOPO" --wait-sec "${XDPLB_LB_WAIT_SEC:-600}" \
		--xdp-mode "${XDPLB_XDP_MODE:-auto}"
}

case $ROLE in
router) ;;
client) apt_need curl ;;
backend) provision_backend ;;
lb) provision_lb ;;
*) die "unknown role $ROLE" ;;
esac
log "done ($ROLE)"
