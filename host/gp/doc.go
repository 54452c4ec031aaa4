// Package gp is the GlobalPlatform host of valuechip: it opens an SCP03
// secure channel to a security domain and manages card content through it
// — list the registry, load and install, delete, put keys, personalise,
// lock and unlock, change the card life cycle — on the emulated chip, on a
// card in a PC/SC reader or behind vpcd.
//
// It speaks to cards only through the wire definitions of apdu/gp and
// apdu/scp03 and the transports of reader/, never through applet/.
//
//	t := connect.Stack(conn, connect.StackOptions{})   // GET RESPONSE, 6Cxx, chaining
//	s, err := gp.Open(ctx, t, gp.Config{Keys: keys, Level: scp03.LevelCMAC | scp03.LevelCDEC})
//	defer s.Close()
//	reg, err := s.List(ctx)
//
// # Secure channel placement
//
// The session's Transceiver wraps every command (C-MAC, C-DECRYPTION) and
// unwraps every response (R-MAC, R-ENCRYPTION) at the level chosen in
// Config. It sits above the transport stack it was opened on, so GET
// RESPONSE rounds are merged before the R-MAC, which covers the whole
// response, is checked (Amd D §6.2.5), and tracing at the wire shows the
// protected bytes.
//
// # Keys
//
// Keys come from a KeySource once the card has identified itself in its
// INITIALIZE UPDATE response (KDD, key version): static keys, keys
// diversified from a master key by KDD (Diversify), a key file, the
// environment, or an HSM-backed implementation. Keys never appear in
// errors, logs or traces: scp03.Key prints as a KCV, PUT KEY and STORE
// DATA go out marked reader.WithSensitive.
//
// References: GlobalPlatform Card Specification v2.3.1 ("GPCS") §11 and
// Amendment D v1.1.1 ("Amd D"), as in apdu/gp and apdu/scp03.
package gp
