#!/usr/bin/env bash
# Runs every fuzz target in the module for the given time each.
set -euo pipefail
fuzztime=${1:-30s}
cd "$(dirname "$0")/.."
go list -f '{{.Dir}} {{.ImportPath}}' ./... | while read -r dir pkg; do
	grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | while read -r target; do
		echo "== $pkg $target ($fuzztime)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg"
	done
done
