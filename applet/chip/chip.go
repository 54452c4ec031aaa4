// Package chip is the emulated chip's runtime: the operating system that
// hosts applets (applet.Applet) behind the applet.Card contract. It keeps
// the GlobalPlatform registry (load files, applications), selects
// applications by AID on the basic and logical channels (ISO/IEC 7816-4
// §7.1, §11.1.1–§11.1.2), answers long responses through 61xx + GET
// RESPONSE, and gives applets persistent memory written through atomic
// transactions, in which power can be cut at any write (tear injection).
//
// The whole persistent state is the card image (image.go): saved
// atomically to a file after every command that changed it, versioned, and
// plain JSON, so nothing runs when it is loaded.
package chip

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"sync"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/applet"
)

// MaxChannels is how many logical channels the chip offers: the basic
// channel and three more, as the first interindustry CLA encodes
// (ISO/IEC 7816-4 §5.4.2).
const MaxChannels = 4

// Chip is an emulated chip. It implements applet.Card and is safe for
// concurrent use (commands are serialised, as on a real chip).
type Chip struct {
	mu      sync.Mutex
	atr     []byte
	mem     *store
	modules map[string]applet.Module // by module AID hex
	rand    io.Reader

	// Volatile state.
	powered   bool
	channels  [MaxChannels]*channel
	instances map[string]applet.Applet // live objects, by instance AID hex
	pending   []byte                   // response data waiting for GET RESPONSE
	pendingCh int
	t0        bool

	// Persistence.
	path    string // "" = in memory only
	saveErr error

	regCache []appEntry // decoded registry, valid while regGen == mem.sysGen
	regGen   uint64
	regIndex map[string]int // instance AID hex → index in regCache
}

type channel struct {
	selected  string                    // instance AID hex, "" = none
	transient map[string]map[string]any // per instance AID hex
}

// Option configures a Chip.
type Option func(*Chip)

// WithRandom sets the random source (tests make challenges repeatable).
func WithRandom(r io.Reader) Option { return func(c *Chip) { c.rand = r } }

// WithModules adds built-in modules the chip implements.
func WithModules(ms ...applet.Module) Option {
	return func(c *Chip) {
		for _, m := range ms {
			c.modules[hex.EncodeToString(m.AID)] = m
		}
	}
}

// WithT0 makes the chip answer like a T=0 card, which can return data
// only to a case-2 command: every other command's response data waits for
// GET RESPONSE behind 61xx (ISO/IEC 7816-3 §12.2.2, 7816-4 Annex A). Hosts
// use it to exercise their GET RESPONSE handling.
func WithT0() Option { return func(c *Chip) { c.t0 = true } }

// WithQuota limits persistent memory to n bytes (keys and values), like a
// chip's EEPROM size; 0 means no limit.
func WithQuota(n int) Option { return func(c *Chip) { c.mem.quota = n } }

// New returns a chip with the ATR and an empty registry, powered off.
func New(atr []byte, opts ...Option) *Chip {
	c := &Chip{
		atr:       clone(atr),
		mem:       newStore(0),
		modules:   map[string]applet.Module{},
		rand:      rand.Reader,
		instances: map[string]applet.Applet{},
	}
	for _, o := range opts {
		o(c)
	}
	if _, ok := c.mem.get(keyCard); !ok {
		c.mem.records[keyCard] = []byte{applet.CardOPReady}
	}
	return c
}

// Registry keys in the store. Applet records live under "a/<AID hex>/".
const (
	keyCard     = "sys/card"      // card life cycle state
	prefixFile  = "sys/lf/"       // + load file AID hex → JSON applet.LoadFile
	prefixApp   = "sys/app/"      // + instance AID hex → JSON appEntry
	prefixOrder = "sys/order/"    // + 8-digit sequence → instance AID hex (registry order)
	prefixData  = "a/"            // + instance AID hex + "/" + applet key
	keySeq      = "sys/order-seq" // next sequence number
)

// ATR implements applet.Card.
func (c *Chip) ATR() []byte { return c.atr }

// PowerOn implements applet.Card: recovery of an interrupted transaction,
// then the implicit selection of the default application on the basic
// channel (GPCS v2.3.1 §6.6, Card Reset privilege).
func (c *Chip) PowerOn() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.powerOn()
}

func (c *Chip) powerOn() {
	c.mem.recover()
	// Instances are re-created from their persistent state: nothing an
	// object held survives power loss.
	clear(c.instances)
	c.resetVolatile()
	c.powered = true
	c.selectDefault()
	c.persist()
}

// PowerOff implements applet.Card. No code runs: applets are not told.
func (c *Chip) PowerOff() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resetVolatile()
	c.powered = false
}

