package keystore

// ParseKeyring exposes the keyring parser to the fuzz test.
var ParseKeyring = parseKeyring
