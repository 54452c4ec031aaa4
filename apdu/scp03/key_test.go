package scp03

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestKeyString(t *testing.T) {
	k := Key(mustHex(t, "404142434445464748494A4B4C4D4E4F"))
	if got := k.String(); got != "AES-128 key KCV 504A77" {
		t.Errorf("String = %q", got)
	}
	if got := fmt.Sprintf("%#v", k); got != "scp03.Key(AES-128 key KCV 504A77)" {
		t.Errorf("%%#v = %q", got)
	}
	for _, tc := range []struct {
		k    Key
		want string
	}{{nil, "no key"}, {make(Key, 15), "invalid key (15 bytes)"}, {make(Key, 32), "AES-256 key KCV "}} {
		if got := tc.k.String(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("String(%d bytes) = %q", len(tc.k), got)
		}
	}
	if !k.Equal(bytes.Clone(k)) || k.Equal(k[:15]) {
		t.Error("Equal")
	}
	c := Key(bytes.Clone(k))
	c.Wipe()
	if !bytes.Equal(c, make([]byte, 16)) {
		t.Error("Wipe")
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// No key, session key or MAC chaining value appears in fmt, slog or JSON
// output of any type of the package.
func TestSecretsNotPrinted(t *testing.T) {
	keys := testKeys(16, 0x11)
	h, c := pair(t, 16, LevelAll, 0x70, 0x11)
	// Re-derive the session keys the pair uses.
	sk, err := DeriveSessionKeys(keys, c.hc[:], c.cc[:])
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, h, c, testCommands()[2], testResponses()[1])
	var secrets [][]byte
	for _, k := range []Key{keys.ENC, keys.MAC, keys.DEK, sk.ENC, sk.MAC, sk.RMAC} {
		secrets = append(secrets, k)
	}
	secrets = append(secrets, bytes.Clone(c.session.chain[:]), bytes.Clone(h.session.chain[:]))

	ks := &KeySet{Version: 0x30, Keys: keys}
	values := []any{
		keys.ENC, []Key{keys.MAC}, keys, &keys, sk, &sk, ks, *ks,
		CardConfig{KeySets: []*KeySet{ks}}, HostConfig{Keys: keys},
		h, *h, c, *c, h.Session(), *c.Session(),
		map[string]Key{"k": keys.DEK},
		struct{ K StaticKeys }{keys},
	}
	var out strings.Builder
	for _, v := range values {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%q", "%d"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
		j, err := json.Marshal(v)
		if err == nil {
			out.Write(j)
		}
	}
	var logbuf bytes.Buffer
	for _, handler := range []slog.Handler{slog.NewTextHandler(&logbuf, nil), slog.NewJSONHandler(&logbuf, nil)} {
		l := slog.New(handler)
		l.Info("keys", "enc", keys.ENC, "set", keys, "session", sk, "host", h, "card", c, "s", h.Session())
	}
	out.Write(logbuf.Bytes())
	text := out.String()
	lower := strings.ToLower(text)
	for _, s := range secrets {
		if strings.Contains(lower, hex.EncodeToString(s[:6])) {
			t.Errorf("output leaks %X:\n%s", s, text)
		}
		if strings.Contains(text, string(s[:6])) {
			t.Errorf("output leaks raw bytes of %X", s)
		}
		dec := strings.Trim(fmt.Sprint([]byte(s[:4])), "[]")
		if strings.Contains(text, dec) {
			t.Errorf("output leaks %X in decimal (%s)", s, dec)
		}
	}
	if !strings.Contains(text, "AES-128 key KCV") {
		t.Error("masked form missing")
	}
}
