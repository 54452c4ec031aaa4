package registry_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/internal/dbtest"
)

// newSealer is the keystore's AES-256-GCM sealer under a random KEK: a blob
// moved to another label does not open.
func newSealer(t testing.TB) keystore.Sealer {
	t.Helper()
	s, err := keystore.NewSealer(keystore.GenerateKEK())
	require.NoError(t, err)
	return s
}

var t0 = time.Date(2026, 11, 21, 8, 0, 0, 0, time.UTC)

func newStore(t *testing.T, db *sqldb.DB, sealer registry.Sealer, opts ...registry.Option) *registry.Store {
	t.Helper()
	s, err := registry.New(context.Background(), db, sealer, append([]registry.Option{registry.WithClock(func() time.Time { return t0 })}, opts...)...)
	require.NoError(t, err)
	return s
}

func TestWithoutSealer(t *testing.T) {
	ctx := context.Background()
	_, err := registry.New(ctx, nil, newSealer(t))
	require.ErrorIs(t, err, registry.ErrInvalid)

	db := dbtest.Open(t, "sqlite")
	_, _, err = newStore(t, db, newSealer(t)).RegisterTerminal(ctx, "TERM0001", "MERCHANT0000001")
	require.NoError(t, err)
	s := newStore(t, db, nil)
	_, _, err = s.RegisterTerminal(ctx, "TERM0002", "MERCHANT0000001")
	require.ErrorIs(t, err, registry.ErrNoSealer)
	_, err = s.TerminalKey(ctx, "TERM0001")
	require.ErrorIs(t, err, registry.ErrNoSealer)
	require.NoError(t, s.SetTerminalStatus(ctx, "TERM0001", registry.Blocked, "no keys needed"))
	list, err := s.ListTerminals(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1)
}

func TestTerminals(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		sealer := newSealer(t)
		s := newStore(t, db, sealer)
		// Migrating twice (a second Store, a restarted server) is a no-op.
		_ = newStore(t, db, sealer)

		v0, err := s.TerminalVersion(ctx)
		require.NoError(t, err)
		require.Zero(t, v0)

		term, tmk, err := s.RegisterTerminal(ctx, "TERM0002", "MERCHANT0000001")
		require.NoError(t, err)
		require.Len(t, []byte(tmk), 16)
		kcv, err := tmk.KCV()
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("%X", kcv), term.TMKKCV)
		require.Equal(t, registry.Active, term.Status)
		require.Equal(t, t0, term.CreatedAt)
		_, _, err = s.RegisterTerminal(ctx, "TERM 001", "MERCHANT0000002")
		require.NoError(t, err)

		_, _, err = s.RegisterTerminal(ctx, "TERM0002", "MERCHANT0000009")
		require.ErrorIs(t, err, registry.ErrExists)

		got, err := s.Terminal(ctx, "TERM0002")
		require.NoError(t, err)
		require.Equal(t, term, got)
		key, err := s.TerminalKey(ctx, "TERM0002")
		require.NoError(t, err)
		require.True(t, key.Equal(tmk))
		_, err = s.Terminal(ctx, "TERM0009")
		require.ErrorIs(t, err, registry.ErrNotFound)
		_, err = s.TerminalKey(ctx, "TERM0009")
		require.ErrorIs(t, err, registry.ErrNotFound)

		list, err := s.ListTerminals(ctx)
		require.NoError(t, err)
		require.Len(t, list, 2)
		require.Equal(t, "TERM 001", list[0].ID)
		require.Equal(t, "TERM0002", list[1].ID)

		ids, v, err := s.Whitelist(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"TERM 001", "TERM0002"}, ids)
		require.EqualValues(t, 2, v)

		require.NoError(t, s.SetTerminalStatus(ctx, "TERM0002", registry.Blocked, "stolen"))
		require.NoError(t, s.SetTerminalStatus(ctx, "TERM0002", registry.Blocked, "again")) // no change, no version
		got, err = s.Terminal(ctx, "TERM0002")
		require.NoError(t, err)
		require.Equal(t, registry.Blocked, got.Status)
		require.Equal(t, "stolen", got.Reason)
		ids, v, err = s.Whitelist(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"TERM 001"}, ids)
		require.EqualValues(t, 3, v)

		ch, v, err := s.TerminalChanges(ctx, 1)
		require.NoError(t, err)
		require.EqualValues(t, 3, v)
		require.Len(t, ch, 2)
		require.Equal(t, registry.Change{Version: 2, ID: "TERM 001", Status: registry.Active, Reason: "registered", At: t0}, ch[0])
		require.Equal(t, registry.Change{Version: 3, ID: "TERM0002", Status: registry.Blocked, Reason: "stolen", At: t0}, ch[1])

		require.ErrorIs(t, s.SetTerminalStatus(ctx, "TERM0002", registry.Hotlisted, ""), registry.ErrInvalid)
		require.ErrorIs(t, s.SetTerminalStatus(ctx, "TERM0009", registry.Active, ""), registry.ErrNotFound)
	})
}

