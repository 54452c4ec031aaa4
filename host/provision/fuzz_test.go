package provision

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// The parsers of every message either side receives must not panic, and
// what they accept must keep the protocol's invariants.

func FuzzParseRegister(f *testing.F) {
	f.Add([]byte(`{"cplc":"` + strings.Repeat("00", 42) + `","kdd":"00000102030405060708","cin":"0102030405060708","holder":"alice"}`))
	f.Add([]byte(`{"cplc":"","kdd":"","holder":""}`))
	f.Add([]byte(`{"cplc":"9F7F2A` + strings.Repeat("11", 42) + `","kdd":"` + strings.Repeat("FF", 10) + `","holder":"bob"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		reg, err := parseRegister(bytes.NewReader(b))
		if err != nil {
			return
		}
		if reg.holder == "" || len(reg.holder) > MaxHolderLen || len(reg.cplc) < 42 {
			t.Fatalf("accepted %+v", reg)
		}
	})
}

func FuzzParseSession(f *testing.F) {
	f.Add([]byte(`{"seq":0}`))
	f.Add([]byte(`{"seq":0,"pin":"1234"}`))
	f.Add([]byte(`{"session":"` + strings.Repeat("ab", 16) + `","seq":3,"nonce":"` + strings.Repeat("01", 16) + `","responses":["9000"]}`))
	f.Add([]byte(`{"session":"` + strings.Repeat("ab", 16) + `","seq":3,"nonce":"` + strings.Repeat("01", 16) + `","error":"card removed"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		x, err := parseSession(bytes.NewReader(b))
		if err != nil {
			return
		}
		if x.session == "" {
			if x.seq != 0 || len(x.responses) > 0 || x.nonce != nil {
				t.Fatalf("start with state: %+v", x)
			}
			return
		}
		if !validID(x.session) || len(x.nonce) != nonceLen || len(x.responses) > MaxAPDUs || (len(x.responses) == 0 && x.devErr == "") {
			t.Fatalf("accepted %+v", x)
		}
		for _, r := range x.responses {
			if len(r) < 2 {
				t.Fatalf("response without SW: %X", r)
			}
		}
	})
}

func FuzzParseSessionResponse(f *testing.F) {
	f.Add([]byte(`{"session":"` + strings.Repeat("ab", 16) + `","seq":1,"nonce":"` + strings.Repeat("01", 16) + `","status":"running","commands":["00A4040008A00000015100000000"]}`))
	f.Add([]byte(`{"session":"` + strings.Repeat("ab", 16) + `","seq":9,"status":"issued","card_id":"9900000000000010","terminal_id":"VD000001"}`))
	f.Add([]byte(`{"session":"x","seq":9,"status":"failed","error":"aborted"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		resp, cmds, err := parseSessionResponse(bytes.NewReader(b))
		if err != nil {
			return
		}
		if resp.Status == StatusRunning {
			if len(cmds) == 0 || len(cmds) > MaxAPDUs {
				t.Fatalf("running with %d commands", len(cmds))
			}
			for i, c := range cmds {
				if len(c) < 4 || !strings.EqualFold(hex.EncodeToString(c), resp.Commands[i]) {
					t.Fatalf("command %d: %X", i, c)
				}
			}
		} else if len(cmds) != 0 {
			t.Fatalf("commands in a finished session")
		}
	})
}
