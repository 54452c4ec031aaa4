package cardmanager

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet"
)

// AIDs of the card manager.
var (
	// LoadFileAID is the AID of the executable load file that holds the
	// ISD module (GP's RID A000000151 with the "SP" package suffix used
	// for security domain packages).
	LoadFileAID = []byte{0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50}
	// ModuleAID is the AID of the ISD's executable module.
	ModuleAID = []byte{0xA0, 0x00, 0x00, 0x01, 0x51, 0x53, 0x50, 0x41}
	// DefaultAID is the AID the ISD is installed under: the default ISD
	// AID of GP 2.2 and later (GPCS Annex H.1.3).
	DefaultAID = []byte{0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00}
)

// DefaultPrivileges are the privileges the runtime installs the ISD with
// (GPCS §6.6, §11.1.2): Security Domain, Card Lock, Card Terminate, Card
// Reset (default selected) and CVM Management in byte 1; Authorized
// Management, Global Delete, Global Lock, Global Registry and Final
// Application in byte 2.
var DefaultPrivileges = applet.Privileges{
	applet.PrivSecurityDomain | applet.PrivCardLock | applet.PrivCardTerminate | applet.PrivCardReset | applet.PrivCVMManagement,
	applet.PrivAuthorizedMgmt | applet.PrivGlobalDelete | applet.PrivGlobalLock | applet.PrivGlobalRegistry | applet.PrivFinalApplication,
	0,
}

// Module is the built-in implementation of the Issuer Security Domain.
// Its install parameters are the creation parameters (Params.Bytes).
var Module = applet.Module{
	AID:     ModuleAID,
	Name:    "issuer security domain",
	Version: "1.0",
	New:     New,
}

// New creates the ISD instance. On first creation (empty persistent
// memory) it stores the creation parameters params (Params.Bytes) in one
// transaction; when the instance is re-created from a card image it only
// checks that its configuration is readable and ignores params.
func New(env applet.Env, params []byte) (applet.Applet, error) {
	if _, ok := env.Memory().Get(recConfig); ok {
		if _, err := config(env.Memory()); err != nil {
			return nil, err
		}
		return ISD{}, nil
	}
	p, err := ParseParams(params)
	if err != nil {
		return nil, err
	}
	if err := initialize(env, p); err != nil {
		return nil, fmt.Errorf("cardmanager: storing the creation parameters: %w", err)
	}
	return ISD{}, nil
}

// ISD is the Issuer Security Domain applet. It has no fields: everything
// lives in the Env's persistent and transient memory.
type ISD struct{}

var _ applet.Applet = ISD{}

// Select answers the selection of the ISD with its FCI (GPCS §11.9.3.1,
// Table 11-82). Selection ends any secure channel session on the channel
// (Amd D §5.6). In CARD_LOCKED the FCI comes with the warning '6283'
// (GPCS Table 11-83).
func (ISD) Select(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	resetChannel(env)
	fci, err := fci(env)
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	if cardState(env) == applet.CardLocked {
		return fci, apdu.ErrSelectedDeactivated
	}
	return fci, apdu.SWNoError
}

// Deselect ends the secure channel session and forgets everything in
// progress on the channel (Amd D §5.6; GPCS §11.6: an interrupted load is
// abandoned).
func (ISD) Deselect(env applet.Env) { resetChannel(env) }

// Process handles every command but SELECT of another application.
func (isd ISD) Process(env applet.Env, cmd apdu.Command) ([]byte, apdu.SW) {
	if env.Selecting() && cmd.INS == gp.INSSelect {
		return isd.Select(env, cmd)
	}
	st := channelState(env)
	if cmd.CLA&0x10 != 0 {
		// ISO/IEC 7816-4 command chaining (CLA b5 in both codings); GP
		// chains with P1 b8 instead (GPCS §11.1.5.1).
		return nil, apdu.ErrChainingUnsupported
	}
	switch cmd.INS {
	case scp03.INSInitializeUpdate:
		return initializeUpdate(env, st, cmd)
	case scp03.INSExternalAuthenticate:
		return externalAuthenticate(env, st, cmd)
	}

	full, done, chainSW := st.chain(cmd)
	if !done {
		return nil, chainSW // intermediate segment ('9000', no R-MAC) or a chain error
	}
	raw, err := full.Bytes()
	if err != nil {
		return nil, apdu.ErrWrongLength
	}
	plain := full
	wrapped := false
	if st.scp != nil {
		if plain, err = st.scp.Unwrap(raw); err != nil {
			st.securityError(env)
			return nil, scp03.StatusFor(err)
		}
		wrapped = true
	}
	var data []byte
	var sw apdu.SW
	switch {
	case chainSW != apdu.SWNoError:
		sw = chainSW // a broken chain: the command was unwrapped to keep the MAC chain, then refused
	case hasGPSM(plain.CLA):
		// Secure messaging without a session (or at level '00', where
		// commands carry no C-MAC): GPCS §10.5, Amd D §5.6.
		sw = apdu.ErrSecurityStatus
	case plain.CLA&0x40 == 0 && plain.CLA&0x08 != 0:
		sw = apdu.ErrSMNotSupported // ISO/IEC 7816-4 secure messaging (CLA b4)
	default:
		data, sw = dispatch(env, st, plain)
	}
	if !wrapped {
		return data, sw
	}
	out, err := st.scp.Wrap(apdu.Response{Data: data, SW: sw}.Bytes())
	if err != nil {
		st.securityError(env)
		return nil, scp03.StatusFor(err)
	}
	r, err := apdu.ParseResponse(out)
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	return r.Data, r.SW
}

