#!/usr/bin/env bash
# Regenerates vagrant/topology.json (the Vagrant lab's machine description) from buildTopology() in
# src/lab/topology.ts, after building the TypeScript. `--check` only says whether it is stale.
#   scripts/vagrant-topology.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/.."
make -s ts
exec node dist/lab/vagrant-topology.js --out vagrant/topology.json "$@"
