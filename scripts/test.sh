#!/usr/bin/env bash
# Runs every test suite (make test calls this after deps and build) and prints the closing line
# CI reads: "N passed, N failed". Skipped tests are listed loudly: a skip is not a pass.
set -uo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
	echo "test: the suites load XDP programs and build network namespaces: run as root" >&2
	exit 2
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
# TAP to a file for counting; the base reporter to the terminal for people.
reporter=terse
[[ -t 1 ]] && reporter=base
npx tap --reporter="$reporter" --output-file="$log" "$@"
rc=$?

# Count top-level test points of every file in the raw TAP (subtests are indented).
pass=$(grep -cE '^    ok [0-9]+' "$log" || true)
fail=$(grep -cE '^    not ok [0-9]+' "$log" || true)
skip=$(grep -cE '^    ok [0-9]+ .*# SKIP' "$log" || true)
if ((fail > 0)); then
	echo
	echo "---------- failures ----------"
	grep -nE '^ *not ok ' -A30 "$log" | grep -vE '^[0-9]+-\s*$' | head -300
fi

# Every namespace a test makes carries one of these prefixes; none may survive the run.
left=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^(xfx|xe2e|xlt|xsp|xsp6|xe6|xn6|xbind|xdm|xhl|xll|xhc|xssh|xnat|xvg|xh6)-' || true)
if [[ -n $left ]]; then
	echo
	echo "!!!!!!!!!! LEFTOVER namespaces after the tests (removing them now): $left"
	for ns in $left; do ip netns del "$ns" 2>/dev/null || true; done
	fail=$((fail + 1))
	rc=1
fi
leftlinks=$(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^(xssh|xhc)-' || true)
if [[ -n $leftlinks ]]; then
	echo "!!!!!!!!!! LEFTOVER links in the root namespace after the tests (removing them now): $leftlinks"
	for l in $leftlinks; do ip link del "$l" 2>/dev/null || true; done
	fail=$((fail + 1))
	rc=1
fi
leftpins=$(ls -d /sys/fs/bpf/xdplb-test-* /sys/fs/bpf/xdplb-lab-xll 2>/dev/null || true)
if [[ -n $leftpins ]]; then
	echo "!!!!!!!!!! LEFTOVER pins after the tests (removing them now): $leftpins"
	rm -rf $leftpins
	fail=$((fail + 1))
	rc=1
fi

if ((skip > 0)); then
	echo
	echo "!!!!!!!!!! SKIPPED: $skip test(s) did not run !!!!!!!!!!"
	grep -E '^    ok [0-9]+ .*# SKIP' "$log" | sed 's/^ */  /'
fi
echo
echo "$((pass - skip)) passed, $fail failed, $skip skipped"
exit "$rc"
