package ledger

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// benchAdvice is the i-th advice of a benchmark: 4096 cards, consecutive
// ATCs per card, 16 merchants on 16 terminals.
func benchAdvice(i int64) DebitAdvice {
	card := fmt.Sprintf("B%015d", i%4096)
	atc := uint32(i/4096 + 1)
	return DebitAdvice{
		Key: fmt.Sprintf("adv/%s/%d", card, atc), CardID: card,
		TerminalID: fmt.Sprintf("T%07d", i%16), MerchantID: fmt.Sprintf("M%014d", i%16),
		ATC: atc, Digest: fmt.Sprintf("%016x", i), Amount: 1 + i%500, Currency: eur,
	}
}

// reportRate reports the wall-clock rate and the process CPU time per
// advice (user + system, every goroutine): on a shared machine the latter
// says what the code costs, whatever the other tenants take.
func reportRate(b *testing.B, start time.Time, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "advices/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/advice")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkApplyAdvices: one ApplyAdvices (one commit) per batch of the
// given size; ns/op is per advice.
func BenchmarkApplyAdvices(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		for _, size := range []int{1, 64, 512} {
			b.Run(fmt.Sprintf("%s/batch=%d", engine, size), func(b *testing.B) {
				s := openStore(b, engine)
				ctx := context.Background()
				batch := make([]DebitAdvice, 0, size)
				b.ResetTimer()
				start, cpu0 := time.Now(), cpuTime()
				for i := 0; i < b.N; i += size {
					batch = batch[:0]
					for j := i; j < min(i+size, b.N); j++ {
						batch = append(batch, benchAdvice(int64(j)))
					}
					for _, r := range s.ApplyAdvices(ctx, batch) {
						if r.Err != nil {
							b.Fatal(r.Err)
						}
					}
				}
				reportRate(b, start, cpu0)
			})
		}
	}
}

// BenchmarkBatcher: many concurrent submitters (256 per GOMAXPROCS), each
// waiting for its own advice's commit, as terminals' connections would.
func BenchmarkBatcher(b *testing.B) {
	for _, engine := range []string{"sqlite", "postgres"} {
		b.Run(engine, func(b *testing.B) {
			s := openStore(b, engine)
			bt := NewBatcher(s, 0)
			defer bt.Close()
			ctx := context.Background()
			var n atomic.Int64
			b.SetParallelism(256)
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if r := bt.Submit(ctx, benchAdvice(n.Add(1)-1)); r.Err != nil {
						b.Error(r.Err)
						return
					}
				}
			})
			reportRate(b, start, cpu0)
		})
	}
}
