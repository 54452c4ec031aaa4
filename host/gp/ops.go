package gp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"strings"

	"github.com/valuechip/valuechip/apdu"
	gpwire "github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/apdu/tlv"
	"github.com/valuechip/valuechip/reader"
)

// Classes of card refusals, matched with errors.Is on a CommandError (which
// also matches its apdu.SW).
var (
	ErrNotFound       = errors.New("gp: not found on the card")           // 6A88, 6A82
	ErrSecurityStatus = errors.New("gp: security status not satisfied")   // 6982
	ErrConditions     = errors.New("gp: conditions of use not satisfied") // 6985
	ErrNoMemory       = errors.New("gp: not enough memory on the card")   // 6A84, 6581
	ErrRefused        = errors.New("gp: card refused the data")           // 6A80, 6A86
)

// CommandError is a card's refusal of a card content management command:
// which command, its status word, and what to try.
type CommandError struct {
	Op string // "DELETE F000000001", "INSTALL [for load]", ...
	SW apdu.SW
}

func (e *CommandError) class() (hint string, class error) {
	switch e.SW {
	case apdu.ErrRefDataNotFound, apdu.ErrFileNotFound:
		return "nothing with that AID or key version on the card; `valuechip gp list` shows the registry", ErrNotFound
	case apdu.ErrSecurityStatus:
		return "the session's security level or the security domain's privileges do not allow this (for PUT KEY: a key check value did not match)", ErrSecurityStatus
	case apdu.ErrConditionsNotMet:
		return "not allowed in the current life cycle state, or the object is still referenced (delete with --related, or delete its instances first)", ErrConditions
	case apdu.ErrNotEnoughMemory, apdu.ErrMemoryFailure:
		return "delete unused applications or load files", ErrNoMemory
	case apdu.ErrWrongData, apdu.ErrIncorrectP1P2:
		if strings.HasPrefix(e.Op, "LOAD") || strings.HasPrefix(e.Op, "INSTALL [for load]") {
			return "the card rejected the load file: unknown module, wrong digest, wrong hash, or a missing DAP (see docs/loadfile.md)", ErrRefused
		}
		return "the card rejected the command's parameters or data", ErrRefused
	}
	return "", nil
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("%s: card answered %s", e.Op, e.SW.String())
	if hint, _ := e.class(); hint != "" {
		msg += ": " + hint
	}
	return msg
}

// Unwrap returns the status word and the class sentinel.
func (e *CommandError) Unwrap() []error {
	if _, c := e.class(); c != nil {
		return []error{e.SW, c}
	}
	return []error{e.SW}
}

// do sends cmd through the secure channel. A status other than 9000 is a
// *CommandError, returned with the response (GET STATUS reads data from a
// '6310' answer).
func (s *Session) do(ctx context.Context, op string, cmd apdu.Command) (apdu.Response, error) {
	r, err := transmit(ctx, s.Transceiver(), cmd)
	if err != nil {
		return apdu.Response{}, fmt.Errorf("%s: %w", op, err)
	}
	if r.SW != apdu.SWNoError {
		return r, &CommandError{Op: op, SW: r.SW}
	}
	return r, nil
}

// CardInfo is what Info gathers. Fields the card does not provide ('6A88'
// to GET DATA) are nil.
type CardInfo struct {
	SD              []byte
	KeyVersion      byte
	I               scp03.IParam
	Level           scp03.SecurityLevel
	KDD             []byte
	SequenceCounter []byte // from INITIALIZE UPDATE, when i announces it
	CPLC            *gpwire.CPLC
	CardData        *gpwire.CardData
	Keys            []gpwire.KeyInfo
	IIN, CIN        []byte
	// ISD is the ISD's registry entry; its life cycle is the card's.
	ISD *gpwire.RegistryEntry
}

