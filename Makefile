# valuechip — see README.md. Every target works from a clean checkout.
GO      ?= go
BIN     ?= bin/valuechip
PKGS    ?= ./...
FUZZTIME ?= 30s
STATICCHECK_VERSION ?= v0.8.2

.PHONY: all build demo test test-unit bench fuzz lint nocgo clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/valuechip

# The main job on the embedded default: in-process cards and the money
# server on SQLite (started in the background, stopped on exit), no system
# services — purse, online load, offline payments, settlement, report,
# remote issuance, log upload, discrepancies, wallet. Its state lives in a
# throwaway directory.
demo: build
	@./scripts/demo.sh $(BIN)

# The whole suite. End-to-end tests need pcscd with the vpcd driver; they skip
# with a reason when it is missing, and fail instead under
# VALUECHIP_REQUIRE_E2E=1 (CI, see .ci/run).
test: nocgo
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 15m $(PKGS)

# The core must build without cgo: only reader/pcsc needs libpcsclite.
nocgo:
	CGO_ENABLED=0 $(GO) build $(PKGS)
	CGO_ENABLED=0 $(GO) vet ./apdu/... ./applet/... ./host/... ./reader/emu/... ./reader/vpcd/...

bench: build
	$(GO) test -run '^$$' -bench . -benchtime 2s -count 5 $(PKGS) | tee bench.txt
	./$(BIN) bench
	./$(BIN) bench server   # PostgreSQL and pgbench too when VALUECHIP_PG_DSN is set

# Runs every fuzz target for FUZZTIME each (go test -fuzz takes one target
# at a time).
fuzz:
	@./scripts/fuzz.sh $(FUZZTIME)

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

clean:
	rm -rf bin bench.txt
