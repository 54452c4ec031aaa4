package keystore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/internal/atomicfile"
)

// Keyring errors. Match with errors.Is.
var (
	// ErrWrongKEK: the keyring was sealed under another KEK. It also
	// matches ErrUnseal.
	ErrWrongKEK = errors.New("the KEK does not open this keyring")
	// ErrKeyring: the keyring file is missing, malformed or altered, or
	// Init would overwrite one.
	ErrKeyring = errors.New("keystore: keyring")
)

// KeyringFormat identifies a keyring file and its layout version.
const KeyringFormat = "valuechip-keyring/1"

// Entry labels. The sealing label of an entry is "keyring/" + its label:
// the "keyring/" prefix is reserved, so a blob the server seals for its
// database can never be taken for a keyring entry or the other way round.
const (
	LabelLoad           = "master/load"
	LabelDebit          = "master/debit"
	LabelTC             = "master/tc"
	LabelCardManagerENC = "cardmanager/enc"
	LabelCardManagerMAC = "cardmanager/mac"
	LabelCardManagerDEK = "cardmanager/dek"

	reservedPrefix = "keyring/"
)

// entryNames describe the entries, in file order.
var entryNames = []struct{ label, name string }{
	{LabelLoad, "MK_LOAD"},
	{LabelDebit, "MK_DEBIT"},
	{LabelTC, "MK_TC"},
	{LabelCardManagerENC, "card manager master Key-ENC"},
	{LabelCardManagerMAC, "card manager master Key-MAC"},
	{LabelCardManagerDEK, "card manager master Key-DEK"},
}

// InitOptions choose the keys of a new keyring.
type InitOptions struct {
	// DevMasters puts the public development keys in the keyring instead
	// of fresh random ones: the issuer masters of docs/purse.md §10 and
	// the GlobalPlatform test key (KVN 01) as card-manager master. Print
	// DevWarning.
	DevMasters bool
	// Force replaces an existing keyring file; its keys are lost.
	Force bool
	// MasterVersion is the key version of fresh issuer masters; 0 means
	// 01.
	MasterVersion byte
	// CardManagerVersion is the SCP03 key version (01..7F) of a fresh
	// card-manager master; 0 means 30.
	CardManagerVersion byte
	// KeyLen is the length of fresh keys in bytes: 16 (the default), 24
	// or 32.
	KeyLen int
}

// KeyInfo describes a keyring entry without its key.
type KeyInfo struct {
	Label   string // e.g. "master/load"
	Name    string // e.g. "MK_LOAD"
	Version byte
	Bits    int
	KCV     [3]byte
}

func (i KeyInfo) String() string {
	return fmt.Sprintf("%s (%s) KVN %02X AES-%d KCV %X", i.Label, i.Name, i.Version, i.Bits, i.KCV)
}

// Keyring is the file-backed Source: every key sealed under the KEK in a
// JSON file, decrypted into memory by OpenKeyring. It is safe for
// concurrent use; its methods return copies the caller may wipe.
type Keyring struct {
	path    string
	kekKCV  [3]byte
	dev     bool
	created time.Time
	sealer  Sealer
	masters purse.Keys
	cm      scp03.StaticKeys
	cmVer   byte
	infos   []KeyInfo
}

var _ Source = (*Keyring)(nil)

// keyringFile is the JSON layout (docs/keys.md §3).
type keyringFile struct {
	Format      string      `json:"format"`
	KEKKCV      string      `json:"kek_kcv"`
	Development bool        `json:"development,omitempty"`
	Created     string      `json:"created,omitempty"`
	Keys        []entryJSON `json:"keys"`
}

type entryJSON struct {
	Label   string `json:"label"`
	Version string `json:"version"` // hex byte
	Bits    int    `json:"bits"`
	KCV     string `json:"kcv"`
	Sealed  string `json:"sealed"` // base64: version || key, sealed under "keyring/"+label
}