// Info reads the card's identification through the session: CPLC (GET
// DATA 9F7F), card recognition data (66), key information (E0), IIN (42),
// CIN (45), and the ISD's registry entry (GET STATUS P1 80).
func (s *Session) Info(ctx context.Context) (*CardInfo, error) {
	ci := &CardInfo{SD: s.SD(), KeyVersion: s.info.KeyInfo.Version, I: s.info.KeyInfo.I, Level: s.level, KDD: bytes.Clone(s.info.KDD[:])}
	if s.info.KeyInfo.I.PseudoRandom() {
		q := s.info.Sequence
		ci.SequenceCounter = []byte{byte(q >> 16), byte(q >> 8), byte(q)}
	}
	get := func(tag tlv.Tag) ([]byte, error) {
		r, err := s.do(ctx, "GET DATA "+tag.String(), gpwire.GetData(tag))
		if err != nil {
			if optional(err) {
				return nil, nil
			}
			return nil, err
		}
		return r.Data, nil
	}
	if b, err := get(gpwire.TagCPLC); err != nil {
		return nil, err
	} else if b != nil {
		c, err := gpwire.ParseCPLC(b)
		if err != nil {
			return nil, fmt.Errorf("GET DATA 9F7F: %w", err)
		}
		ci.CPLC = &c
	}
	if b, err := get(gpwire.TagCardData); err != nil {
		return nil, err
	} else if b != nil {
		c, err := gpwire.ParseCardData(b)
		if err != nil {
			return nil, fmt.Errorf("GET DATA 66: %w", err)
		}
		ci.CardData = &c
	}
	if b, err := get(gpwire.TagKeyInfo); err != nil {
		return nil, err
	} else if b != nil {
		k, err := gpwire.ParseKeyInfo(b)
		if err != nil && !errors.Is(err, gpwire.ErrUnsupported) {
			return nil, fmt.Errorf("GET DATA E0: %w", err)
		}
		ci.Keys = k
	}
	for _, f := range []struct {
		tag tlv.Tag
		dst *[]byte
	}{{gpwire.TagIIN, &ci.IIN}, {gpwire.TagCIN, &ci.CIN}} {
		b, err := get(f.tag)
		if err != nil {
			return nil, err
		}
		if b != nil {
			// 42/45 come as a TLV; keep the value.
			if t, _, err := tlv.ParseOne(b); err == nil && t.Tag == f.tag {
				b = t.Value
			}
			*f.dst = bytes.Clone(b)
		}
	}
	isd, err := s.status(ctx, gpwire.StatusISD)
	if err != nil && !optional(err) {
		return nil, err
	}
	if len(isd) > 0 {
		ci.ISD = &isd[0]
	}
	return ci, nil
}

// optional reports card answers that mean "not available here".
func optional(err error) bool {
	var ce *CommandError
	if !errors.As(err, &ce) {
		return false
	}
	switch ce.SW {
	case apdu.ErrRefDataNotFound, apdu.ErrFileNotFound, apdu.ErrIncorrectP1P2, apdu.ErrWrongP1P2, apdu.ErrINSNotSupported, apdu.ErrFuncNotSupported:
		return true
	}
	return false
}

// Registry is the card's content as GET STATUS lists it.
type Registry struct {
	ISD          *gpwire.RegistryEntry
	Applications []gpwire.RegistryEntry // applications and supplementary security domains
	LoadFiles    []gpwire.RegistryEntry // with their modules when the card lists them
}

// List reads the registry: the ISD (P1 80), applications and security
// domains (40), and load files with their modules (10, or 20 on cards
// that do not support 10), following '6310' continuations.
func (s *Session) List(ctx context.Context) (*Registry, error) {
	reg := &Registry{}
	isd, err := s.status(ctx, gpwire.StatusISD)
	if err != nil && !optional(err) {
		return nil, err
	}
	if len(isd) > 0 {
		reg.ISD = &isd[0]
	}
	if reg.Applications, err = s.status(ctx, gpwire.StatusApplications); err != nil && !optional(err) {
		return nil, err
	}
	reg.LoadFiles, err = s.status(ctx, gpwire.StatusLoadFilesModules)
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && (ce.SW == apdu.ErrIncorrectP1P2 || ce.SW == apdu.ErrWrongData) {
			reg.LoadFiles, err = s.status(ctx, gpwire.StatusLoadFiles)
		}
		if err != nil && !optional(err) {
			return nil, err
		}
	}
	return reg, nil
}

