// Package gptest is a small in-process GlobalPlatform card for unit tests
// of host/gp and the CLI: an ISD with SCP03 (apdu/scp03.Card), GET DATA,
// GET STATUS with '6310' paging, INSTALL, LOAD of valuechip load files,
// DELETE, PUT KEY, STORE DATA and SET STATUS, keeping its registry in
// memory. It is a test fake, not the emulated card manager (applet/), and
// checks only what the host tests need.
//
// A Card is both a reader.Transceiver and, by its method set, an emulated
// card for reader/vpcd and reader/emu (ATR, PowerOn, PowerOff, Reset,
// Transmit).
package gptest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"errors"
	"sync"

	"github.com/valuechip/valuechip/apdu"
	gp "github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
)

// ATR is the fake's answer-to-reset (T=1, no historical bytes).
var ATR = []byte{0x3B, 0x80, 0x80, 0x01, 0x01}

// Config configures New.
type Config struct {
	// Keys is the initial key set, version KeyVersion (default '30').
	Keys       scp03.StaticKeys
	KeyVersion byte
	// KDD is the key diversification data (Amd D Table 7-2).
	KDD [scp03.KDDLen]byte
	// I is the SCP03 "i" parameter; default '70' (pseudo-random
	// challenge, R-MAC, R-ENC).
	I scp03.IParam
	// Modules are the built-in module digests by module AID; LOAD accepts
	// a manifest only if every module is here with its digest.
	Modules map[string][gp.DigestLen]byte
	// RequireDAP makes LOAD demand a DAP by the ISD, checked with DAPKey
	// (set by PUT KEY of an ECC key or here).
	RequireDAP bool
	DAPKey     *ecdsa.PublicKey
	// PageSize bounds GET STATUS response data (default 256); a smaller
	// value forces '6310' continuations.
	PageSize int
	// ChallengeAID, if set, is the AID the card derives pseudo-random
	// challenges over instead of the ISD's (a card quirk).
	ChallengeAID []byte
	// Chunk, when > 0, answers responses longer than Chunk data bytes
	// with 61xx and the rest through GET RESPONSE, as a T=0 card does.
	Chunk int
}

// Command is one command the card received: Raw as on the wire, Plain
// after secure messaging was removed (equal to Raw without a session).
type Command struct {
	Raw   []byte
	Plain apdu.Command
}

// Card is the fake GlobalPlatform card.
type Card struct {
	mu       sync.Mutex
	cfg      Config
	keySets  []*scp03.KeySet
	sc       *scp03.Card
	kvn      byte // key version of the open session
	life     byte
	apps     []gp.RegistryEntry
	files    []gp.RegistryEntry
	log      []Command
	pending  []byte // GET RESPONSE data
	pageAt   map[byte]int
	load     *pendingLoad
	persoAID []byte
	stored   map[string][][]byte
	dapKey   *ecdsa.PublicKey
	tamper   func(resp []byte) []byte
	dirty    bool // key sets changed: rebuild sc before the next handshake
}

type pendingLoad struct {
	aid, sd, hash []byte
	blocks        gp.BlockAssembler
}

