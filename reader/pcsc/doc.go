// Package pcsc is the PC/SC reader backend: it lists readers, picks one from
// what a user typed, connects to the card in it and reports card and reader
// changes, all through pcscd via github.com/ebfe/scard.
//
// ebfe/scard needs cgo. Files that import it carry `//go:build cgo`; with
// CGO_ENABLED=0 a stub with the same exported API returns reader.ErrNoPCSC,
// so the rest of the module (emulator, vpcd backend, scripting) still builds
// and runs without a C toolchain. Select, ConnectOptions and Error are pure
// Go and behave the same in both builds.
//
// Errors from PC/SC come back as *Error, which matches the reader package's
// sentinels with errors.Is (reader.ErrServiceUnavailable, reader.ErrNoReader,
// reader.ErrNoCard, reader.ErrCardRemoved, reader.ErrReaderGone) and carries a
// hint that tells the user what to do next.
//
// Concurrency: a Context and a Card may be used from several goroutines.
// Every SCardGetStatusChange in the process is serialised (see gate in
// watch.go for why), and blocking waits (Watch, WaitForCard) run on private
// PC/SC contexts so they never hold up Transceive on a Card.
package pcsc