// maxStatusRounds bounds '6310' continuations: a card that always has more
// must not hang the host.
const maxStatusRounds = 256

// status runs GET STATUS for one part of the registry with continuations.
// '6A88' (nothing found) is a *CommandError that optional() accepts.
func (s *Session) status(ctx context.Context, p1 byte) ([]gpwire.RegistryEntry, error) {
	var all []gpwire.RegistryEntry
	for round := range maxStatusRounds {
		cmd, err := gpwire.GetStatusRequest{P1: p1, Next: round > 0}.Command()
		if err != nil {
			return nil, err
		}
		op := fmt.Sprintf("GET STATUS %02X", p1)
		r, err := s.do(ctx, op, cmd)
		more := errors.Is(err, apdu.ErrMoreData)
		if err != nil && !more {
			if round > 0 && optional(err) {
				return all, nil
			}
			return nil, err
		}
		entries, perr := gpwire.ParseStatus(r.Data)
		if perr != nil {
			return nil, fmt.Errorf("%s: %w", op, perr)
		}
		all = append(all, entries...)
		if !more {
			return all, nil
		}
	}
	return nil, fmt.Errorf("GET STATUS %02X: the card still answers 6310 after %d rounds", p1, maxStatusRounds)
}

// InstallSpec describes one INSTALL [for install] (GPCS §11.5.2.3.2).
type InstallSpec struct {
	// LoadFileAID is the executable load file (package); LoadAndInstall
	// fills in the one it loaded.
	LoadFileAID []byte
	// ModuleAID is the executable module; LoadAndInstall fills in the
	// manifest's only module when there is one.
	ModuleAID []byte
	// ApplicationAID is the new instance; empty means the module AID.
	ApplicationAID []byte
	// Privileges are 1 or 3 bytes; empty means '00' (none).
	Privileges []byte
	// Params are the application-specific install parameters (the value
	// of 'C9'); SystemParams the value of 'EF', omitted when empty.
	Params, SystemParams []byte
	// NotSelectable installs without making the application selectable
	// (P1 '04' instead of '0C').
	NotSelectable bool
}

func (sp InstallSpec) install() (gpwire.Install, error) {
	params, err := gpwire.InstallParams{Application: sp.Params, System: sp.SystemParams}.Bytes()
	if err != nil {
		return gpwire.Install{}, err
	}
	in := gpwire.Install{
		P1:             gpwire.InstallForInstall | gpwire.InstallForMakeSelectable,
		LoadFileAID:    sp.LoadFileAID,
		ModuleAID:      sp.ModuleAID,
		ApplicationAID: sp.ApplicationAID,
		Privileges:     sp.Privileges,
		Parameters:     params,
	}
	if sp.NotSelectable {
		in.P1 = gpwire.InstallForInstall
	}
	if len(in.ApplicationAID) == 0 {
		in.ApplicationAID = sp.ModuleAID
	}
	if len(in.Privileges) == 0 {
		in.Privileges = []byte{0x00}
	}
	if err := in.Validate(); err != nil {
		return gpwire.Install{}, err
	}
	return in, nil
}

// Install sends INSTALL [for install (and make selectable)] for a load file
// already on the card.
func (s *Session) Install(ctx context.Context, spec InstallSpec) error {
	in, err := spec.install()
	if err != nil {
		return fmt.Errorf("INSTALL: %w", err)
	}
	return s.sendInstall(ctx, in)
}

func (s *Session) sendInstall(ctx context.Context, in gpwire.Install) error {
	cmd, err := in.Command()
	if err != nil {
		return fmt.Errorf("INSTALL: %w", err)
	}
	op := fmt.Sprintf("INSTALL [for install] %X", in.ApplicationAID)
	switch {
	case in.P1&gpwire.InstallForLoad != 0:
		op = fmt.Sprintf("INSTALL [for load] %X", in.LoadFileAID)
	case in.P1&gpwire.InstallForPersonalization != 0:
		op = fmt.Sprintf("INSTALL [for personalization] %X", in.ApplicationAID)
	}
	_, err = s.do(ctx, op, cmd)
	return err
}

