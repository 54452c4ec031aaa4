// Package provision installs the purse on an empty chip remotely, after
// sale (docs/provision.md): the holder's device registers the chip (CPLC,
// KDD, holder account) and the server assigns its CardID; then the server
// opens an SCP03 secure channel to the chip's ISD through the device as a
// relay over HTTP, in the style of GlobalPlatform Remote Application
// Management over HTTP (GPC Amendment B): the device posts the card's
// responses, the server answers with the next commands. The server loads,
// installs and personalises the purse with per-card keys under
// C-DECRYPTION and records the card as issued; the relay never sees a key.
//
// Server is the server side (an http.Handler over host/sqldb); Device and
// Relay are the device side. A relay that alters, drops or replays a
// message makes the installation fail and leaves the chip installable.
package provision