func TestInvalidIDs(t *testing.T) {
	db := dbtest.Open(t, "sqlite")
	ctx := context.Background()
	s := newStore(t, db, newSealer(t))
	for _, tc := range []struct {
		name, id, merchant, field string
	}{
		{"short terminal", "TERM001", "MERCHANT0000001", "terminal ID"},
		{"long terminal", "TERM00001", "MERCHANT0000001", "terminal ID"},
		{"non-ASCII terminal", "TERM00é", "MERCHANT0000001", "terminal ID"},
		{"control in terminal", "TERM000\n", "MERCHANT0000001", "terminal ID"},
		{"blank terminal", "        ", "MERCHANT0000001", "terminal ID"},
		{"short merchant", "TERM0001", "MERCHANT000001", "merchant ID"},
		{"long merchant", "TERM0001", "MERCHANT00000001", "merchant ID"},
		{"tab in merchant", "TERM0001", "MERCHANT\t000001", "merchant ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.RegisterTerminal(ctx, tc.id, tc.merchant)
			require.ErrorIs(t, err, registry.ErrInvalid)
			require.Contains(t, err.Error(), tc.field)
		})
	}
	for _, tc := range []struct {
		name  string
		card  registry.Card
		field string
	}{
		{"short card ID", registry.Card{CardID: "112233445566778", Currency: "978", MaxBalance: 1, KeyVersion: 1}, "card ID"},
		{"non-hex card ID", registry.Card{CardID: "11223344556677GG", Currency: "978", MaxBalance: 1, KeyVersion: 1}, "card ID"},
		{"currency letters", registry.Card{CardID: "1122334455667788", Currency: "EUR", MaxBalance: 1, KeyVersion: 1}, "currency"},
		{"currency 000", registry.Card{CardID: "1122334455667788", Currency: "000", MaxBalance: 1, KeyVersion: 1}, "currency"},
		{"zero max balance", registry.Card{CardID: "1122334455667788", Currency: "978", KeyVersion: 1}, "maximum balance"},
		{"max balance above 4 bytes", registry.Card{CardID: "1122334455667788", Currency: "978", MaxBalance: 1 << 32, KeyVersion: 1}, "maximum balance"},
		{"key version 0", registry.Card{CardID: "1122334455667788", Currency: "978", MaxBalance: 1}, "key version"},
		{"bad status", registry.Card{CardID: "1122334455667788", Currency: "978", MaxBalance: 1, KeyVersion: 1, Status: "lost"}, "card status"},
		{"control in holder", registry.Card{CardID: "1122334455667788", Currency: "978", MaxBalance: 1, KeyVersion: 1, HolderRef: "a\x00"}, "holder reference"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.RegisterCard(ctx, tc.card)
			require.ErrorIs(t, err, registry.ErrInvalid)
			require.Contains(t, err.Error(), tc.field)
		})
	}
}