// LoadOptions tune LoadAndInstall.
type LoadOptions struct {
	// SecurityDomain is the SD to associate the load file with; nil means
	// the session's SD.
	SecurityDomain []byte
	// LoadFileAID overrides the package AID, for a data block that is not
	// a valuechip manifest (a real card's CAP content).
	LoadFileAID []byte
	// BlockSize is the LOAD block size; 0 means gp.DefaultLoadBlockSize.
	BlockSize int
	// OmitHash leaves the Load File Data Block Hash out of INSTALL [for
	// load]; by default SHA-256 of the data block is sent.
	OmitHash bool
	// Params are the load parameters (GPCS Table 11-48), raw.
	Params []byte
}

// LoadAndInstall loads a load file (INSTALL [for load], then LOAD blocks)
// and installs the given instances from it (INSTALL [for install and make
// selectable]). Everything is checked before the first command: the load
// file must parse (apdu/gp.ParseLoadFile), and with a valuechip manifest
// each spec's module must be one the manifest names.
func (s *Session) LoadAndInstall(ctx context.Context, loadFile []byte, opts LoadOptions, installs ...InstallSpec) error {
	lf, err := gpwire.ParseLoadFile(loadFile)
	if err != nil {
		return fmt.Errorf("load file: %w", err)
	}
	pkg := opts.LoadFileAID
	m, merr := lf.Manifest()
	if len(pkg) == 0 {
		if merr != nil {
			return fmt.Errorf("load file: %w (give the load file AID for a data block that is not a valuechip manifest)", merr)
		}
		pkg = m.PackageAID
	}
	ins := make([]gpwire.Install, len(installs))
	for i, sp := range installs {
		if len(sp.LoadFileAID) == 0 {
			sp.LoadFileAID = pkg
		}
		if merr == nil && bytes.Equal(sp.LoadFileAID, m.PackageAID) {
			if len(sp.ModuleAID) == 0 && len(m.Modules) == 1 {
				sp.ModuleAID = m.Modules[0].AID
			}
			if _, ok := m.Module(sp.ModuleAID); !ok {
				return fmt.Errorf("install %d: module %X is not in the load file (it names %s)", i+1, sp.ModuleAID, moduleList(m))
			}
		}
		if ins[i], err = sp.install(); err != nil {
			return fmt.Errorf("install %d: %w", i+1, err)
		}
	}
	sd := opts.SecurityDomain
	if sd == nil {
		sd = s.sd
	}
	forLoad := gpwire.Install{P1: gpwire.InstallForLoad, LoadFileAID: pkg, SecurityDomainAID: sd, Parameters: opts.Params}
	if !opts.OmitHash {
		h := lf.Hash()
		forLoad.LoadFileDataBlockHash = h[:]
	}
	if err := forLoad.Validate(); err != nil {
		return fmt.Errorf("INSTALL [for load]: %w", err)
	}
	blocks, err := gpwire.LoadBlocks(loadFile, opts.BlockSize)
	if err != nil {
		return fmt.Errorf("LOAD: %w", err)
	}
	if err := s.sendInstall(ctx, forLoad); err != nil {
		return err
	}
	for i, b := range blocks {
		if _, err := s.do(ctx, fmt.Sprintf("LOAD block %d of %d", i+1, len(blocks)), b); err != nil {
			return err
		}
	}
	for _, in := range ins {
		if err := s.sendInstall(ctx, in); err != nil {
			return err
		}
	}
	return nil
}

func moduleList(m gpwire.Manifest) string {
	var b bytes.Buffer
	for i, mod := range m.Modules {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%X", mod.AID)
	}
	return b.String()
}

// Delete removes an application, security domain or load file (GPCS
// §11.2); with related, a load file together with its applications.
func (s *Session) Delete(ctx context.Context, aid []byte, related bool) error {
	d := gpwire.Delete{AID: aid}
	if err := d.Validate(); err != nil {
		return fmt.Errorf("DELETE: %w", err)
	}
	cmd, err := d.Command(related)
	if err != nil {
		return fmt.Errorf("DELETE: %w", err)
	}
	_, err = s.do(ctx, fmt.Sprintf("DELETE %X", aid), cmd)
	return err
}

