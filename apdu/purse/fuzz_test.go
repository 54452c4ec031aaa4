package purse

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/apdu/gp"
)

// Fuzz targets: every parser and decoder of this package must never
// panic, and whatever it accepts must re-encode to bytes it parses back to
// the same value (for the fixed layouts: to the very same bytes). Seed
// corpora are in testdata/fuzz/<Name>/ (bytes of docs/purse.md §10); run
// one with
//
//	go test -run '^$' -fuzz '^FuzzParseDebit$' -fuzztime 30s ./apdu/purse/

// fixedRoundTrip checks a fixed-layout parser: accepted input re-encodes
// to itself.
func fixedRoundTrip[T any](t *testing.T, data []byte, parse func([]byte) (T, error), enc func(T) []byte) {
	v, err := parse(data)
	if err != nil {
		return
	}
	require.Equal(t, data, enc(v))
}

func FuzzParseInitializeLoad(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		fixedRoundTrip(t, b, ParseInitializeLoad, InitializeLoad.Bytes)
	})
}

func FuzzParseInitializeLoadResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		fixedRoundTrip(t, b, ParseInitializeLoadResponse, InitializeLoadResponse.Bytes)
	})
}

func FuzzParseCreditLoad(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		fixedRoundTrip(t, b, ParseCreditLoad, CreditLoad.Bytes)
	})
}

func FuzzParseCreditLoadResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		fixedRoundTrip(t, b, ParseCreditLoadResponse, CreditLoadResponse.Bytes)
	})
}

func FuzzParseInitializeDebit(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		fixedRoundTrip(t, b, ParseInitializeDebit, InitializeDebit.Bytes)
	})
}

func FuzzParseInitializeDebitResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		fixedRoundTrip(t, b, ParseInitializeDebitResponse, InitializeDebitResponse.Bytes)
	})
}

func FuzzParseDebit(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		fixedRoundTrip(t, b, ParseDebit, Debit.Bytes)
	})
}

func FuzzParseDebitResponse(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		fixedRoundTrip(t, b, ParseDebitResponse, DebitResponse.Bytes)
	})
}

func FuzzParsePurseData(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		fixedRoundTrip(t, b, ParsePurseData, PurseData.Bytes)
	})
}

func FuzzParseLogRecord(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseLogRecord(b)
		if err != nil {
			return
		}
		require.Equal(t, b, r.Bytes())
		require.NotEmpty(t, r.String())
		_, _ = r.BalanceBefore()
		// TC verification never panics, whatever the record.
		_ = VerifyTC(make(Key, 16), CardID(r.TerminalID), r)
	})
}

func FuzzParseFCI(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		fci, err := ParseFCI(b)
		if err != nil {
			return
		}
		enc, err := fci.Bytes()
		require.NoError(t, err)
		back, err := ParseFCI(enc)
		require.NoError(t, err)
		require.Equal(t, fci, back)
	})
}

func FuzzParsePersonalization(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		dgis, err := gp.ParseDGIs(b)
		if err != nil {
			return
		}
		for _, d := range dgis {
			_ = CheckDGI(d)
		}
		p, err := ParsePersonalization(dgis)
		if err != nil {
			return
		}
		require.NoError(t, p.Validate())
		again, err := p.DGIs()
		require.NoError(t, err)
		back, err := ParsePersonalization(again)
		require.NoError(t, err)
		require.Equal(t, p.String(), back.String())
		require.Equal(t, p.PIN, back.PIN)
		require.True(t, p.Keys.Load.Key.Equal(back.Keys.Load.Key))
	})
}

func FuzzCheckPINBlock(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := CheckPINBlock(b)
		if err != nil {
			return
		}
		// Rebuild the PIN from the block: it encodes back to the block.
		digits := make([]byte, n)
		for i := range digits {
			nib := b[(i+2)/2]
			if (i+2)%2 == 0 {
				nib >>= 4
			}
			digits[i] = '0' + nib&0x0F
		}
		enc, err := EncodePIN(string(digits))
		require.NoError(t, err)
		require.Equal(t, b, enc)
	})
}

func FuzzParseDateTime(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		var d DateTime
		if len(b) != DateTimeLen {
			return
		}
		copy(d[:], b)
		_ = d.String()
		tm, err := d.Time(nil)
		if err != nil {
			require.False(t, d.Valid())
			return
		}
		back, err := DateTimeOf(tm)
		require.NoError(t, err)
		require.Equal(t, d, back)
		var c Currency
		copy(c[:], b)
		if n, err := c.Code(); err == nil {
			c2, err := CurrencyOf(n)
			require.NoError(t, err)
			require.Equal(t, c, c2)
		}
	})
}

func FuzzParseExamples(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		ex, err := ParseExamples(b)
		if err != nil {
			return
		}
		for _, e := range ex {
			require.NotEmpty(t, e.Name)
			for _, v := range e.Values {
				got, err := e.Value(v.Name)
				require.NoError(t, err)
				if len(got) != len(v.Value) && !bytes.Equal(got, v.Value) {
					// Value returns the first of repeated names.
					require.NotEqual(t, "", v.Name)
				}
			}
		}
	})
}
