// Package iso8583 is valuechip's ISO 8583:1987 message profile between
// terminals and the money server, specified in docs/iso8583.md and built on
// github.com/moov-io/iso8583 v0.26.1 (research: protocols.md §5).
//
// It provides:
//
//   - Spec, the message specification: ASCII MTI and numeric fields, binary
//     8-byte primary and secondary bitmaps (not the 16-byte bitmap of moov's
//     specs.Spec87ASCII, protocols.md §5.8), binary DE 48/55/62/64/128;
//   - typed message structs for every MTI of the profile (message.go);
//   - Pack/Unpack with strict, canonical parsing: any malformed message yields
//     an error wrapping ErrMalformed, which the server answers with response
//     code 30;
//   - the purse data carried in DE 55 as BER-TLV with private tags (icc.go);
//   - the message MAC in DE 64 (or DE 128 when a secondary bitmap is present):
//     AES-CMAC truncated to 8 bytes (mac.go);
//   - the sign-on key block of DE 48 and the transaction number of DE 62
//     derived from the transaction data and the sign-on seed (txnum.go);
//   - 2-byte big-endian length framing (frame.go) and a minimal
//     request/response Client matching responses by DE 11 STAN (client.go).
//
// Keys are never printed: key types print as key check values only.
package iso8583
