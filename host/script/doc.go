// Package script is valuechip's APDU script language: the parser, the
// interpreter, and the reports (human trace, JSON, JUnit XML). The
// language is documented for users in docs/scripting.md; in short, it is
// scriptor's syntax (hex command lines, # comments, reset, exit, "\"
// continuation) extended with
//
//	expect sw 9000 63C? | data 6F??84* | data V mask M | data match "RE" | EXPR
//	set NAME = HEX ${expr} "text"    secret NAME = ...    let NAME = EXPR
//	if COND ... elif COND ... else ... end    repeat EXPR [as NAME] ... end
//	include FILE    select AID    send [raw] [secret] APDU    reset [cold]
//	wait card    tap    secure scp03 key=... [kvn=..] [level=..]    secure off
//	print TEXT    fail TEXT
//
// Parse turns text into a Script (errors carry file:line:col and all of a
// file's errors are reported as an ErrorList); an Interpreter runs Scripts
// against a Card and returns a Result of Steps, telling an Observer (such
// as Human) as it goes; WriteJSON and WriteJUnit report Results.
//
// The interpreter reaches the card only through the Card interface (the
// host stack's Transceive, Reset, ATR) and, for readers with insertion and
// removal events, Presence; it never imports a backend, so it runs in
// tests on an in-process card, a replayed recording or a fake. Secure
// channels plug in through SecureChannel; SCP03 is built in, on
// apdu/scp03.
//
// Secrets: every byte string a report holds is masked first. PINs, keys,
// cryptograms and MACs are masked by instruction (reader.DefaultMasker),
// values from "secret" variables and everything derived from them wherever
// they appear, and the keys given to "secure" never reach a report at all.
package script
