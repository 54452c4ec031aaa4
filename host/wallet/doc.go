// Package wallet is the money server's network wallet with a credit level
// (seed 003, docs/wallet.md): a server-side account per holder, topped up
// from a funding source and spent by online purchases, which may overdraw
// it down to the credit limit of the holder's level.
//
// The limit is enforced by the ledger inside the purchase's database
// transaction (ledger.Posting.Floors on the wallet's "available" memo
// account), never by a read followed by a write, so concurrent purchases
// cannot together spend more than the limit allows.
package wallet