// hasGPSM reports whether cla carries the GlobalPlatform secure messaging
// indicator (GPCS §11.1.4: b3 in the first interindustry and proprietary
// '80'-'8F' coding, b6 in the further coding).
func hasGPSM(cla byte) bool {
	if cla&0x40 != 0 {
		return cla&0x20 != 0
	}
	return cla&0x0C == 0x04
}

// Command gating (GPCS Table 11-1, Table 11-2, §5.1.1.4-5).
type need int

const (
	needNone   need = iota // GET DATA
	needAuth               // an authenticated session at any level (GET STATUS)
	needCMAC               // an authenticated session with C-MAC (every mutating command)
	needManage             // needCMAC plus the Authorized Management privilege
)

func dispatch(env applet.Env, st *chanState, cmd apdu.Command) ([]byte, apdu.SW) {
	proprietary := cmd.CLA&0x80 != 0
	if cmd.INS == gp.INSGetData || cmd.INS == 0xCB {
		if cmd.INS == 0xCB && proprietary {
			return nil, apdu.ErrINSNotSupported // GPCS Table 11-27: 'CB' only with an ISO class
		}
		return getData(env, st, cmd)
	}
	type handler struct {
		need    need
		locked  bool // allowed in CARD_LOCKED
		card    bool // needs the CardAdmin (the Security Domain privilege)
		handler func(applet.Env, *chanState, apdu.Command) ([]byte, apdu.SW)
	}
	var h handler
	switch cmd.INS {
	case gp.INSGetStatus:
		h = handler{needAuth, true, true, getStatus}
	case gp.INSSetStatus:
		h = handler{needCMAC, true, true, setStatus}
	case gp.INSInstall:
		h = handler{needManage, false, true, install}
	case gp.INSLoad:
		h = handler{needManage, false, true, load}
	case gp.INSDelete:
		h = handler{needManage, false, false, deleteCmd}
	case gp.INSPutKey:
		h = handler{needCMAC, false, false, putKey}
	case gp.INSStoreData:
		h = handler{needCMAC, false, false, storeData}
	default:
		return nil, apdu.ErrINSNotSupported
	}
	if !proprietary {
		return nil, apdu.ErrCLANotSupported
	}
	switch cardState(env) {
	case applet.CardTerminated:
		return nil, apdu.ErrConditionsNotMet // GPCS §5.1.1.5: only GET DATA
	case applet.CardLocked:
		if !h.locked {
			return nil, apdu.ErrConditionsNotMet // GPCS §5.1.1.4, §9.6.3
		}
	}
	if !st.authenticated(h.need >= needCMAC) {
		return nil, apdu.ErrSecurityStatus
	}
	if h.card && env.Card() == nil || h.need == needManage && !canManage(env) {
		return nil, apdu.ErrConditionsNotMet
	}
	return h.handler(env, st, cmd)
}

// cardState returns the card life cycle state (GPCS §5.1.1); an instance
// without the Security Domain privilege cannot see it and behaves as in
// SECURED.
func cardState(env applet.Env) byte {
	if c := env.Card(); c != nil {
		return c.CardLifeCycle()
	}
	return applet.CardSecured
}

// ownEntry returns the ISD's own registry entry.
func ownEntry(env applet.Env) (applet.Application, bool) {
	c := env.Card()
	if c == nil {
		return applet.Application{}, false
	}
	self := env.AID()
	for _, a := range c.Applications() {
		if bytes.Equal(a.AID, self) {
			return a, true
		}
	}
	return applet.Application{}, false
}

// canManage reports whether the instance may perform card content
// management: a Security Domain with the Authorized Management privilege
// (GPCS §9.1.3.2, §9.3.5).
func canManage(env applet.Env) bool {
	e, ok := ownEntry(env)
	return ok && e.Privileges.Has(applet.PrivSecurityDomain) && e.Privileges[1]&applet.PrivAuthorizedMgmt != 0
}

// statusOf maps an error to a status word: the runtime's errors through
// applet.StatusOf, apdu/gp's parse errors to '6A80', anything else '6F00'.
func statusOf(err error) apdu.SW {
	var sw apdu.SW
	switch {
	case err == nil:
		return apdu.SWNoError
	case errors.As(err, &sw):
		return sw
	case errors.Is(err, gp.ErrMalformed), errors.Is(err, gp.ErrBadAID), errors.Is(err, gp.ErrTooLong),
		errors.Is(err, gp.ErrUnsupported), errors.Is(err, gp.ErrBadKey):
		return apdu.ErrWrongData
	case errors.Is(err, errCorrupt):
		return apdu.ErrUnknown
	}
	return applet.StatusOf(err)
}

func swError(sw apdu.SW, format string, a ...any) error {
	return fmt.Errorf("%w: %s", sw, fmt.Sprintf(format, a...))
}
