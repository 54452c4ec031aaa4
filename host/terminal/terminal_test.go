package terminal_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu"
	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/profile"
	"github.com/valuechip/valuechip/applet/purse"
	hostgp "github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/host/terminal"
	"github.com/valuechip/valuechip/reader"
	"github.com/valuechip/valuechip/reader/connect"
	"github.com/valuechip/valuechip/reader/emu"
)

var (
	testCardID = wire.CardID{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}
	eur        = wire.Currency{0x09, 0x78}
	testTID    = wire.TerminalID{'T', 'E', 'R', 'M', '0', '0', '0', '1'}
	// docs/purse.md §10: PIN-free 25.00, max debit 100.00.
	testLimits = wire.Limits{MaxBalance: 100000, MaxLoad: 50000, MaxDebit: 10000, PINFreeLimit: 2500, OfflineLimit: 50000}
)

// issuedImage issues a purse on the sample chip once and returns its
// image; each test starts from a copy.
var issuedImage = sync.OnceValues(func() ([]byte, error) { return issue(testLimits) })

func issue(limits wire.Limits) ([]byte, error) {
	c, err := profile.Build(profile.Sample(), chip.WithModules(purse.Module))
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	conn := emu.Connect(c, "emu:issue")
	s, err := hostgp.Open(ctx, connect.Stack(conn, connect.StackOptions{}), hostgp.Config{
		Keys: hostgp.TestKeys(), Level: scp03.LevelCMAC | scp03.LevelCDEC})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	err = terminal.Issue(ctx, s, terminal.IssueParams{Digest: purse.Module.Digest(), CardID: testCardID, Currency: eur,
		Limits: limits, PIN: "1234", Masters: terminal.DevMasters()})
	if err != nil {
		return nil, err
	}
	return c.MarshalImage()
}

func loadChip(t testing.TB, img []byte) *chip.Chip {
	t.Helper()
	c, err := chip.UnmarshalImage(img, chip.WithModules(profile.Modules()...), chip.WithModules(purse.Module))
	require.NoError(t, err)
	return c
}

type rig struct {
	c    *chip.Chip
	term *terminal.Terminal
	sam  *terminal.SoftwareSAM
	auth *terminal.LocalAuthority
}

func newRig(t testing.TB) *rig {
	t.Helper()
	img, err := issuedImage()
	require.NoError(t, err)
	m := terminal.DevMasters()
	sam, err := terminal.NewSoftwareSAM(m.Debit.Key, m.Debit.Version)
	require.NoError(t, err)
	auth, err := terminal.NewLocalAuthority(m.Load, m.TC)
	require.NoError(t, err)
	r := &rig{c: loadChip(t, img), sam: sam, auth: auth}
	r.term = terminal.New(terminal.Config{SAM: sam, Authority: auth, TerminalID: testTID})
	return r
}

// tap is a fresh connection: the card is (re)powered, as on a new tap.
func (r *rig) tap() reader.Transceiver { return emu.Connect(r.c, "emu:test") }

func (r *rig) balance(t testing.TB) uint32 {
	t.Helper()
	info, err := r.term.Balance(context.Background(), r.tap())
	require.NoError(t, err)
	return info.Data.Balance
}

func cardSW(t testing.TB, err error) apdu.SW {
	t.Helper()
	var ce *terminal.CardError
	require.ErrorAs(t, err, &ce)
	return ce.SW
}

func TestIssueLoadPayLog(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	info, err := r.term.Balance(ctx, r.tap())
	require.NoError(t, err)
	require.Equal(t, testCardID, info.FCI.CardID)
	require.Equal(t, uint32(0), info.Data.Balance)
	require.Equal(t, [3]byte{1, 1, 1}, info.FCI.KeyVersions)

	tr := r.tap()
	ld, err := r.term.Load(ctx, tr, 5000)
	require.NoError(t, err)
	require.Equal(t, uint32(5000), ld.Record.BalanceAfter)
	require.Equal(t, uint32(1), ld.Record.ATC)
	p1, err := r.term.Pay(ctx, tr, 350, terminal.PayOptions{})
	require.NoError(t, err)
	require.Equal(t, uint32(4650), p1.Record.BalanceAfter)
	p2, err := r.term.Pay(ctx, tr, 3000, terminal.PayOptions{PIN: "1234"})
	require.NoError(t, err)
	require.Equal(t, uint32(1650), p2.Record.BalanceAfter)

	log, err := r.term.Log(ctx, tr)
	require.NoError(t, err)
	require.Equal(t, []wire.LogRecord{p2.Record, p1.Record, ld.Record}, log, "the card's log is what the terminal reconstructed")
	for _, rec := range log {
		require.NoError(t, r.auth.VerifyTC(testCardID, rec))
		bad := rec
		bad.Amount++
		require.ErrorIs(t, r.auth.VerifyTC(testCardID, bad), terminal.ErrBadProof)
	}
	require.Len(t, r.auth.Ledger(testCardID), 3)
	require.Equal(t, int64(1650), r.auth.Net(testCardID))
	require.Equal(t, uint32(1650), r.balance(t))
}

