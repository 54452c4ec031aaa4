// Package terminal is the terminal's half of the valuechip purse
// (docs/purse.md): balance and log enquiries, offline debits authorised by
// a security module (SecurityModule, §3.7–3.8), online loads authorised by
// the money server (LoadAuthority, §3.5–3.6), the terminal-side recovery
// of a transaction whose answer was lost (§9.4) through a durable
// Journal, and issuance of a purse through a GlobalPlatform secure
// channel (Issue, §2 and §8).
//
// Nothing here imports the applet: the card is reached only through a
// reader.Transceiver.
package terminal
