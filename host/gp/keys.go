package gp

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	gpwire "github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
)

// CardIdentity is what a KeySource learns about the card before the
// secure channel is authenticated: enough to find or derive its keys.
type CardIdentity struct {
	// SD is the AID of the security domain the channel is opened with.
	SD []byte
	// KDD is the key diversification data from the INITIALIZE UPDATE
	// response (Amd D §7.1.1.1 Table 7-2): usually derived from the card's
	// serial number.
	KDD [scp03.KDDLen]byte
	// KeyVersion is the key version number the card chose.
	KeyVersion byte
}

// KeySource supplies a card's static SCP03 keys (Key-ENC, Key-MAC,
// Key-DEK) once the card has identified itself. The implementations here
// keep keys in memory; an HSM-backed source implements the same method.
type KeySource interface {
	StaticKeys(ctx context.Context, card CardIdentity) (scp03.StaticKeys, error)
}

// ErrKeys reports a key source that cannot supply keys, or key material
// that is malformed. Messages never contain key bytes.
var ErrKeys = errors.New("gp: keys")

// staticSource is a fixed key set, the same for every card.
type staticSource struct{ keys scp03.StaticKeys }

// Static returns a KeySource that answers the same key set for every card.
// The keys are copied.
func Static(keys scp03.StaticKeys) KeySource {
	return staticSource{keys: copyKeys(keys)}
}

// SingleKey returns a KeySource that uses one AES key as Key-ENC, Key-MAC
// and Key-DEK, the usual setup of development cards.
func SingleKey(key scp03.Key) KeySource {
	return Static(scp03.StaticKeys{ENC: key, MAC: key, DEK: key})
}

// TestKeys returns a KeySource with the well-known GlobalPlatform test key
// 404142…4F (KCV 504A77) as all three keys. Anybody can authenticate to a
// card that still has it; callers must warn the user (the CLI requires
// --test-key and prints a warning).
func TestKeys() KeySource { return SingleKey(gpwire.TestKey()) }

func (s staticSource) StaticKeys(context.Context, CardIdentity) (scp03.StaticKeys, error) {
	if err := s.keys.Check(); err != nil {
		return scp03.StaticKeys{}, fmt.Errorf("%w: %w", ErrKeys, err)
	}
	return copyKeys(s.keys), nil
}

func (s staticSource) String() string { return "static keys " + s.keys.String() }

func copyKeys(k scp03.StaticKeys) scp03.StaticKeys {
	return scp03.StaticKeys{
		ENC: append(scp03.Key{}, k.ENC...),
		MAC: append(scp03.Key{}, k.MAC...),
		DEK: append(scp03.Key{}, k.DEK...),
	}
}

// Derivation constants of valuechip's key diversification, the last byte
// of the SP 800-108 label (see Diversify). They are distinct from the
// Amd D Table 4-1 constants ('00'-'07'), so a diversified key is never
// the output of an SCP03 session derivation.
const (
	DiversifyENC byte = 0x11
	DiversifyMAC byte = 0x12
	DiversifyDEK byte = 0x13
)

// Diversify derives a card's static keys from master keys and the card's
// key diversification data, valuechip's rule (docs/gp.md):
//
//	Key-ENC = KDF(master ENC, '11', L, KDD)
//	Key-MAC = KDF(master MAC, '12', L, KDD)
//	Key-DEK = KDF(master DEK, '13', L, KDD)
//
// where KDF is the SCP03 data derivation (Amd D §4.1.5: NIST SP 800-108 KDF
// in counter mode with AES-CMAC; input = 11 × '00' || constant || '00' ||
// L (2 bytes) || counter (1 byte) || KDD), L the master key length in bits
// (128, 192 or 256), so each card key has its master's length.
func Diversify(master scp03.StaticKeys, kdd []byte) (scp03.StaticKeys, error) {
	if err := master.Check(); err != nil {
		return scp03.StaticKeys{}, fmt.Errorf("%w: master keys: %w", ErrKeys, err)
	}
	if len(kdd) != scp03.KDDLen {
		return scp03.StaticKeys{}, fmt.Errorf("%w: diversification data of %d bytes, want %d", ErrKeys, len(kdd), scp03.KDDLen)
	}
	var out scp03.StaticKeys
	for _, d := range []struct {
		dst    *scp03.Key
		master scp03.Key
		c      byte
	}{{&out.ENC, master.ENC, DiversifyENC}, {&out.MAC, master.MAC, DiversifyMAC}, {&out.DEK, master.DEK, DiversifyDEK}} {
		k, err := scp03.DeriveData(d.master, d.c, kdd, 8*len(d.master))
		if err != nil {
			return scp03.StaticKeys{}, fmt.Errorf("%w: diversification: %w", ErrKeys, err)
		}
		*d.dst = k
	}
	return out, nil
}

