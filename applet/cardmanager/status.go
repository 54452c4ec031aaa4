package cardmanager

import (
	"bytes"
	"errors"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/tlv"
	"github.com/valuechip/valuechip/applet"
)

// maxStatusPage is the most entry bytes one GET STATUS response carries:
// 239 bytes still fit 256 after R-ENCRYPTION (padded to 240) and the
// 8-byte R-MAC (Amd D §6.2.5, §6.2.7), so a page never needs GET
// RESPONSE.
const maxStatusPage = 239

// statusNext is the rest of a GET STATUS answer that did not fit one
// response ('6310', GPCS §11.4.3.2).
type statusNext struct {
	p1      byte
	entries []gp.RegistryEntry
	next    int
}

// getStatus handles GET STATUS (GPCS §11.4) with the TLV response format
// (P2 '02' first, '03' next after '6310'): P1 '80' the ISD, '40'
// applications, '20' load files, '10' load files and their modules. The
// search criterion '4F' selects entries whose AID starts with its value
// ('4F 00': all); other criteria are ignored, as GPCS §11.4.2.3 allows, and
// a '5C' tag list limits the objects of each entry. No match answers
// '6A88'.
func getStatus(env applet.Env, st *chanState, cmd apdu.Command) ([]byte, apdu.SW) {
	switch cmd.P1 {
	case gp.StatusISD, gp.StatusApplications, gp.StatusLoadFiles, gp.StatusLoadFilesModules:
	default:
		return nil, apdu.ErrIncorrectP1P2
	}
	if cmd.P2 != gp.StatusFirst && cmd.P2 != gp.StatusNext {
		return nil, apdu.ErrIncorrectP1P2 // the deprecated non-TLV format is not supported
	}
	var entries []gp.RegistryEntry
	start := 0
	if cmd.P2 == gp.StatusNext {
		// GPCS §11.4.2.2: "get next" needs a previous "get first" in this
		// application session, and is rejected for the ISD.
		if cmd.P1 == gp.StatusISD {
			return nil, apdu.ErrIncorrectP1P2
		}
		if st.status == nil || st.status.p1 != cmd.P1 {
			return nil, apdu.ErrConditionsNotMet
		}
		entries, start = st.status.entries, st.status.next
	} else {
		st.status = nil
		req, err := gp.ParseGetStatusRequest(cmd.P1, cmd.P2, cmd.Data)
		if err != nil {
			return nil, apdu.ErrWrongData
		}
		if entries, err = registryEntries(env, req); err != nil {
			return nil, apdu.ErrWrongData
		}
		if len(entries) == 0 {
			return nil, apdu.ErrRefDataNotFound
		}
	}
	data, next, err := gp.StatusPage(entries, start, maxStatusPage)
	if err != nil {
		st.status = nil
		return nil, apdu.ErrUnknown
	}
	if next < len(entries) {
		st.status = &statusNext{p1: cmd.P1, entries: entries, next: next}
		return data, apdu.ErrMoreData
	}
	st.status = nil
	return data, apdu.SWNoError
}

