// Package profile makes new emulated chips: what the factory puts on a card
// before it is issued (ATR, serial and CPLC, the issuer security domain
// with its keys, optionally the test applet), and the card image file that
// holds the chip from then on.
//
// Without a profile file a chip gets a random serial and the well-known
// GlobalPlatform test key set 404142…4F, like a developer sample card.
// Such a card must never hold value; Profile.TestKeys says so, and
// `valuechip emulate` warns.
package profile

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet"
	"github.com/valuechip/valuechip/applet/cardmanager"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/purse"
	"github.com/valuechip/valuechip/applet/testcard"
)

// ISDAID is the issuer security domain's AID (GPCS v2.3.1 Annex H.1.3).
var ISDAID = []byte{0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00}

// Modules are the implementations built into every chip this build makes.
func Modules() []applet.Module {
	return []applet.Module{cardmanager.Module, testcard.Module, purse.Module}
}

// Profile describes a new card.
type Profile struct {
	// ATR of the card; default testcard.DefaultATR.
	ATR []byte
	// Serial is the card's 8-byte serial number: it fills the CPLC IC
	// serial (last 4 bytes), the CIN and the SCP03 key diversification
	// data. Default: random.
	Serial []byte
	// ISD holds the issuer security domain's creation parameters; its
	// CPLC, CIN and KDD are derived from Serial when left empty. Default:
	// cardmanager.DefaultParams (the test key set).
	ISD *cardmanager.Params
	// ISDMaster, when set, replaces the ISD's key sets by one set
	// diversified from this SCP03 master by the chip's KDD, valuechip's
	// rule (docs/gp.md "Diversification", host/gp.Diversify): what an
	// issuer's factory does, so that its server derives each chip's keys
	// from the KDD the chip announces (docs/provision.md).
	ISDMaster *scp03.StaticKeys
	// ISDKeyVersion is the version of that key set; 0 means 01.
	ISDKeyVersion byte
	// TestApplet installs the test applet (testcard) next to the ISD.
	TestApplet bool
	// TestKeys reports that the ISD holds the public test key set.
	TestKeys bool
}

// Sample is a developer sample card: random serial, test keys, and the
// test applet installed.
func Sample() *Profile { return &Profile{TestApplet: true} }

// Empty is a chip as sold to a holder: the ISD only, waiting for the money
// server to install the purse.
func Empty() *Profile { return &Profile{} }

// Build makes a powered-off chip from the profile, filling in its defaults
// (random serial, test keys) so the caller can report them.
func Build(p *Profile, opts ...chip.Option) (*chip.Chip, error) {
	if err := p.fill(); err != nil {
		return nil, err
	}
	params, err := p.ISD.Bytes()
	if err != nil {
		return nil, err
	}
	c := chip.New(p.ATR, append([]chip.Option{chip.WithModules(Modules()...)}, opts...)...)
	f := c.Factory()
	isd := cardmanager.Module
	if err := f.AddLoadFile(applet.LoadFile{AID: cardmanager.LoadFileAID, Version: isd.Version, Modules: [][]byte{isd.AID}}); err != nil {
		return nil, err
	}
	if err := f.Install(cardmanager.LoadFileAID, isd.AID, ISDAID, cardmanager.DefaultPrivileges, params, true); err != nil {
		return nil, fmt.Errorf("profile: installing the ISD: %w", err)
	}
	if p.TestApplet {
		if err := f.AddLoadFile(applet.LoadFile{AID: testcard.PackageAID, Version: testcard.Module.Version, Modules: [][]byte{testcard.ModuleAID}, SecurityDomain: ISDAID}); err != nil {
			return nil, err
		}
		if err := f.Install(testcard.PackageAID, testcard.ModuleAID, testcard.AID, applet.Privileges{}, nil, true); err != nil {
			return nil, err
		}
	}
	// The card leaves the factory SECURED (GPCS v2.3.1 §5.1.1): ready for
	// the issuer's content management.
	if err := f.SetCardLifeCycle(applet.CardSecured); err != nil {
		return nil, err
	}
	return c, nil
}

func (p *Profile) fill() error {
	if p.ATR == nil {
		p.ATR = testcard.DefaultATR
	}
	if p.Serial == nil {
		p.Serial = make([]byte, 8)
		if _, err := rand.Read(p.Serial); err != nil {
			return err
		}
	}
	if len(p.Serial) != 8 {
		return fmt.Errorf("profile: serial must be 8 bytes, not %d", len(p.Serial))
	}
	if p.ISD == nil {
		d := cardmanager.DefaultParams()
		d.CPLC, d.CIN, d.KDD = nil, nil, nil
		p.ISD = &d
	}
	if p.ISD.CPLC == nil {
		cplc := cardmanager.DefaultParams().CPLC
		copy(cplc[12:16], p.Serial[4:]) // IC serial number (GPCS Table H-5)
		p.ISD.CPLC = cplc
	}
	if p.ISD.CIN == nil {
		p.ISD.CIN = append([]byte(nil), p.Serial...)
	}
	if p.ISD.KDD == nil {
		// KDD: 2 bytes of issuer data, the 8-byte serial (what the host
		// diversifies keys with, docs/gp.md).
		p.ISD.KDD = append([]byte{0x00, 0x00}, p.Serial...)
	}
	if p.ISDMaster != nil {
		keys, err := diversify(*p.ISDMaster, p.ISD.KDD)
		if err != nil {
			return fmt.Errorf("profile: ISD master: %w", err)
		}
		kvn := p.ISDKeyVersion
		if kvn == 0 {
			kvn = 1
		}
		p.ISD.KeySets = []scp03.KeySet{{Version: kvn, Keys: keys}}
	}
	for _, ks := range p.ISD.KeySets {
		for _, k := range [][]byte{ks.Keys.ENC, ks.Keys.MAC, ks.Keys.DEK} {
			p.TestKeys = p.TestKeys || bytes.Equal(k, cardmanager.TestKey)
		}
	}
	return nil
}

