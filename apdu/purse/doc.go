// Package purse holds the wire definitions of the valuechip purse, shared
// by the card (applet/purse), the terminal and its security module, and
// the money server. docs/purse.md is the normative specification; this
// package implements it:
//
//   - AIDs, CLA/INS/P1/P2 and data object sizes (const.go);
//   - a builder and a parser for every command and response (commands.go),
//     the transaction log record (log.go) and PIN blocks (pin.go);
//   - the key hierarchy and every cryptogram — card key diversification
//     from issuer masters, session keys, S1, S2, M1, M2, TC and the SET
//     STATUS MAC — as pure functions of keys and fields (crypto.go);
//   - the personalisation DGIs for STORE DATA (perso.go);
//   - the status words of each command (sw.go);
//   - the worked examples of the specification, machine readable
//     (examples.go).
//
// All cryptography is AES with AES-CMAC (package apdu/cmac) and the SCP03
// KDF (package apdu/scp03); MAC comparisons are constant time and keys
// print only as KCVs.
package purse
