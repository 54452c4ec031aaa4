#!/usr/bin/env bash
# make demo: the main job on the embedded default — an in-process emulated
# card, no pcscd, no services. Each step is a valuechip command a user can
# type; the card's state lives in a throwaway directory.
set -euo pipefail
bin=${1:-bin/valuechip}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
card="emu:$dir/card.json"
run() { printf '\n$ %s\n' "$*"; "$@"; }

run "$bin" version
run "$bin" atr decode 3B858001807380014036
# SELECT the test applet, echo, a response longer than Le (61xx merged by
# GET RESPONSE), a wrong Le (6Cxx re-sent), a PIN whose value is masked in
# the trace, and a persistent counter.
run "$bin" send --reader "$card" --trace \
	'00 A4 04 00 08 F056435445535401' \
	'80 10 00 00 05 48656C6C6F 00' \
	'80 12 01 2C 00' \
	'80 14 00 00 00' \
	'00 20 00 80 04 31323334' \
	'80 20 00 00 04'
echo
echo "The counter survives a restart of the card (state in $card):"
run "$bin" send --reader "$card" '00 A4 04 00 08 F056435445535401' '80 22 00 00 04'