// New returns a card in life cycle SECURED with one key set.
func New(cfg Config) (*Card, error) {
	if cfg.KeyVersion == 0 {
		cfg.KeyVersion = 0x30
	}
	if cfg.I == 0 {
		cfg.I = scp03.IPseudoRandom | scp03.IRMAC | scp03.IRENC
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 256
	}
	c := &Card{cfg: cfg, life: gp.CardSecured, stored: map[string][][]byte{}, dapKey: cfg.DAPKey}
	c.keySets = []*scp03.KeySet{{Version: cfg.KeyVersion, Keys: cfg.Keys}}
	if err := c.newSC(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Card) newSC() error {
	aid := gp.DefaultISDAID()
	if c.cfg.ChallengeAID != nil {
		aid = c.cfg.ChallengeAID
	}
	sc, err := scp03.NewCard(scp03.CardConfig{KeySets: c.keySets, KDD: c.cfg.KDD, I: c.cfg.I, AID: aid})
	if err != nil {
		return err
	}
	c.sc = sc
	return nil
}

// ATR implements the emulated card contract.
func (c *Card) ATR() []byte { return bytes.Clone(ATR) }

// PowerOn, PowerOff and Reset end the secure channel session.
func (c *Card) PowerOn()                                                 { c.Reset(false) }
func (c *Card) PowerOff()                                                { c.Reset(false) }
func (c *Card) Reset(bool)                                               { c.mu.Lock(); c.sc.Terminate(); c.pending = nil; c.mu.Unlock() }
func (c *Card) Transceive(_ context.Context, cmd []byte) ([]byte, error) { return c.Transmit(cmd), nil }

// Tamper sets a function applied to every response before it leaves the
// card (after secure messaging), nil to stop.
func (c *Card) Tamper(f func(resp []byte) []byte) { c.mu.Lock(); c.tamper = f; c.mu.Unlock() }

// Log returns the commands received so far (GET RESPONSE excluded).
func (c *Card) Log() []Command {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Command(nil), c.log...)
}

// ClearLog forgets the received commands.
func (c *Card) ClearLog() { c.mu.Lock(); c.log = nil; c.mu.Unlock() }

// Registry returns copies of the applications and load files.
func (c *Card) Registry() (apps, loadFiles []gp.RegistryEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]gp.RegistryEntry(nil), c.apps...), append([]gp.RegistryEntry(nil), c.files...)
}

// LifeCycle returns the card life cycle state.
func (c *Card) LifeCycle() byte { c.mu.Lock(); defer c.mu.Unlock(); return c.life }

// KeySets returns the card's key sets.
func (c *Card) KeySets() []scp03.KeySet {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]scp03.KeySet, len(c.keySets))
	for i, k := range c.keySets {
		out[i] = *k
	}
	return out
}

// Stored returns the STORE DATA blocks an application received (DGIs
// decrypted when P1 announced encryption).
func (c *Card) Stored(aid []byte) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stored[string(aid)]
}

// DAPKey returns the DAP verification key loaded by PUT KEY.
func (c *Card) DAPKey() *ecdsa.PublicKey { c.mu.Lock(); defer c.mu.Unlock(); return c.dapKey }

// Transmit processes one command APDU.
func (c *Card) Transmit(raw []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	resp := c.transmit(raw)
	if c.tamper != nil {
		resp = c.tamper(bytes.Clone(resp))
	}
	return resp
}

func (c *Card) transmit(raw []byte) []byte {
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		return apdu.Status(apdu.ErrWrongLength)
	}
	if cmd.INS == 0xC0 && cmd.CLA&0x80 == 0 { // GET RESPONSE
		return c.getResponse()
	}
	c.pending = nil
	switch {
	case cmd.INS == gp.INSSelect && cmd.CLA&0x80 == 0:
		c.log = append(c.log, Command{Raw: bytes.Clone(raw), Plain: cmd})
		c.sc.Terminate()
		_ = c.refreshSC()
		if len(cmd.Data) > 0 && !bytes.Equal(cmd.Data, gp.DefaultISDAID()) {
			return apdu.Status(apdu.ErrFileNotFound)
		}
		fci := append([]byte{0x6F, 0x0A, 0x84, 0x08}, gp.DefaultISDAID()...)
		return c.chunk(append(fci, 0x90, 0x00))
	case cmd.INS == gp.INSInitializeUpdate && cmd.CLA&0x84 == 0x80:
		c.log = append(c.log, Command{Raw: bytes.Clone(raw), Plain: cmd})
		if err := c.refreshSC(); err != nil {
			return apdu.Status(apdu.ErrRefDataNotFound)
		}
		data, err := c.sc.InitializeUpdate(cmd)
		if err != nil {
			return apdu.Status(scp03.StatusFor(err))
		}
		c.kvn = data[10]
		return c.chunk(append(data, 0x90, 0x00))
	case cmd.INS == gp.INSExternalAuthenticate:
		c.log = append(c.log, Command{Raw: bytes.Clone(raw), Plain: cmd})
		if err := c.sc.ExternalAuthenticate(cmd); err != nil {
			return apdu.Status(scp03.StatusFor(err))
		}
		return apdu.Status(apdu.SWNoError)
	}
	plain, err := c.sc.Unwrap(raw)
	if err != nil {
		return apdu.Status(scp03.StatusFor(err))
	}
	c.log = append(c.log, Command{Raw: bytes.Clone(raw), Plain: plain})
	data, sw := c.process(plain)
	resp := apdu.Response{Data: data, SW: sw}.Bytes()
	wrapped, err := c.sc.Wrap(resp)
	if err != nil {
		return apdu.Status(scp03.StatusFor(err))
	}
	return c.chunk(wrapped)
}