func TestRefusals(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(r *rig) error
		sw   apdu.SW
	}{
		{"insufficient balance", func(r *rig) error {
			_, err := r.term.Pay(ctx, r.tap(), 5001, terminal.PayOptions{})
			return err
		}, wire.SWInsufficientFunds},
		{"above PIN-free limit without PIN", func(r *rig) error {
			_, err := r.term.Pay(ctx, r.tap(), 900, terminal.PayOptions{})
			if err != nil {
				return err
			}
			_, err = r.term.Pay(ctx, r.tap(), 2600, terminal.PayOptions{})
			return err
		}, apdu.ErrSecurityStatus},
		{"wrong PIN", func(r *rig) error {
			_, err := r.term.Pay(ctx, r.tap(), 100, terminal.PayOptions{PIN: "9999"})
			return err
		}, apdu.SW(0x63C2)},
		{"PIN blocked", func(r *rig) error {
			for range 3 {
				_ = r.term.VerifyPIN(ctx, r.tap(), "0000")
			}
			_, err := r.term.Pay(ctx, r.tap(), 2600, terminal.PayOptions{})
			return err
		}, apdu.ErrAuthBlocked},
		{"load above the maximum balance", func(r *rig) error {
			_, err := r.term.Load(ctx, r.tap(), 50000)
			if err != nil {
				return err
			}
			_, err = r.term.Load(ctx, r.tap(), 50000)
			return err
		}, wire.SWMaxBalance},
		{"load above the maximum load", func(r *rig) error {
			_, err := r.term.Load(ctx, r.tap(), 50001)
			return err
		}, wire.SWAmountLimit},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			_, err := r.term.Load(ctx, r.tap(), 5000)
			require.NoError(t, err)
			before := r.balance(t)
			err = tc.run(r)
			require.Equal(t, tc.sw, cardSW(t, err))
			j, jerr := r.term.Journal().Load()
			require.NoError(t, jerr)
			require.Nil(t, j, "a refusal leaves nothing pending")
			if tc.name != "above PIN-free limit without PIN" && tc.name != "load above the maximum balance" {
				require.Equal(t, before, r.balance(t))
			}
			require.Equal(t, int64(r.balance(t)), r.auth.Net(testCardID))
		})
	}
}

func TestWrongKeys(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	_, err := r.term.Load(ctx, r.tap(), 5000)
	require.NoError(t, err)
	other := make(wire.Key, 16)
	sam, err := terminal.NewSoftwareSAM(other, 1)
	require.NoError(t, err)
	bad := terminal.New(terminal.Config{SAM: sam, Authority: r.auth, TerminalID: testTID})
	_, err = bad.Pay(ctx, r.tap(), 100, terminal.PayOptions{})
	require.Equal(t, apdu.ErrSecurityStatus, cardSW(t, err), "the card refuses M1 from another master")
	auth, err := terminal.NewLocalAuthority(wire.VersionedKey{Version: 1, Key: other}, terminal.DevMasters().TC)
	require.NoError(t, err)
	bad = terminal.New(terminal.Config{SAM: r.sam, Authority: auth, TerminalID: testTID})
	_, err = bad.Load(ctx, r.tap(), 100)
	require.ErrorIs(t, err, terminal.ErrLoadRefused, "the authority refuses S1 from a card it did not issue")
	require.Equal(t, uint32(5000), r.balance(t))
}

// tearMode says where a transaction is interrupted.
type tearMode int

const (
	dropResponse tearMode = iota // the k-th command reaches the card, its answer is lost
	failBefore                   // the k-th command never reaches the card
	powerCut                     // the chip loses power after its n-th persistent write
)