// diversified derives each card's keys from master keys and its KDD.
type diversified struct{ master scp03.StaticKeys }

// Diversified returns a KeySource that derives each card's keys from the
// master keys with Diversify. Use the same master for all three to
// diversify from one master key.
func Diversified(master scp03.StaticKeys) KeySource {
	return diversified{master: copyKeys(master)}
}

func (d diversified) StaticKeys(_ context.Context, card CardIdentity) (scp03.StaticKeys, error) {
	return Diversify(d.master, card.KDD[:])
}

func (d diversified) String() string { return "keys diversified from master " + d.master.String() }

// KeyFile is the content of a key file (JSON). Exactly one of the key
// forms is allowed:
//
//	{"enc": "HEX", "mac": "HEX", "dek": "HEX", "kvn": 48}
//	{"key": "HEX", "kvn": "30"}
//	{"master": "HEX", "diversify": "kdd"}
//	{"master_enc": "HEX", "master_mac": "HEX", "master_dek": "HEX", "diversify": "kdd"}
//
// kvn, optional, is the key version to ask for: a JSON number (decimal)
// or a string (hex). diversify names the rule; "kdd" (see Diversify) is
// the only one and the default when a master key is given.
type KeyFile struct {
	Keys KeySource
	// KeyVersion is the kvn field, 0 when absent.
	KeyVersion byte
}

type keyFileJSON struct {
	ENC       string          `json:"enc"`
	MAC       string          `json:"mac"`
	DEK       string          `json:"dek"`
	Key       string          `json:"key"`
	Master    string          `json:"master"`
	MasterENC string          `json:"master_enc"`
	MasterMAC string          `json:"master_mac"`
	MasterDEK string          `json:"master_dek"`
	Diversify string          `json:"diversify"`
	KVN       json.RawMessage `json:"kvn"`
}

// LoadKeyFile reads a key file. Errors name the file and the field, never
// a key value.
func LoadKeyFile(path string) (KeyFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return KeyFile{}, fmt.Errorf("%w: %w", ErrKeys, err)
	}
	defer f.Close()
	kf, err := ReadKeyFile(f)
	if err != nil {
		return KeyFile{}, fmt.Errorf("key file %s: %w", path, err)
	}
	return kf, nil
}

