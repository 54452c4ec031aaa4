package ledger

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDurableAcrossReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := Open(ctx, "sqlite:"+path)
	require.NoError(t, err)
	f := setup(t, s)
	r, err := s.Post(ctx, transfer("T1/1", f.bank, f.purse, 4200))
	require.NoError(t, err)
	_, err = s.Begin(ctx, loadRequest(f, "T1/2", 100))
	require.NoError(t, err)
	_, err = s.RecordATC(ctx, ATCAdvice{CardID: "0102030405060708", ATC: 1, Digest: "tc"})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	_, err = s.Post(ctx, transfer("T1/3", f.bank, f.purse, 1))
	require.ErrorIs(t, err, ErrClosed)

	s, err = Open(ctx, path)
	require.NoError(t, err)
	defer s.Close()
	again, err := s.Post(ctx, transfer("T1/1", f.bank, f.purse, 4200))
	require.NoError(t, err)
	assert.True(t, again.Replayed)
	assert.Equal(t, r.ID, again.ID)
	assert.Equal(t, int64(4100), balance(t, s, f.purse))
	x, err := s.Txn(ctx, "T1/2")
	require.NoError(t, err)
	assert.Equal(t, StateInProgress, x.State)
	cs, err := s.Card(ctx, "0102030405060708")
	require.NoError(t, err)
	assert.Equal(t, uint32(1), cs.LastATC)
}

const childEnv = "VALUECHIP_LEDGER_CHILD_DB"

// TestHelperLedgerChild is the child process of TestDurableAcrossKill9: it
// posts until killed and prints "ACK key" after each Post returns.
func TestHelperLedgerChild(t *testing.T) {
	path := os.Getenv(childEnv)
	if path == "" {
		t.Skip("helper process for TestDurableAcrossKill9")
	}
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	f := setup(t, s)
	for i := 0; ; i++ {
		key := fmt.Sprintf("T1/%06d", i)
		if _, err := s.Post(ctx, transfer(key, f.bank, f.purse, 1)); err != nil {
			fmt.Println("ERR", err)
			os.Exit(2)
		}
		fmt.Println("ACK", key) // os.Stdout is unbuffered: one write per ack
	}
}

const childAdvicesEnv = "VALUECHIP_LEDGER_CHILD_ADVICES_DB"

// TestHelperAdvicesChild is the child process of TestAdvicesDurableAcrossKill9:
// 16 goroutines submit advices through a Batcher until killed, printing
// "ACK key" after each Submit returns.
func TestHelperAdvicesChild(t *testing.T) {
	path := os.Getenv(childAdvicesEnv)
	if path == "" {
		t.Skip("helper process for TestAdvicesDurableAcrossKill9")
	}
	s, err := Open(context.Background(), path)
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	b := NewBatcher(s, 0)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 1; ; i++ {
				a := advice(fmt.Sprintf("K%015d", g), uint32(i), "tc", 1)
				if r := b.Submit(context.Background(), a); r.Err != nil {
					mu.Lock()
					fmt.Println("ERR", r.Err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Println("ACK", a.CardID, a.ATC) // one write per ack
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
}

// Every advice acknowledged by the Batcher before kill -9 is in the file.
func TestAdvicesDurableAcrossKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(t.TempDir(), "ledger.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAdvicesChild$")
	cmd.Env = append(os.Environ(), childAdvicesEnv+"="+path)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	type rec struct {
		card string
		atc  uint32
	}
	var acked []rec
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "ERR") {
			t.Fatalf("child: %s", line)
		}
		var r rec
		if _, err := fmt.Sscanf(line, "ACK %s %d", &r.card, &r.atc); err == nil {
			acked = append(acked, r)
		}
		if len(acked) == 2000 && !killed {
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			killed = true
		}
	}
	_ = cmd.Wait()
	require.True(t, killed, "child ended before acknowledging 2000 advices")

	ctx := context.Background()
	s, err := Open(ctx, path)
	require.NoError(t, err)
	defer s.Close()
	for _, r := range acked {
		_, err := s.PostingByKey(ctx, adviceKey(advice(r.card, r.atc, "tc", 1)))
		require.NoError(t, err, "acknowledged advice %s/%d lost", r.card, r.atc)
	}
	tot, err := s.OpenBatchTotals(ctx, term1)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, tot.Debits, int64(len(acked)))
	rep, err := s.Report(ctx)
	require.NoError(t, err)
	assert.Zero(t, rep.Imbalance[eur])
	require.Len(t, rep.Merchants, 1)
	assert.Equal(t, -tot.DebitAmount, rep.Merchants[0].Balance, "balances follow the advices")
	t.Logf("%d advices acknowledged before SIGKILL, %d in the file", len(acked), tot.Debits)
}

func TestDurableAcrossKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(t.TempDir(), "ledger.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperLedgerChild$")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	var acked []string
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "ERR") {
			t.Fatalf("child: %s", line)
		}
		if key, ok := strings.CutPrefix(line, "ACK "); ok {
			acked = append(acked, key)
		}
		if len(acked) == 300 && !killed {
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			killed = true
		}
	}
	_ = cmd.Wait()
	require.True(t, killed, "child ended before acknowledging 300 postings")

	ctx := context.Background()
	s, err := Open(ctx, path)
	require.NoError(t, err)
	defer s.Close()
	for _, key := range acked {
		_, err := s.PostingByKey(ctx, key)
		require.NoError(t, err, "acknowledged posting %s lost", key)
	}
	var n int64
	require.NoError(t, s.db.SQL().QueryRow("SELECT COUNT(*) FROM ledger_postings").Scan(&n))
	assert.GreaterOrEqual(t, n, int64(len(acked)))
	assert.Equal(t, n, balance(t, s, AccountID(KindPurse, "0102030405060708", eur)), "balances follow the postings")
	t.Logf("%d postings acknowledged before SIGKILL, %d in the file", len(acked), n)
}

func BenchmarkPost(b *testing.B) {
	s := openStore(b, "sqlite")
	f := setup(b, s)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Post(ctx, transfer(fmt.Sprintf("b/%d", i), f.bank, f.purse, 1)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPostParallel(b *testing.B) {
	s := openStore(b, "sqlite")
	f := setup(b, s)
	ctx := context.Background()
	var n atomicCounter
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.Post(ctx, transfer(fmt.Sprintf("b/%d", n.next()), f.bank, f.purse, 1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

type atomicCounter struct{ v atomic.Int64 }

func (c *atomicCounter) next() int64 { return c.v.Add(1) }