func (m tearMode) String() string {
	return [...]string{"drop-response", "fail-before", "power-cut"}[m]
}

// tearing forwards commands until the k-th (1-based), then fails it as
// mode says, and every command after it (the card is gone).
type tearing struct {
	next reader.Transceiver
	k, n int
	mode tearMode
}

func (x *tearing) Transceive(ctx context.Context, cmd []byte) ([]byte, error) {
	x.n++
	switch {
	case x.n < x.k:
		return x.next.Transceive(ctx, cmd)
	case x.n == x.k && x.mode == dropResponse:
		_, _ = x.next.Transceive(ctx, cmd)
	}
	return nil, fmt.Errorf("test tear at command %d: %w", x.k, reader.ErrCardRemoved)
}

// counting counts commands.
type counting struct {
	next reader.Transceiver
	n    int
}

func (x *counting) Transceive(ctx context.Context, cmd []byte) ([]byte, error) {
	x.n++
	return x.next.Transceive(ctx, cmd)
}

type op struct {
	name   string
	amount uint32
	run    func(r *rig, tr reader.Transceiver, amount uint32) error
}

var ops = []op{
	{"load", 700, func(r *rig, tr reader.Transceiver, a uint32) error {
		_, err := r.term.Load(context.Background(), tr, a)
		return err
	}},
	{"debit", 300, func(r *rig, tr reader.Transceiver, a uint32) error {
		_, err := r.term.Pay(context.Background(), tr, a, terminal.PayOptions{})
		return err
	}},
	{"debit with PIN", 3000, func(r *rig, tr reader.Transceiver, a uint32) error {
		_, err := r.term.Pay(context.Background(), tr, a, terminal.PayOptions{PIN: "1234"})
		return err
	}},
}

// recoverAndCheck re-taps, resolves the pending transaction and checks
// conservation: the card's balance is exactly Σ loads − Σ debits the
// terminal and authority recorded (nothing created, nothing lost), and
// the card image still loads with the same balance.
func recoverAndCheck(t testing.TB, r *rig, what string) terminal.Outcome {
	t.Helper()
	ctx := context.Background()
	res, err := r.term.Recover(ctx, r.tap())
	require.NoError(t, err, what)
	j, err := r.term.Journal().Load()
	require.NoError(t, err)
	require.Nil(t, j, "%s: resolved", what)
	bal := r.balance(t)
	require.Equal(t, int64(bal), r.auth.Net(testCardID), "%s: value conserved", what)
	img, err := r.c.MarshalImage()
	require.NoError(t, err)
	c2 := loadChip(t, img)
	info, err := r.term.Balance(ctx, emu.Connect(c2, "emu:reloaded"))
	require.NoError(t, err, "%s: image loads", what)
	require.Equal(t, bal, info.Data.Balance)
	return res.Outcome
}

func TestTearEveryAPDU(t *testing.T) {
	for _, o := range ops {
		for _, mode := range []tearMode{dropResponse, failBefore} {
			t.Run(o.name+"/"+mode.String(), func(t *testing.T) {
				probe := newRig(t)
				_, err := probe.term.Load(context.Background(), probe.tap(), 5000)
				require.NoError(t, err)
				cnt := &counting{next: probe.tap()}
				require.NoError(t, o.run(probe, cnt, o.amount))
				require.GreaterOrEqual(t, cnt.n, 3)
				seen := map[terminal.Outcome]int{}
				for k := 1; k <= cnt.n; k++ {
					r := newRig(t)
					_, err := r.term.Load(context.Background(), r.tap(), 5000)
					require.NoError(t, err)
					err = o.run(r, &tearing{next: r.tap(), k: k, mode: mode}, o.amount)
					require.ErrorIs(t, err, reader.ErrCardRemoved, "command %d of %d", k, cnt.n)
					out := recoverAndCheck(t, r, fmt.Sprintf("command %d of %d", k, cnt.n))
					seen[out]++
					want := int64(5000)
					if out == terminal.OutcomeDone {
						want = int64(probe.balance(t))
					}
					require.Equal(t, want, r.auth.Net(testCardID))
					if k == cnt.n && mode == dropResponse {
						require.Equal(t, terminal.OutcomeDone, out, "the last command's answer lost: recovered as done")
					}
					// The card works afterwards.
					_, err = r.term.Pay(context.Background(), r.tap(), 1, terminal.PayOptions{})
					require.NoError(t, err)
				}
				t.Logf("%d commands, outcomes %v", cnt.n, seen)
			})
		}
	}
}

