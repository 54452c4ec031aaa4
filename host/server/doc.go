// Package server is valuechip's money server: the ISO 8583 TCP service of
// docs/iso8583.md between terminals and the issuer's ledger.
//
// It authenticates every message (MAC under the terminal's TMK or working
// key, transaction number under the sign-on seed), verifies the card's
// cryptograms with the issuer master keys (S1, TC) and computes S2
// (docs/purse.md §5), and posts through host/ledger: loads as in-progress
// transactions completed by their completion advice or reversed, offline
// debits group-committed, reconciliation per terminal. Failure recovery —
// every failure point and how the terminal's pending flag, the card's proof
// and the server's state resolve it — is docs/server.md.
//
// The registry, key source, ledger and load store are consumed through the
// narrow interfaces of deps.go; adapters.go connects the real packages.
package server