// chunk splits a long response T=0 style when Config.Chunk is set.
func (c *Card) chunk(resp []byte) []byte {
	n := len(resp) - 2
	if c.cfg.Chunk <= 0 || n <= c.cfg.Chunk {
		return resp
	}
	c.pending = bytes.Clone(resp[c.cfg.Chunk:])
	rest := len(c.pending) - 2
	return append(bytes.Clone(resp[:c.cfg.Chunk]), 0x61, byte(min(rest, 256)))
}

func (c *Card) getResponse() []byte {
	if c.pending == nil {
		return apdu.Status(apdu.ErrConditionsNotMet)
	}
	resp := c.pending
	c.pending = nil
	return c.chunk(resp)
}

func (c *Card) process(cmd apdu.Command) ([]byte, apdu.SW) {
	if cmd.INS == gp.INSGetData {
		return c.getData(cmd)
	}
	if !c.sc.Open() {
		return nil, apdu.ErrSecurityStatus
	}
	switch cmd.INS {
	case gp.INSGetStatus:
		return c.getStatus(cmd)
	case gp.INSInstall:
		return c.install(cmd)
	case gp.INSLoad:
		return c.loadBlock(cmd)
	case gp.INSDelete:
		return c.delete(cmd)
	case gp.INSPutKey:
		return c.putKey(cmd)
	case gp.INSStoreData:
		return c.storeData(cmd)
	case gp.INSSetStatus:
		return c.setStatus(cmd)
	}
	return nil, apdu.ErrINSNotSupported
}

func (c *Card) getData(cmd apdu.Command) ([]byte, apdu.SW) {
	switch uint16(cmd.P1)<<8 | uint16(cmd.P2) {
	case 0x9F7F:
		cplc := gp.CPLC{ICFabricator: [2]byte{0x56, 0x43}, ICSerialNumber: [4]byte{c.cfg.KDD[6], c.cfg.KDD[7], c.cfg.KDD[8], c.cfg.KDD[9]}}
		return cplc.Bytes(), apdu.SWNoError
	case 0x0066:
		b, _ := gp.CardData{Version: []byte{2, 3, 1}, SCPs: []gp.SCPInfo{{ID: 3, I: byte(c.cfg.I)}}}.Bytes()
		return b, apdu.SWNoError
	case 0x00E0:
		var keys []gp.KeyInfo
		for _, ks := range c.keySets {
			for id := byte(1); id <= 3; id++ {
				keys = append(keys, gp.KeyInfo{ID: id, Version: ks.Version, Components: []gp.KeyInfoComponent{{Type: gp.KeyTypeAES, Length: len(ks.Keys.ENC)}}})
			}
		}
		b, _ := gp.EncodeKeyInfo(keys)
		return b, apdu.SWNoError
	case 0x0042:
		return []byte{0x42, 0x03, 0x12, 0x34, 0x56}, apdu.SWNoError
	}
	return nil, apdu.ErrRefDataNotFound
}

