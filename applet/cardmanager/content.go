package cardmanager

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/applet"
)

// one is the response data of INSTALL, LOAD and DELETE without a
// Delegated Management receipt: a single '00' (GPCS §11.2.3.1, §11.5.3.1,
// §11.6.3.1).
var one = []byte{0x00}

// maxLoadFile bounds the load file a LOAD sequence may assemble in
// transient memory.
const maxLoadFile = 64 * 1024

// loadState is an accepted INSTALL [for load] waiting for its LOAD blocks.
type loadState struct {
	fileAID []byte
	sd      []byte // associated security domain
	hash    []byte // Load File Data Block Hash of INSTALL [for load], or nil
	blocks  gp.BlockAssembler
}

// install handles INSTALL (GPCS §11.5, §9.3). Supported: [for load] (P1
// '02'), [for install] ('04'), [for install and make selectable] ('0C'),
// [for make selectable] ('08') and [for personalization] ('20'), all with
// P2 '00'. Registry update, extradition and the combined load-install
// process answer '6A86'.
func install(env applet.Env, st *chanState, cmd apdu.Command) ([]byte, apdu.SW) {
	p1 := cmd.P1 &^ gp.InstallMoreCommands
	switch p1 {
	case gp.InstallForLoad, gp.InstallForInstall, gp.InstallForInstall | gp.InstallForMakeSelectable,
		gp.InstallForMakeSelectable, gp.InstallForPersonalization:
	default:
		return nil, apdu.ErrIncorrectP1P2
	}
	if cmd.P2 != gp.InstallNoInfo {
		return nil, apdu.ErrIncorrectP1P2
	}
	in, err := gp.ParseInstall(p1, cmd.Data)
	if err != nil {
		return nil, apdu.ErrWrongData
	}
	// GPCS §11.5.2.3.1-3: the Security Domain Provider itself (an
	// authenticated session of the ISD) must not send a token.
	if len(in.Token) > 0 {
		return nil, apdu.ErrWrongData
	}
	switch p1 {
	case gp.InstallForLoad:
		return installForLoad(env, st, in)
	case gp.InstallForMakeSelectable:
		return makeSelectable(env, in)
	case gp.InstallForPersonalization:
		return installForPersonalization(env, st, in)
	}
	return installForInstall(env, in, p1&gp.InstallForMakeSelectable != 0)
}

// exists reports whether aid names a load file or an application.
func exists(c applet.CardAdmin, aid []byte) bool {
	for _, lf := range c.LoadFiles() {
		if bytes.Equal(lf.AID, aid) {
			return true
		}
	}
	_, ok := findApp(c, aid)
	return ok
}

func findApp(c applet.CardAdmin, aid []byte) (applet.Application, bool) {
	for _, a := range c.Applications() {
		if bytes.Equal(a.AID, aid) {
			return a, true
		}
	}
	return applet.Application{}, false
}

func findLoadFile(c applet.CardAdmin, aid []byte) (applet.LoadFile, bool) {
	for _, lf := range c.LoadFiles() {
		if bytes.Equal(lf.AID, aid) {
			return lf, true
		}
	}
	return applet.LoadFile{}, false
}

// installForLoad accepts a load request (GPCS §9.3.5 "Load Request"): the
// load file AID must be new ('6985'), the associated security domain
// empty or the ISD ('6A88' otherwise: extradition is not supported), and
// the hash empty or SHA-256 ('6A80'); a hash is mandatory when the ISD
// requires a DAP (GPCS §9.2.2). Any previous unfinished load is dropped.
func installForLoad(env applet.Env, st *chanState, in gp.Install) ([]byte, apdu.SW) {
	st.load = nil
	c := env.Card()
	if exists(c, in.LoadFileAID) {
		return nil, apdu.ErrConditionsNotMet
	}
	self := env.AID()
	if len(in.SecurityDomainAID) > 0 && !bytes.Equal(in.SecurityDomainAID, self) {
		return nil, apdu.ErrRefDataNotFound
	}
	cfg, err := config(env.Memory())
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	switch len(in.LoadFileDataBlockHash) {
	case 0:
		if dapRequired(env, cfg) {
			return nil, apdu.ErrWrongData
		}
	case gp.DigestLen:
	default:
		return nil, apdu.ErrWrongData // GPCS §C.2: this chip hashes with SHA-256 only
	}
	st.load = &loadState{
		fileAID: bytes.Clone(in.LoadFileAID),
		sd:      self,
		hash:    bytes.Clone(in.LoadFileDataBlockHash),
		blocks:  gp.BlockAssembler{MaxSize: maxLoadFile},
	}
	return one, apdu.SWNoError
}