func TestTearEveryWrite(t *testing.T) {
	for _, o := range ops {
		t.Run(o.name, func(t *testing.T) {
			probe := newRig(t)
			_, err := probe.term.Load(context.Background(), probe.tap(), 5000)
			require.NoError(t, err)
			w0 := probe.c.Writes()
			require.NoError(t, o.run(probe, probe.tap(), o.amount))
			writes := probe.c.Writes() - w0
			require.Positive(t, writes)
			for n := uint64(1); n <= writes; n++ {
				r := newRig(t)
				_, err := r.term.Load(context.Background(), r.tap(), 5000)
				require.NoError(t, err)
				tr := r.tap()
				r.c.TearAfter(n)
				err = o.run(r, tr, o.amount)
				require.ErrorIs(t, err, reader.ErrCardRemoved, "write %d of %d", n, writes)
				out := recoverAndCheck(t, r, fmt.Sprintf("write %d of %d", n, writes))
				if errors.Is(err, terminal.ErrInterrupted) {
					require.Equal(t, terminal.OutcomeDone, out, "a tear after the journal write completes the change (docs/purse.md §9.3)")
				} else {
					// Torn in VERIFY (its try counter), before DEBIT.
					require.Equal(t, terminal.OutcomeNone, out)
				}
			}
			t.Logf("%d persistent writes torn in turn", writes)
		})
	}
}

// A tear during recovery itself is recovered by the next tap.
func TestTearDuringRecovery(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	_, err := r.term.Load(ctx, r.tap(), 5000)
	require.NoError(t, err)
	err = ops[1].run(r, &tearing{next: r.tap(), k: 4, mode: dropResponse}, 300)
	require.ErrorIs(t, err, terminal.ErrInterrupted)
	for k := 1; k <= 3; k++ {
		_, err = r.term.Recover(ctx, &tearing{next: r.tap(), k: k, mode: dropResponse})
		require.ErrorIs(t, err, reader.ErrCardRemoved)
	}
	_, err = r.term.Pay(ctx, r.tap(), 1, terminal.PayOptions{})
	require.ErrorIs(t, err, terminal.ErrPending, "no new transaction before the pending one is resolved")
	require.Equal(t, terminal.OutcomeDone, recoverAndCheck(t, r, "after torn recoveries"))
	require.Equal(t, uint32(4700), r.balance(t))
}

// Recovery on another card is refused and keeps the journal.
func TestRecoverOtherCard(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	_, err := r.term.Load(ctx, r.tap(), 5000)
	require.NoError(t, err)
	require.ErrorIs(t, ops[1].run(r, &tearing{next: r.tap(), k: 4, mode: dropResponse}, 300), terminal.ErrInterrupted)
	other, err := profile.Build(profile.Sample(), chip.WithModules(purse.Module))
	require.NoError(t, err)
	_, err = r.term.Recover(ctx, emu.Connect(other, "emu:other"))
	require.Error(t, err, "the sample chip has no purse")
	j, err := r.term.Journal().Load()
	require.NoError(t, err)
	require.NotNil(t, j)
	require.Equal(t, terminal.OutcomeDone, recoverAndCheck(t, r, "right card"))
}

func TestFileJournal(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	path := filepath.Join(t.TempDir(), "j", "journal.json")
	term := terminal.New(terminal.Config{SAM: r.sam, Authority: r.auth, TerminalID: testTID, Journal: terminal.FileJournal{Path: path}})
	_, err := term.Load(ctx, &tearing{next: r.tap(), k: 4, mode: dropResponse}, 800)
	require.ErrorIs(t, err, terminal.ErrInterrupted)
	// A new terminal process reading the same journal resolves it.
	term2 := terminal.New(terminal.Config{SAM: r.sam, Authority: r.auth, TerminalID: testTID, Journal: terminal.FileJournal{Path: path}})
	res, err := term2.Recover(ctx, r.tap())
	require.NoError(t, err)
	require.Equal(t, terminal.OutcomeDone, res.Outcome)
	require.True(t, res.Receipt.Recovered)
	require.Equal(t, uint32(800), res.Receipt.Record.BalanceAfter)
	j, err := terminal.FileJournal{Path: path}.Load()
	require.NoError(t, err)
	require.Nil(t, j)
}