// Init creates a keyring file at path (mode 0600, written atomically) with
// fresh random keys from crypto/rand, or the development keys with
// opt.DevMasters, all sealed under kek. It refuses to replace an existing
// file unless opt.Force.
func Init(path string, kek KEK, opt InitOptions) (*Keyring, error) {
	if !kek.valid() {
		return nil, fmt.Errorf("%w: the zero KEK", ErrBadKEK)
	}
	if path == "" {
		return nil, fmt.Errorf("%w: no keyring path", ErrKeyring)
	}
	if _, err := os.Lstat(path); err == nil && !opt.Force {
		return nil, fmt.Errorf("%w: %s: %w; refusing to replace it, its keys would be lost", ErrKeyring, path, fs.ErrExist)
	}
	masters, cm, cmVer, err := newKeys(opt)
	if err != nil {
		return nil, err
	}
	defer wipeStatic(cm)
	defer wipeMasters(masters)
	return writeKeyring(path, kek, keyringFile{
		Development: opt.DevMasters,
		Created:     time.Now().UTC().Format(time.RFC3339),
	}, masters, cm, cmVer)
}

// Rekey reseals the keyring at path under newKEK (KEK rotation,
// docs/keys.md §4): it opens it with oldKEK and replaces the file
// atomically with the same keys, versions and creation time sealed under
// newKEK. Blobs sealed for the database stay under oldKEK until resealed;
// open the new keyring with OpenKeyring(path, newKEK, oldKEK) meanwhile.
func Rekey(path string, oldKEK, newKEK KEK) (*Keyring, error) {
	if !newKEK.valid() {
		return nil, fmt.Errorf("%w: the zero KEK", ErrBadKEK)
	}
	r, err := OpenKeyring(path, oldKEK)
	if err != nil {
		return nil, err
	}
	defer wipeStatic(r.cm)
	defer wipeMasters(r.masters)
	f := keyringFile{Development: r.dev}
	if !r.created.IsZero() {
		f.Created = r.created.Format(time.RFC3339)
	}
	return writeKeyring(path, newKEK, f, r.masters, r.cm, r.cmVer)
}

// writeKeyring seals the keys under kek into f and writes it to path.
func writeKeyring(path string, kek KEK, f keyringFile, masters purse.Keys, cm scp03.StaticKeys, cmVer byte) (*Keyring, error) {
	sealer, err := NewSealer(kek)
	if err != nil {
		return nil, err
	}
	f.Format = KeyringFormat
	f.KEKKCV = fmt.Sprintf("%X", kek.KCV())
	f.Keys = nil
	for _, e := range []struct {
		label string
		ver   byte
		key   scp03.Key
	}{
		{LabelLoad, masters.Load.Version, masters.Load.Key},
		{LabelDebit, masters.Debit.Version, masters.Debit.Key},
		{LabelTC, masters.TC.Version, masters.TC.Key},
		{LabelCardManagerENC, cmVer, cm.ENC},
		{LabelCardManagerMAC, cmVer, cm.MAC},
		{LabelCardManagerDEK, cmVer, cm.DEK},
	} {
		kcv, err := e.key.KCV()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrKeyring, e.label, err)
		}
		plain := append([]byte{e.ver}, e.key...)
		blob, err := sealer.Seal(reservedPrefix+e.label, plain)
		clear(plain)
		if err != nil {
			return nil, err
		}
		f.Keys = append(f.Keys, entryJSON{
			Label:   e.label,
			Version: fmt.Sprintf("%02X", e.ver),
			Bits:    8 * len(e.key),
			KCV:     fmt.Sprintf("%X", kcv),
			Sealed:  base64.StdEncoding.EncodeToString(blob),
		})
	}
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyring, err)
	}
	data = append(data, '\n')
	// atomicfile writes through os.CreateTemp, which creates mode 0600.
	if err := atomicfile.Write(path, data); err != nil {
		return nil, fmt.Errorf("%w: writing %s: %w", ErrKeyring, path, err)
	}
	// Reading back what was written checks the file as OpenKeyring will.
	return parseKeyring(path, data, kek)
}