// ReadKeyFile parses key file JSON from r (see KeyFile).
func ReadKeyFile(r io.Reader) (KeyFile, error) {
	var j keyFileJSON
	dec := json.NewDecoder(io.LimitReader(r, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		// Syntax errors carry an offset, type errors a field name: neither
		// quotes the value.
		return KeyFile{}, fmt.Errorf("%w: not a key file: %w", ErrKeys, err)
	}
	var kf KeyFile
	if len(j.KVN) > 0 {
		kvn, err := parseKVN(j.KVN)
		if err != nil {
			return KeyFile{}, err
		}
		kf.KeyVersion = kvn
	}
	forms := 0
	for _, set := range []bool{j.ENC != "" || j.MAC != "" || j.DEK != "", j.Key != "", j.Master != "", j.MasterENC != "" || j.MasterMAC != "" || j.MasterDEK != ""} {
		if set {
			forms++
		}
	}
	if forms != 1 {
		return KeyFile{}, fmt.Errorf("%w: give exactly one of enc/mac/dek, key, master, or master_enc/master_mac/master_dek", ErrKeys)
	}
	if j.Diversify != "" && j.Diversify != "kdd" {
		return KeyFile{}, fmt.Errorf("%w: diversify %q: the only rule is \"kdd\"", ErrKeys, j.Diversify)
	}
	if j.Diversify != "" && j.Master == "" && j.MasterENC == "" && j.MasterMAC == "" && j.MasterDEK == "" {
		return KeyFile{}, fmt.Errorf("%w: diversify needs master keys", ErrKeys)
	}
	var err error
	switch {
	case j.Key != "":
		var k scp03.Key
		if k, err = ParseKey("key", j.Key); err == nil {
			kf.Keys = SingleKey(k)
		}
	case j.Master != "":
		var k scp03.Key
		if k, err = ParseKey("master", j.Master); err == nil {
			kf.Keys = Diversified(scp03.StaticKeys{ENC: k, MAC: k, DEK: k})
		}
	case j.ENC != "" || j.MAC != "" || j.DEK != "":
		var keys scp03.StaticKeys
		if keys, err = parseKeySet("", j.ENC, j.MAC, j.DEK); err == nil {
			kf.Keys = Static(keys)
		}
	default:
		var keys scp03.StaticKeys
		if keys, err = parseKeySet("master_", j.MasterENC, j.MasterMAC, j.MasterDEK); err == nil {
			kf.Keys = Diversified(keys)
		}
	}
	if err != nil {
		return KeyFile{}, err
	}
	return kf, nil
}

func parseKVN(raw json.RawMessage) (byte, error) {
	var n int
	if err := json.Unmarshal(raw, &n); err == nil {
		if n < 0 || n > 0x7F {
			return 0, fmt.Errorf("%w: kvn %d outside 0-127", ErrKeys, n)
		}
		return byte(n), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return 0, fmt.Errorf("%w: kvn must be a number or a hex string", ErrKeys)
	}
	v, err := strconv.ParseUint(s, 16, 8)
	if err != nil || v > 0x7F {
		return 0, fmt.Errorf("%w: kvn %q is not a hex byte 00-7F", ErrKeys, s)
	}
	return byte(v), nil
}

func parseKeySet(prefix, enc, mac, dek string) (scp03.StaticKeys, error) {
	var keys scp03.StaticKeys
	var err error
	if keys.ENC, err = ParseKey(prefix+"enc", enc); err != nil {
		return keys, err
	}
	if keys.MAC, err = ParseKey(prefix+"mac", mac); err != nil {
		return keys, err
	}
	if keys.DEK, err = ParseKey(prefix+"dek", dek); err != nil {
		return keys, err
	}
	if err := keys.Check(); err != nil {
		return scp03.StaticKeys{}, fmt.Errorf("%w: %s keys: %w", ErrKeys, strings.TrimSuffix(prefix, "_"), err)
	}
	return keys, nil
}

// ParseKey decodes an AES key written in hex (spaces and colons allowed).
// Its errors name the key and its length, never its content: hex.Decode's
// own errors quote the offending character.
func ParseKey(name, s string) (scp03.Key, error) {
	clean := strings.Map(func(r rune) rune {
		switch r {
		case ' ', ':', '\t', '\n', '\r':
			return -1
		}
		return r
	}, s)
	if clean == "" {
		return nil, fmt.Errorf("%w: %s key missing", ErrKeys, name)
	}
	k := make(scp03.Key, hex.DecodedLen(len(clean)))
	if _, err := hex.Decode(k, []byte(clean)); err != nil || len(clean)%2 != 0 {
		return nil, fmt.Errorf("%w: %s key is not hex (%d characters)", ErrKeys, name, len(clean))
	}
	if err := k.Check(); err != nil {
		return nil, fmt.Errorf("%w: %s key of %d bytes, want 16, 24 or 32", ErrKeys, name, len(k))
	}
	return k, nil
}

// Environment variables read by FromEnv.
const (
	EnvKey       = "VALUECHIP_GP_KEY"
	EnvKeyENC    = "VALUECHIP_GP_KEY_ENC"
	EnvKeyMAC    = "VALUECHIP_GP_KEY_MAC"
	EnvKeyDEK    = "VALUECHIP_GP_KEY_DEK"
	EnvMasterKey = "VALUECHIP_GP_MASTER_KEY"
)

// FromEnv builds a KeySource from the environment: VALUECHIP_GP_KEY (one
// key for all three), VALUECHIP_GP_KEY_ENC/_MAC/_DEK (all three), or
// VALUECHIP_GP_MASTER_KEY (diversified by KDD). It reports false when none
// is set, and an error when more than one form is set or a value is
// malformed. getenv is os.Getenv outside tests.
func FromEnv(getenv func(string) string) (KeySource, bool, error) {
	one, master := getenv(EnvKey), getenv(EnvMasterKey)
	enc, mac, dek := getenv(EnvKeyENC), getenv(EnvKeyMAC), getenv(EnvKeyDEK)
	split := enc != "" || mac != "" || dek != ""
	n := 0
	for _, set := range []bool{one != "", master != "", split} {
		if set {
			n++
		}
	}
	switch {
	case n == 0:
		return nil, false, nil
	case n > 1:
		return nil, false, fmt.Errorf("%w: set only one of %s, %s or %s/_MAC/_DEK", ErrKeys, EnvKey, EnvMasterKey, EnvKeyENC)
	case one != "":
		k, err := ParseKey(EnvKey, one)
		if err != nil {
			return nil, false, err
		}
		return SingleKey(k), true, nil
	case master != "":
		k, err := ParseKey(EnvMasterKey, master)
		if err != nil {
			return nil, false, err
		}
		return Diversified(scp03.StaticKeys{ENC: k, MAC: k, DEK: k}), true, nil
	}
	keys, err := parseKeySet("", enc, mac, dek)
	if err != nil {
		return nil, false, fmt.Errorf("%s/_MAC/_DEK: %w", EnvKeyENC, err)
	}
	return Static(keys), true, nil
}