// load handles LOAD (GPCS §11.6, §9.3.5): blocks numbered from '00' in P2,
// P1 '80' on the last. Blocks are kept in transient memory; a block out of
// sequence or a bad P1 answers '6A86' and abandons the load, as does any
// failure of the final checks (GPCS §9.3.5: "the OPEN shall terminate the
// loading process").
func load(env applet.Env, st *chanState, cmd apdu.Command) ([]byte, apdu.SW) {
	ld := st.load
	if ld == nil {
		return nil, apdu.ErrConditionsNotMet // no INSTALL [for load] in this session
	}
	if cmd.P1 != gp.LoadMoreBlocks && cmd.P1 != gp.LoadLastBlock {
		st.load = nil
		return nil, apdu.ErrIncorrectP1P2
	}
	last, err := ld.blocks.Add(cmd.P1, cmd.P2, cmd.Data)
	switch {
	case errors.Is(err, gp.ErrTooLong):
		st.load = nil
		return nil, apdu.ErrNotEnoughMemory
	case err != nil:
		st.load = nil
		return nil, apdu.ErrIncorrectP1P2
	case !last:
		return one, apdu.SWNoError
	}
	st.load = nil
	if err := completeLoad(env, ld, ld.blocks.Bytes()); err != nil {
		return nil, statusOf(err)
	}
	return one, apdu.SWNoError
}

// dapRequired reports whether every load file needs a DAP block for the
// ISD: when the creation parameters say so, or when the ISD's registry
// entry has the DAP Verification or Mandated DAP Verification privilege
// (GPCS §9.2.1, §9.3.5 "Load Phase"; the ISD is the associated security
// domain of every load file it loads).
func dapRequired(env applet.Env, cfg Params) bool {
	if cfg.DAPRequired {
		return true
	}
	e, ok := ownEntry(env)
	return ok && e.Privileges.Has(applet.PrivSecurityDomain|applet.PrivDAPVerification)
}

// errDAP wraps a DAP failure: a missing DAP block answers '6A80', a
// signature that does not verify '6982' (docs/cardmanager.md).
var errDAP = errors.New("cardmanager: DAP verification failed")

// completeLoad runs the load completion checks (GPCS §9.3.5 "Load
// Completion"): the Load File Data Block Hash, the DAP when the ISD
// requires one or a DAP block for it is present, the manifest
// (docs/loadfile.md) whose package AID must be the load file AID, and for
// each module its presence among the chip's modules and its
// implementation digest. Then the load file is registered.
func completeLoad(env applet.Env, ld *loadState, blob []byte) error {
	lf, err := gp.ParseLoadFile(blob)
	if err != nil {
		return err
	}
	hash := lf.Hash()
	if ld.hash != nil && subtle.ConstantTimeCompare(hash[:], ld.hash) != 1 {
		return swError(apdu.ErrWrongData, "load file data block hash does not match INSTALL [for load]")
	}
	if len(lf.DAPs) > 0 && ld.hash == nil {
		return swError(apdu.ErrWrongData, "DAP blocks without a load file data block hash") // GPCS §9.2.2
	}
	cfg, err := config(env.Memory())
	if err != nil {
		return err
	}
	sig, present := lf.DAP(env.AID())
	switch {
	case present && cfg.DAPKey != nil:
		pub, err := gp.ParseP256(cfg.DAPKey)
		if err != nil {
			return errCorrupt
		}
		if err := gp.VerifyDAPHash(pub, hash[:], sig); err != nil {
			return fmt.Errorf("%w: %w: %w", apdu.ErrSecurityStatus, errDAP, err)
		}
	case dapRequired(env, cfg) && !present:
		return fmt.Errorf("%w: %w: no DAP block for the issuer security domain", apdu.ErrWrongData, errDAP)
	case dapRequired(env, cfg):
		return fmt.Errorf("%w: %w: no DAP verification key", apdu.ErrConditionsNotMet, errDAP)
	}
	m, err := lf.Manifest()
	if err != nil {
		return err
	}
	if !bytes.Equal(m.PackageAID, ld.fileAID) {
		return swError(apdu.ErrWrongData, "manifest package AID %X is not the load file AID %X", m.PackageAID, ld.fileAID)
	}
	c := env.Card()
	modules := c.Modules()
	entry := applet.LoadFile{AID: ld.fileAID, Version: m.VersionString(), Digest: hash[:], SecurityDomain: ld.sd}
	for _, ref := range m.Modules {
		var impl *applet.Module
		for i := range modules {
			if bytes.Equal(modules[i].AID, ref.AID) {
				impl = &modules[i]
			}
		}
		if impl == nil {
			return fmt.Errorf("%w: %X", applet.ErrUnknownModule, ref.AID) // '6A80'
		}
		if d := impl.Digest(); subtle.ConstantTimeCompare(d[:], ref.Digest[:]) != 1 {
			return fmt.Errorf("%w: module %X", applet.ErrDigest, ref.AID) // '6A80'
		}
		entry.Modules = append(entry.Modules, bytes.Clone(ref.AID))
	}
	return c.AddLoadFile(entry)
}

