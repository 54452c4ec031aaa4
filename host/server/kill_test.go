package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	moov "github.com/moov-io/iso8583"
	"github.com/stretchr/testify/require"

	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/keystore"
	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/server"
	"github.com/valuechip/valuechip/host/sqldb"
	"github.com/valuechip/valuechip/internal/atomicfile"
	"github.com/valuechip/valuechip/internal/dbtest"
)

const childEnv = "VALUECHIP_SERVER_TEST_CHILD"

type childCfg struct {
	DB, Keyring, KEKFile, Ready string
}

// TestHelperServerChild is the server process of TestKill9: it serves
// until it is killed.
func TestHelperServerChild(t *testing.T) {
	path := os.Getenv(childEnv)
	if path == "" {
		t.Skip("helper process for TestKill9")
	}
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var c childCfg
	require.NoError(t, json.Unmarshal(b, &c))
	ctx := context.Background()
	svc, err := server.Open(ctx, server.Options{DB: c.DB, Keyring: c.Keyring, KEKFile: c.KEKFile,
		Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, atomicfile.Write(c.Ready, []byte(l.Addr().String())))
	require.NoError(t, svc.Serve(ctx, l, nil))
}

// TestKill9: terminals send advices to a server process that is killed
// with SIGKILL in the middle; after a restart every acknowledged advice is
// there (its repeat is a replay, 94) and, once the rest is resent, every
// balance is exact — on both engines.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("child processes")
	}
	for _, engine := range dbtest.Engines {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			dsn := "sqlite:" + filepath.Join(dir, "server.db")
			if engine == "postgres" {
				dsn = dbtest.PostgresDSN(t)
			}
			kekFile := filepath.Join(dir, "kek.hex")
			raw := make([]byte, 32)
			_, _ = rand.Read(raw)
			kek, err := keystore.NewKEK(raw)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(kekFile, []byte(hex.EncodeToString(raw)), 0o600))
			ringFile := filepath.Join(dir, "keyring.json")
			kr, err := keystore.Init(ringFile, kek, keystore.InitOptions{DevMasters: true})
			require.NoError(t, err)
			db, err := sqldb.Open(ctx, dsn)
			require.NoError(t, err)
			reg, err := registry.New(ctx, db, kr)
			require.NoError(t, err)
			const n = 200 // concurrent terminals, one connection each (issue 5: at least 200)
			var terms []*tterm
			var cards []*vcard
			tmks := map[string]iso8583.Key{}
			for i := range n {
				id, mid := fmt.Sprintf("K%07d", i), fmt.Sprintf("MERCHANTK%06d", i)
				_, tmk, err := reg.RegisterTerminal(ctx, id, mid)
				require.NoError(t, err)
				tmks[id] = tmk
				c := newVCard(t, bcdCard(100+i))
				_, err = reg.RegisterCard(ctx, registry.Card{CardID: c.hex(), Currency: "978", MaxBalance: 1 << 30, KeyVersion: 1})
				require.NoError(t, err)
				cards = append(cards, c)
				terms = append(terms, &tterm{t: t, id: id, merchant: mid, tmk: tmk, now: time.Now})
			}
			require.NoError(t, db.Close())

			cfgFile := filepath.Join(dir, "child.json")
			ready := filepath.Join(dir, "ready")
			cb, _ := json.Marshal(childCfg{DB: dsn, Keyring: ringFile, KEKFile: kekFile, Ready: ready})
			require.NoError(t, os.WriteFile(cfgFile, cb, 0o600))
			start := func() (*exec.Cmd, string) {
				_ = os.Remove(ready)
				cmd := exec.Command(os.Args[0], "-test.run=^TestHelperServerChild$", "-test.count=1")
				cmd.Env = append(os.Environ(), childEnv+"="+cfgFile)
				require.NoError(t, cmd.Start())
				t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
				var addr string
				require.Eventually(t, func() bool {
					b, err := os.ReadFile(ready)
					addr = string(b)
					return err == nil && addr != ""
				}, 60*time.Second, 20*time.Millisecond)
				return cmd, addr
			}
			connect := func(addr string) {
				for _, tt := range terms {
					tt.addr = addr
					tt.c = iso8583.NewClient(dial(t, addr), 0)
					tt.c.Timeout = 20 * time.Second
					require.Equal(t, "00", tt.signOn())
				}
			}
			child, addr := start()
			connect(addr)
			// Fund the cards, then prepare the advices.
			const per, amount = 15, 3
			msgs := make([][]*moov.Message, n)
			for i, tt := range terms {
				s := cards[i].initLoad(t, 10000, tt.id)
				resp, rc := tt.send(tt.loadMsg(cards[i], s))
				require.Equal(t, "00", rc)
				rec := cards[i].credit(t, s, iccOf(t, resp))
				_, rc = tt.send(tt.adviceMsg(cards[i], rec))
				require.Equal(t, "00", rc)
				for j := range per {
					msgs[i] = append(msgs[i], tt.adviceMsg(cards[i], cards[i].debit(t, amount, tt.id, uint32(j+1), time.Now())))
				}
			}
			// Send until about a third are acknowledged, then kill -9.
			var acked atomic.Int64
			ack := make([][]bool, n)
			var wg sync.WaitGroup
			for i, tt := range terms {
				ack[i] = make([]bool, per)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j, m := range msgs[i] {
						resp, err := tt.c.Send(ctx, m, tt.keys.WorkingKey)
						if err != nil {
							return // the server died
						}
						if rc, _ := resp.GetString(iso8583.DEResponseCode); rc == "00" {
							ack[i][j] = true
							if acked.Add(1) == n*per/3 {
								_ = child.Process.Signal(syscall.SIGKILL)
							}
						}
					}
				}()
			}
			wg.Wait()
			_ = child.Wait()
			require.GreaterOrEqual(t, acked.Load(), int64(n*per/3))
			require.Less(t, acked.Load(), int64(n*per), "killed before the end")

			_, addr = start()
			connect(addr) // new sessions: the advices are renumbered under the new seeds
			for i, tt := range terms {
				for j := range msgs[i] {
					rec := msgs[i][j]
					b, _ := rec.GetBytes(iso8583.DEICC)
					d, err := iso8583.DecodeICC(b)
					require.NoError(t, err)
					_, rc := tt.send(tt.adviceMsg(cards[i], *d.LogRecord))
					if ack[i][j] {
						require.Equal(t, "94", rc, "acknowledged before the kill: already posted")
					} else {
						require.Contains(t, []string{"00", "94"}, rc)
					}
				}
				resp, rc := tt.send(tt.balanceMsg(cards[i]))
				require.Equal(t, "00", rc)
				de54, _ := resp.GetString(iso8583.DEAdditionalAmts)
				require.Equal(t, "0002978C"+leftPad(10000-per*amount), de54, "every advice posted exactly once")
			}
		})
	}
}

func leftPad(v int) string { return fmt.Sprintf("%012d", v) }
