// Package gp holds the GlobalPlatform card content management wire
// definitions that both ends of valuechip use: the card manager in applet/
// parses what the host in host/gp builds. Everything here is pure encoding
// and decoding, no I/O: command builders return apdu.Command values, parsers
// take the data field (and P1/P2 where they change its meaning).
//
// References, cited as "GPCS §x" and "Amd D §x":
//
//   - GlobalPlatform Card Specification v2.3.1 (GPC_SPE_034, March 2018),
//     "GPCS": §11.1.1 life cycle coding, §11.1.2 privileges, §11.1.5
//     command chaining, §11.2 DELETE, §11.3 GET DATA, §11.4 GET STATUS,
//     §11.5 INSTALL, §11.6 LOAD, §11.8 PUT KEY, §11.10 SET STATUS, §11.11
//     STORE DATA, Annex H card recognition data.
//   - GlobalPlatform Card Specification v2.2 Amendment D, Secure Channel
//     Protocol '03', v1.1.1, "Amd D": §6.2.8 sensitive data encryption,
//     §7.2 PUT KEY for AES keys.
//   - EMV Card Personalization Specification v1.1 §4.3 for the DGI format
//     used by STORE DATA.
//
// # What a load file is on this chip
//
// The emulated chip does not execute Java Card CAP files. Its Load File
// Data Block (the value of tag 'C4', GPCS §11.6.2.1) is a manifest naming a
// package AID, a version and the built-in modules the package provides,
// each with the digest of its implementation; INSTALL [for install]
// instantiates a matching built-in module and the card refuses a load file
// naming an unknown module or a wrong digest. See Manifest, LoadFile and
// docs/loadfile.md for the format and the optional ECDSA DAP.
//
// # Robustness
//
// Every parser accepts arbitrary input without panicking and returns an
// error wrapping one of this package's sentinels (match with errors.Is).
// Parsed byte slices alias the input unless stated otherwise.
package gp
