package chip

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/applet"
)

// appEntry is an application's registry record: the GlobalPlatform entry
// plus what the runtime needs to re-create the instance.
type appEntry struct {
	applet.Application
	Params []byte `json:"params,omitempty"`
	Seq    uint64 `json:"seq"` // installation order, for SELECT next and GET STATUS
}

// apps returns the registry's applications in installation order. The
// decoded list is cached until the store changes.
func (c *Chip) apps() []appEntry {
	if c.regCache != nil && c.regGen == c.mem.sysGen {
		return c.regCache
	}
	var out []appEntry
	for _, k := range c.mem.keys(prefixApp) {
		v, _ := c.mem.get(k)
		var e appEntry
		if json.Unmarshal(v, &e) == nil {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	c.regIndex = make(map[string]int, len(out))
	for i, e := range out {
		c.regIndex[hex.EncodeToString(e.AID)] = i
	}
	c.regCache, c.regGen = out, c.mem.sysGen
	return out
}

func (c *Chip) app(aidHex string) (appEntry, bool) {
	apps := c.apps()
	if i, ok := c.regIndex[aidHex]; ok {
		return apps[i], true
	}
	return appEntry{}, false
}

func (c *Chip) loadFiles() []applet.LoadFile {
	var out []applet.LoadFile
	for _, k := range c.mem.keys(prefixFile) {
		v, _ := c.mem.get(k)
		var lf applet.LoadFile
		if json.Unmarshal(v, &lf) == nil {
			out = append(out, lf)
		}
	}
	return out
}

func (c *Chip) loadFile(aid []byte) (applet.LoadFile, bool) {
	v, ok := c.mem.get(prefixFile + hex.EncodeToString(aid))
	if !ok {
		return applet.LoadFile{}, false
	}
	var lf applet.LoadFile
	if json.Unmarshal(v, &lf) != nil {
		return applet.LoadFile{}, false
	}
	return lf, true
}

func (c *Chip) putJSON(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.mem.put(key, b)
}

func (c *Chip) cardLifeCycle() byte {
	v, ok := c.mem.get(keyCard)
	if !ok || len(v) != 1 {
		return applet.CardOPReady
	}
	return v[0]
}

// atomically runs f inside a transaction: the caller's if one is open,
// else one of its own, committed when f succeeds and aborted otherwise.
func (c *Chip) atomically(f func() error) error {
	if c.mem.inTx {
		return f()
	}
	if err := c.mem.begin(); err != nil {
		return err
	}
	if err := f(); err != nil {
		c.mem.abort()
		return err
	}
	return c.mem.commit()
}

// admin implements applet.CardAdmin for a security domain (sd) or, with a
// nil sd, for the factory that builds a new card.
type admin struct {
	chip *Chip
	ch   int
	sd   []byte
}

// Factory returns the card content management interface without a
// security domain: what the chip manufacturer uses to put the issuer
// security domain on a new card (GPCS v2.3.1 §5.1.1.1, pre-issuance).
func (c *Chip) Factory() applet.CardAdmin { return &admin{chip: c} }

func (a *admin) LoadFiles() []applet.LoadFile { return a.chip.loadFiles() }

func (a *admin) Applications() []applet.Application {
	es := a.chip.apps()
	out := make([]applet.Application, len(es))
	for i, e := range es {
		out[i] = e.Application
	}
	return out
}

func (a *admin) Modules() []applet.Module { return a.chip.Modules() }

func (a *admin) AddLoadFile(lf applet.LoadFile) error {
	c := a.chip
	if len(lf.AID) < 5 || len(lf.AID) > 16 {
		return fmt.Errorf("%w: load file AID of %d bytes", apdu.ErrWrongData, len(lf.AID))
	}
	if _, ok := c.loadFile(lf.AID); ok {
		return fmt.Errorf("%w: load file %X", applet.ErrExists, lf.AID)
	}
	if _, ok := c.app(hex.EncodeToString(lf.AID)); ok {
		return fmt.Errorf("%w: %X is an application", applet.ErrExists, lf.AID)
	}
	for _, m := range lf.Modules {
		if _, ok := c.modules[hex.EncodeToString(m)]; !ok {
			return fmt.Errorf("%w: %X", applet.ErrUnknownModule, m)
		}
	}
	lf.LifeCycle = applet.LoadFileLoaded
	if lf.SecurityDomain == nil {
		lf.SecurityDomain = a.sd
	}
	return c.atomically(func() error { return c.putJSON(prefixFile+hex.EncodeToString(lf.AID), lf) })
}

func (a *admin) Install(fileAID, moduleAID, instanceAID []byte, priv applet.Privileges, params []byte, selectable bool) error {
	c := a.chip
	if len(instanceAID) < 5 || len(instanceAID) > 16 {
		return fmt.Errorf("%w: application AID of %d bytes", apdu.ErrWrongData, len(instanceAID))
	}
	lf, ok := c.loadFile(fileAID)
	if !ok {
		return fmt.Errorf("%w: load file %X", applet.ErrNotFound, fileAID)
	}
	found := false
	for _, m := range lf.Modules {
		found = found || bytes.Equal(m, moduleAID)
	}
	if !found {
		return fmt.Errorf("%w: module %X is not in load file %X", applet.ErrNotFound, moduleAID, fileAID)
	}
	m, ok := c.modules[hex.EncodeToString(moduleAID)]
	if !ok {
		return fmt.Errorf("%w: %X", applet.ErrUnknownModule, moduleAID)
	}
	aidHex := hex.EncodeToString(instanceAID)
	if _, ok := c.app(aidHex); ok {
		return fmt.Errorf("%w: application %X", applet.ErrExists, instanceAID)
	}
	if _, ok := c.loadFile(instanceAID); ok {
		return fmt.Errorf("%w: %X is a load file", applet.ErrExists, instanceAID)
	}
	state := applet.AppInstalled
	if selectable {
		state = applet.AppSelectable
	}
	sd := a.sd
	if sd == nil {
		// The factory: the ISD is its own security domain, and anything
		// else installed before issuance belongs to the ISD.
		if priv.Has(applet.PrivSecurityDomain) {
			sd = instanceAID
		} else if isd := c.issuerSD(); isd != nil {
			sd = isd
		}
	}
	e := appEntry{
		Application: applet.Application{AID: clone(instanceAID), LoadFile: clone(fileAID), Module: clone(moduleAID),
			Privileges: priv, LifeCycle: state, SecurityDomain: clone(sd)},
		Params: clone(params),
	}
	err := c.atomically(func() error {
		seq := uint64(1)
		if v, ok := c.mem.get(keySeq); ok && len(v) == 8 {
			seq = beUint64(v) + 1
		}
		if err := c.mem.put(keySeq, beBytes(seq)); err != nil {
			return err
		}
		e.Seq = seq
		if err := c.putJSON(prefixApp+aidHex, e); err != nil {
			return err
		}
		// The install method runs inside the same transaction: a tear or
		// an error leaves no trace of the application (GPCS §9.3.6).
		en := c.newEnv(a.ch, e)
		inst, err := m.New(en, params)
		if err != nil {
			return err
		}
		c.instances[aidHex] = inst
		return nil
	})
	if err != nil {
		delete(c.instances, aidHex)
	}
	return err
}

func (a *admin) Delete(aid []byte, related bool) error {
	c := a.chip
	aidHex := hex.EncodeToString(aid)
	if e, ok := c.app(aidHex); ok {
		if bytes.Equal(aid, a.sd) {
			return fmt.Errorf("%w: a security domain cannot delete itself", applet.ErrReferenced)
		}
		if e.Privileges.Has(applet.PrivSecurityDomain) {
			for _, o := range c.apps() {
				if bytes.Equal(o.SecurityDomain, aid) && !bytes.Equal(o.AID, aid) {
					return fmt.Errorf("%w: security domain %X has application %X", applet.ErrReferenced, aid, o.AID)
				}
			}
		}
		return c.atomically(func() error { return c.removeApp(aidHex) })
	}
	lf, ok := c.loadFile(aid)
	if !ok {
		return fmt.Errorf("%w: %X", applet.ErrNotFound, aid)
	}
	var instances []string
	for _, e := range c.apps() {
		if bytes.Equal(e.LoadFile, lf.AID) {
			if e.Privileges.Has(applet.PrivSecurityDomain) && bytes.Equal(e.AID, a.sd) {
				return fmt.Errorf("%w: load file %X holds the security domain itself", applet.ErrReferenced, aid)
			}
			instances = append(instances, hex.EncodeToString(e.AID))
		}
	}
	if len(instances) > 0 && !related {
		return fmt.Errorf("%w: load file %X has %d application(s); delete them first or delete with related objects", applet.ErrReferenced, aid, len(instances))
	}
	return c.atomically(func() error {
		for _, i := range instances {
			if err := c.removeApp(i); err != nil {
				return err
			}
		}
		c.mem.del(prefixFile + aidHex)
		return nil
	})
}

// issuerSD returns the AID of the issuer security domain (the security
// domain holding the Card Reset privilege), or nil.
func (c *Chip) issuerSD() []byte {
	for _, e := range c.apps() {
		if e.Privileges.Has(applet.PrivSecurityDomain) && e.Privileges.Has(applet.PrivCardReset) {
			return e.AID
		}
	}
	return nil
}

// removeApp deletes an application's registry entry and all its records,
// deselecting it wherever it is selected.
func (c *Chip) removeApp(aidHex string) error {
	for _, ch := range c.channels {
		if ch != nil && ch.selected == aidHex {
			ch.selected = ""
			delete(ch.transient, aidHex)
		}
	}
	for _, k := range c.mem.keys(prefixData + aidHex + "/") {
		c.mem.del(k)
	}
	c.mem.del(prefixApp + aidHex)
	delete(c.instances, aidHex)
	return nil
}

func (a *admin) SetLifeCycle(aid []byte, state byte) error {
	c := a.chip
	aidHex := hex.EncodeToString(aid)
	e, ok := c.app(aidHex)
	if !ok {
		return fmt.Errorf("%w: %X", applet.ErrNotFound, aid)
	}
	e.LifeCycle = state
	return c.atomically(func() error {
		if err := c.putJSON(prefixApp+aidHex, e); err != nil {
			return err
		}
		if state&applet.AppLockedBit != 0 && !e.Privileges.Has(applet.PrivSecurityDomain) {
			for _, ch := range c.channels {
				if ch != nil && ch.selected == aidHex {
					ch.selected = ""
				}
			}
		}
		return nil
	})
}

func (a *admin) CardLifeCycle() byte { return a.chip.cardLifeCycle() }

func (a *admin) SetCardLifeCycle(state byte) error {
	return a.chip.atomically(func() error { return a.chip.mem.put(keyCard, []byte{state}) })
}

func (a *admin) Personalize(aid []byte, p1, p2 byte, data []byte) ([]byte, apdu.SW) {
	c := a.chip
	aidHex := hex.EncodeToString(aid)
	inst, en, err := c.instance(a.ch, aidHex)
	if err != nil {
		return nil, apdu.ErrRefDataNotFound
	}
	p, ok := inst.(applet.Personalizer)
	if !ok {
		return nil, apdu.ErrFuncNotSupported
	}
	if data == nil {
		return nil, apdu.SWNoError
	}
	return p.StoreData(en, p1, p2, data)
}

func beBytes(v uint64) []byte {
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
	return b
}

func beUint64(b []byte) uint64 {
	var v uint64
	for _, x := range b {
		v = v<<8 | uint64(x)
	}
	return v
}

// Applications lists the registry (for tools and tests).
func (c *Chip) Applications() []applet.Application {
	c.mu.Lock()
	defer c.mu.Unlock()
	return (&admin{chip: c}).Applications()
}

// LoadFiles lists the registry's load files (for tools and tests).
func (c *Chip) LoadFiles() []applet.LoadFile {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loadFiles()
}

// CardLifeCycle returns the card's life cycle state.
func (c *Chip) CardLifeCycle() byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cardLifeCycle()
}
