package registry_test

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/valuechip/valuechip/host/registry"
)

// FuzzIDs checks the ID validators on arbitrary input: what they accept is
// what DE 41, DE 42 and the CardID can carry, and normalising is idempotent.
func FuzzIDs(f *testing.F) {
	for _, s := range []string{"TERM0001", "MERCHANT0000001", "1122334455667788", "112233445566778a", "TERM 001", "", "\x00\x00\x00\x00\x00\x00\x00\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		printable := func(s string) bool {
			for i := 0; i < len(s); i++ {
				if s[i] < 0x20 || s[i] > 0x7E {
					return false
				}
			}
			return strings.TrimSpace(s) != ""
		}
		if err := registry.ValidTerminalID(s); (err == nil) != (len(s) == 8 && printable(s)) {
			t.Fatalf("ValidTerminalID(%q) = %v", s, err)
		}
		if err := registry.ValidMerchantID(s); (err == nil) != (len(s) == 15 && printable(s)) {
			t.Fatalf("ValidMerchantID(%q) = %v", s, err)
		}
		id, err := registry.NormCardID(s)
		if err != nil {
			return
		}
		if b, err := hex.DecodeString(id); err != nil || len(b) != 8 || id != strings.ToUpper(id) {
			t.Fatalf("NormCardID(%q) = %q", s, id)
		}
		if again, err := registry.NormCardID(id); err != nil || again != id {
			t.Fatalf("NormCardID not idempotent on %q: %q, %v", id, again, err)
		}
	})
}
