package keystore

import (
	"context"

	"github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/apdu/scp03"
	hostgp "github.com/valuechip/valuechip/host/gp"
)

// Source is what the money server needs of its key store (docs/keys.md
// §1). Keyring implements it from a file sealed under a KEK; an HSM-backed
// implementation would keep the masters inside the HSM and answer with
// handles or derived keys instead (docs/keys.md §5).
type Source interface {
	// Masters returns the issuer master keys MK_LOAD, MK_DEBIT and MK_TC
	// with their key versions (docs/purse.md §5.1).
	Masters(ctx context.Context) (purse.Keys, error)
	// CardManagerMaster returns the issuer's SCP03 master key set for the
	// chips' card managers and its key version; each card's keys are
	// diversified from it by the card's KDD (host/gp.Diversify,
	// docs/gp.md), as in remote installation (issue 6).
	CardManagerMaster(ctx context.Context) (master scp03.StaticKeys, keyVersion byte, err error)
	// Sealer seals the secrets the server stores in its database: TMKs
	// ("tmk/<terminal>"), working keys ("wk/<terminal>"), seeds
	// ("seed/<id>").
	Sealer
}

// CardManagerKeys adapts a Source to host/gp: the returned KeySource
// diversifies each card's SCP03 keys from the card-manager master by the
// KDD the card reports in INITIALIZE UPDATE; keyVersion is the version to
// ask the card for.
func CardManagerKeys(ctx context.Context, src Source) (keys hostgp.KeySource, keyVersion byte, err error) {
	master, kvn, err := src.CardManagerMaster(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer wipeStatic(master) // Diversified keeps its own copy
	return hostgp.Diversified(master), kvn, nil
}

func wipeStatic(k scp03.StaticKeys) {
	k.ENC.Wipe()
	k.MAC.Wipe()
	k.DEK.Wipe()
}
