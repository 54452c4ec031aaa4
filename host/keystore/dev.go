package keystore

import (
	gpwire "github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/apdu/scp03"
)

// DevWarning is what a development keyring makes its users print, at init
// and whenever it is opened for use.
const DevWarning = "warning: DEVELOPMENT KEYRING: it holds the public issuer master keys of docs/purse.md §10 " +
	"and the public GlobalPlatform test key as card-manager master; anyone can compute every card key " +
	"and mint value — never use it for a purse that holds real money"

// DevCardManagerVersion is the key version of the development card-manager
// master: that of the test key on a development card (docs/cardmanager.md,
// DefaultParams: the test key as KVN 01).
const DevCardManagerVersion byte = 0x01

// DefaultCardManagerVersion is the key version of a fresh card-manager
// master unless InitOptions say otherwise: distinct from a development
// card's 01, so a card still holding its factory keys is told apart.
const DefaultCardManagerVersion byte = 0x30

// devMasters are the public development issuer master keys of
// docs/purse.md §10.1: MK_LOAD 1011…1F, MK_DEBIT 2021…2F, MK_TC 3031…3F,
// version 01 — the values of host/terminal.DevMasters, copied rather than
// imported so that host/terminal may one day use this package (a test
// checks they agree).
func devMasters() purse.Keys {
	seq := func(b byte) purse.Key {
		k := make(purse.Key, 16)
		for i := range k {
			k[i] = b + byte(i)
		}
		return k
	}
	return purse.Keys{
		Load:  purse.VersionedKey{Version: 1, Key: seq(0x10)},
		Debit: purse.VersionedKey{Version: 1, Key: seq(0x20)},
		TC:    purse.VersionedKey{Version: 1, Key: seq(0x30)},
	}
}

// devCardManager is the GlobalPlatform test key 404142…4F as Key-ENC,
// Key-MAC and Key-DEK of the card-manager master.
func devCardManager() scp03.StaticKeys {
	return scp03.StaticKeys{ENC: gpwire.TestKey(), MAC: gpwire.TestKey(), DEK: gpwire.TestKey()}
}