func (c *Card) isdEntry() gp.RegistryEntry {
	return gp.RegistryEntry{AID: gp.DefaultISDAID(), LifeCycle: c.life,
		Privileges: gp.NewPrivileges(gp.PrivSecurityDomain, gp.PrivCardLock, gp.PrivCardTerminate, gp.PrivCardReset, gp.PrivCVMManagement).Bytes()}
}

func (c *Card) getStatus(cmd apdu.Command) ([]byte, apdu.SW) {
	req, err := gp.ParseGetStatusRequest(cmd.P1, cmd.P2, cmd.Data)
	if err != nil {
		return nil, apdu.ErrIncorrectP1P2
	}
	var all []gp.RegistryEntry
	switch req.P1 {
	case gp.StatusISD:
		all = []gp.RegistryEntry{c.isdEntry()}
	case gp.StatusApplications:
		all = c.apps
	case gp.StatusLoadFiles, gp.StatusLoadFilesModules:
		for _, f := range c.files {
			if req.P1 == gp.StatusLoadFiles {
				f.Modules = nil
			}
			all = append(all, f)
		}
	}
	var match []gp.RegistryEntry
	for _, e := range all {
		if bytes.HasPrefix(e.AID, req.AID) {
			match = append(match, e)
		}
	}
	if c.pageAt == nil {
		c.pageAt = map[byte]int{}
	}
	start := 0
	if req.Next {
		start = c.pageAt[req.P1]
	}
	if len(match) == 0 || start >= len(match) {
		return nil, apdu.ErrRefDataNotFound
	}
	page, next, err := gp.StatusPage(match, start, c.cfg.PageSize)
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	c.pageAt[req.P1] = next
	if next < len(match) {
		return page, apdu.ErrMoreData
	}
	return page, apdu.SWNoError
}

func (c *Card) findApp(aid []byte) int {
	for i, a := range c.apps {
		if bytes.Equal(a.AID, aid) {
			return i
		}
	}
	return -1
}

func (c *Card) findFile(aid []byte) int {
	for i, f := range c.files {
		if bytes.Equal(f.AID, aid) {
			return i
		}
	}
	return -1
}

func (c *Card) install(cmd apdu.Command) ([]byte, apdu.SW) {
	in, err := gp.ParseInstall(cmd.P1, cmd.Data)
	if err != nil {
		return nil, apdu.ErrWrongData
	}
	switch {
	case in.P1&gp.InstallForLoad != 0:
		if c.findFile(in.LoadFileAID) >= 0 {
			return nil, apdu.ErrConditionsNotMet
		}
		if c.cfg.RequireDAP && len(in.LoadFileDataBlockHash) == 0 {
			return nil, apdu.ErrConditionsNotMet
		}
		c.load = &pendingLoad{aid: in.LoadFileAID, sd: in.SecurityDomainAID, hash: in.LoadFileDataBlockHash, blocks: gp.BlockAssembler{MaxSize: 1 << 16}}
		return []byte{0x00}, apdu.SWNoError
	case in.P1&gp.InstallForInstall != 0:
		fi := c.findFile(in.LoadFileAID)
		if fi < 0 {
			return nil, apdu.ErrRefDataNotFound
		}
		found := false
		for _, m := range c.files[fi].Modules {
			found = found || bytes.Equal(m, in.ModuleAID)
		}
		if !found {
			return nil, apdu.ErrRefDataNotFound
		}
		if c.findApp(in.ApplicationAID) >= 0 || c.findFile(in.ApplicationAID) >= 0 {
			return nil, apdu.ErrConditionsNotMet
		}
		priv, _ := gp.ParsePrivileges(in.Privileges)
		life := gp.AppInstalled
		if in.P1&gp.InstallForMakeSelectable != 0 {
			life = gp.AppSelectable
		}
		c.apps = append(c.apps, gp.RegistryEntry{AID: bytes.Clone(in.ApplicationAID), LifeCycle: life, Privileges: priv.Bytes(),
			LoadFileAID: bytes.Clone(in.LoadFileAID), SecurityDomainAID: gp.DefaultISDAID()})
		return []byte{0x00}, apdu.SWNoError
	case in.P1&gp.InstallForPersonalization != 0:
		if c.findApp(in.ApplicationAID) < 0 {
			return nil, apdu.ErrRefDataNotFound
		}
		c.persoAID = bytes.Clone(in.ApplicationAID)
		return []byte{0x00}, apdu.SWNoError
	}
	return nil, apdu.ErrIncorrectP1P2
}

