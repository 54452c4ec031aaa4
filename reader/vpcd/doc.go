// Package vpcd attaches an emulated card (applet.Card) to vsmartcard's
// virtual reader driver "vpcd", so that pcscd and every PC/SC tool see it as
// a card in the reader "Virtual PCD 00 00" (or "... 00 01" for slot 1). It
// also holds the reader side of the same wire protocol (Client), used by the
// tests and by the pcscd-free "tcp:HOST:PORT" reader name.
//
// # Wire protocol
//
// One TCP connection per reader slot. Every message, in both directions, is a
// big-endian uint16 length followed by that many payload bytes. From the
// reader (vpcd) to the card, a payload of exactly one byte is a control
// byte:
//
//	00  power off   no reply
//	01  power on    no reply
//	02  reset       no reply
//	04  get ATR     reply: one frame holding the ATR
//
// Any other payload is a command APDU passed through exactly as the
// application sent it (vpcd is APDU-level: no TPDU layer, no GET RESPONSE),
// and the reply is one frame holding the whole response APDU (data, SW1,
// SW2). vpcd treats a zero-length reply, a read error or EOF as the card
// leaving the reader ("eject") and closes the socket; the 2-byte length caps
// every payload at 65,535 bytes. (Measured facts: shared/research/
// vsmartcard.md §5.)
//
// Because a one-byte payload is a control byte, a one-byte "APDU" from an
// application cannot be told apart from one; transmitting 00 hangs a real
// vpcd slot. Client therefore refuses commands shorter than four bytes
// (ISO/IEC 7816-4 §5.1: CLA INS P1 P2 is the shortest command).
//
// # Modes
//
// In vpcd's normal mode, the only one that works with Debian 12's vpcd 0.8
// (reverse mode crashes pcscd, vsmartcard.md §5), vpcd listens on
// 35963+slot and the card connects out: removing the card is closing the
// connection, inserting it is connecting. Attacher does that, reconnecting
// with capped exponential backoff while pcscd is absent or restarts.
//
// Serve is the listening variant: the card accepts one reader connection at
// a time (Client, or anything else speaking the protocol).
//
// # Latency
//
// Debian 12's vpcd writes the length and the body of each message in two
// send() calls with Nagle's algorithm on, so unless the card's socket ACKs
// at once every message waits for the card's ~40 ms delayed ACK (21 APDU/s
// measured instead of ~10,000). The card side therefore sets TCP_QUICKACK
// before every read on Linux, which clears the flag again by itself
// (vsmartcard.md TL;DR and §4). Replies go out in a single write, and Go
// sets TCP_NODELAY by default, so the other direction never stalls.
package vpcd