// refusedPrivileges are the privileges INSTALL does not grant: those of a
// security domain (this ISD installs no supplementary security domains),
// Card Reset (the ISD is the default application) and Final Application.
var refusedPrivileges = applet.Privileges{
	applet.PrivSecurityDomain | applet.PrivDAPVerification | applet.PrivDelegatedMgmt | applet.PrivCardReset | applet.PrivMandatedDAP,
	applet.PrivAuthorizedMgmt | 0x20 /* Token Verification */ | applet.PrivFinalApplication,
	0x80 | 0x40, // Receipt Generation, Ciphered Load File Data Block
}

func privilegesOf(b []byte) (applet.Privileges, bool) {
	p, err := gp.ParsePrivileges(b)
	if err != nil {
		return applet.Privileges{}, false
	}
	out := applet.Privileges(p)
	for i := range out {
		if out[i]&refusedPrivileges[i] != 0 {
			return applet.Privileges{}, false
		}
	}
	return out, true
}

// installForInstall creates an application (GPCS §9.3.6): the executable
// load file and module must be registered ('6A88'), the instance AID new
// ('6985'), the privileges grantable ('6A80') and the install parameters
// must hold 'C9', whose value the new instance receives.
func installForInstall(env applet.Env, in gp.Install, selectable bool) ([]byte, apdu.SW) {
	c := env.Card()
	privs, ok := privilegesOf(in.Privileges)
	if !ok {
		return nil, apdu.ErrWrongData
	}
	params, err := gp.ParseInstallParams(in.Parameters)
	if err != nil {
		return nil, apdu.ErrWrongData
	}
	lf, ok := findLoadFile(c, in.LoadFileAID)
	if !ok {
		return nil, apdu.ErrRefDataNotFound
	}
	found := false
	for _, m := range lf.Modules {
		found = found || bytes.Equal(m, in.ModuleAID)
	}
	if !found {
		return nil, apdu.ErrRefDataNotFound
	}
	if exists(c, in.ApplicationAID) {
		return nil, apdu.ErrConditionsNotMet
	}
	if err := c.Install(in.LoadFileAID, in.ModuleAID, in.ApplicationAID, privs, bytes.Clone(params.Application), selectable); err != nil {
		return nil, statusOf(err)
	}
	return one, apdu.SWNoError
}

// makeSelectable moves an INSTALLED application to SELECTABLE (GPCS
// §9.3.7): '6A88' if it is not registered, '6985' if it is not in the
// INSTALLED state (already selectable, locked, or a security domain). The
// privileges field may only ask for privileges INSTALL could grant; they
// are otherwise ignored, as GPCS §11.5.2.3.3 allows.
func makeSelectable(env applet.Env, in gp.Install) ([]byte, apdu.SW) {
	c := env.Card()
	if len(in.Privileges) > 0 {
		if _, ok := privilegesOf(in.Privileges); !ok {
			return nil, apdu.ErrWrongData
		}
	}
	app, ok := findApp(c, in.ApplicationAID)
	if !ok {
		return nil, apdu.ErrRefDataNotFound
	}
	if app.LifeCycle != applet.AppInstalled || app.Privileges.Has(applet.PrivSecurityDomain) {
		return nil, apdu.ErrConditionsNotMet
	}
	if err := c.SetLifeCycle(app.AID, applet.AppSelectable); err != nil {
		return nil, statusOf(err)
	}
	return one, apdu.SWNoError
}