// Reset implements applet.Card: warm and cold resets both start the chip
// afresh, as volatile memory does not survive either.
func (c *Chip) Reset(warm bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.powerOn()
}

func (c *Chip) resetVolatile() {
	for i := range c.channels {
		c.channels[i] = nil
	}
	c.channels[0] = &channel{transient: map[string]map[string]any{}}
	c.pending = nil
}

// TearAfter arms tear injection: power is cut right after the n-th
// persistent write from now (n ≥ 1); the command being processed gets no
// answer, and the next power-on recovers. n = 0 disarms.
func (c *Chip) TearAfter(n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n == 0 {
		c.mem.tearAt = 0
		return
	}
	c.mem.tearAt = c.mem.writes + n
}

// Writes returns the number of persistent writes so far, so tests can
// count those of one command and tear at each.
func (c *Chip) Writes() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mem.writes
}

// Powered reports whether the chip has power (false after a tear until
// the next PowerOn or Reset).
func (c *Chip) Powered() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.powered
}

// Transmit implements applet.Card. It returns nil — no answer at all — when
// the chip has no power, including when tear injection cut it during this
// command: transports then report the card as gone.
func (c *Chip) Transmit(raw []byte) (rsp []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.powered {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(torn); !ok {
				// An applet bug must not kill the chip: answer 6F00 and
				// roll back what the command did (JC: an uncaught
				// exception aborts the transaction).
				c.mem.abort()
				rsp = apdu.Status(apdu.ErrUnknown)
				c.persist()
				return
			}
			c.powered = false
			c.resetVolatile()
			c.persist() // the image holds the torn journal; power-up recovers
			rsp = nil
		}
	}()
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		return apdu.Status(apdu.ErrWrongLength)
	}
	ch := cmd.Channel()
	if ch >= MaxChannels || c.channels[ch] == nil {
		return apdu.Status(apdu.ErrChannelNotSupported)
	}
	if cmd.CLA&0x80 == 0 && cmd.INS == 0xC0 {
		return c.getResponse(ch, cmd)
	}
	c.pending = nil
	data, sw := c.dispatch(ch, cmd)
	c.mem.abort() // a transaction still open when the command ends is aborted
	c.persist()
	if c.saveErr != nil && sw == apdu.SWNoError {
		return apdu.Status(apdu.ErrMemoryFailure)
	}
	return c.respond(ch, cmd, data, sw)
}

func (c *Chip) dispatch(ch int, cmd apdu.Command) ([]byte, apdu.SW) {
	if cmd.CLA&0x80 == 0 {
		switch cmd.INS {
		case 0xA4:
			if cmd.P1 == 0x04 {
				return c.selectAID(ch, cmd)
			}
		case 0x70:
			return c.manageChannel(ch, cmd)
		}
	}
	sel := c.channels[ch].selected
	if sel == "" {
		return nil, apdu.ErrConditionsNotMet
	}
	a, env, err := c.instance(ch, sel)
	if err != nil {
		return nil, apdu.ErrUnknown
	}
	return a.Process(env, cmd)
}

// respond applies the transport rule of ISO/IEC 7816-4 §5.3.4: data that
// does not fit Ne (256 for a command without Le) waits for GET RESPONSE
// behind 61xx; errors carry no data.
func (c *Chip) respond(ch int, cmd apdu.Command, data []byte, sw apdu.SW) []byte {
	if len(data) == 0 || (sw != apdu.SWNoError && !sw.IsWarning()) {
		return apdu.Status(sw)
	}
	ne := cmd.Ne
	if ne == 0 {
		ne = apdu.MaxShortNe
	}
	if len(data) <= ne && sw == apdu.SWNoError && !(c.t0 && cmd.Case() != apdu.Case2) {
		return apdu.Response{Data: data, SW: sw}.Bytes()
	}
	if sw != apdu.SWNoError {
		return apdu.Response{Data: data[:min(len(data), ne)], SW: sw}.Bytes()
	}
	c.pending, c.pendingCh = data, ch
	return apdu.Status(apdu.NewSW(0x61, byte(min(len(data), 256))))
}

func (c *Chip) getResponse(ch int, cmd apdu.Command) []byte {
	if len(c.pending) == 0 || c.pendingCh != ch {
		return apdu.Status(apdu.ErrConditionsNotMet)
	}
	if cmd.P1 != 0 || cmd.P2 != 0 {
		return apdu.Status(apdu.ErrIncorrectP1P2)
	}
	avail := min(len(c.pending), 256)
	if cmd.Ne == 0 || cmd.Ne > 256 {
		return apdu.Status(apdu.NewSW(0x6C, byte(avail)))
	}
	n := min(cmd.Ne, len(c.pending))
	out := c.pending[:n]
	c.pending = c.pending[n:]
	if len(c.pending) == 0 {
		c.pending = nil
		return apdu.Response{Data: out, SW: apdu.SWNoError}.Bytes()
	}
	return apdu.Response{Data: out, SW: apdu.NewSW(0x61, byte(min(len(c.pending), 256)))}.Bytes()
}