func (c *Card) loadBlock(cmd apdu.Command) ([]byte, apdu.SW) {
	if c.load == nil {
		return nil, apdu.ErrConditionsNotMet
	}
	last, err := c.load.blocks.Add(cmd.P1, cmd.P2, cmd.Data)
	if err != nil {
		c.load = nil
		return nil, apdu.ErrWrongData
	}
	if !last {
		return []byte{0x00}, apdu.SWNoError
	}
	pl := c.load
	c.load = nil
	lf, err := gp.ParseLoadFile(pl.blocks.Bytes())
	if err != nil {
		return nil, apdu.ErrWrongData
	}
	m, err := lf.Manifest()
	if err != nil || !bytes.Equal(m.PackageAID, pl.aid) {
		return nil, apdu.ErrWrongData
	}
	h := lf.Hash()
	if len(pl.hash) > 0 && !bytes.Equal(pl.hash, h[:]) {
		return nil, apdu.ErrWrongData
	}
	if c.cfg.RequireDAP {
		sig, ok := lf.DAP(gp.DefaultISDAID())
		if !ok || c.dapKey == nil || gp.VerifyDAPHash(c.dapKey, pl.hash, sig) != nil {
			return nil, apdu.ErrSecurityStatus
		}
	}
	entry := gp.RegistryEntry{AID: m.PackageAID, LifeCycle: gp.LoadFileLoaded, Version: m.Version[:], SecurityDomainAID: gp.DefaultISDAID()}
	for _, mod := range m.Modules {
		d, ok := c.cfg.Modules[string(mod.AID)]
		if !ok || d != mod.Digest {
			return nil, apdu.ErrWrongData
		}
		entry.Modules = append(entry.Modules, mod.AID)
	}
	c.files = append(c.files, entry)
	return []byte{0x00}, apdu.SWNoError
}

func (c *Card) delete(cmd apdu.Command) ([]byte, apdu.SW) {
	d, err := gp.ParseDelete(cmd.Data)
	if err != nil {
		return nil, apdu.ErrWrongData
	}
	if d.HasKeyVersion {
		for i, ks := range c.keySets {
			if ks.Version == d.KeyVersion {
				c.keySets = append(c.keySets[:i:i], c.keySets[i+1:]...)
				c.dirty = true
				return []byte{0x00}, apdu.SWNoError
			}
		}
		return nil, apdu.ErrRefDataNotFound
	}
	if d.AID == nil {
		return nil, apdu.ErrWrongData
	}
	if i := c.findApp(d.AID); i >= 0 {
		c.apps = append(c.apps[:i:i], c.apps[i+1:]...)
		return []byte{0x00}, apdu.SWNoError
	}
	fi := c.findFile(d.AID)
	if fi < 0 {
		return nil, apdu.ErrRefDataNotFound
	}
	var keep []gp.RegistryEntry
	for _, a := range c.apps {
		if bytes.Equal(a.LoadFileAID, d.AID) {
			if cmd.P2&gp.DeleteObjectAndRelated == 0 {
				return nil, apdu.ErrConditionsNotMet
			}
			continue
		}
		keep = append(keep, a)
	}
	c.apps = keep
	c.files = append(c.files[:fi:fi], c.files[fi+1:]...)
	return []byte{0x00}, apdu.SWNoError
}

func (c *Card) currentKeys() *scp03.KeySet {
	for _, ks := range c.keySets {
		if ks.Version == c.kvn {
			return ks
		}
	}
	return nil
}

