package pcsc

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/reader"
)

// readers builds a reader list; a name ending in "*" holds a card.
func readers(names ...string) []reader.Info {
	infos := make([]reader.Info, len(names))
	for i, n := range names {
		in := reader.Info{Index: i, Name: n}
		if l := len(n); l > 0 && n[l-1] == '*' {
			in.Name, in.Present, in.ATR = n[:l-1], true, []byte{0x3B, 0x00}
		}
		infos[i] = in
	}
	return infos
}

var (
	vpcdBoth  = readers("Virtual PCD 00 00", "Virtual PCD 00 01")
	vpcdCard1 = readers("Virtual PCD 00 00", "Virtual PCD 00 01*")
	vpcdCards = readers("Virtual PCD 00 00*", "Virtual PCD 00 01*")
	desk      = readers("Virtual PCD 00 00", "Virtual PCD 00 01", "ACS ACR39U ICC Reader 00 00*", "Yubico YubiKey OTP+FIDO+CCID 01 00*")
	exactShrt = readers("ACS", "ACS ACR122U 00 00")
)

// The scenarios follow the shape of apdu4j's dwim.feature: a reader list,
// what the user typed, and either the reader picked or the kind of failure.
func TestSelect(t *testing.T) {
	t.Setenv(EnvReader, "")
	tests := []struct {
		name    string
		infos   []reader.Info
		spec    string
		want    string // reader name picked
		wantErr error  // sentinel the error must match
		errHas  []string
	}{
		{name: "no readers", infos: nil, spec: "", wantErr: reader.ErrNoReader, errHas: []string{"vsmartcard-vpcd"}},
		{name: "no readers, with spec", infos: nil, spec: "1", wantErr: reader.ErrNoReader},
		{name: "single reader without card", infos: readers("Gemalto PC Twin Reader 00 00"), want: "Gemalto PC Twin Reader 00 00"},
		{name: "single reader with card", infos: readers("Gemalto PC Twin Reader 00 00*"), want: "Gemalto PC Twin Reader 00 00"},
		{name: "two readers, no card", infos: vpcdBoth, wantErr: reader.ErrAmbiguous,
			errHas: []string{"no reader holds a card", `0 "Virtual PCD 00 00"`, `1 "Virtual PCD 00 01"`, EnvReader}},
		{name: "two readers, one card", infos: vpcdCard1, want: "Virtual PCD 00 01"},
		{name: "two readers, two cards", infos: vpcdCards, wantErr: reader.ErrAmbiguous,
			errHas: []string{"several readers hold a card", `0 "Virtual PCD 00 00" (card)`}},
		{name: "four readers, two cards: candidates are the ones with cards", infos: desk, wantErr: reader.ErrAmbiguous,
			errHas: []string{`2 "ACS ACR39U ICC Reader 00 00" (card)`, `3 "Yubico`}},
		{name: "blank spec is empty", infos: vpcdCard1, spec: "   ", want: "Virtual PCD 00 01"},

		{name: "index 0", infos: vpcdBoth, spec: "0", want: "Virtual PCD 00 00"},
		{name: "index 1", infos: vpcdBoth, spec: "1", want: "Virtual PCD 00 01"},
		{name: "index beats card preference", infos: vpcdCard1, spec: "0", want: "Virtual PCD 00 00"},
		{name: "index with spaces", infos: vpcdBoth, spec: " 1 ", want: "Virtual PCD 00 01"},
		{name: "index with leading zero", infos: vpcdBoth, spec: "01", want: "Virtual PCD 00 01"},
		{name: "index out of range", infos: vpcdBoth, spec: "2", wantErr: reader.ErrNoReader,
			errHas: []string{"no reader with index 2", `1 "Virtual PCD 00 01"`}},
		{name: "huge index", infos: vpcdBoth, spec: "99999999999999999999", wantErr: reader.ErrNoReader},
		{name: "index uses Info.Index, not position", infos: []reader.Info{{Index: 3, Name: "Late Reader"}}, spec: "3", want: "Late Reader"},

		{name: "exact name", infos: vpcdBoth, spec: "Virtual PCD 00 01", want: "Virtual PCD 00 01"},
		{name: "exact name, other case", infos: vpcdBoth, spec: "virtual pcd 00 00", want: "Virtual PCD 00 00"},
		{name: "fragment", infos: desk, spec: "acr39", want: "ACS ACR39U ICC Reader 00 00"},
		{name: "fragment, mixed case", infos: desk, spec: "YubiKey", want: "Yubico YubiKey OTP+FIDO+CCID 01 00"},
		{name: "fragment naming a vpcd slot", infos: vpcdBoth, spec: "00 01", want: "Virtual PCD 00 01"},
		{name: "fragment of exactly 3", infos: desk, spec: "acs", want: "ACS ACR39U ICC Reader 00 00"},
		{name: "fragment matching two", infos: vpcdBoth, spec: "virtual", wantErr: reader.ErrAmbiguous,
			errHas: []string{`"virtual" matches 2 readers`, `"Virtual PCD 00 00"`, `"Virtual PCD 00 01"`}},
		{name: "ambiguity lists only the matches", infos: desk, spec: "PCD", wantErr: reader.ErrAmbiguous,
			errHas: []string{"matches 2 readers"}},
		{name: "fragment matching none", infos: desk, spec: "omnikey", wantErr: reader.ErrNoReader,
			errHas: []string{`no reader name contains "omnikey"`, `2 "ACS ACR39U ICC Reader 00 00" (card)`}},
		{name: "fragment too short", infos: desk, spec: "yu", wantErr: reader.ErrNoReader,
			errHas: []string{"too short", "at least 3"}},
		{name: "exact short name wins over too-short rule", infos: readers("ab", "abc reader"), spec: "ab", want: "ab"},
		{name: "exact name wins over fragment", infos: exactShrt, spec: "ACS", want: "ACS"},
		{name: "exact name, other case, wins over fragment", infos: exactShrt, spec: "acs", want: "ACS"},
		{name: "negative number is a (too short) name", infos: vpcdBoth, spec: "-1", wantErr: reader.ErrNoReader,
			errHas: []string{"too short"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Select(tt.infos, tt.spec)
			if tt.wantErr != nil {
				require.Error(t, err)
				assert.ErrorIs(t, err, tt.wantErr)
				for _, s := range tt.errHas {
					assert.Contains(t, err.Error(), s)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got.Name)
		})
	}
}

func TestSelectEnv(t *testing.T) {
	t.Run("env picks when the spec is empty", func(t *testing.T) {
		t.Setenv(EnvReader, "00 00")
		got, err := Select(vpcdCard1, "")
		require.NoError(t, err)
		assert.Equal(t, "Virtual PCD 00 00", got.Name, "env beats the card preference")
	})
	t.Run("env index", func(t *testing.T) {
		t.Setenv(EnvReader, "1")
		got, err := Select(vpcdBoth, "")
		require.NoError(t, err)
		assert.Equal(t, "Virtual PCD 00 01", got.Name)
	})
	t.Run("explicit spec beats env", func(t *testing.T) {
		t.Setenv(EnvReader, "1")
		got, err := Select(vpcdBoth, "0")
		require.NoError(t, err)
		assert.Equal(t, "Virtual PCD 00 00", got.Name)
	})
	t.Run("blank env is unset", func(t *testing.T) {
		t.Setenv(EnvReader, "  ")
		got, err := Select(vpcdCard1, "")
		require.NoError(t, err)
		assert.Equal(t, "Virtual PCD 00 01", got.Name)
	})
	t.Run("env that matches nothing names the variable", func(t *testing.T) {
		t.Setenv(EnvReader, "omnikey")
		_, err := Select(vpcdBoth, "")
		require.ErrorIs(t, err, reader.ErrNoReader)
		assert.Contains(t, err.Error(), "$"+EnvReader+`="omnikey"`)
	})
}

func TestSelectReturnsTheInfo(t *testing.T) {
	t.Setenv(EnvReader, "")
	got, err := Select(vpcdCard1, "")
	require.NoError(t, err)
	assert.Equal(t, reader.Info{Index: 1, Name: "Virtual PCD 00 01", Present: true, ATR: []byte{0x3B, 0x00}}, got)
	assert.False(t, errors.Is(err, reader.ErrAmbiguous))
}