// selectAID implements SELECT by DF name (ISO/IEC 7816-4 §11.1.1; GPCS
// v2.3.1 §11.9): full or partial (prefix) AID, P2 b2b1 first (00) or next
// (10) occurrence, b4b3 FCI (00) or no data (0C). An empty AID selects the
// default application.
func (c *Chip) selectAID(ch int, cmd apdu.Command) ([]byte, apdu.SW) {
	occurrence, answer := cmd.P2&0x03, cmd.P2&0x0C
	if occurrence == 0x01 || occurrence == 0x03 || (answer != 0x00 && answer != 0x0C) {
		return nil, apdu.ErrIncorrectP1P2
	}
	if len(cmd.Data) > 16 {
		return nil, apdu.ErrWrongLength
	}
	apps := c.selectable()
	var target string
	if len(cmd.Data) == 0 {
		target = c.defaultApp()
	} else {
		start := 0
		if occurrence == 0x02 {
			// "Next": after the application now selected on this channel
			// if it matches, else from the first (GPCS §11.9.2.1).
			for i, a := range apps {
				if a == c.channels[ch].selected {
					start = i + 1
				}
			}
		}
		for _, a := range apps[start:] {
			aid, _ := hex.DecodeString(a)
			if bytes.HasPrefix(aid, cmd.Data) {
				target = a
				break
			}
		}
	}
	if target == "" {
		return nil, apdu.ErrFileNotFound
	}
	// A failed SELECT of a known application leaves none selected; the
	// previous one is deselected first (JC RE §4.6).
	c.deselect(ch)
	a, env, err := c.instance(ch, target)
	if err != nil {
		return nil, apdu.ErrAppletSelectFailed
	}
	env.selecting = true
	fci, sw := a.Select(env, cmd)
	if sw != apdu.SWNoError && !sw.IsWarning() {
		return nil, apdu.ErrAppletSelectFailed
	}
	c.channels[ch].selected = target
	if answer == 0x0C {
		return nil, sw
	}
	if fci == nil {
		aid, _ := hex.DecodeString(target)
		fci = append([]byte{0x6F, byte(2 + len(aid)), 0x84, byte(len(aid))}, aid...)
	}
	return fci, sw
}

func (c *Chip) deselect(ch int) {
	sel := c.channels[ch].selected
	if sel == "" {
		return
	}
	c.channels[ch].selected = ""
	if a, env, err := c.instance(ch, sel); err == nil {
		a.Deselect(env)
	}
	c.mem.abort()
	delete(c.channels[ch].transient, sel)
}

// manageChannel implements MANAGE CHANNEL (ISO/IEC 7816-4 §11.1.2): open
// (P1 00, P2 00 = card assigns, answers the number) and close (P1 80, P2 =
// channel). A new channel opened from channel 0 gets the default
// application selected (GPCS v2.3.1 §11.7.2).
func (c *Chip) manageChannel(ch int, cmd apdu.Command) ([]byte, apdu.SW) {
	switch cmd.P1 {
	case 0x00:
		if cmd.P2 != 0 {
			if int(cmd.P2) >= MaxChannels || c.channels[cmd.P2] != nil {
				return nil, apdu.ErrIncorrectP1P2
			}
			c.openChannel(int(cmd.P2))
			return nil, apdu.SWNoError
		}
		if cmd.Ne == 0 {
			return nil, apdu.ErrWrongLength
		}
		for i := 1; i < MaxChannels; i++ {
			if c.channels[i] == nil {
				c.openChannel(i)
				return []byte{byte(i)}, apdu.SWNoError
			}
		}
		return nil, apdu.ErrFuncNotSupported
	case 0x80:
		target := int(cmd.P2)
		if target == 0 || target >= MaxChannels || c.channels[target] == nil {
			return nil, apdu.ErrIncorrectP1P2
		}
		c.deselect(target)
		c.channels[target] = nil
		return nil, apdu.SWNoError
	}
	return nil, apdu.ErrIncorrectP1P2
}

func (c *Chip) openChannel(n int) {
	c.channels[n] = &channel{transient: map[string]map[string]any{}}
	if d := c.defaultApp(); d != "" {
		if a, env, err := c.instance(n, d); err == nil {
			env.selecting = true
			if _, sw := a.Select(env, apdu.Command{CLA: byte(n), INS: 0xA4, P1: 0x04}); sw == apdu.SWNoError {
				c.channels[n].selected = d
			}
		}
	}
}

