package server_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/server"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/internal/dbtest"
)

// crashLedger makes the next Begin fail as if the server had stopped
// between storing the authorisation and posting it.
type crashLedger struct {
	server.Ledger
	failBegins atomic.Int32
}

var errCrash = errors.New("simulated crash before commit")

func (l *crashLedger) Begin(ctx context.Context, r ledger.BeginRequest) (ledger.Txn, error) {
	if len(r.Legs) > 0 && l.failBegins.Add(-1) >= 0 {
		return ledger.Txn{}, errCrash
	}
	return l.Ledger.Begin(ctx, r)
}

func withSQLLoads(db *sqldb.DB) envOpt {
	return func(c *server.Config, e *env) {
		l, err := server.NewSQLLoads(context.Background(), db)
		require.NoError(e.t, err)
		c.Loads, e.loads = l, l
	}
}

// TestFailurePoints replays every failure point of docs/server.md §3 at the
// server: messages are dropped (never sent, or their answer ignored) and
// repeated as the terminal's recovery does, the card's proof decides, and
// at the end the server's state matches the card's: the shadow balance is
// the card's balance and no load is left in progress.
func TestFailurePoints(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, e *env, tt *tterm, c *vcard, cl *crashLedger)
	}{
		{"0200 lost before the server", func(t *testing.T, e *env, tt *tterm, c *vcard, _ *crashLedger) {
			s := c.initLoad(t, 500, tid1)
			req := tt.loadMsg(c, s) // never delivered
			// Pending flag set, no S2: the terminal reverses.
			_, rc := tt.send(tt.reversalMsg("0400", c, req))
			require.Equal(t, "12", rc, "unknown load")
			_, rc = tt.send(tt.reversalMsg("0420", c, req))
			require.Equal(t, "00", rc, "a reversal advice of an unknown load is acknowledged")
		}},
		{"0200 delayed behind its own reversal", func(t *testing.T, e *env, tt *tterm, c *vcard, _ *crashLedger) {
			for _, mti := range []string{"0420", "0400"} {
				s := c.initLoad(t, 500, tid1)
				req := tt.loadMsg(c, s) // stuck somewhere: the terminal gives up
				_, rc := tt.send(tt.reversalMsg(mti, c, req))
				require.Equal(t, map[string]string{"0420": "00", "0400": "12"}[mti], rc)
				_, rc = tt.send(req) // arrives after all
				require.Equal(t, "12", rc, "refused, never funded")
				_, rc = tt.send(repeat(t, req, "0200"))
				require.Equal(t, "12", rc)
			}
		}},
		{"server stops before the posting; terminal reverses", func(t *testing.T, e *env, tt *tterm, c *vcard, cl *crashLedger) {
			s := c.initLoad(t, 500, tid1)
			req := tt.loadMsg(c, s)
			cl.failBegins.Store(1)
			_, rc := tt.send(req)
			require.Equal(t, "96", rc, "(in reality: no answer)")
			_, rc = tt.send(tt.reversalMsg("0400", c, req))
			require.Equal(t, "00", rc, "authorised, never funded: recorded as reversed")
			_, rc = tt.send(repeat(t, req, "0200"))
			require.Equal(t, "12", rc, "a late repeat never gets S2 for a reversed load")
		}},
		{"server stops before the posting; terminal repeats", func(t *testing.T, e *env, tt *tterm, c *vcard, cl *crashLedger) {
			s := c.initLoad(t, 500, tid1)
			req := tt.loadMsg(c, s)
			cl.failBegins.Store(1)
			_, rc := tt.send(req)
			require.Equal(t, "96", rc)
			resp, rc := tt.send(repeat(t, req, "0200"))
			require.Equal(t, "00", rc, "the repeat posts the stored authorisation")
			rec := c.credit(t, s, iccOf(t, resp))
			_, rc = tt.send(tt.adviceMsg(c, rec))
			require.Equal(t, "00", rc)
		}},
		{"0210 lost; terminal repeats the 0200", func(t *testing.T, e *env, tt *tterm, c *vcard, _ *crashLedger) {
			s := c.initLoad(t, 500, tid1)
			req := tt.loadMsg(c, s)
			_, rc := tt.send(req) // answer lost
			require.Equal(t, "00", rc)
			resp, rc := tt.send(repeat(t, req, "0200"))
			require.Equal(t, "00", rc)
			rec := c.credit(t, s, iccOf(t, resp))
			_, rc = tt.send(tt.adviceMsg(c, rec))
			require.Equal(t, "00", rc)
		}},
		{"0210 lost; terminal reverses", func(t *testing.T, e *env, tt *tterm, c *vcard, _ *crashLedger) {
			s := c.initLoad(t, 500, tid1)
			req := tt.loadMsg(c, s)
			_, rc := tt.send(req) // answer lost: no S2, CREDIT LOAD never sent
			require.Equal(t, "00", rc)
			_, rc = tt.send(tt.reversalMsg("0400", c, req))
			require.Equal(t, "00", rc)
		}},
		{"tear before CREDIT LOAD applied (proof: 6A88)", func(t *testing.T, e *env, tt *tterm, c *vcard, _ *crashLedger) {
			s := c.initLoad(t, 500, tid1)
			req := tt.loadMsg(c, s)
			_, rc := tt.send(req)
			require.Equal(t, "00", rc)
			// The card did not credit: GET TRANSACTION PROOF(ATC') → 6A88.
			_, rc = tt.send(tt.reversalMsg("0400", c, req))
			require.Equal(t, "00", rc)
			// The next load reuses ATC' with a new session.
			e.loadCompleted(tt, c, 700)
		}},
		{"tear after CREDIT LOAD applied (proof: the record)", func(t *testing.T, e *env, tt *tterm, c *vcard, _ *crashLedger) {
			s := c.initLoad(t, 500, tid1)
			resp, rc := tt.send(tt.loadMsg(c, s))
			require.Equal(t, "00", rc)
			rec := c.credit(t, s, iccOf(t, resp)) // answer lost; GET TRANSACTION PROOF returns rec
			_, rc = tt.send(tt.adviceMsg(c, rec))
			require.Equal(t, "00", rc)
		}},
		{"completion advice lost, then its answer lost", func(t *testing.T, e *env, tt *tterm, c *vcard, _ *crashLedger) {
			_, rec := e.load(tt, c, 500)
			adv := tt.adviceMsg(c, rec) // lost
			_, rc := tt.send(repeat(t, adv, "0221"))
			require.Equal(t, "00", rc, "first arrival")
			_, rc = tt.send(repeat(t, adv, "0221"))
			require.Equal(t, "94", rc, "answer lost, repeated: already completed, success for the terminal")
		}},
		{"reversal lost, then its answer lost", func(t *testing.T, e *env, tt *tterm, c *vcard, _ *crashLedger) {
			req, _ := e.load(tt, c, 500)
			c.balance, c.atc = 0, 0               // the card never credited (tear before)
			rev := tt.reversalMsg("0420", c, req) // lost
			_, rc := tt.send(repeat(t, rev, "0421"))
			require.Equal(t, "00", rc)
			_, rc = tt.send(repeat(t, rev, "0421"))
			require.Equal(t, "94", rc)
			_, rc = tt.send(tt.reversalMsg("0400", c, req))
			require.Equal(t, "94", rc, "any later reversal of it")
		}},
		{"wrong reversal after the card credited", func(t *testing.T, e *env, tt *tterm, c *vcard, _ *crashLedger) {
			req, rec := e.load(tt, c, 500)
			_, rc := tt.send(tt.adviceMsg(c, rec))
			require.Equal(t, "00", rc)
			_, rc = tt.send(tt.reversalMsg("0400", c, req))
			require.Equal(t, "12", rc, "a completed load is never reversed")
		}},
		{"completion after a wrong reversal", func(t *testing.T, e *env, tt *tterm, c *vcard, _ *crashLedger) {
			req, rec := e.load(tt, c, 500)
			_, rc := tt.send(tt.reversalMsg("0400", c, req))
			require.Equal(t, "00", rc)
			_, rc = tt.send(tt.adviceMsg(c, rec))
			require.Equal(t, "12", rc, "refused and logged: the card holds value the server reversed")
			// The operator's case: the card's record is on file (its ATC).
			st, err := e.led.Card(context.Background(), c.hex())
			require.NoError(t, err)
			require.Equal(t, rec.ATC, st.LastATC)
			c.balance -= rec.Amount // for the final check: the server's view
		}},
		{"debit advice lost, then its answer lost", func(t *testing.T, e *env, tt *tterm, c *vcard, _ *crashLedger) {
			e.loadCompleted(tt, c, 500)
			adv := tt.adviceMsg(c, c.debit(t, 120, tid1, 1, e.clk.Now())) // lost
			_, rc := tt.send(repeat(t, adv, "0221"))
			require.Equal(t, "00", rc)
			_, rc = tt.send(repeat(t, adv, "0221"))
			require.Equal(t, "94", rc)
		}},
		{"advices out of order leave a gap until the missing one lands", func(t *testing.T, e *env, tt *tterm, c *vcard, _ *crashLedger) {
			e.loadCompleted(tt, c, 500)
			a1 := tt.adviceMsg(c, c.debit(t, 10, tid1, 1, e.clk.Now()))
			a2 := tt.adviceMsg(c, c.debit(t, 20, tid1, 2, e.clk.Now()))
			_, rc := tt.send(a2)
			require.Equal(t, "00", rc)
			st, err := e.led.Card(context.Background(), c.hex())
			require.NoError(t, err)
			require.Equal(t, []ledger.ATCRange{{From: 2, To: 2}}, st.Gaps)
			_, rc = tt.send(a1)
			require.Equal(t, "00", rc)
			st, err = e.led.Card(context.Background(), c.hex())
			require.NoError(t, err)
			require.Empty(t, st.Gaps)
		}},
		{"seed expires while an advice waits; renumbered under the next seed", func(t *testing.T, e *env, tt *tterm, c *vcard, _ *crashLedger) {
			e.loadCompleted(tt, c, 500)
			rec := c.debit(t, 40, tid1, 1, e.clk.Now())
			adv := tt.adviceMsg(c, rec)
			_, rc := tt.send(adv) // answer lost
			require.Equal(t, "00", rc)
			e.clk.Add(13 * time.Hour)
			_, rc = tt.send(repeat(t, adv, "0221"))
			require.Equal(t, "63", rc, "expired seed: sign on again")
			require.Equal(t, "00", tt.signOn())
			_, rc = tt.send(tt.adviceMsg(c, rec))
			require.Equal(t, "94", rc, "the record is the identity: a replay, not a second posting")
		}},
		{"server restart between authorisation and completion", func(t *testing.T, e *env, tt *tterm, c *vcard, _ *crashLedger) {
			s := c.initLoad(t, 500, tid1)
			resp, rc := tt.send(tt.loadMsg(c, s))
			require.Equal(t, "00", rc)
			rec := c.credit(t, s, iccOf(t, resp))
			e.shutdown()
			e.start()
			tt2 := newTTerm(t, e.addr, tid1, mid1, e.tmk[tid1], e.clk.Now)
			tt2.keys, tt2.stan = tt.keys, 1000 // the session survives in the registry
			_, rc = tt2.send(tt2.adviceMsg(c, rec))
			require.Equal(t, "00", rc)
		}},
	}
	for _, engine := range dbtest.Engines {
		for _, tc := range cases {
			t.Run(engine+"/"+tc.name, func(t *testing.T) {
				db := dbtest.Open(t, engine)
				var cl *crashLedger
				e := newEnv(t, db, withSQLLoads(db), func(cfg *server.Config, e *env) {
					cl = &crashLedger{Ledger: cfg.Ledger}
					cfg.Ledger = cl
				})
				tt := e.signedOn(tid1)
				c := newVCard(t, card1)
				tc.run(t, e, tt, c, cl)
				// The server's picture follows the card's.
				require.Equal(t, int64(c.balance), purseBalance(t, e.led, c.hex()), "shadow balance = card balance")
				r, err := e.led.Report(context.Background())
				require.NoError(t, err)
				require.Empty(t, r.InProgress, "no load left in progress")
				e.posted()
			})
		}
	}
}
