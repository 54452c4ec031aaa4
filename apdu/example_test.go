package apdu_test

import (
	"errors"
	"fmt"

	"github.com/valuechip/valuechip/apdu"
)

// Build a SELECT by AID (ISO/IEC 7816-4 §11.2.2, P1 04) asking for the FCI:
// a case 4 command whose Ne 256 travels as the short Le 00.
func ExampleCommand_Bytes() {
	aid := []byte{0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00}
	sel := apdu.Command{CLA: 0x00, INS: 0xA4, P1: 0x04, P2: 0x00, Data: aid, Ne: 256}
	b, err := sel.Bytes()
	if err != nil {
		panic(err)
	}
	fmt.Printf("% X\n", b)
	fmt.Println("case", sel.Case())

	// More than 256 bytes expected only fits the extended form.
	sel.Ne = 1024
	b, err = sel.Bytes()
	if err != nil {
		panic(err)
	}
	fmt.Printf("% X\n", b)
	// Output:
	// 00 A4 04 00 07 A0 00 00 01 51 00 00 00
	// case 4
	// 00 A4 04 00 00 00 07 A0 00 00 01 51 00 00 04 00
}

// Split a card's answer into data and status word.
func ExampleParseResponse() {
	r, err := apdu.ParseResponse([]byte{0x6F, 0x03, 0x84, 0x01, 0xA0, 0x90, 0x00})
	if err != nil {
		panic(err)
	}
	fmt.Printf("data % X\n", r.Data)
	fmt.Println(r.SW.String(), r.Err() == nil)
	// Output:
	// data 6F 03 84 01 A0
	// 9000 (success) true
}

// Status words are errors: match them with errors.Is, even through
// wrapping, and read the parameter of the parameterised ones.
func ExampleSW() {
	verify := func() error {
		r, _ := apdu.ParseResponse([]byte{0x63, 0xC2})
		return fmt.Errorf("verify PIN: %w", r.Err())
	}
	err := verify()
	var sw apdu.SW
	switch {
	case errors.Is(err, apdu.ErrAuthBlocked):
		fmt.Println("PIN blocked")
	case errors.Is(err, apdu.ErrVerifyFailed) && errors.As(err, &sw):
		n, _ := sw.Retries()
		fmt.Printf("wrong PIN, %d tries left\n", n)
	}
	fmt.Println(err)
	// Output:
	// wrong PIN, 2 tries left
	// verify PIN: card returned 63C2 (verification failed, 2 tries left)
}

// Parse a command as a card sees it.
func ExampleParseCommand() {
	c, err := apdu.ParseCommand([]byte{0x00, 0xB0, 0x00, 0x00, 0x00, 0x00, 0x00})
	if err != nil {
		panic(err)
	}
	fmt.Println(c.Case(), c.Ne, c.NeedsExtended())
	// Output:
	// 2 65536 true
}