func (c *Chip) selectDefault() {
	if d := c.defaultApp(); d != "" {
		if a, env, err := c.instance(0, d); err == nil {
			env.selecting = true
			if _, sw := a.Select(env, apdu.Command{INS: 0xA4, P1: 0x04}); sw == apdu.SWNoError || sw.IsWarning() {
				c.channels[0].selected = d
			}
		}
	}
}

// defaultApp is the application with the Card Reset privilege, if
// selectable.
func (c *Chip) defaultApp() string {
	for _, e := range c.apps() {
		if e.Privileges.Has(applet.PrivCardReset) && c.isSelectable(e) {
			return hex.EncodeToString(e.AID)
		}
	}
	return ""
}

// selectable lists the AIDs (hex) of selectable applications in registry
// order. In CARD_LOCKED and TERMINATED only the ISD (Security Domain with
// Card Reset... i.e. the default application holding Card Lock or Card
// Terminate) may be selected (GPCS v2.3.1 §5.1.1.4–5).
func (c *Chip) selectable() []string {
	var out []string
	for _, e := range c.apps() {
		if c.isSelectable(e) {
			out = append(out, hex.EncodeToString(e.AID))
		}
	}
	return out
}

func (c *Chip) isSelectable(e appEntry) bool {
	state := c.cardLifeCycle()
	if state == applet.CardLocked || state == applet.CardTerminated {
		return e.Privileges.Has(applet.PrivSecurityDomain) && e.Privileges.Has(applet.PrivCardReset)
	}
	if e.LifeCycle&applet.AppLockedBit != 0 && !e.Privileges.Has(applet.PrivSecurityDomain) {
		return false
	}
	return e.LifeCycle&applet.AppSelectable == applet.AppSelectable || e.Privileges.Has(applet.PrivSecurityDomain)
}

// instance returns the live applet object for an installed AID, creating
// it (Module.New) when first used since the chip object was made.
func (c *Chip) instance(ch int, aidHex string) (applet.Applet, *env, error) {
	e, ok := c.app(aidHex)
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s", applet.ErrNotFound, aidHex)
	}
	en := c.newEnv(ch, e)
	if a, ok := c.instances[aidHex]; ok {
		return a, en, nil
	}
	m, ok := c.modules[hex.EncodeToString(e.Module)]
	if !ok {
		return nil, nil, fmt.Errorf("%w: %X", applet.ErrUnknownModule, e.Module)
	}
	a, err := m.New(en, e.Params)
	if err != nil {
		return nil, nil, err
	}
	c.instances[aidHex] = a
	return a, en, nil
}

func (c *Chip) newEnv(ch int, e appEntry) *env {
	aidHex := hex.EncodeToString(e.AID)
	en := &env{chip: c, aid: e.AID, ch: ch, mem: memory{s: c.mem, prefix: prefixData + aidHex + "/"}}
	if chn := c.channels[ch]; chn != nil {
		t := chn.transient[aidHex]
		if t == nil {
			t = map[string]any{}
			chn.transient[aidHex] = t
		}
		en.transient = t
	} else {
		en.transient = map[string]any{}
	}
	if e.Privileges.Has(applet.PrivSecurityDomain) {
		en.admin = &admin{chip: c, ch: ch, sd: e.AID}
	}
	return en
}

// env implements applet.Env for one command.
type env struct {
	chip      *Chip
	aid       []byte
	ch        int
	selecting bool
	mem       memory
	transient map[string]any
	admin     *admin
}

func (e *env) AID() []byte               { return clone(e.aid) }
func (e *env) Channel() int              { return e.ch }
func (e *env) Selecting() bool           { return e.selecting }
func (e *env) Memory() applet.Memory     { return e.mem }
func (e *env) Transient() map[string]any { return e.transient }
func (e *env) Begin() error              { return e.chip.mem.begin() }
func (e *env) Commit() error             { return e.chip.mem.commit() }
func (e *env) Abort()                    { e.chip.mem.abort() }
func (e *env) Random(b []byte)           { _, _ = io.ReadFull(e.chip.rand, b) }
func (e *env) Card() applet.CardAdmin {
	if e.admin == nil {
		return nil
	}
	return e.admin
}

// Modules lists the chip's built-in modules, sorted by AID.
func (c *Chip) Modules() []applet.Module {
	out := make([]applet.Module, 0, len(c.modules))
	for _, m := range c.modules {
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i].AID, out[j].AID) < 0 })
	return out
}