// A seeded random walk of loads and debits, each torn at a random point
// (command boundary or persistent write), sometimes torn again during
// recovery; value must be conserved after every step. Bounded to ~8 s.
func TestTearRandomized(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(42, 2026))
	r := newRig(t)
	_, err := r.term.Load(ctx, r.tap(), 20000)
	require.NoError(t, err)
	deadline := time.Now().Add(8 * time.Second)
	if testing.Short() {
		deadline = time.Now().Add(time.Second)
	}
	n, done := 0, map[terminal.Outcome]int{}
	for ; n < 5000 && time.Now().Before(deadline); n++ {
		o := ops[rng.IntN(len(ops))]
		bal := r.balance(t)
		if o.name == "load" && bal > 90000 {
			o = ops[1]
		}
		if o.name != "load" && bal < 5000 {
			o = ops[0]
		}
		amount := uint32(1 + rng.IntN(int(o.amount)))
		if o.name == "debit with PIN" {
			amount += 2500
		}
		var tr reader.Transceiver = r.tap()
		switch tearMode(rng.IntN(3)) {
		case dropResponse:
			tr = &tearing{next: tr, k: 1 + rng.IntN(5), mode: dropResponse}
		case failBefore:
			tr = &tearing{next: tr, k: 1 + rng.IntN(5), mode: failBefore}
		case powerCut:
			r.c.TearAfter(uint64(1 + rng.IntN(6)))
		}
		err := o.run(r, tr, amount)
		r.c.TearAfter(0)
		if err != nil {
			var ce *terminal.CardError
			if !errors.As(err, &ce) {
				require.ErrorIs(t, err, reader.ErrCardRemoved, "step %d", n)
			}
		}
		if rng.IntN(4) == 0 {
			_, _ = r.term.Recover(ctx, &tearing{next: r.tap(), k: 1 + rng.IntN(3), mode: tearMode(rng.IntN(2))})
		}
		res, err := r.term.Recover(ctx, r.tap())
		require.NoError(t, err, "step %d", n)
		done[res.Outcome]++
		require.Equal(t, int64(r.balance(t)), r.auth.Net(testCardID), "step %d: value conserved", n)
	}
	t.Logf("%d torn transactions; recovery outcomes %v", n, done)
	require.Greater(t, n, 100)
}

// Recovery against what other terminals did meanwhile (docs/purse.md
// §9.4): the ATC' taken by another transaction means ours did not happen;
// a record no longer in the card's log is undecidable, an explicit error
// that keeps the journal.
func TestRecoverAfterOtherTransactions(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		mode   tearMode
		others int
		want   terminal.Outcome
		err    error
	}{
		{"ATC' used by another terminal", failBefore, 1, terminal.OutcomeNotDone, nil},
		{"record still in the log", dropResponse, 5, terminal.OutcomeDone, nil},
		{"record aged out of the log", dropResponse, wire.LogCapacity, terminal.OutcomeNone, terminal.ErrUndecidable},
		{"never sent, log wrapped", failBefore, wire.LogCapacity + 2, terminal.OutcomeNone, terminal.ErrUndecidable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			_, err := r.term.Load(ctx, r.tap(), 20000)
			require.NoError(t, err)
			err = ops[1].run(r, &tearing{next: r.tap(), k: 4, mode: tc.mode}, 300)
			require.ErrorIs(t, err, terminal.ErrInterrupted)
			other := terminal.New(terminal.Config{SAM: r.sam, Authority: r.auth, TerminalID: wire.TerminalID{'O', 'T', 'H', 'E', 'R'}})
			for range tc.others {
				_, err := other.Pay(ctx, r.tap(), 10, terminal.PayOptions{})
				require.NoError(t, err)
			}
			res, err := r.term.Recover(ctx, r.tap())
			if tc.err != nil {
				require.ErrorIs(t, err, tc.err)
				j, jerr := r.term.Journal().Load()
				require.NoError(t, jerr)
				require.NotNil(t, j, "an undecidable transaction stays in the journal")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, res.Outcome)
			require.Equal(t, int64(r.balance(t)), r.auth.Net(testCardID))
		})
	}
}
