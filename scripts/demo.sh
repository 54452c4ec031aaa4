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
# The foundation: SELECT the sample chip's test applet and echo.
run "$bin" send --reader "$card" '00 A4 04 00 08 F056435445535401' '80 10 00 00 05 48656C6C6F 00'

# The purse (docs/purse.md): issue it through the ISD (SCP03, load, install,
# personalise with per-card keys), load 50.00, pay 3.50 and 30.00 (above
# the PIN-free limit: with the PIN), read the log with its certificates.
# The development keys are public: a test card only.
p=(--reader "$card" --journal "$dir/journal.json" --dev-keys)
run "$bin" purse issue "${p[@]}" --test-key --card-id 1122334455667788 --currency 978 --pin 1234
run "$bin" purse load 5000 "${p[@]}" 2>/dev/null
run "$bin" purse pay 350 "${p[@]}" 2>/dev/null
run "$bin" purse pay 3000 --pin 1234 "${p[@]}" 2>/dev/null
run "$bin" purse log "${p[@]}" 2>/dev/null
run "$bin" purse balance --reader "$card"
echo
echo "Certificates (TC, verifiable only with the issuer's K_TC master):"
"$bin" purse log "${p[@]}" --json 2>/dev/null | grep -E '"(atc|type|tc|tc_verified)"' | paste - - - -
