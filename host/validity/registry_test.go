package validity_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/host/validity"
	"github.com/valuechip/valuechip/internal/dbtest"
)

// labelSealer binds the label to the blob; these tests need no secrecy.
type labelSealer struct{}

func (labelSealer) Seal(label string, plain []byte) ([]byte, error) {
	return append([]byte(label+"\x00"), plain...), nil
}

func (labelSealer) Open(label string, sealed []byte) ([]byte, error) {
	rest, ok := bytes.CutPrefix(sealed, []byte(label+"\x00"))
	if !ok {
		return nil, errors.New("wrong label")
	}
	return rest, nil
}

// The registry as Source and DBChecker, on both engines, in every mode.
func TestRegistryAdapter(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *sqldb.DB) {
		ctx := context.Background()
		st, err := registry.New(ctx, db, labelSealer{})
		require.NoError(t, err)
		for _, id := range []string{"TERM0001", "TERM0002"} {
			_, _, err := st.RegisterTerminal(ctx, id, "MERCHANT0000001")
			require.NoError(t, err)
		}
		require.NoError(t, st.SetTerminalStatus(ctx, "TERM0002", registry.Blocked, "stolen"))
		for _, id := range []string{"1122334455667788", "9900000000000001"} {
			_, err := st.RegisterCard(ctx, registry.Card{CardID: id, Currency: "978", MaxBalance: 100000, KeyVersion: 1})
			require.NoError(t, err)
		}
		require.NoError(t, st.SetCardStatus(ctx, "9900000000000001", registry.Hotlisted, "lost"))

		for _, mode := range []validity.Mode{validity.ModeBoth, validity.ModeCards, validity.ModeTerminals} {
			t.Run(mode.String(), func(t *testing.T) {
				var pages []int
				reg := validity.Registry{Store: st, PageSize: 1, OnPage: func(n int) { pages = append(pages, n) }}
				l, err := validity.New(validity.Config{Mode: mode, Source: reg, DB: reg, Interval: -1})
				require.NoError(t, err)
				require.NoError(t, l.Start(ctx))
				defer l.Close()
				if mode == validity.ModeTerminals {
					require.Empty(t, pages, "the hotlist is not loaded")
				} else {
					require.Equal(t, []int{1, 1}, pages, "one full page, one short")
				}
				code := func(card, term string) string {
					t.Helper()
					d, err := l.CheckIDs(ctx, card, term)
					require.NoError(t, err)
					if d.Late != nil {
						r, err := d.Late.Wait(ctx)
						require.NoError(t, err)
						require.NoError(t, r.Err)
						if r.Hotlisted {
							return "late " + iso8583.RCRestrictedCard
						}
					}
					return d.Code
				}
				hot := iso8583.RCRestrictedCard
				if mode == validity.ModeTerminals {
					hot = "late " + hot
				}
				require.Equal(t, iso8583.RCApproved, code("1122334455667788", "TERM0001"))
				require.Equal(t, hot, code("9900000000000001", "TERM0001"))
				require.Equal(t, iso8583.RCNotPermittedTerm, code("1122334455667788", "TERM0002"))
				require.Equal(t, iso8583.RCNotPermittedTerm, code("1122334455667788", "TERM0009"))

				require.NoError(t, st.SetCardStatus(ctx, "1122334455667788", registry.Hotlisted, "lost"))
				require.NoError(t, st.SetCardStatus(ctx, "9900000000000001", registry.Active, "found"))
				require.NoError(t, st.SetTerminalStatus(ctx, "TERM0002", registry.Active, "recovered"))
				require.NoError(t, l.Refresh(ctx))
				require.Equal(t, iso8583.RCApproved, code("9900000000000001", "TERM0002"))
				require.Equal(t, iso8583.RCRestrictedCard, code("1122334455667788", "TERM0001"), "hotlisted since start: refused from memory in every mode")

				// Put things back for the next mode.
				require.NoError(t, st.SetCardStatus(ctx, "1122334455667788", registry.Active, ""))
				require.NoError(t, st.SetCardStatus(ctx, "9900000000000001", registry.Hotlisted, "lost"))
				require.NoError(t, st.SetTerminalStatus(ctx, "TERM0002", registry.Blocked, "stolen"))
			})
		}
	})
}
