package validity

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMixIsBijective(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, k := range []uint64{0, 1, 1<<64 - 1, 0x1122334455667788} {
		require.Equal(t, k, unmix(mix(k)))
	}
	for range 10000 {
		k := r.Uint64()
		require.Equal(t, k, unmix(mix(k)))
	}
}

func TestSet(t *testing.T) {
	for _, n := range []int{0, 1, 2, 3, 5, 17, 1000, 100_000} {
		r := rand.New(rand.NewPCG(uint64(n), 7))
		want := make(map[uint64]bool, n)
		keys := make([]uint64, 0, n+n/10)
		for range n {
			k := bcdLike(r)
			want[k] = true
			keys = append(keys, k)
		}
		keys = append(keys, keys[:n/10]...) // duplicates
		var last int
		s := newSet(keys, func(done int) { require.GreaterOrEqual(t, done, last); last = done })
		require.Equal(t, len(want), s.len())
		for k := range want {
			require.True(t, s.has(k))
		}
		for range 1000 {
			k := r.Uint64()
			require.Equal(t, want[k], s.has(k))
		}
		got := map[uint64]bool{}
		s.each(func(k uint64) bool { got[k] = true; return true })
		require.Equal(t, want, got)
		require.LessOrEqual(t, s.bytes(), int64(10*len(keys)+16))

		// apply: remove half of the keys, add as many new ones.
		delta := map[uint64]entry{}
		i := 0
		for k := range want {
			if i%2 == 0 {
				delta[k] = entry{listed: false}
				delete(want, k)
			}
			i++
		}
		for range n/2 + 1 {
			k := bcdLike(r)
			delta[k] = entry{listed: true}
			want[k] = true
		}
		s2 := s.apply(delta)
		require.Equal(t, len(want), s2.len())
		for k := range want {
			require.True(t, s2.has(k))
		}
		for k, e := range delta {
			require.Equal(t, e.listed, s2.has(k))
		}
	}
}

// bcdLike returns a CardID-like key: 16 decimal nibbles.
func bcdLike(r *rand.Rand) uint64 {
	var k uint64
	for range 16 {
		k = k<<4 | uint64(r.IntN(10))
	}
	return k
}