func newKeys(opt InitOptions) (purse.Keys, scp03.StaticKeys, byte, error) {
	if opt.DevMasters {
		if opt.MasterVersion != 0 || opt.CardManagerVersion != 0 || opt.KeyLen != 0 {
			return purse.Keys{}, scp03.StaticKeys{}, 0, fmt.Errorf("%w: the development keys have fixed versions and lengths", ErrKeyring)
		}
		return devMasters(), devCardManager(), DevCardManagerVersion, nil
	}
	n := opt.KeyLen
	if n == 0 {
		n = 16
	}
	if n != 16 && n != 24 && n != 32 {
		return purse.Keys{}, scp03.StaticKeys{}, 0, fmt.Errorf("%w: key length %d bytes, want 16, 24 or 32", ErrKeyring, n)
	}
	mv := opt.MasterVersion
	if mv == 0 {
		mv = 1
	}
	cv := opt.CardManagerVersion
	if cv == 0 {
		cv = DefaultCardManagerVersion
	}
	if cv > 0x7F {
		return purse.Keys{}, scp03.StaticKeys{}, 0, fmt.Errorf("%w: card-manager key version %02X outside 01..7F (docs/cardmanager.md)", ErrKeyring, cv)
	}
	fresh := func() scp03.Key {
		k := make(scp03.Key, n)
		_, _ = rand.Read(k) // crypto/rand.Read never fails (Go 1.24+)
		return k
	}
	m := purse.Keys{
		Load:  purse.VersionedKey{Version: mv, Key: fresh()},
		Debit: purse.VersionedKey{Version: mv, Key: fresh()},
		TC:    purse.VersionedKey{Version: mv, Key: fresh()},
	}
	return m, scp03.StaticKeys{ENC: fresh(), MAC: fresh(), DEK: fresh()}, cv, nil
}

// maxKeyringSize bounds what OpenKeyring reads: a keyring is a few KB.
const maxKeyringSize = 1 << 20

// OpenKeyring reads the keyring at path and unseals every key with kek.
// A keyring sealed under another KEK fails with ErrWrongKEK; an altered
// or malformed one with ErrKeyring. The keyring's Open also accepts blobs
// sealed under the previous KEKs, during a KEK rotation (docs/keys.md §4);
// Seal always uses kek.
func OpenKeyring(path string, kek KEK, previous ...KEK) (*Keyring, error) {
	if !kek.valid() {
		return nil, fmt.Errorf("%w: the zero KEK", ErrBadKEK)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeyring, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyringSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrKeyring, path, err)
	}
	if len(data) > maxKeyringSize {
		return nil, fmt.Errorf("%w: %s: larger than %d bytes, not a keyring", ErrKeyring, path, maxKeyringSize)
	}
	return parseKeyring(path, data, kek, previous...)
}

