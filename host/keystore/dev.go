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
// docs/purse.md §10.1 (purse.DevMasters).
func devMasters() purse.Keys { return purse.DevMasters() }

// devCardManager is the GlobalPlatform test key 404142…4F as Key-ENC,
// Key-MAC and Key-DEK of the card-manager master.
func devCardManager() scp03.StaticKeys {
	return scp03.StaticKeys{ENC: gpwire.TestKey(), MAC: gpwire.TestKey(), DEK: gpwire.TestKey()}
}
