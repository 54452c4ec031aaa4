package keystore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/valuechip/valuechip/host/keystore"
)

// A development keyring: create it, open it again, read the masters and
// seal a terminal key for the database. Only KCVs are printed.
func Example() {
	dir, _ := os.MkdirTemp("", "keystore-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "keyring.json")
	kek, _ := keystore.ParseKEK([]byte("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F\n"))

	if _, err := keystore.Init(path, kek, keystore.InitOptions{DevMasters: true}); err != nil {
		fmt.Println(err)
		return
	}
	ring, err := keystore.OpenKeyring(path, kek)
	if err != nil {
		fmt.Println(err)
		return
	}
	masters, _ := ring.Masters(context.Background())
	fmt.Println(kek)
	fmt.Println(masters.Load)
	fmt.Println(ring.Development())

	blob, _ := ring.Seal("tmk/VCTERM01", []byte("16-byte TMK here"))
	tmk, _ := ring.Open("tmk/VCTERM01", blob)
	_, err = ring.Open("tmk/VCTERM02", blob)
	fmt.Println(len(tmk), err != nil)
	// Output:
	// KEK(kcv=75E208)
	// KVN 01 AES-128 key KCV 013808
	// true
	// 16 true
}