// parseKeyring decodes and unseals a keyring file's content. Errors name
// the file and the entry, never key content.
func parseKeyring(path string, data []byte, kek KEK, previous ...KEK) (*Keyring, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrKeyring, path, fmt.Sprintf(format, a...))
	}
	var f keyringFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		// Syntax errors carry an offset, type errors a field name.
		return nil, fmt.Errorf("%w: %s: not a keyring file: %w", ErrKeyring, path, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail("data after the keyring object")
	}
	if f.Format != KeyringFormat {
		return nil, fail("format %q, want %q", f.Format, KeyringFormat)
	}
	want, err := parseKCV(f.KEKKCV)
	if err != nil {
		return nil, fail("kek_kcv: %v", err)
	}
	if got := kek.KCV(); got != want {
		return nil, fmt.Errorf("%w: %s is sealed under the KEK with KCV %X, the KEK given has KCV %X: %w", ErrWrongKEK, path, want, got, ErrUnseal)
	}
	// Entries are sealed under kek alone; previous KEKs only open
	// database blobs not yet resealed.
	entrySealer, err := NewSealer(kek)
	if err != nil {
		return nil, err
	}
	sealer, err := NewSealer(kek, previous...)
	if err != nil {
		return nil, err
	}
	r := &Keyring{path: path, kekKCV: want, dev: f.Development, sealer: sealer}
	if f.Created != "" {
		if r.created, err = time.Parse(time.RFC3339, f.Created); err != nil {
			return nil, fail("created %q is not an RFC 3339 time", f.Created)
		}
	}
	got := map[string]purse.VersionedKey{}
	for i, e := range f.Keys {
		name := ""
		for _, n := range entryNames {
			if n.label == e.Label {
				name = n.name
			}
		}
		if name == "" {
			return nil, fail("entry %d: unknown label %q", i, e.Label)
		}
		if _, dup := got[e.Label]; dup {
			return nil, fail("entry %q twice", e.Label)
		}
		k, info, err := openEntry(entrySealer, e)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: entry %q: %w", ErrKeyring, path, e.Label, err)
		}
		info.Name = name
		got[e.Label] = k
		r.infos = append(r.infos, info)
	}
	for _, n := range entryNames {
		if _, ok := got[n.label]; !ok {
			return nil, fail("entry %q missing", n.label)
		}
	}
	r.masters = purse.Keys{Load: got[LabelLoad], Debit: got[LabelDebit], TC: got[LabelTC]}
	if err := r.masters.Check(); err != nil {
		return nil, fail("issuer masters: %v", err)
	}
	enc, mac, dek := got[LabelCardManagerENC], got[LabelCardManagerMAC], got[LabelCardManagerDEK]
	if enc.Version != mac.Version || enc.Version != dek.Version {
		return nil, fail("card-manager keys of versions %02X/%02X/%02X, want one version", enc.Version, mac.Version, dek.Version)
	}
	if enc.Version == 0 || enc.Version > 0x7F {
		return nil, fail("card-manager key version %02X outside 01..7F", enc.Version)
	}
	r.cm, r.cmVer = scp03.StaticKeys{ENC: enc.Key, MAC: mac.Key, DEK: dek.Key}, enc.Version
	if err := r.cm.Check(); err != nil {
		return nil, fail("card-manager master: %v", err)
	}
	return r, nil
}

// openEntry unseals one entry and checks it against its listed version,
// length and KCV.
func openEntry(s Sealer, e entryJSON) (purse.VersionedKey, KeyInfo, error) {
	info := KeyInfo{Label: e.Label, Bits: e.Bits}
	v, err := strconv.ParseUint(e.Version, 16, 8)
	if err != nil || len(e.Version) != 2 {
		return purse.VersionedKey{}, info, fmt.Errorf("version %q is not a hex byte", e.Version)
	}
	info.Version = byte(v)
	if e.Bits != 128 && e.Bits != 192 && e.Bits != 256 {
		return purse.VersionedKey{}, info, fmt.Errorf("bits %d, want 128, 192 or 256", e.Bits)
	}
	if info.KCV, err = parseKCV(e.KCV); err != nil {
		return purse.VersionedKey{}, info, fmt.Errorf("kcv: %w", err)
	}
	blob, err := base64.StdEncoding.DecodeString(e.Sealed)
	if err != nil {
		return purse.VersionedKey{}, info, errors.New("sealed is not base64")
	}
	plain, err := s.Open(reservedPrefix+e.Label, blob)
	if err != nil {
		return purse.VersionedKey{}, info, fmt.Errorf("does not open (altered or damaged): %w", err)
	}
	if len(plain) != 1+e.Bits/8 || plain[0] != info.Version {
		clear(plain)
		return purse.VersionedKey{}, info, errors.New("sealed key differs from its listed version or length")
	}
	k := purse.VersionedKey{Version: plain[0], Key: append(scp03.Key(nil), plain[1:]...)}
	clear(plain)
	if kcv, err := k.Key.KCV(); err != nil || kcv != info.KCV {
		k.Key.Wipe()
		return purse.VersionedKey{}, info, errors.New("sealed key does not match its listed KCV")
	}
	return k, info, nil
}

