// Package crosscheck is the money server's second channel (seed 001,
// docs/crosscheck.md): the holder's device reads the purse's transaction
// log (READ RECORD, docs/purse.md §3.10, §6) and uploads it over HTTP; the
// server verifies every record's transaction certificate under K_TC
// (docs/purse.md §5.4), keeps the accepted records, and compares them with
// what terminals reported for the same card (the ledger's advices). The
// differences — a terminal that charged more than the card debited, a debit
// no terminal reported, a report for an ATC the card never used, a record
// whose TC is wrong — form the discrepancy report.
//
// The package holds no key: it asks a KeySource (the key store, an HSM)
// for the issuer masters at each upload and derives K_TC for the card.
package crosscheck
