// Package keystore keeps the money server's secret keys encrypted at rest
// (docs/keys.md): a key-encryption key (KEK) from a file or the
// environment, a Sealer that encrypts small secrets under it (AES-256-GCM,
// the caller's label bound in as additional data), and a Source of the
// issuer master keys that an HSM-backed implementation can replace.
//
//	kek, err := keystore.LoadKEK(kekFile)          // file, else $VALUECHIP_KEK
//	ring, err := keystore.OpenKeyring("keyring.json", kek)
//	masters, err := ring.Masters(ctx)             // MK_LOAD, MK_DEBIT, MK_TC
//	blob, err := ring.Seal("tmk/VCTERM01", tmk)    // stored in the database
//
// Keyring is the file-backed Source: a JSON file holding every master key
// sealed under the KEK with its label, version and key check value.
//
// # Keys never print
//
// KEK, Keyring and the errors of this package print key check values
// (KCVs) only; the key types of apdu/scp03 and apdu/purse do the same. Error
// messages name files, labels and lengths, never key content.
package keystore
