#!/usr/bin/env bash
# make demo: the main job on the embedded default — in-process emulated
# cards, SQLite in one file, no pcscd, no other service. Each step is a
# valuechip command a user can type; all state lives in a throwaway
# directory, and the money server started here is stopped on exit.
set -euo pipefail
bin=$(cd "$(dirname "${1:-bin/valuechip}")" && pwd)/$(basename "${1:-bin/valuechip}")
dir=$(mktemp -d)
srv=
cleanup() {
	for p in $srv; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT
cd "$dir"
run() { printf '\n$ valuechip %s\n' "$*"; "$bin" "$@"; }
section() { printf '\n\n=== %s\n' "$*"; }
note() { printf '\n# %s' "$*"; }
# waitfile FILE PID LOG: wait until FILE is written (a readiness probe, not a
# fixed delay) while process PID lives; at most 10 s.
waitfile() {
	for _ in $(seq 400); do
		[ -s "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || break
		sleep 0.025
	done
	echo "demo: $1 was never written" >&2
	cat "$3" >&2
	exit 1
}
# The warnings about public development keys are printed once, where they
# first appear; after that they are only noise.
quiet() { { "$@" 2>&1 1>&3 3>&- | { grep -v '^warning: ' >&2 || true; }; } 3>&1; }

section "Foundation and the purse, offline"
run version
# SELECT the sample chip's test applet and echo.
run send --reader emu:card.json '00 A4 04 00 08 F056435445535401' '80 10 00 00 05 48656C6C6F 00'
# The purse (docs/purse.md): issue it through the ISD (SCP03, load, install,
# personalise with per-card keys), load 50.00, pay 3.50 and 30.00 (above
# the PIN-free limit: with the PIN), read the log with its certificates.
# The development keys are public: a test card only. Without --terminal the
# load is authorised by an in-process stand-in: nothing is posted anywhere.
p=(--reader emu:card.json --journal journal.json --dev-keys)
run purse issue "${p[@]}" --test-key --card-id 1122334455667788 --currency 978 --pin 1234
quiet run purse load 5000 "${p[@]}"
quiet run purse pay 350 "${p[@]}"
quiet run purse pay 3000 --pin 1234 "${p[@]}"
quiet run purse log "${p[@]}"

section "The money server (docs/server.md): ledger, ISO 8583, settlement"
# The key-encryption key seals every key at rest (docs/keys.md); the
# keyring holds the PUBLIC development masters, and says so.
umask 077
od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >kek.hex
k=(--keyring keyring.json --kek-file kek.hex)
db=(--db money.db)
run keys init --dev-masters "${k[@]}"
printf '\n$ valuechip server --db money.db --listen 127.0.0.1:0 --http 127.0.0.1:0 --ready-file ready &\n'
"$bin" server "${db[@]}" "${k[@]}" --listen 127.0.0.1:0 --http 127.0.0.1:0 \
	--ready-file ready >server.out 2>server.log &
srv=$!
waitfile ready "$srv" server.log
addr=$(cat ready)
# The ready line follows the ready file at once.
for _ in $(seq 400); do grep -q '^ready:' server.out && break; sleep 0.025; done
cat server.out
# The HTTP side (metrics, provisioning, card logs, wallets): the first URL
# of the ready line.
http=$(grep -o 'http://[^ ),]*' server.out | head -n1)
http=${http%/metrics}
quiet run terminal register "${db[@]}" "${k[@]}" --id TERM0001 --merchant MERCHANT0000001 --server "$addr" --out term.json --notify "$http"
# A fresh card for the server's books; the server knows it once registered.
c=(--reader emu:card2.json)
quiet run purse issue "${c[@]}" --journal journal2.json --dev-keys --test-key --card-id 2233445566778899 --pin 1234
run card register 2233445566778899 "${db[@]}" --currency 978 --max-balance 100000
t=("${c[@]}" --terminal term.json)
note "online load: 0200 with the card's S1, 0210 with S2, 0220 with the card's certificate"
run purse load 5000 "${t[@]}"
note "offline payments: each advice waits in the terminal's store-and-forward queue"
run purse pay 350 "${t[@]}"
run purse pay 3000 --pin 1234 "${t[@]}"
run purse pay 125 "${t[@]}"
note "settlement: the queued advices (0220), then the batch totals (0500)"
run purse settle --terminal term.json
run purse balance "${c[@]}"
echo
run report "${db[@]}"

section "Issuance after sale, second channel, wallet (docs/provision.md, crosscheck.md, wallet.md)"
# An EMPTY chip: only its issuer security domain, with keys diversified by
# the chip's KDD from the chip maker's master — here the development
# card-manager master of the keyring (the GP test key). valuechip emulate
# --create makes the chip's image from the profile; it is used in process.
echo '{"isd_master": "404142434445464748494A4B4C4D4E4F"}' >chip.json
run emulate --create --profile chip.json --card-file chip.card
h=(--reader emu:chip.card)
# Registration, then the server installs and personalises the purse over
# SCP03 through this device as a relay: the device never sees a key.
note "registration, then remote installation over SCP03 relayed by this device"
run provision --server "$http" --holder alice --pin 1234 "${h[@]}"
# A second terminal, at another shop, that will never settle its batch.
quiet run terminal register "${db[@]}" "${k[@]}" --id TERM0002 --merchant MERCHANT0000002 --server "$addr" --out term2.json --notify "$http"
run purse load 5000 "${h[@]}" --terminal term.json
run purse pay 350 "${h[@]}" --terminal term.json
run purse pay 3000 --pin 1234 "${h[@]}" --terminal term.json
note "at another shop's terminal, which never settles: the server never hears of it"
run purse pay 99 "${h[@]}" --terminal term2.json
run purse settle --terminal term.json
# The holder's device uploads the card's log, certificates included; the
# server verifies every TC and compares with what the terminals reported.
note "the holder's device uploads the card's log; the server checks it against the terminals"
run upload --server "$http" "${h[@]}"

w=("${db[@]}")
run wallet open alice --level 1 "${w[@]}"
run wallet topup alice 1000 --source bank --key top-1 "${w[@]}"
note "the network wallet: credit level 1 may overdraw down to -50.00"
run wallet purchase alice 6000 --merchant SHOP00000000001 --key order-1 "${w[@]}"
note "one cent more: refused"
if run wallet purchase alice 1 --merchant SHOP00000000001 --key order-2 "${w[@]}"; then
	echo "demo: a purchase beyond the credit limit was approved" >&2
	exit 1
fi

echo
run report "${db[@]}"
