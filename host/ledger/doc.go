// Package ledger is the money server's double-entry ledger for the valuechip
// purse (docs/purse.md §1, §9, §12; design notes in docs/ledger.md).
//
// Money is always an int64 count of minor units of one ISO 4217 currency.
// Every posting is a set of legs that sums to zero per currency; every write
// carries an idempotency key, so a retried request is answered with the
// original result and never posted twice. Purse transactions (loads) are
// records with a state, in_progress → completed | reversed, whose
// transitions are atomic with their postings. Offline debit advices are
// posted in batches, one database transaction per batch (ApplyAdvices), and
// group-committed for concurrent callers (Batcher). Per card, the ledger
// keeps every ATC and card record it was told about and reports gaps and
// duplicates (clones, image rollbacks); per terminal it keeps reconciliation
// batches (OpenBatchTotals, CloseBatch).
//
// Store is the contract; SQLStore implements it over a shared *sqldb.DB
// (host/sqldb): New uses a database the caller opened, Open opens one from a
// DSN — SQLite (modernc.org/sqlite, the embedded default: one file, WAL,
// synchronous=FULL) or PostgreSQL (pgx). The SQL is portable: the same
// statements, schema and tests run on both.
package ledger
