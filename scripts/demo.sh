#!/usr/bin/env bash
# make demo: runs the lab demo (make has already installed deps and built everything).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
	echo "demo: builds network namespaces and attaches XDP programs: run as root" >&2
	exit 2
fi
exec node dist/lab/demo.js "$@"
