#!/usr/bin/env bash
# Installs what xdplb needs on Debian 12 (as root). A no-op when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# command or file -> Debian package that provides it
declare -A NEED=(
	[clang]=clang [llc]=llvm [bpftool]=bpftool [/usr/include/bpf/bpf_helpers.h]=libbpf-dev
	[/usr/lib/x86_64-linux-gnu/libbpf.so.1]=libbpf1 [ip]=iproute2 [ethtool]=ethtool
	[tcpdump]=tcpdump [curl]=curl [nc]=netcat-openbsd [ping]=iputils-ping [nstat]=iproute2
	[sshd]=openssh-server [ssh-keygen]=openssh-client [nft]=nftables [openssl]=openssl
	[nsenter]=util-linux [setpriv]=util-linux
	# the test suite validates vagrant/Vagrantfile with both providers' settings
	[vagrant]=vagrant [/usr/share/doc/vagrant-libvirt]=vagrant-libvirt
)
missing=()
for what in "${!NEED[@]}"; do
	if [[ $what == /* ]]; then [[ -e $what ]] && continue
	else command -v "$what" >/dev/null 2>&1 && continue
		[[ -x /usr/sbin/$what ]] && continue
	fi
	missing+=("${NEED[$what]}")
done
if ((${#missing[@]})); then
	mapfile -t pkgs < <(printf '%s\n' "${missing[@]}" | sort -u)
	echo "deps: installing ${pkgs[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
	echo "deps: npm ci"
	npm ci --no-audit --no-fund --loglevel=error
fi

# bpffs, where the daemon pins its objects.
if ! mountpoint -q /sys/fs/bpf; then
	mount -t bpf bpf /sys/fs/bpf
fi
