package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/internal/dbtest"
)

func TestCardCLI(t *testing.T) {
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			dsn := "sqlite:" + filepath.Join(t.TempDir(), "server.db")
			if engine == "postgres" {
				dsn = dbtest.PostgresDSN(t)
			}
			stdout, _, err := cli(t, ctx, nil, "card", "register", "--db", dsn, "1122334455667788", "--max-balance", "50000", "--holder", "alice")
			require.NoError(t, err)
			require.Contains(t, stdout, "card 1122334455667788 registered")
			// Idempotent for identical data, refused for different data.
			_, _, err = cli(t, ctx, nil, "card", "register", "--db", dsn, "1122334455667788", "--max-balance", "50000", "--holder", "alice")
			require.NoError(t, err)
			_, _, err = cli(t, ctx, nil, "card", "register", "--db", dsn, "1122334455667788", "--max-balance", "60000", "--holder", "alice")
			require.ErrorContains(t, err, "already registered with other data")
			for _, bad := range [][]string{{"11223344"}, {"1122334455667788", "--currency", "0"}, {"1122334455667788", "--key-version", "256"}} {
				_, _, err = cli(t, ctx, nil, append([]string{"card", "register", "--db", dsn}, bad...)...)
				require.Error(t, err, bad)
			}
			stdout, _, err = cli(t, ctx, nil, "card", "list", "--db", dsn, "--json")
			require.NoError(t, err)
			var cards []cardJSON
			require.NoError(t, json.Unmarshal([]byte(stdout), &cards))
			require.Len(t, cards, 1)
			require.Equal(t, "1122334455667788", cards[0].CardID)
			require.Equal(t, int64(50000), cards[0].MaxBalance)
			require.Equal(t, "978", cards[0].Currency)
			require.Equal(t, "active", cards[0].Status)
		})
	}
}
