package purse

// DevMasters returns the public development issuer master keys of
// docs/purse.md §10.1: MK_LOAD 1011…1F, MK_DEBIT 2021…2F, MK_TC 3031…3F,
// all version 01. The worked examples of the specification use them; so do
// the development keyring (host/keystore) and the terminal's --dev-keys.
// Anyone can compute every card key from them: never for real value.
func DevMasters() Keys {
	seq := func(b byte) Key {
		k := make(Key, 16)
		for i := range k {
			k[i] = b + byte(i)
		}
		return k
	}
	return Keys{
		Load:  VersionedKey{Version: 1, Key: seq(0x10)},
		Debit: VersionedKey{Version: 1, Key: seq(0x20)},
		TC:    VersionedKey{Version: 1, Key: seq(0x30)},
	}
}