// DeleteKeys removes the key set with the given version (DELETE with 'D2').
func (s *Session) DeleteKeys(ctx context.Context, kvn byte) error {
	cmd, err := gpwire.Delete{KeyVersion: kvn, HasKeyVersion: true}.Command(false)
	if err != nil {
		return err
	}
	_, err = s.do(reader.WithSensitive(ctx), fmt.Sprintf("DELETE key version %02X", kvn), cmd)
	return err
}

// PutKeys adds (replaceKVN '00') or replaces an SCP03 key set: Key-ENC,
// Key-MAC and Key-DEK as key identifiers 1-3 of version newKVN, encrypted
// with the session's Key-DEK (Amd D §7.2). The card's answer must repeat
// the new version and the keys' check values. The command is marked
// sensitive so traces mask it.
func (s *Session) PutKeys(ctx context.Context, newKVN, replaceKVN byte, keys scp03.StaticKeys) error {
	s.mu.Lock()
	dek := append(scp03.Key{}, s.dek...)
	s.mu.Unlock()
	defer dek.Wipe()
	p, err := gpwire.PutKeyAES(newKVN, replaceKVN, keys, dek)
	if err != nil {
		return fmt.Errorf("PUT KEY: %w", err)
	}
	return s.putKey(ctx, fmt.Sprintf("PUT KEY version %02X", newKVN), p)
}

// PutDAPKey loads the issuer's P-256 DAP verification key into the
// session's security domain (docs/loadfile.md): PUT KEY of an ECC public
// key, version newKVN (gp.DAPKeyVersion by convention), key ID '01'.
func (s *Session) PutDAPKey(ctx context.Context, newKVN, replaceKVN byte, pub *ecdsa.PublicKey) error {
	p, err := gpwire.PutKeyECCPublic(newKVN, replaceKVN, gpwire.DAPKeyID, pub)
	if err != nil {
		return fmt.Errorf("PUT KEY: %w", err)
	}
	return s.putKey(ctx, fmt.Sprintf("PUT KEY DAP key version %02X", newKVN), p)
}

func (s *Session) putKey(ctx context.Context, op string, p gpwire.PutKey) error {
	cmd, err := p.Command()
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	r, err := s.do(reader.WithSensitive(ctx), op, cmd)
	if err != nil {
		return err
	}
	got, err := gpwire.ParsePutKeyResponse(r.Data)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	want := p.Expected()
	if got.KVN != want.KVN || len(got.KCVs) != len(want.KCVs) {
		return fmt.Errorf("%s: the card confirmed %X, expected %X", op, got.Bytes(), want.Bytes())
	}
	for i := range want.KCVs {
		if got.KCVs[i] != want.KCVs[i] {
			return fmt.Errorf("%s: %w: the card's check value for key %d is %X, expected %X", op, gpwire.ErrBadKCV, i+1, got.KCVs[i], want.KCVs[i])
		}
	}
	return nil
}

// StoreOptions tune StoreData.
type StoreOptions struct {
	// Format is the data structure of P1 b5b4: gp.StoreFormatNone,
	// StoreFormatDGI or StoreFormatBERTLV.
	Format byte
	// EncryptDGIs encrypts the data of every DGI under the session's
	// Key-DEK (apdu/gp.SealDGI) and sets P1 b7b6 to '11'. Needs Format
	// StoreFormatDGI; each block must then be a sequence of DGIs.
	EncryptDGIs bool
}

