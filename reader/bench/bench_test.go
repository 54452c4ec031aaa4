package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMedian(t *testing.T) {
	require.Equal(t, 0.0, median(nil))
	require.Equal(t, 2.0, median([]float64{3, 1, 2}))
	require.Equal(t, 2.5, median([]float64{4, 1, 3, 2}))
}

// The in-process paths run and are compared with the echo card measured in
// the same run.
func TestInProcessRun(t *testing.T) {
	rs, err := Run(context.Background(), Config{Runs: 1, InProcessFor: 20 * time.Millisecond})
	require.NoError(t, err)
	require.Len(t, rs, 3)
	for _, r := range rs {
		require.Greater(t, r.Median, 0.0, r.Name)
		require.Len(t, r.Rates, 1)
	}
	require.Equal(t, "in-process: echo card", rs[1].Baseline)
	require.InDelta(t, rs[1].Median/rs[0].Median, rs[1].Ratio, 1e-9)
}
