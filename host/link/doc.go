// Package link is a terminal's connection to the money server over ISO
// 8583 (docs/iso8583.md; the terminal side is described in
// docs/terminal.md).
//
// A Link reads the terminal file (Config, written by `valuechip terminal
// register`), signs on with 0800/001 under the terminal master key and
// from then on MACs every message with the working key and numbers every
// transaction with the seed (DE 62); it signs on again before the seed
// expires, after a 63 and after a lost connection.
//
// Link implements terminal.LoadAuthority: AuthorizeLoad is the online
// load 0200/0210, ReverseLoad the reversal 0400 (then 0420/0421), and
// Advise the completion advice of a load (0220/0221) or the store-and-
// forward queueing of an offline debit. The queue, the batch totals and
// the STAN reservation live in a durable, fsynced state log (Options.
// StateDir); Flush sends the queued advices and Reconcile sends the batch
// totals (0500/0510) and starts a new batch when both sides agree.
//
// Keys never leave this package in clear except in the terminal file
// itself: Config and the session keys print as key check values.
package link