func TestKeysSealedUnderTheirLabel(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db, newSealer(t))
		_, tmkA, err := s.RegisterTerminal(ctx, "TERMAAAA", "MERCHANT0000001")
		require.NoError(t, err)
		_, _, err = s.RegisterTerminal(ctx, "TERMBBBB", "MERCHANT0000001")
		require.NoError(t, err)
		keys, err := s.SignOn(ctx, "TERMAAAA", t0, 12*time.Hour)
		require.NoError(t, err)

		// No key is stored in clear.
		err = db.Tx(ctx, false, func(tx sqldb.Tx) error {
			var tmk, wk, sk string
			if err := tx.QueryRow(ctx, `SELECT tmk_sealed FROM reg_terminals WHERE id = ?`, "TERMAAAA").Scan(&tmk); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, `SELECT wk_sealed FROM reg_sessions WHERE terminal_id = ?`, "TERMAAAA").Scan(&wk); err != nil {
				return err
			}
			if err := tx.QueryRow(ctx, `SELECT key_sealed FROM reg_seeds WHERE seed_id = ?`, int64(keys.Seed.ID)).Scan(&sk); err != nil {
				return err
			}
			for _, k := range [][]byte{tmkA, keys.WorkingKey, keys.Seed.Key} {
				for _, blob := range []string{tmk, wk, sk} {
					require.NotContains(t, blob, fmt.Sprintf("%x", k))
				}
			}
			return nil
		})
		require.NoError(t, err)

		// A blob copied to another terminal's row does not open there.
		err = db.Tx(ctx, true, func(tx sqldb.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE reg_terminals SET tmk_sealed = (SELECT tmk_sealed FROM reg_terminals WHERE id = ?) WHERE id = ?`, "TERMAAAA", "TERMBBBB")
			return err
		})
		require.NoError(t, err)
		_, err = s.TerminalKey(ctx, "TERMBBBB")
		require.Error(t, err)
		require.Contains(t, err.Error(), "tmk/TERMBBBB")
		k, err := s.TerminalKey(ctx, "TERMAAAA")
		require.NoError(t, err)
		require.True(t, k.Equal(tmkA))
	})
}

// eachDSN runs fn once per engine with a DSN that can be opened more than
// once (a restart).
func eachDSN(t *testing.T, fn func(t *testing.T, dsn string)) {
	for _, e := range dbtest.Engines {
		t.Run(e, func(t *testing.T) {
			if e == "postgres" {
				fn(t, dbtest.PostgresDSN(t))
				return
			}
			fn(t, "sqlite:"+filepath.Join(t.TempDir(), "reg.db"))
		})
	}
}

func TestSessionsSurviveRestart(t *testing.T) {
	eachDSN(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		sealer := newSealer(t)
		db, err := sqldb.Open(ctx, dsn)
		require.NoError(t, err)
		s := newStore(t, db, sealer)
		_, _, err = s.RegisterTerminal(ctx, "TERM0001", "MERCHANT0000001")
		require.NoError(t, err)
		keys, err := s.SignOn(ctx, "TERM0001", t0.Add(123456789), 12*time.Hour)
		require.NoError(t, err)
		require.Equal(t, t0.Add(12*time.Hour), keys.Seed.NotAfter, "not-after truncated to the second of DF06")
		require.NotZero(t, keys.Seed.ID)
		require.False(t, keys.WorkingKey.Equal(keys.Seed.Key))

		// The terminal numbers an advice with its seed before the restart.
		msg := iso8583.NewMessage()
		msg.MTI("0220")
		require.NoError(t, msg.Field(iso8583.DESTAN, "000042"))
		require.NoError(t, msg.Field(iso8583.DETerminalID, "TERM0001"))
		require.NoError(t, keys.Seed.SetTxnNumber(msg))
		require.NoError(t, db.Close())

		db = dbtest.OpenDSN(t, dsn)
		s = newStore(t, db, sealer)
		wk, err := s.WorkingKey(ctx, "TERM0001")
		require.NoError(t, err)
		require.True(t, wk.Equal(keys.WorkingKey))
		id, err := iso8583.TxnSeedID(msg)
		require.NoError(t, err)
		term, seed, err := s.Seed(ctx, id)
		require.NoError(t, err)
		require.Equal(t, "TERM0001", term)
		require.Equal(t, keys.Seed.NotAfter, seed.NotAfter)
		require.True(t, seed.Key.Equal(keys.Seed.Key))
		require.NoError(t, seed.VerifyTxnNumber(msg, t0.Add(time.Hour)))
		require.ErrorIs(t, seed.VerifyTxnNumber(msg, t0.Add(12*time.Hour+time.Second)), iso8583.ErrSeedExpired)
	})
}

func TestSeedGrace(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db, newSealer(t))
		_, _, err := s.RegisterTerminal(ctx, "TERM0001", "MERCHANT0000001")
		require.NoError(t, err)
		_, _, err = s.RegisterTerminal(ctx, "TERM0002", "MERCHANT0000001")
		require.NoError(t, err)
		until := func(id uint32) time.Time {
			t.Helper()
			_, seed, err := s.Seed(ctx, id)
			require.NoError(t, err)
			return seed.NotAfter
		}

		k1, err := s.SignOn(ctx, "TERM0001", t0, 12*time.Hour)
		require.NoError(t, err)
		other, err := s.SignOn(ctx, "TERM0002", t0, 12*time.Hour)
		require.NoError(t, err)
		t1 := t0.Add(time.Hour)
		k2, err := s.SignOn(ctx, "TERM0001", t1, 12*time.Hour)
		require.NoError(t, err)
		require.NotEqual(t, k1.Seed.ID, k2.Seed.ID)
		require.False(t, k1.WorkingKey.Equal(k2.WorkingKey))

		require.Equal(t, t1.Add(registry.SeedGrace), until(k1.Seed.ID), "previous seed: grace period")
		require.Equal(t, t1.Add(12*time.Hour), until(k2.Seed.ID))
		require.Equal(t, t0.Add(12*time.Hour), until(other.Seed.ID), "another terminal's seed is untouched")
		wk, err := s.WorkingKey(ctx, "TERM0001")
		require.NoError(t, err)
		require.True(t, wk.Equal(k2.WorkingKey), "the new working key replaces the old")

		// A third sign-on within the grace period does not extend the first
		// seed; the second one now ends with the new grace period.
		t2 := t1.Add(5 * time.Minute)
		k3, err := s.SignOn(ctx, "TERM0001", t2, 12*time.Hour)
		require.NoError(t, err)
		require.Equal(t, t1.Add(registry.SeedGrace), until(k1.Seed.ID))
		require.Equal(t, t2.Add(registry.SeedGrace), until(k2.Seed.ID))
		require.Equal(t, t2.Add(12*time.Hour), until(k3.Seed.ID))

		// A seed about to expire is not extended by the grace period.
		k4, err := s.SignOn(ctx, "TERM0002", t0, 3*time.Minute)
		require.NoError(t, err)
		_, err = s.SignOn(ctx, "TERM0002", t0.Add(time.Minute), time.Hour)
		require.NoError(t, err)
		require.Equal(t, t0.Add(3*time.Minute), until(k4.Seed.ID))

		// The grace period as the server sees it through VerifyTxnNumber.
		msg := iso8583.NewMessage()
		msg.MTI("0220")
		require.NoError(t, msg.Field(iso8583.DETerminalID, "TERM0001"))
		require.NoError(t, k1.Seed.SetTxnNumber(msg))
		_, seed, err := s.Seed(ctx, k1.Seed.ID)
		require.NoError(t, err)
		require.NoError(t, seed.VerifyTxnNumber(msg, t1.Add(registry.SeedGrace)))
		require.ErrorIs(t, seed.VerifyTxnNumber(msg, t1.Add(registry.SeedGrace+time.Second)), iso8583.ErrSeedExpired)

		// Purging wipes the keys of seeds past their acceptance, not the IDs.
		n, err := s.PurgeSeeds(ctx, t2.Add(registry.SeedGrace+time.Second))
		require.NoError(t, err)
		require.EqualValues(t, 5, n) // all but k3: TERM0002's three ended by t0+1h01
		_, _, err = s.Seed(ctx, k1.Seed.ID)
		require.ErrorIs(t, err, registry.ErrNotFound)
		_, _, err = s.Seed(ctx, k3.Seed.ID)
		require.NoError(t, err)
	})
}

func TestSignOnRefusals(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db, newSealer(t))
		_, _, err := s.RegisterTerminal(ctx, "TERM0001", "MERCHANT0000001")
		require.NoError(t, err)
		for _, tc := range []struct {
			name string
			id   string
			ttl  time.Duration
			want error
		}{
			{"unknown terminal", "TERM0009", time.Hour, registry.ErrNotFound},
			{"bad terminal ID", "T1", time.Hour, registry.ErrInvalid},
			{"zero validity", "TERM0001", 0, registry.ErrInvalid},
			{"validity above 24 h", "TERM0001", 24*time.Hour + time.Second, registry.ErrInvalid},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := s.SignOn(ctx, tc.id, t0, tc.ttl)
				require.ErrorIs(t, err, tc.want)
			})
		}
		_, err = s.WorkingKey(ctx, "TERM0001")
		require.ErrorIs(t, err, registry.ErrNotFound, "no session before sign-on")
		_, _, err = s.Seed(ctx, 12345)
		require.ErrorIs(t, err, registry.ErrNotFound)

		keys, err := s.SignOn(ctx, "TERM0001", t0, registry.MaxSeedTTL)
		require.NoError(t, err)
		require.NoError(t, s.SignOff(ctx, "TERM0001"))
		require.NoError(t, s.SignOff(ctx, "TERM0001"))
		_, err = s.WorkingKey(ctx, "TERM0001")
		require.ErrorIs(t, err, registry.ErrNotFound, "sign-off forgets the working key")
		_, _, err = s.Seed(ctx, keys.Seed.ID)
		require.NoError(t, err, "seeds outlive the sign-off for advices in flight")

		require.NoError(t, s.SetTerminalStatus(ctx, "TERM0001", registry.Blocked, "test"))
		_, err = s.SignOn(ctx, "TERM0001", t0, time.Hour)
		require.ErrorIs(t, err, registry.ErrBlocked)
	})
}

// scripted serves reads from fixed chunks, then from crypto/rand.
type scripted struct {
	mu     sync.Mutex
	chunks [][]byte
}

func (r *scripted) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.chunks) == 0 {
		return rand.Read(p)
	}
	n := copy(p, r.chunks[0])
	r.chunks[0] = r.chunks[0][n:]
	if len(r.chunks[0]) == 0 {
		r.chunks = r.chunks[1:]
	}
	return n, nil
}

func TestSeedIDCollision(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		sealer := newSealer(t)
		reg := newStore(t, db, sealer)
		for _, id := range []string{"TERM0001", "TERM0002", "TERM0003"} {
			_, _, err := reg.RegisterTerminal(ctx, id, "MERCHANT0000001")
			require.NoError(t, err)
		}
		key := bytes.Repeat([]byte{0x11}, 16)
		id7 := []byte{0, 0, 0, 7}
		r := &scripted{chunks: [][]byte{
			key, key, id7, // TERM0001: seed 7
			key, key, id7, {0, 0, 0, 0}, id7, {0, 0, 0, 9}, // TERM0002: 7 taken, 0 never, 7 taken, 9
		}}
		s := newStore(t, db, sealer, registry.WithRand(r))
		k, err := s.SignOn(ctx, "TERM0001", t0, time.Hour)
		require.NoError(t, err)
		require.EqualValues(t, 7, k.Seed.ID)
		k, err = s.SignOn(ctx, "TERM0002", t0, time.Hour)
		require.NoError(t, err)
		require.EqualValues(t, 9, k.Seed.ID)
		term, _, err := s.Seed(ctx, 7)
		require.NoError(t, err)
		require.Equal(t, "TERM0001", term)

		// Only taken IDs: the sign-on fails rather than loop forever, and
		// leaves no session behind.
		r.chunks = [][]byte{key, key}
		for range 64 {
			r.chunks = append(r.chunks, []byte{0, 0, 0, 7})
		}
		_, err = s.SignOn(ctx, "TERM0003", t0, time.Hour)
		require.ErrorContains(t, err, "no free seed ID")
		_, err = s.WorkingKey(ctx, "TERM0003")
		require.ErrorIs(t, err, registry.ErrNotFound)
	})
}

func TestConcurrentSignOns(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db, newSealer(t))
		const n = 50
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("TERM%04d", i)
			_, _, err := s.RegisterTerminal(ctx, ids[i], "MERCHANT0000001")
			require.NoError(t, err)
		}
		const rounds = 2
		keys := make([][rounds]iso8583.SignOnKeys, n)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range ids {
			wg.Go(func() {
				for r := range rounds {
					k, err := s.SignOn(ctx, ids[i], t0.Add(time.Duration(r)*time.Minute), time.Hour)
					if err != nil {
						errs <- err
						return
					}
					keys[i][r] = k
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		seen := map[uint32]bool{}
		for i, ks := range keys {
			for r, k := range ks {
				require.False(t, seen[k.Seed.ID], "seed ID %d handed out twice", k.Seed.ID)
				seen[k.Seed.ID] = true
				term, seed, err := s.Seed(ctx, k.Seed.ID)
				require.NoError(t, err)
				require.Equal(t, ids[i], term)
				require.True(t, seed.Key.Equal(k.Seed.Key))
				if r == 0 {
					require.Equal(t, t0.Add(time.Minute+registry.SeedGrace), seed.NotAfter)
				}
			}
			wk, err := s.WorkingKey(ctx, ids[i])
			require.NoError(t, err)
			require.True(t, wk.Equal(ks[rounds-1].WorkingKey))
		}
	})
}

func TestCards(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db, newSealer(t))
		c := registry.Card{CardID: "112233445566778a", Currency: "978", MaxBalance: 15000, KeyVersion: 1, HolderRef: "holder-1"}
		got, err := s.RegisterCard(ctx, c)
		require.NoError(t, err)
		require.Equal(t, "112233445566778A", got.CardID)
		require.Equal(t, registry.Active, got.Status)
		require.Equal(t, t0, got.IssuedAt)

		again, err := s.RegisterCard(ctx, c)
		require.NoError(t, err, "identical registration is idempotent")
		require.Equal(t, got, again)
		c2 := c
		c2.MaxBalance = 20000
		_, err = s.RegisterCard(ctx, c2)
		require.ErrorIs(t, err, registry.ErrExists)

		stored, err := s.Card(ctx, "112233445566778A")
		require.NoError(t, err)
		require.Equal(t, got, stored)
		_, err = s.Card(ctx, "0000000000000000")
		require.ErrorIs(t, err, registry.ErrNotFound)

		_, err = s.RegisterCard(ctx, registry.Card{CardID: "0000000000000001", Currency: "978", MaxBalance: 1, KeyVersion: 2, Status: registry.Hotlisted, Reason: "lost before issue"})
		require.NoError(t, err)
		hot, v, err := s.Hotlist(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"0000000000000001"}, hot)
		require.EqualValues(t, 2, v)

		require.NoError(t, s.SetCardStatus(ctx, "112233445566778a", registry.Hotlisted, "stolen"))
		require.NoError(t, s.SetCardStatus(ctx, "112233445566778a", registry.Hotlisted, "stolen")) // no change
		require.NoError(t, s.SetCardStatus(ctx, "0000000000000001", registry.Active, "found"))
		require.NoError(t, s.SetCardStatus(ctx, "0000000000000001", registry.Blocked, "holder"))
		require.ErrorIs(t, s.SetCardStatus(ctx, "0000000000000009", registry.Blocked, ""), registry.ErrNotFound)
		require.ErrorIs(t, s.SetCardStatus(ctx, "0000000000000001", "gone", ""), registry.ErrInvalid)

		hot, v, err = s.Hotlist(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{"112233445566778A"}, hot)
		require.EqualValues(t, 5, v)
		hv, err := s.HotlistVersion(ctx)
		require.NoError(t, err)
		require.Equal(t, v, hv)

		ch, v, err := s.HotlistChanges(ctx, 2)
		require.NoError(t, err)
		require.EqualValues(t, 5, v)
		require.Equal(t, []registry.Change{
			{Version: 3, ID: "112233445566778A", Status: registry.Hotlisted, Reason: "stolen", At: t0},
			{Version: 5, ID: "0000000000000001", Status: registry.Blocked, Reason: "holder", At: t0},
		}, ch, "one entry per card, its latest")
		ch, v, err = s.HotlistChanges(ctx, 5)
		require.NoError(t, err)
		require.Empty(t, ch)
		require.EqualValues(t, 5, v)
		_, _, err = s.HotlistChanges(ctx, -1)
		require.ErrorIs(t, err, registry.ErrInvalid)

		for i := range 5 {
			_, err := s.RegisterCard(ctx, registry.Card{CardID: fmt.Sprintf("99%014X", i), Currency: "978", MaxBalance: 1, KeyVersion: 1, Status: registry.Hotlisted})
			require.NoError(t, err)
		}
		var paged []string
		for after := ""; ; {
			page, err := s.HotlistPage(ctx, after, 2)
			require.NoError(t, err)
			paged = append(paged, page...)
			if len(page) < 2 {
				break
			}
			after = page[len(page)-1]
		}
		hot, _, err = s.Hotlist(ctx)
		require.NoError(t, err)
		require.Len(t, hot, 6)
		require.Equal(t, hot, paged)
		_, err = s.HotlistPage(ctx, "", 0)
		require.ErrorIs(t, err, registry.ErrInvalid)

		cards, err := s.ListCards(ctx)
		require.NoError(t, err)
		require.Len(t, cards, 7)
		require.Equal(t, "0000000000000001", cards[0].CardID)
		require.Equal(t, registry.Blocked, cards[0].Status)
		require.Equal(t, "holder", cards[0].Reason)
		require.EqualValues(t, 2, cards[0].KeyVersion)
	})
}

// TestVersionsUnderConcurrency changes card statuses from several
// goroutines while a reader keeps a hotlist cache the way the validity lists
// do (snapshot, then changes since its version): versions never go back, no
// version is lost, and the cache ends equal to the hotlist.
func TestVersionsUnderConcurrency(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		s := newStore(t, db, newSealer(t))
		const cards, writers, changesPerWriter = 20, 4, 15
		for i := range cards {
			_, err := s.RegisterCard(ctx, registry.Card{CardID: fmt.Sprintf("%016d", i), Currency: "978", MaxBalance: 10000, KeyVersion: 1})
			require.NoError(t, err)
		}

		hot, v, err := s.Hotlist(ctx)
		require.NoError(t, err)
		cache := map[string]bool{}
		for _, id := range hot {
			cache[id] = true
		}

		done := make(chan struct{})
		readerErr := make(chan error, 1)
		go func() {
			defer close(readerErr)
			for {
				ch, nv, err := s.HotlistChanges(ctx, v)
				if err != nil {
					readerErr <- err
					return
				}
				if nv < v {
					readerErr <- fmt.Errorf("version went back from %d to %d", v, nv)
					return
				}
				for _, c := range ch {
					if c.Version <= v || c.Version > nv {
						readerErr <- fmt.Errorf("change version %d outside (%d, %d]", c.Version, v, nv)
						return
					}
					cache[c.ID] = c.Status == registry.Hotlisted
				}
				v = nv
				select {
				case <-done:
					return
				default:
				}
			}
		}()

		var wg sync.WaitGroup
		var mu sync.Mutex
		made := 0
		statuses := []registry.Status{registry.Hotlisted, registry.Active, registry.Blocked}
		for w := range writers {
			wg.Go(func() {
				for i := range changesPerWriter {
					id := fmt.Sprintf("%016d", (w*7+i*3)%cards)
					st := statuses[(w+i)%len(statuses)]
					if err := s.SetCardStatus(ctx, id, st, fmt.Sprintf("w%d/%d", w, i)); err != nil {
						panic(err)
					}
					mu.Lock()
					made++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(done)
		require.NoError(t, <-readerErr)

		// One last catch-up, as the cache would on its next refresh.
		ch, nv, err := s.HotlistChanges(ctx, v)
		require.NoError(t, err)
		for _, c := range ch {
			cache[c.ID] = c.Status == registry.Hotlisted
		}
		hot, hv, err := s.Hotlist(ctx)
		require.NoError(t, err)
		require.Equal(t, hv, nv)
		var cached []string
		for id, h := range cache {
			if h {
				cached = append(cached, id)
			}
		}
		require.ElementsMatch(t, hot, cached)

		// Every version from 1 to the last exists exactly once: no gap, no
		// duplicate, whatever the interleaving.
		all, last, err := s.HotlistChanges(ctx, 0)
		require.NoError(t, err)
		require.Equal(t, hv, last)
		require.LessOrEqual(t, last, int64(cards+made))
		var count int64
		err = db.Tx(ctx, false, func(tx sqldb.Tx) error {
			return tx.QueryRow(ctx, `SELECT COUNT(*) FROM reg_card_changes`).Scan(&count)
		})
		require.NoError(t, err)
		require.Equal(t, last, count)
		require.NotEmpty(t, all)
	})
}
