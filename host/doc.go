// Package host is the off-card side of valuechip: the GlobalPlatform host
// (install, personalise), the terminal (load, debit, recover), the money
// server and the APDU script engine live in its sub-packages. It speaks to
// cards only through the wire definitions in apdu/ and the transports in
// reader/, never through applet/, as a real terminal shares only a
// specification with a real card.
package host