// StoreData personalises an application: INSTALL [for personalization]
// for aid, then one STORE DATA per block (GPCS §11.11), numbered from '00',
// the last flagged in P1 b8. With aid empty or the session's own SD, the
// blocks go to the security domain itself, without INSTALL (GPCS
// §11.11.2). The commands are marked sensitive.
func (s *Session) StoreData(ctx context.Context, aid []byte, opts StoreOptions, blocks ...[]byte) error {
	p1 := opts.Format & gpwire.StoreFormatMask
	if opts.Format&^gpwire.StoreFormatMask != 0 {
		return fmt.Errorf("STORE DATA: format %02X is not a P1 b5b4 value", opts.Format)
	}
	if opts.EncryptDGIs {
		if p1 != gpwire.StoreFormatDGI {
			return fmt.Errorf("STORE DATA: DGI encryption needs the DGI format")
		}
		p1 |= gpwire.StoreEncAll
		s.mu.Lock()
		dek := append(scp03.Key{}, s.dek...)
		s.mu.Unlock()
		defer dek.Wipe()
		sealed := make([][]byte, len(blocks))
		for i, b := range blocks {
			dgis, err := gpwire.ParseDGIs(b)
			if err != nil {
				return fmt.Errorf("STORE DATA block %d: %w", i, err)
			}
			for j := range dgis {
				if dgis[j], err = gpwire.SealDGI(dek, dgis[j]); err != nil {
					return fmt.Errorf("STORE DATA block %d: %w", i, err)
				}
			}
			if sealed[i], err = gpwire.EncodeDGIs(dgis...); err != nil {
				return fmt.Errorf("STORE DATA block %d: %w", i, err)
			}
		}
		blocks = sealed
	}
	cmds, err := gpwire.StoreDataCommands(p1, blocks...)
	if err != nil {
		return fmt.Errorf("STORE DATA: %w", err)
	}
	if len(aid) > 0 && !bytes.Equal(aid, s.sd) {
		in := gpwire.Install{P1: gpwire.InstallForPersonalization, ApplicationAID: aid}
		if err := in.Validate(); err != nil {
			return fmt.Errorf("INSTALL [for personalization]: %w", err)
		}
		if err := s.sendInstall(ctx, in); err != nil {
			return err
		}
	}
	sctx := reader.WithSensitive(ctx)
	for i, c := range cmds {
		if _, err := s.do(sctx, fmt.Sprintf("STORE DATA block %d of %d", i+1, len(cmds)), c); err != nil {
			return err
		}
	}
	return nil
}

// Lock locks an application or security domain (SET STATUS P1 '40', P2
// '80'; GPCS §11.10).
func (s *Session) Lock(ctx context.Context, aid []byte) error {
	return s.setStatus(ctx, "lock", gpwire.SetStatusApp, gpwire.SetStatusLockApp, aid)
}

// Unlock unlocks it (P2 '00': back to the state before locking).
func (s *Session) Unlock(ctx context.Context, aid []byte) error {
	return s.setStatus(ctx, "unlock", gpwire.SetStatusApp, gpwire.SetStatusUnlockApp, aid)
}

// SetCardLifeCycle changes the card life cycle state (SET STATUS P1 '80'
// with the ISD's AID): gp.CardInitialized, CardSecured, CardLocked,
// CardTerminated. TERMINATED is irreversible.
func (s *Session) SetCardLifeCycle(ctx context.Context, state byte) error {
	return s.setStatus(ctx, "card life cycle "+gpwire.LifeCycleName(gpwire.KindCard, state), gpwire.SetStatusISD, state, s.sd)
}

// SetStatus sends a SET STATUS of any type.
func (s *Session) SetStatus(ctx context.Context, p1, state byte, aid []byte) error {
	return s.setStatus(ctx, "", p1, state, aid)
}

func (s *Session) setStatus(ctx context.Context, what string, p1, state byte, aid []byte) error {
	if len(aid) < gpwire.MinAIDLen || len(aid) > gpwire.MaxAIDLen {
		return fmt.Errorf("SET STATUS: %w: %d bytes", gpwire.ErrBadAID, len(aid))
	}
	op := fmt.Sprintf("SET STATUS %02X %02X %X", p1, state, aid)
	if what != "" {
		op = fmt.Sprintf("SET STATUS (%s) %X", what, aid)
	}
	_, err := s.do(ctx, op, gpwire.SetStatus(p1, state, aid))
	return err
}