// registryEntries lists the GET STATUS entries for a request (GPCS
// Tables 11-36 and 11-37): for the ISD 4F, 9F70 (the card life cycle
// state, which the ISD inherits, GPCS §5.1) and C5; for applications 4F,
// 9F70, C5, C4 and CC; for load files 4F, 9F70, CE, CC, and 84 for each
// module with P1 '10'.
func registryEntries(env applet.Env, req gp.GetStatusRequest) ([]gp.RegistryEntry, error) {
	c := env.Card()
	self := env.AID()
	var out []gp.RegistryEntry
	switch req.P1 {
	case gp.StatusISD:
		// The search criteria are ignored for the ISD (GPCS §11.4.2.1).
		privs := DefaultPrivileges
		if e, ok := ownEntry(env); ok {
			privs = e.Privileges
		}
		out = append(out, gp.RegistryEntry{AID: self, LifeCycle: c.CardLifeCycle(), Privileges: privs[:]})
	case gp.StatusApplications:
		for _, a := range c.Applications() {
			if bytes.Equal(a.AID, self) || !bytes.HasPrefix(a.AID, req.AID) {
				continue
			}
			p := a.Privileges
			out = append(out, gp.RegistryEntry{
				AID: a.AID, LifeCycle: a.LifeCycle, Privileges: p[:],
				LoadFileAID: a.LoadFile, SecurityDomainAID: a.SecurityDomain,
			})
		}
	default:
		for _, lf := range c.LoadFiles() {
			if !bytes.HasPrefix(lf.AID, req.AID) {
				continue
			}
			e := gp.RegistryEntry{AID: lf.AID, LifeCycle: lf.LifeCycle, SecurityDomainAID: lf.SecurityDomain}
			if v, err := gp.ParseVersion(lf.Version); err == nil {
				e.Version = v[:]
			}
			if req.P1 == gp.StatusLoadFilesModules {
				e.Modules = lf.Modules
			}
			out = append(out, e)
		}
	}
	if len(req.TagList) > 0 {
		tags, err := parseTagList(req.TagList)
		if err != nil {
			return nil, err
		}
		for i := range out {
			out[i] = filterEntry(out[i], tags)
		}
	}
	return out, nil
}

var errTagList = errors.New("cardmanager: malformed tag list")

// parseTagList splits a '5C' tag list: BER tags written back to back
// without lengths (GPCS §11.4.2.3).
func parseTagList(b []byte) (map[tlv.Tag]bool, error) {
	tags := map[tlv.Tag]bool{}
	for len(b) > 0 {
		n := 1
		if b[0]&0x1F == 0x1F {
			for n < len(b) && n < 4 && b[n]&0x80 != 0 {
				n++
			}
			n++
		}
		if n > len(b) || n > 4 {
			return nil, errTagList
		}
		var t tlv.Tag
		for _, c := range b[:n] {
			t = t<<8 | tlv.Tag(c)
		}
		tags[t] = true
		b = b[n:]
	}
	return tags, nil
}

// filterEntry keeps the objects named in the tag list. The AID is always
// kept: an entry without it would be meaningless, and apdu/gp's encoding
// always writes 4F and 9F70.
func filterEntry(e gp.RegistryEntry, tags map[tlv.Tag]bool) gp.RegistryEntry {
	out := gp.RegistryEntry{AID: e.AID, LifeCycle: e.LifeCycle}
	if tags[gp.TagPrivileges] {
		out.Privileges = e.Privileges
	}
	if tags[gp.TagExecutableLoadFile] {
		out.LoadFileAID = e.LoadFileAID
	}
	if tags[gp.TagVersion] {
		out.Version = e.Version
	}
	if tags[gp.TagModuleAID] {
		out.Modules = e.Modules
	}
	if tags[gp.TagAssociatedSD] {
		out.SecurityDomainAID = e.SecurityDomainAID
	}
	return out
}

// setStatus handles SET STATUS (GPCS §11.10, §9.6): P1 '80' changes the
// card life cycle state to P2, P1 '40' locks (P2 '80') or unlocks (P2
// '00') an application, P1 '60' does the same for a supplementary
// security domain and its applications.
func setStatus(env applet.Env, st *chanState, cmd apdu.Command) ([]byte, apdu.SW) {
	if cmd.P1 != gp.SetStatusISD && cardState(env) == applet.CardLocked {
		return nil, apdu.ErrConditionsNotMet // GPCS §5.1.1.4: only the card state may change
	}
	switch cmd.P1 {
	case gp.SetStatusISD:
		return setCardState(env, cmd)
	case gp.SetStatusApp, gp.SetStatusSDAndApps:
		return lockApplication(env, cmd)
	}
	return nil, apdu.ErrIncorrectP1P2
}