func parseKCV(s string) ([3]byte, error) {
	var kcv [3]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 3 {
		return kcv, fmt.Errorf("%q is not 6 hex digits", s)
	}
	copy(kcv[:], b)
	return kcv, nil
}

// Masters returns a copy of the issuer master keys.
func (r *Keyring) Masters(context.Context) (purse.Keys, error) {
	m := r.masters
	for _, k := range []*purse.VersionedKey{&m.Load, &m.Debit, &m.TC} {
		k.Key = append(scp03.Key(nil), k.Key...)
	}
	return m, nil
}

// CardManagerMaster returns a copy of the card-manager master key set and
// its key version.
func (r *Keyring) CardManagerMaster(context.Context) (scp03.StaticKeys, byte, error) {
	return scp03.StaticKeys{
		ENC: append(scp03.Key(nil), r.cm.ENC...),
		MAC: append(scp03.Key(nil), r.cm.MAC...),
		DEK: append(scp03.Key(nil), r.cm.DEK...),
	}, r.cmVer, nil
}

// Seal seals a secret under the keyring's KEK. Labels starting with
// "keyring/" are reserved for the keyring's own entries.
func (r *Keyring) Seal(label string, plain []byte) ([]byte, error) {
	if strings.HasPrefix(label, reservedPrefix) {
		return nil, fmt.Errorf("keystore: seal: label prefix %q is reserved for the keyring", reservedPrefix)
	}
	return r.sealer.Seal(label, plain)
}

// Open opens a blob sealed by Seal under the same label and KEK.
func (r *Keyring) Open(label string, sealed []byte) ([]byte, error) {
	if strings.HasPrefix(label, reservedPrefix) {
		return nil, fmt.Errorf("%w %q: label prefix %q is reserved for the keyring", ErrUnseal, label, reservedPrefix)
	}
	return r.sealer.Open(label, sealed)
}

// Development reports whether the keyring holds the public development
// keys; callers print DevWarning when they use it.
func (r *Keyring) Development() bool { return r.dev }

// Path is the keyring's file.
func (r *Keyring) Path() string { return r.path }

// KEKKCV is the KCV of the KEK the keyring is sealed under.
func (r *Keyring) KEKKCV() [3]byte { return r.kekKCV }

// Created is when Init wrote the keyring (zero if not recorded).
func (r *Keyring) Created() time.Time { return r.created }

// Keys describes the entries, in file order: labels, versions, KCVs.
func (r *Keyring) Keys() []KeyInfo { return append([]KeyInfo(nil), r.infos...) }

// String shows the path, the KEK's KCV and the keys' KCVs.
func (r *Keyring) String() string {
	if r == nil {
		return "keyring(nil)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "keyring %s (KEK KCV %X", r.path, r.kekKCV)
	if r.dev {
		b.WriteString(", DEVELOPMENT keys")
	}
	fmt.Fprintf(&b, "): masters %s, card manager KVN %02X %s", r.masters, r.cmVer, r.cm)
	return b.String()
}

// GoString masks the keys for %#v.
func (r *Keyring) GoString() string { return "keystore.Keyring(" + r.String() + ")" }

// Format masks the keys for every fmt verb.
func (r *Keyring) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(r.GoString()))
		return
	}
	_, _ = f.Write([]byte(r.String()))
}

// LogValue masks the keys in log/slog output.
func (r *Keyring) LogValue() slog.Value { return slog.StringValue(r.String()) }

func wipeMasters(m purse.Keys) {
	m.Load.Key.Wipe()
	m.Debit.Key.Wipe()
	m.TC.Key.Wipe()
}