// installForPersonalization names the application that the following
// STORE DATA commands go to (GPCS §11.5.2.3.6, §11.11.2.1). The
// application must be registered ('6A88'), associated with this ISD and
// not locked ('6985'), and not the ISD itself ('6A80': STORE DATA without
// INSTALL [for personalization] already addresses the ISD).
func installForPersonalization(env applet.Env, st *chanState, in gp.Install) ([]byte, apdu.SW) {
	c := env.Card()
	self := env.AID()
	if bytes.Equal(in.ApplicationAID, self) {
		return nil, apdu.ErrWrongData
	}
	app, ok := findApp(c, in.ApplicationAID)
	if !ok {
		return nil, apdu.ErrRefDataNotFound
	}
	if app.LifeCycle&applet.AppLockedBit != 0 || (len(app.SecurityDomain) > 0 && !bytes.Equal(app.SecurityDomain, self)) {
		return nil, apdu.ErrConditionsNotMet
	}
	st.endPerso(env)
	st.perso = bytes.Clone(app.AID)
	return one, apdu.SWNoError
}

// deleteCmd handles DELETE (GPCS §11.2, §9.5): an application, a load
// file (P2 '00': only without instances, else '6985'), a load file and its
// applications (P2 '80'), or an SCP03 key set ('D2' KVN). The ISD itself
// cannot be deleted ('6985'); an unknown AID or KVN answers '6A88'.
func deleteCmd(env applet.Env, st *chanState, cmd apdu.Command) ([]byte, apdu.SW) {
	if cmd.P1&^0x80 != 0 || (cmd.P2 != gp.DeleteObject && cmd.P2 != gp.DeleteObjectAndRelated) {
		return nil, apdu.ErrIncorrectP1P2
	}
	d, err := gp.ParseDelete(cmd.Data)
	if err != nil {
		return nil, apdu.ErrWrongData
	}
	if len(d.Token) > 0 || len(d.ControlReference) > 0 {
		return nil, apdu.ErrWrongData // GPCS §11.2.2.3.1: no token for the Security Domain Provider
	}
	if d.HasKeyID || d.HasKeyVersion {
		return deleteKeys(env, d)
	}
	c := env.Card()
	self := env.AID()
	related := cmd.P2 == gp.DeleteObjectAndRelated
	if bytes.Equal(d.AID, self) {
		return nil, apdu.ErrConditionsNotMet
	}
	if _, ok := findLoadFile(c, d.AID); ok {
		for _, a := range c.Applications() {
			if bytes.Equal(a.LoadFile, d.AID) && (!related || bytes.Equal(a.AID, self)) {
				return nil, apdu.ErrConditionsNotMet // instances remain, or the ISD's own load file
			}
		}
	} else if _, ok := findApp(c, d.AID); !ok {
		return nil, apdu.ErrRefDataNotFound
	}
	if st.perso != nil && bytes.Equal(st.perso, d.AID) {
		st.perso, st.persoP2 = nil, 0
	}
	if err := c.Delete(d.AID, related); err != nil {
		return nil, statusOf(err)
	}
	return one, apdu.SWNoError
}

// deleteKeys deletes a key set by version ('D2'). SCP03 key sets are
// complete sets of three keys (Amd D §6.1), so a single key ('D0') cannot
// be deleted ('6A80'); the last key set cannot either ('6985'), as the
// card would become unmanageable. The DAP verification key (KVN '73')
// can be deleted when the ISD does not require DAPs.
func deleteKeys(env applet.Env, d gp.Delete) ([]byte, apdu.SW) {
	if d.HasKeyID || !d.HasKeyVersion {
		return nil, apdu.ErrWrongData
	}
	mem := env.Memory()
	if d.KeyVersion == gp.DAPKeyVersion {
		cfg, err := config(mem)
		if err != nil {
			return nil, apdu.ErrUnknown
		}
		if cfg.DAPKey == nil {
			return nil, apdu.ErrRefDataNotFound
		}
		if dapRequired(env, cfg) {
			return nil, apdu.ErrConditionsNotMet
		}
		cfg.DAPKey = nil
		if err := putConfig(mem, cfg); err != nil {
			return nil, statusOf(err)
		}
		return one, apdu.SWNoError
	}
	ks, err := keySet(mem, d.KeyVersion)
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	if ks == nil {
		return nil, apdu.ErrRefDataNotFound
	}
	if len(mem.Keys(recKeyPrefix)) <= 1 {
		return nil, apdu.ErrConditionsNotMet
	}
	if err := mem.Delete(keyRecordName(d.KeyVersion)); err != nil {
		return nil, statusOf(err)
	}
	return one, apdu.SWNoError
}
