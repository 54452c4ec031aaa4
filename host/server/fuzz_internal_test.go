package server

import (
	"testing"

	"github.com/valuechip/valuechip/host/iso8583"
)

// FuzzRecoverHeader: reading MTI/STAN/DE 41 out of an unparsable message
// never panics, and what it reports is well formed.
func FuzzRecoverHeader(f *testing.F) {
	f.Add([]byte("0200\x72\x20\x04\x00\x00\xC0\x82\x05161122334455667788220000000000002000112108050000000207254"))
	f.Add([]byte("0800\x82\x20\x00\x00\x00\x80\x00\x00\x04\x00\x00\x00\x00\x00\x00\x011121080000000001TERM0001001"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		h, ok := recoverHeader(raw)
		if !ok {
			return
		}
		if len(h.mti) != 4 || !isDigits(h.mti) || len(h.stan) != 6 || !isDigits(h.stan) {
			t.Fatalf("bad header %+v", h)
		}
		if h.tid != "" && (len(h.tid) != 8 || !isPrintable(h.tid)) {
			t.Fatalf("bad DE 41 %q", h.tid)
		}
		if _, err := iso8583.ResponseMTI(h.mti); err == nil && iso8583.IsResponse(h.mti) {
			t.Fatalf("response MTI %s has a response", h.mti)
		}
	})
}