// setCardState applies the card life cycle transitions of GPCS §5.1.2
// (Figure 5-1): OP_READY → INITIALIZED → SECURED, forward only and
// possibly skipping INITIALIZED; SECURED ↔ CARD_LOCKED with the Card Lock
// privilege (§9.6.3); any state → TERMINATED with the Card Terminate
// privilege (§9.6.4). The data field, if present, must be the ISD's AID.
// Another target state answers '6A80', a transition not allowed from the
// current state or without the privilege '6985'.
func setCardState(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	c := env.Card()
	if len(cmd.Data) > 0 && !bytes.Equal(cmd.Data, env.AID()) {
		return nil, apdu.ErrRefDataNotFound
	}
	own, _ := ownEntry(env)
	cur, target := c.CardLifeCycle(), cmd.P2
	ok := false
	switch target {
	case applet.CardInitialized:
		ok = cur == applet.CardOPReady
	case applet.CardSecured:
		switch cur {
		case applet.CardOPReady, applet.CardInitialized:
			ok = true
		case applet.CardLocked:
			ok = own.Privileges.Has(applet.PrivCardLock)
		}
	case applet.CardLocked:
		ok = cur == applet.CardSecured && own.Privileges.Has(applet.PrivCardLock)
	case applet.CardTerminated:
		ok = cur != applet.CardTerminated && own.Privileges.Has(applet.PrivCardTerminate)
	default:
		return nil, apdu.ErrWrongData
	}
	if !ok {
		return nil, apdu.ErrConditionsNotMet
	}
	if err := c.SetCardLifeCycle(target); err != nil {
		return nil, statusOf(err)
	}
	return nil, apdu.SWNoError
}

// lockApplication locks or unlocks an application (GPCS §9.6.2): the
// LOCKED state sets b8 and keeps the other bits, so unlocking restores
// the previous state. The target must be registered ('6A88'), not the ISD
// and not hold the Final Application privilege ('6985'); locking a locked
// or unlocking an unlocked application answers '6985'. With P1 '60' the
// target must be a security domain and its associated applications follow
// it, in one transaction.
func lockApplication(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	if cmd.P2 != gp.SetStatusLockApp && cmd.P2 != gp.SetStatusUnlockApp {
		return nil, apdu.ErrWrongData // application-specific states belong to the application
	}
	if len(cmd.Data) < gp.MinAIDLen || len(cmd.Data) > gp.MaxAIDLen {
		return nil, apdu.ErrWrongData
	}
	c := env.Card()
	app, ok := findApp(c, cmd.Data)
	if !ok {
		return nil, apdu.ErrRefDataNotFound
	}
	if bytes.Equal(app.AID, env.AID()) || app.Privileges[1]&applet.PrivFinalApplication != 0 {
		return nil, apdu.ErrConditionsNotMet
	}
	targets := []applet.Application{app}
	if cmd.P1 == gp.SetStatusSDAndApps {
		if !app.Privileges.Has(applet.PrivSecurityDomain) {
			return nil, apdu.ErrWrongData
		}
		for _, a := range c.Applications() {
			if bytes.Equal(a.SecurityDomain, app.AID) && !bytes.Equal(a.AID, app.AID) {
				targets = append(targets, a)
			}
		}
	}
	lock := cmd.P2 == gp.SetStatusLockApp
	if (app.LifeCycle&applet.AppLockedBit != 0) == lock {
		return nil, apdu.ErrConditionsNotMet
	}
	if err := env.Begin(); err != nil {
		return nil, statusOf(err)
	}
	for _, a := range targets {
		state := a.LifeCycle &^ applet.AppLockedBit
		if lock {
			state = a.LifeCycle | applet.AppLockedBit
		}
		if err := c.SetLifeCycle(a.AID, state); err != nil {
			env.Abort()
			return nil, statusOf(err)
		}
	}
	if err := env.Commit(); err != nil {
		return nil, statusOf(err)
	}
	return nil, apdu.SWNoError
}