func (c *Card) putKey(cmd apdu.Command) ([]byte, apdu.SW) {
	p, err := gp.ParsePutKey(cmd.P1, cmd.P2, cmd.Data)
	if err != nil {
		return nil, apdu.ErrWrongData
	}
	if p.Components[0].Type == gp.KeyTypeECCPublic {
		pub, err := p.ECCPublicKey()
		if err != nil {
			return nil, apdu.ErrWrongData
		}
		c.dapKey = pub
		return p.Expected().Bytes(), apdu.SWNoError
	}
	cur := c.currentKeys()
	if cur == nil {
		return nil, apdu.ErrConditionsNotMet
	}
	keys, err := p.AESKeys(cur.Keys.DEK)
	if errors.Is(err, gp.ErrBadKCV) {
		return nil, apdu.ErrSecurityStatus
	}
	if err != nil || len(keys) != 3 || !p.Multiple || p.KeyID != 1 {
		return nil, apdu.ErrWrongData
	}
	ks := scp03.StaticKeys{ENC: keys[0], MAC: keys[1], DEK: keys[2]}
	if ks.Check() != nil {
		return nil, apdu.ErrWrongData
	}
	if p.ReplaceKVN == 0 {
		for _, k := range c.keySets {
			if k.Version == p.NewKVN {
				return nil, apdu.ErrConditionsNotMet
			}
		}
		c.keySets = append(c.keySets, &scp03.KeySet{Version: p.NewKVN, Keys: ks})
	} else {
		found := false
		for _, k := range c.keySets {
			if k.Version == p.ReplaceKVN {
				k.Version, k.Keys, k.Sequence, found = p.NewKVN, ks, 0, true
			}
		}
		if !found {
			return nil, apdu.ErrRefDataNotFound
		}
	}
	// The secure channel keeps running on its session keys; the next
	// session sees the new key sets.
	c.dirty = true
	return p.Expected().Bytes(), apdu.SWNoError
}

// refreshSC rebuilds the secure channel end after key sets were added or
// deleted, when no session is to be kept.
func (c *Card) refreshSC() error {
	if !c.dirty {
		return nil
	}
	c.dirty = false
	return c.newSC()
}

func (c *Card) storeData(cmd apdu.Command) ([]byte, apdu.SW) {
	target := c.persoAID
	if target == nil {
		target = gp.DefaultISDAID() // no INSTALL [for personalization]: the ISD itself
	}
	data := cmd.Data
	if cmd.P1&gp.StoreEncMask == gp.StoreEncAll && cmd.P1&gp.StoreFormatMask == gp.StoreFormatDGI {
		dgis, err := gp.ParseDGIs(data)
		if err != nil {
			return nil, apdu.ErrWrongData
		}
		cur := c.currentKeys()
		for i := range dgis {
			if dgis[i], err = gp.OpenDGI(cur.Keys.DEK, dgis[i]); err != nil {
				return nil, apdu.ErrWrongData
			}
		}
		data, _ = gp.EncodeDGIs(dgis...)
	}
	key := string(target)
	c.stored[key] = append(c.stored[key], bytes.Clone(data))
	if cmd.P1&gp.StoreLastBlock != 0 {
		c.persoAID = nil
	}
	return nil, apdu.SWNoError
}

func (c *Card) setStatus(cmd apdu.Command) ([]byte, apdu.SW) {
	switch cmd.P1 {
	case gp.SetStatusISD:
		switch cmd.P2 {
		case gp.CardInitialized, gp.CardSecured, gp.CardLocked, gp.CardTerminated:
			c.life = cmd.P2
			return nil, apdu.SWNoError
		}
		return nil, apdu.ErrIncorrectP1P2
	case gp.SetStatusApp:
		i := c.findApp(cmd.Data)
		if i < 0 {
			return nil, apdu.ErrRefDataNotFound
		}
		if cmd.P2 == gp.SetStatusLockApp {
			c.apps[i].LifeCycle |= gp.AppLockedBit
		} else {
			c.apps[i].LifeCycle &^= gp.AppLockedBit
		}
		return nil, apdu.SWNoError
	}
	return nil, apdu.ErrIncorrectP1P2
}
