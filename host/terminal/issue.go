package terminal

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	gpwire "github.com/valuechip/valuechip/apdu/gp"
	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/apdu/scp03"
	hostgp "github.com/valuechip/valuechip/host/gp"
)

// DevMastersWarning is printed whenever DevMasters are used.
const DevMastersWarning = "warning: using the public development issuer master keys of docs/purse.md §10 (--dev-keys): anyone can compute every card key; never issue a purse that holds real value with them"

// DevMasters returns the public development issuer master keys of
// docs/purse.md §10.1 (wire.DevMasters).
func DevMasters() wire.Keys { return wire.DevMasters() }

// masterFile is the issuer key file: hex keys and hex key versions.
type masterFile struct {
	Load     string `json:"load"`
	Debit    string `json:"debit"`
	TC       string `json:"tc"`
	KVN      string `json:"kvn,omitempty"` // all three, default 01
	LoadKVN  string `json:"load_kvn,omitempty"`
	DebitKVN string `json:"debit_kvn,omitempty"`
	TCKVN    string `json:"tc_kvn,omitempty"`
}

// LoadMasters reads an issuer master key file: JSON
// {"load": HEX, "debit": HEX, "tc": HEX, "kvn": "01"} with optional
// per-key "load_kvn", "debit_kvn", "tc_kvn". Keep it readable only by
// its owner.
func LoadMasters(path string) (wire.Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return wire.Keys{}, fmt.Errorf("issuer key file: %w", err)
	}
	var f masterFile
	if err := json.Unmarshal(b, &f); err != nil {
		return wire.Keys{}, fmt.Errorf("issuer key file %s: %w", path, err)
	}
	kvn := func(name, specific string) (byte, error) {
		s := specific
		if s == "" {
			s = f.KVN
		}
		if s == "" {
			return 1, nil
		}
		v, err := strconv.ParseUint(s, 16, 8)
		if err != nil || v == 0 {
			return 0, fmt.Errorf("issuer key file %s: %s: key version %q is not hex 01..FF", path, name, s)
		}
		return byte(v), nil
	}
	var out wire.Keys
	for _, k := range []struct {
		name, hex, kvn string
		dst            *wire.VersionedKey
	}{{"load", f.Load, f.LoadKVN, &out.Load}, {"debit", f.Debit, f.DebitKVN, &out.Debit}, {"tc", f.TC, f.TCKVN, &out.TC}} {
		raw, err := hex.DecodeString(strings.ReplaceAll(k.hex, " ", ""))
		if err != nil || len(raw) == 0 {
			return wire.Keys{}, fmt.Errorf("issuer key file %s: %s: not a hex key", path, k.name)
		}
		k.dst.Key = raw
		if k.dst.Version, err = kvn(k.name, k.kvn); err != nil {
			return wire.Keys{}, err
		}
	}
	if err := out.Check(); err != nil {
		return wire.Keys{}, fmt.Errorf("issuer key file %s: %w", path, err)
	}
	return out, nil
}

// IssueParams describe one purse to issue.
type IssueParams struct {
	// Digest is the purse module's code digest, which the chip checks
	// when loading (the caller gets it from the build it trusts).
	Digest [32]byte
	// Version is the load file version; zero means 1.0.
	Version [2]byte
	// SkipLoad installs from a load file already on the card.
	SkipLoad bool
	// AID of the instance; nil means wire.AID().
	AID []byte

	CardID   wire.CardID
	Currency wire.Currency
	Limits   wire.Limits
	PIN      string
	PINTries byte // 0 means 3
	// Masters are the issuer master keys; the card's keys are
	// diversified from them by CardID (docs/purse.md §5.2).
	Masters wire.Keys
}

// Issue loads the purse load file through the open secure channel s,
// installs the instance and personalises it (docs/purse.md §2, §8):
// INSTALL [for load], LOAD, INSTALL [for install and make selectable],
// INSTALL [for personalization] and two STORE DATA blocks in DGI format.
// The session must use C-DECRYPTION (level 03 or 33, §8.2), since the key
// DGIs travel in clear inside it.
func Issue(ctx context.Context, s *hostgp.Session, p IssueParams) error {
	if s.Level()&scp03.LevelCDEC == 0 {
		return fmt.Errorf("issue: the secure channel is at level %02X; personalisation needs C-DECRYPTION (03 or 33, docs/purse.md §8.2)", byte(s.Level()))
	}
	aid := p.AID
	if aid == nil {
		aid = wire.AID()
	}
	if p.PINTries == 0 {
		p.PINTries = 3
	}
	pin, err := wire.EncodePIN(p.PIN)
	if err != nil {
		return fmt.Errorf("issue: %w", err)
	}
	keys, err := p.Masters.Diversify(p.CardID)
	if err != nil {
		return fmt.Errorf("issue: %w", err)
	}
	perso := wire.Personalization{CardID: p.CardID, Currency: p.Currency, Limits: p.Limits, Keys: keys, PIN: pin, PINTries: p.PINTries}
	dgis, err := perso.DGIs()
	if err != nil {
		return fmt.Errorf("issue: %w", err)
	}
	byTag := map[uint16]gpwire.DGI{}
	for _, d := range dgis {
		byTag[d.Tag] = d
	}
	// Block 0: identity, limits, PIN; block 1 (last): keys (§8, §10.2).
	b0, err := gpwire.EncodeDGIs(byTag[wire.DGICardID], byTag[wire.DGICurrency], byTag[wire.DGILimits], byTag[wire.DGIPIN])
	if err != nil {
		return fmt.Errorf("issue: %w", err)
	}
	b1, err := gpwire.EncodeDGIs(byTag[wire.DGILoadKey], byTag[wire.DGIDebitKey], byTag[wire.DGITCKey])
	if err != nil {
		return fmt.Errorf("issue: %w", err)
	}
	defer clear(b1)
	if !p.SkipLoad {
		if p.Digest == ([32]byte{}) {
			return errors.New("issue: the purse module digest is required to build the load file")
		}
		v := p.Version
		if v == ([2]byte{}) {
			v = [2]byte{1, 0}
		}
		lf, err := gpwire.BuildLoadFile(gpwire.Manifest{PackageAID: wire.PackageAID(), Version: v,
			Modules: []gpwire.ModuleRef{{AID: wire.ModuleAID(), Digest: p.Digest}}})
		if err != nil {
			return fmt.Errorf("issue: load file: %w", err)
		}
		if err := s.LoadAndInstall(ctx, lf, hostgp.LoadOptions{}, hostgp.InstallSpec{ModuleAID: wire.ModuleAID(), ApplicationAID: aid}); err != nil {
			return fmt.Errorf("issue: %w", err)
		}
	} else if err := s.Install(ctx, hostgp.InstallSpec{LoadFileAID: wire.PackageAID(), ModuleAID: wire.ModuleAID(), ApplicationAID: aid}); err != nil {
		return fmt.Errorf("issue: %w", err)
	}
	if err := s.StoreData(ctx, aid, hostgp.StoreOptions{Format: gpwire.StoreFormatDGI}, b0, b1); err != nil {
		return fmt.Errorf("issue: personalisation: %w", err)
	}
	return nil
}
