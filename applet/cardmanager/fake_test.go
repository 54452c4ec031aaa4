package cardmanager

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/gp"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet"
)

// This file is a small in-test model of the runtime (applet/chip) for unit
// tests: persistent memory with transactions, per-channel transient
// memory, and a registry behind applet.CardAdmin.

type fakeMem struct {
	recs    map[string][]byte
	journal map[string][]byte // nil value: deleted
	inTx    bool
	writes  int
}

func newFakeMem() *fakeMem { return &fakeMem{recs: map[string][]byte{}} }

func (m *fakeMem) Get(key string) ([]byte, bool) {
	if m.inTx {
		if v, ok := m.journal[key]; ok {
			return bytes.Clone(v), v != nil
		}
	}
	v, ok := m.recs[key]
	return bytes.Clone(v), ok
}

func (m *fakeMem) Put(key string, value []byte) error {
	m.writes++
	v := bytes.Clone(value)
	if v == nil {
		v = []byte{}
	}
	if m.inTx {
		m.journal[key] = v
		return nil
	}
	m.recs[key] = v
	return nil
}

func (m *fakeMem) Delete(key string) error {
	m.writes++
	if m.inTx {
		m.journal[key] = nil
		return nil
	}
	delete(m.recs, key)
	return nil
}

func (m *fakeMem) Keys(prefix string) []string {
	set := map[string]bool{}
	for k := range m.recs {
		set[k] = true
	}
	if m.inTx {
		for k, v := range m.journal {
			set[k] = v != nil
		}
	}
	var out []string
	for k, ok := range set {
		if ok && strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func (m *fakeMem) begin() error {
	if m.inTx {
		return applet.ErrInTransaction
	}
	m.inTx, m.journal = true, map[string][]byte{}
	return nil
}

func (m *fakeMem) commit() error {
	if !m.inTx {
		return applet.ErrNoTransaction
	}
	for k, v := range m.journal {
		if v == nil {
			delete(m.recs, k)
		} else {
			m.recs[k] = v
		}
	}
	m.inTx, m.journal = false, nil
	return nil
}

func (m *fakeMem) abort() { m.inTx, m.journal = false, nil }

// snapshot copies the committed records, to assert "no state change".
func (m *fakeMem) snapshot() map[string]string {
	out := map[string]string{}
	for k, v := range m.recs {
		out[k] = hex.EncodeToString(v)
	}
	return out
}

// fakeCard is the registry and the chip-wide state.
type fakeCard struct {
	mem       *fakeMem // the ISD's memory (shared transaction state)
	state     byte
	files     []applet.LoadFile
	apps      []applet.Application
	modules   []applet.Module
	instances map[string]applet.Applet
	perso     []string // log of Personalize calls: "AID p1 p2 data" or "AID end"
}

func (c *fakeCard) LoadFiles() []applet.LoadFile {
	return append([]applet.LoadFile(nil), c.files...)
}

func (c *fakeCard) Applications() []applet.Application {
	return append([]applet.Application(nil), c.apps...)
}

func (c *fakeCard) Modules() []applet.Module { return c.modules }

func (c *fakeCard) AddLoadFile(lf applet.LoadFile) error {
	for _, f := range c.files {
		if bytes.Equal(f.AID, lf.AID) {
			return applet.ErrExists
		}
	}
	lf.LifeCycle = applet.LoadFileLoaded
	c.files = append(c.files, lf)
	return nil
}

func (c *fakeCard) Install(fileAID, moduleAID, instanceAID []byte, privileges applet.Privileges, params []byte, selectable bool) error {
	var mod *applet.Module
	for i := range c.modules {
		if bytes.Equal(c.modules[i].AID, moduleAID) {
			mod = &c.modules[i]
		}
	}
	if mod == nil {
		return applet.ErrUnknownModule
	}
	for _, a := range c.apps {
		if bytes.Equal(a.AID, instanceAID) {
			return applet.ErrExists
		}
	}
	inst, err := mod.New(&fakeEnv{aid: instanceAID, mem: newFakeMem(), transient: map[string]any{}}, params)
	if err != nil {
		return err
	}
	state := applet.AppInstalled
	if selectable {
		state = applet.AppSelectable
	}
	c.apps = append(c.apps, applet.Application{AID: bytes.Clone(instanceAID), LoadFile: bytes.Clone(fileAID), Module: bytes.Clone(moduleAID),
		Privileges: privileges, LifeCycle: state, SecurityDomain: DefaultAID})
	c.instances[hex.EncodeToString(instanceAID)] = inst
	return nil
}

func (c *fakeCard) Delete(aid []byte, related bool) error {
	for i, a := range c.apps {
		if bytes.Equal(a.AID, aid) {
			c.apps = append(c.apps[:i:i], c.apps[i+1:]...)
			return nil
		}
	}
	for i, f := range c.files {
		if bytes.Equal(f.AID, aid) {
			var keep []applet.Application
			for _, a := range c.apps {
				if bytes.Equal(a.LoadFile, aid) {
					if !related {
						return applet.ErrReferenced
					}
					continue
				}
				keep = append(keep, a)
			}
			c.apps = keep
			c.files = append(c.files[:i:i], c.files[i+1:]...)
			return nil
		}
	}
	return applet.ErrNotFound
}

func (c *fakeCard) SetLifeCycle(aid []byte, state byte) error {
	for i, a := range c.apps {
		if bytes.Equal(a.AID, aid) {
			c.apps[i].LifeCycle = state
			return nil
		}
	}
	return applet.ErrNotFound
}

func (c *fakeCard) CardLifeCycle() byte { return c.state }

func (c *fakeCard) SetCardLifeCycle(state byte) error {
	c.state = state
	return nil
}

func (c *fakeCard) Personalize(aid []byte, p1, p2 byte, data []byte) ([]byte, apdu.SW) {
	if data == nil {
		c.perso = append(c.perso, fmt.Sprintf("%X end", aid))
		return nil, apdu.SWNoError
	}
	c.perso = append(c.perso, fmt.Sprintf("%X %02X %02X %X", aid, p1, p2, data))
	inst, ok := c.instances[hex.EncodeToString(aid)]
	if !ok {
		return nil, apdu.ErrRefDataNotFound
	}
	p, ok := inst.(applet.Personalizer)
	if !ok {
		return nil, apdu.ErrFuncNotSupported
	}
	return p.StoreData(nil, p1, p2, data)
}

// instance returns the test applet installed as aid, or nil.
func (c *fakeCard) instance(aid []byte) *testApplet {
	a, _ := c.instances[hex.EncodeToString(aid)].(*testApplet)
	return a
}

// fakeEnv is the Env of one command.
type fakeEnv struct {
	aid       []byte
	ch        int
	selecting bool
	mem       *fakeMem
	transient map[string]any
	card      *fakeCard // nil: no Security Domain privilege
	rand      io.Reader
}

func (e *fakeEnv) AID() []byte               { return bytes.Clone(e.aid) }
func (e *fakeEnv) Channel() int              { return e.ch }
func (e *fakeEnv) Selecting() bool           { return e.selecting }
func (e *fakeEnv) Memory() applet.Memory     { return e.mem }
func (e *fakeEnv) Transient() map[string]any { return e.transient }
func (e *fakeEnv) Begin() error              { return e.mem.begin() }
func (e *fakeEnv) Commit() error             { return e.mem.commit() }
func (e *fakeEnv) Abort()                    { e.mem.abort() }
func (e *fakeEnv) Random(b []byte) {
	if e.rand == nil {
		clear(b)
		return
	}
	_, _ = io.ReadFull(e.rand, b)
}

func (e *fakeEnv) Card() applet.CardAdmin {
	if e.card == nil {
		return nil
	}
	return e.card
}

// counterReader is a deterministic random source.
type counterReader struct{ n byte }

func (r *counterReader) Read(p []byte) (int, error) {
	for i := range p {
		r.n++
		p[i] = r.n
	}
	return len(p), nil
}

// The test module: a personalisable applet whose load file the tests
// build.
var (
	testFileAID   = []byte{0xF0, 0x00, 0x00, 0x00, 0x01, 0x50, 0x55, 0x52, 0x53, 0x45}
	testModuleAID = []byte{0xF0, 0x00, 0x00, 0x00, 0x01, 0x50, 0x55, 0x52, 0x53, 0x45, 0x00}
	testAppAID    = []byte{0xF0, 0x00, 0x00, 0x00, 0x01, 0x50, 0x55, 0x52, 0x53, 0x45, 0x01}
	testModule    = applet.Module{AID: testModuleAID, Name: "test purse", Version: "1.0",
		New: func(env applet.Env, params []byte) (applet.Applet, error) { return &testApplet{params: params}, nil }}
)

type testApplet struct {
	params []byte
	stored [][]byte
}

func (a *testApplet) Select(applet.Env, apdu.Command) ([]byte, apdu.SW) { return nil, apdu.SWNoError }
func (a *testApplet) Deselect(applet.Env)                               {}
func (a *testApplet) Process(applet.Env, apdu.Command) ([]byte, apdu.SW) {
	return nil, apdu.ErrINSNotSupported
}

func (a *testApplet) StoreData(_ applet.Env, p1, p2 byte, data []byte) ([]byte, apdu.SW) {
	a.stored = append(a.stored, bytes.Clone(data))
	return nil, apdu.SWNoError
}

// testBlock builds the manifest of testModule (docs/loadfile.md), the
// Load File Data Block; mutate may change it first.
func testBlock(t testing.TB, mutate func(*gp.Manifest)) []byte {
	t.Helper()
	m := gp.Manifest{PackageAID: testFileAID, Version: [2]byte{1, 0},
		Modules: []gp.ModuleRef{{AID: testModuleAID, Digest: testModule.Digest()}}}
	if mutate != nil {
		mutate(&m)
	}
	block, err := m.Bytes()
	require.NoError(t, err)
	return block
}

// testLoadFile wraps a data block into a load file and returns it with
// its Load File Data Block Hash.
func testLoadFile(t testing.TB, block []byte, daps ...gp.DAPBlock) (file []byte, hash []byte) {
	t.Helper()
	file, err := gp.LoadFile{DAPs: daps, DataBlock: block}.Bytes()
	require.NoError(t, err)
	h := sha256.Sum256(block)
	return file, h[:]
}

// rig is an ISD on a fake card, driven at the APDU level.
type rig struct {
	t         testing.TB
	isd       applet.Applet
	card      *fakeCard
	mem       *fakeMem
	transient map[int]map[string]any
	rand      *counterReader
	params    Params
	host      *scp03.Host
	noCard    bool // the ISD runs without the Security Domain privilege
}

func newRig(t testing.TB, p Params) *rig {
	t.Helper()
	mem := newFakeMem()
	card := &fakeCard{mem: mem, state: applet.CardSecured, modules: []applet.Module{Module, testModule},
		instances: map[string]applet.Applet{}}
	card.files = []applet.LoadFile{{AID: LoadFileAID, Modules: [][]byte{ModuleAID}, LifeCycle: applet.LoadFileLoaded}}
	card.apps = []applet.Application{{AID: DefaultAID, LoadFile: LoadFileAID, Module: ModuleAID,
		Privileges: DefaultPrivileges, LifeCycle: applet.SDPersonalized, SecurityDomain: DefaultAID}}
	r := &rig{t: t, card: card, mem: mem, transient: map[int]map[string]any{}, rand: &counterReader{}, params: p}
	b, err := p.Bytes()
	require.NoError(t, err)
	r.isd, err = New(r.env(0), b)
	require.NoError(t, err)
	return r
}

func (r *rig) env(ch int) *fakeEnv {
	if r.transient[ch] == nil {
		r.transient[ch] = map[string]any{}
	}
	e := &fakeEnv{aid: DefaultAID, ch: ch, mem: r.mem, transient: r.transient[ch], card: r.card, rand: r.rand}
	if r.noCard {
		e.card = nil
	}
	return e
}

// transmit runs one raw command on channel 0 the way the runtime does:
// parse, Process, abort a transaction left open, encode the answer.
func (r *rig) transmit(raw []byte) []byte {
	cmd, err := apdu.ParseCommand(raw)
	if err != nil {
		return apdu.Status(apdu.ErrWrongLength)
	}
	data, sw := r.isd.Process(r.env(0), cmd)
	r.mem.abort()
	if sw != apdu.SWNoError && !sw.IsWarning() {
		data = nil
	}
	return apdu.Response{Data: data, SW: sw}.Bytes()
}

// send encodes and transmits a plain command; it returns data and SW.
func (r *rig) send(cmd apdu.Command) ([]byte, apdu.SW) {
	r.t.Helper()
	raw, err := cmd.Bytes()
	require.NoError(r.t, err)
	rsp, err := apdu.ParseResponse(r.transmit(raw))
	require.NoError(r.t, err)
	return rsp.Data, rsp.SW
}

func (r *rig) selectISD() ([]byte, apdu.SW) {
	env := r.env(0)
	env.selecting = true
	return r.isd.Select(env, gp.Select(DefaultAID))
}

// open runs the SCP03 handshake with the keys of key set kvn (0: the
// default set of the rig) at level.
func (r *rig) open(level scp03.SecurityLevel) {
	r.t.Helper()
	require.NoError(r.t, r.tryOpen(r.params.KeySets[0].Keys, 0, level))
}

func (r *rig) tryOpen(keys scp03.StaticKeys, kvn byte, level scp03.SecurityLevel) error {
	h, err := scp03.NewHost(scp03.HostConfig{Keys: keys, KeyVersion: kvn, Level: level, AID: DefaultAID, Rand: &counterReader{n: 0x80}})
	if err != nil {
		return err
	}
	iu, err := h.InitializeUpdate()
	if err != nil {
		return err
	}
	raw, _ := iu.Bytes()
	ea, err := h.ExternalAuthenticate(r.transmit(raw))
	if err != nil {
		return err
	}
	raw, _ = ea.Bytes()
	if err := h.Complete(r.transmit(raw)); err != nil {
		return err
	}
	r.host = h
	return nil
}

// secure wraps cmd with the open host session, transmits it and unwraps
// the response.
func (r *rig) secure(cmd apdu.Command) ([]byte, apdu.SW) {
	r.t.Helper()
	w, err := r.host.Wrap(cmd)
	require.NoError(r.t, err)
	raw, err := w.Bytes()
	require.NoError(r.t, err)
	out, err := r.host.Unwrap(r.transmit(raw))
	require.NoError(r.t, err)
	rsp, err := apdu.ParseResponse(out)
	require.NoError(r.t, err)
	return rsp.Data, rsp.SW
}

func hexb(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}
