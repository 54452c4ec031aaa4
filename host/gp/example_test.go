package gp_test

import (
	"context"
	"fmt"

	gpwire "github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/host/gp/gptest"
)

// Open a secure channel at C-MAC + C-DECRYPTION, load and install a
// package, and list the card.
func Example() {
	ctx := context.Background()
	key := gpwire.TestKey()
	digest := [32]byte{1}
	module := []byte{0xF0, 0, 0, 0, 1, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01}
	card, _ := gptest.New(gptest.Config{
		Keys:    scp03.StaticKeys{ENC: key, MAC: key, DEK: key},
		Modules: map[string][32]byte{string(module): digest},
	})

	s, err := gp.Open(ctx, card, gp.Config{Keys: gp.TestKeys(), Level: scp03.LevelCMAC | scp03.LevelCDEC})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	fmt.Println(s)

	file, _ := gpwire.BuildLoadFile(gpwire.Manifest{
		PackageAID: module[:10],
		Version:    [2]byte{1, 0},
		Modules:    []gpwire.ModuleRef{{AID: module, Digest: digest}},
	})
	if err := s.LoadAndInstall(ctx, file, gp.LoadOptions{}, gp.InstallSpec{}); err != nil {
		fmt.Println(err)
		return
	}
	reg, _ := s.List(ctx)
	for _, a := range reg.Applications {
		fmt.Printf("%X %s\n", a.AID, gpwire.LifeCycleName(gpwire.KindApplication, a.LifeCycle))
	}
	// Output:
	// SCP03 session with A000000151000000, key version 30, level C-MAC+C-DEC
	// F000000001505552534501 SELECTABLE
}
