// Package ledger is the money server's double-entry ledger for the valuechip
// purse (docs/purse.md §1, §9, §12; design notes in docs/ledger.md).
//
// Money is always an int64 count of minor units of one ISO 4217 currency.
// Every posting is a set of legs that sums to zero per currency; every write
// carries an idempotency key, so a retried request is answered with the
// original result and never posted twice. Purse transactions (loads, debits)
// are records with a state, in_progress → completed | reversed, whose
// transitions are atomic with their postings. Per card, the ledger keeps every
// ATC it was told about and reports gaps and duplicates (clones, image
// rollbacks).
//
// Store is the contract; Open returns its database/sql implementation over
// SQLite (modernc.org/sqlite, the embedded default: one file, WAL,
// synchronous=FULL) or PostgreSQL (pgx), chosen from the DSN. The SQL is
// portable: the same statements, schema and tests run on both.
package ledger