// diversify derives a chip's ISD keys from master keys and its KDD:
// KDF(master, c, L, KDD) with c = '11', '12', '13' for Key-ENC, Key-MAC,
// Key-DEK — the rule of docs/gp.md, which host/gp.Diversify implements on
// the host side (applet/ and host/ share only apdu/; host/provision's
// tests check the two agree).
func diversify(master scp03.StaticKeys, kdd []byte) (scp03.StaticKeys, error) {
	if err := master.Check(); err != nil {
		return scp03.StaticKeys{}, err
	}
	var out scp03.StaticKeys
	for _, d := range []struct {
		dst *scp03.Key
		m   scp03.Key
		c   byte
	}{{&out.ENC, master.ENC, 0x11}, {&out.MAC, master.MAC, 0x12}, {&out.DEK, master.DEK, 0x13}} {
		k, err := scp03.DeriveData(d.m, d.c, kdd, 8*len(d.m))
		if err != nil {
			return scp03.StaticKeys{}, err
		}
		*d.dst = k
	}
	return out, nil
}

// Open loads the chip image at path, or creates it from p when the file
// does not exist. created tells which happened.
func Open(path string, p *Profile, opts ...chip.Option) (c *chip.Chip, created bool, err error) {
	opts = append([]chip.Option{chip.WithModules(Modules()...)}, opts...)
	c, err = chip.Open(path, opts...)
	if err == nil {
		return c, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, false, err
	}
	c, err = Build(p, opts...)
	if err != nil {
		return nil, false, err
	}
	if err := c.SaveTo(path); err != nil {
		return nil, false, err
	}
	return c, true, nil
}

// File is a profile as a JSON file, for `valuechip emulate --profile`:
//
//	{"atr": "3B8580...", "serial": "0011223344556677",
//	 "keys": [{"kvn": 1, "enc": "hex", "mac": "hex", "dek": "hex"}],
//	 "test_applet": true, "empty": false}
//
// or, instead of "keys", "isd_master": "hex" (one AES key used as the
// ENC, MAC and DEK master) with "isd_kvn": n — see Profile.ISDMaster.
type File struct {
	ATR        string    `json:"atr,omitempty"`
	Serial     string    `json:"serial,omitempty"`
	Keys       []FileKey `json:"keys,omitempty"`
	ISDMaster  string    `json:"isd_master,omitempty"`
	ISDKVN     int       `json:"isd_kvn,omitempty"`
	TestApplet bool      `json:"test_applet,omitempty"`
}

// FileKey is one SCP03 key set of a profile file.
type FileKey struct {
	KVN int    `json:"kvn"`
	ENC string `json:"enc"`
	MAC string `json:"mac"`
	DEK string `json:"dek"`
}

// Load reads a profile file.
func Load(path string) (*Profile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	var f File
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("profile %s: %w", path, err)
	}
	return f.Profile()
}

// Profile turns the file's fields into a Profile.
func (f File) Profile() (*Profile, error) {
	p := &Profile{}
	var err error
	unhex := func(what, s string) []byte {
		if err != nil || s == "" {
			return nil
		}
		var b []byte
		b, err = hex.DecodeString(strings.ReplaceAll(s, " ", ""))
		if err != nil {
			err = fmt.Errorf("profile: %s: %w", what, err)
		}
		return b
	}
	p.ATR = unhex("atr", f.ATR)
	p.Serial = unhex("serial", f.Serial)
	p.TestApplet = f.TestApplet
	if len(f.Keys) > 0 {
		d := cardmanager.DefaultParams()
		d.CPLC, d.CIN, d.KDD, d.KeySets = nil, nil, nil, nil
		for i, k := range f.Keys {
			if k.KVN < 1 || k.KVN > 0x7F {
				return p, fmt.Errorf("profile: key set %d: KVN %d outside 1..127", i, k.KVN)
			}
			d.KeySets = append(d.KeySets, scp03.KeySet{Version: byte(k.KVN), Keys: scp03.StaticKeys{
				ENC: unhex("enc", k.ENC), MAC: unhex("mac", k.MAC), DEK: unhex("dek", k.DEK),
			}})
		}
		p.ISD = &d
	}
	if f.ISDMaster != "" {
		if len(f.Keys) > 0 {
			return p, errors.New("profile: give keys or isd_master, not both")
		}
		if f.ISDKVN < 0 || f.ISDKVN > 0x7F {
			return p, fmt.Errorf("profile: isd_kvn %d outside 1..127", f.ISDKVN)
		}
		m := scp03.Key(unhex("isd_master", f.ISDMaster))
		p.ISDMaster = &scp03.StaticKeys{ENC: m, MAC: m, DEK: m}
		p.ISDKeyVersion = byte(f.ISDKVN)
	}
	return p, err
}
