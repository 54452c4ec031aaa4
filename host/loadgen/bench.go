package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/valuechip/valuechip/host/server"
)

// BenchConfig says what `valuechip bench server` measures (issue 5,
// Benchmarks): debit advices per second end to end over loopback TCP into
// an in-process server on a fresh SQLite file and, with PG, on a fresh
// PostgreSQL database, against pgbench's simple-update TPS on a scratch
// database of the same PostgreSQL, runs interleaved, medians reported.
type BenchConfig struct {
	Runs      int           // runs per series; 5 when 0
	Duration  time.Duration // of one run; 5 s when 0
	Terminals int           // simulated terminals (connections); 64 when 0
	Cards     int           // cards per terminal; 4 when 0
	// PG is a PostgreSQL DSN whose role may CREATE DATABASE; "" measures
	// SQLite only.
	PG string
	// PGBenchClients is pgbench's -c (8 when 0); its -j is 2.
	PGBenchClients int
	MaxBatch       int    // advices per group commit, 0: the server's default
	Dir            string // for the SQLite file and key files; a temporary directory when ""
	Progress       io.Writer
}

// Series is one measured path.
type Series struct {
	Name  string    `json:"name"`
	Rates []float64 `json:"rates_per_s"` // one per run
	// Median of Rates; for pgbench, transactions per second.
	Median float64 `json:"median_per_s"`
	// CPUMicros is this process's CPU time (user + system, every
	// goroutine: the server and the load generator's client side) per
	// acknowledged advice, median over the runs.
	CPUMicros float64 `json:"cpu_us_per_advice,omitempty"`
	// DBCPUMicros is the CPU time of the PostgreSQL backends serving the
	// server's database per advice, median over the runs.
	DBCPUMicros float64 `json:"db_cpu_us_per_advice,omitempty"`
	// Batch is the mean number of advices per group commit.
	Batch float64          `json:"mean_batch,omitempty"`
	Codes map[string]int64 `json:"codes,omitempty"` // over all runs
	Note  string           `json:"note,omitempty"`
}

// BenchReport is the outcome of Bench.
type BenchReport struct {
	Runs      int           `json:"runs"`
	Duration  time.Duration `json:"duration_ns"`
	Terminals int           `json:"terminals"`
	SQLite    Series        `json:"sqlite"`
	Postgres  *Series       `json:"postgres,omitempty"`
	PGBench   *Series       `json:"pgbench,omitempty"`
	// Ratio is Postgres.Median / PGBench.Median (goal ≥ 0.5).
	Ratio float64 `json:"ratio_pg_to_pgbench,omitempty"`
	// Verified: every acknowledged advice is in its ledger exactly once.
	Verified bool   `json:"verified"`
	Note     string `json:"note,omitempty"`
}

func (c *BenchConfig) defaults() {
	if c.Runs <= 0 {
		c.Runs = 5
	}
	if c.Duration <= 0 {
		c.Duration = 5 * time.Second
	}
	if c.Terminals <= 0 {
		c.Terminals = 200
	}
	if c.Cards <= 0 {
		c.Cards = 4
	}
	if c.PGBenchClients <= 0 {
		c.PGBenchClients = 8
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
}

// target is one server under load.
type target struct {
	name   string
	srv    *Server
	gen    *Generator
	series Series
	cpu    []float64
	dbcpu  []float64
	db     string // PostgreSQL database name ("" on SQLite)
	admin  string
	rate   float64 // last run's rate, to size the next prebuild
}

// Bench runs the benchmark.
func Bench(ctx context.Context, cfg BenchConfig) (*BenchReport, error) {
	cfg.defaults()
	rep := &BenchReport{Runs: cfg.Runs, Duration: cfg.Duration, Terminals: cfg.Terminals}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "valuechip-bench-")
		if err != nil {
			return nil, fmt.Errorf("loadgen: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	var targets []*target
	defer func() {
		for _, t := range targets {
			if t.srv != nil {
				_ = t.srv.Close()
			}
			if t.db != "" {
				_ = dropDatabase(context.WithoutCancel(ctx), t.admin, t.db)
			}
		}
	}()
	sqliteDir := filepath.Join(dir, "sqlite")
	if err := os.MkdirAll(sqliteDir, 0o700); err != nil {
		return nil, fmt.Errorf("loadgen: %w", err)
	}
	st, err := startTarget(ctx, cfg, "sqlite", filepath.Join(sqliteDir, "valuechip.db"), sqliteDir)
	if st != nil {
		targets = append(targets, st)
	}
	if err != nil {
		return nil, err
	}
	var (
		pgb    *pgbench
		pgbSer *Series
	)
	if cfg.PG != "" {
		name, dsn, err := createDatabase(ctx, cfg.PG, "vc_bench_")
		if err != nil {
			return nil, err
		}
		pgDir := filepath.Join(dir, "postgres")
		if err := os.MkdirAll(pgDir, 0o700); err != nil {
			_ = dropDatabase(ctx, cfg.PG, name)
			return nil, fmt.Errorf("loadgen: %w", err)
		}
		pt, err := startTarget(ctx, cfg, "postgres", dsn, pgDir)
		if pt == nil {
			pt = &target{}
		}
		pt.db, pt.admin = name, cfg.PG
		targets = append(targets, pt)
		if err != nil {
			return nil, err
		}
		pgbSer = &Series{Name: "pgbench"}
		bin := findPGBench()
		if bin == "" {
			pgbSer.Note = "pgbench not found (PATH, /usr/lib/postgresql/*/bin): no baseline"
		} else {
			pgb, err = newPGBench(ctx, bin, cfg.PG, cfg.Progress)
			if err != nil {
				return nil, err
			}
			defer pgb.close(context.WithoutCancel(ctx))
		}
	}

	for run := 1; run <= cfg.Runs; run++ {
		for _, t := range targets {
			if err := t.run(ctx, cfg, run); err != nil {
				return nil, err
			}
		}
		if pgb != nil {
			tps, err := pgb.run(ctx, cfg)
			if err != nil {
				return nil, err
			}
			pgbSer.Rates = append(pgbSer.Rates, tps)
			fmt.Fprintf(cfg.Progress, "run %d/%d pgbench: %.0f TPS\n", run, cfg.Runs, tps)
		}
	}
	rep.Verified = true
	for _, t := range targets {
		if err := t.gen.Verify(ctx, t.srv.Service.Ledger); err != nil {
			return nil, err
		}
		t.series.Median = median(t.series.Rates)
		t.series.CPUMicros = median(t.cpu)
		t.series.DBCPUMicros = median(t.dbcpu)
		if n, sum := batchStats(t.srv.Service.Server.Metrics()); n > 0 {
			t.series.Batch = sum / float64(n)
		}
		if t.name == "sqlite" {
			rep.SQLite = t.series
		} else {
			s := t.series
			rep.Postgres = &s
		}
	}
	if pgbSer != nil {
		pgbSer.Median = median(pgbSer.Rates)
		rep.PGBench = pgbSer
		if rep.Postgres != nil && pgbSer.Median > 0 {
			rep.Ratio = rep.Postgres.Median / pgbSer.Median
		}
	}
	if cfg.PG == "" {
		rep.Note = "PostgreSQL not measured: give --pg DSN or set VALUECHIP_PG_DSN"
	}
	return rep, nil
}

func startTarget(ctx context.Context, cfg BenchConfig, name, dsn, dir string) (*target, error) {
	srv, err := StartServer(ctx, dsn, ServerOptions{Dir: dir, MaxBatch: cfg.MaxBatch})
	if err != nil {
		return nil, err
	}
	t := &target{name: name, srv: srv, series: Series{Name: name, Codes: map[string]int64{}}}
	terms, err := Provision(ctx, srv.Service.Registry, cfg.Terminals, cfg.Cards, srv.KeyVersion)
	if err != nil {
		return t, err
	}
	t.gen, err = New(Config{Addr: srv.Addr, Terminals: terms, TCMaster: srv.TCMaster})
	return t, err
}

// run is one timed run against the target.
func (t *target) run(ctx context.Context, cfg BenchConfig, n int) error {
	// Prebuild what the last run's rate needs, with a margin (the first
	// run assumes 20,000/s).
	if t.rate > 0 {
		t.gen.cfg.Prebuild = int(1.5*t.rate*cfg.Duration.Seconds())/cfg.Terminals + 16
	}
	// (Sampled before the prebuild, which does not touch the database.)
	backends := t.backendCPU(ctx)
	res, err := t.gen.Run(ctx, cfg.Duration)
	if err != nil {
		return fmt.Errorf("loadgen: %s run %d: %w", t.name, n, err)
	}
	if res.Acked == 0 {
		return fmt.Errorf("loadgen: %s run %d: no advice acknowledged (%v)", t.name, n, res.Codes)
	}
	t.rate = res.PerSecond
	t.series.Rates = append(t.series.Rates, res.PerSecond)
	for k, v := range res.Codes {
		t.series.Codes[k] += v
	}
	t.cpu = append(t.cpu, float64(res.CPU.Microseconds())/float64(res.Acked))
	note := ""
	if backends != nil {
		if d := t.backendCPU(ctx); d != nil {
			var used time.Duration
			for pid, c := range d {
				used += c - backends[pid]
			}
			us := float64(used.Microseconds()) / float64(res.Acked)
			t.dbcpu = append(t.dbcpu, us)
			note = fmt.Sprintf(", PostgreSQL %.0f µs", us)
		}
	}
	if res.BuiltLive > 0 {
		note += fmt.Sprintf(", %d built in the window", res.BuiltLive)
	}
	fmt.Fprintf(cfg.Progress, "run %d/%d %s: %.0f advices/s (%d acked, CPU %.0f µs/advice%s)\n",
		n, cfg.Runs, t.name, res.PerSecond, res.Acked, t.cpu[len(t.cpu)-1], note)
	return nil
}

// backendCPU is the CPU time so far of each PostgreSQL backend connected
// to the target's database, read from /proc (the server is on this
// machine when it is on loopback); nil when not measurable.
func (t *target) backendCPU(ctx context.Context) map[int]time.Duration {
	if t.db == "" {
		return nil
	}
	conn, err := pgx.Connect(ctx, t.admin)
	if err != nil {
		return nil
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1`, t.db)
	if err != nil {
		return nil
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil
	}
	out := map[int]time.Duration{}
	for _, pid := range pids {
		if c, ok := procCPU(int(pid)); ok {
			out[int(pid)] = c
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// batchStats is the count and sum of the server's advice batch sizes
// (its Prometheus histogram).
func batchStats(m *server.Metrics) (uint64, float64) {
	if m == nil {
		return 0, 0
	}
	fams, err := m.Registry.Gather()
	if err != nil {
		return 0, 0
	}
	for _, f := range fams {
		if f.GetName() != "valuechip_server_advice_batch_size" {
			continue
		}
		for _, mm := range f.GetMetric() {
			if h := mm.GetHistogram(); h != nil {
				return h.GetSampleCount(), h.GetSampleSum()
			}
		}
	}
	return 0, 0
}

// procCPU reads utime + stime of a process from /proc/PID/stat.
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// Fields after the command name, which is in parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	// USER_HZ is 100 on Linux.
	return time.Duration(u+s) * 10 * time.Millisecond, true
}

// processCPU is this process's CPU time, user + system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// createDatabase creates a database with a random name on the server of
// admin and returns its name and DSN.
func createDatabase(ctx context.Context, admin, prefix string) (string, string, error) {
	u, err := url.Parse(admin)
	if err != nil {
		return "", "", fmt.Errorf("loadgen: PostgreSQL DSN: %w", err)
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("loadgen: %w", err)
	}
	name := prefix + hex.EncodeToString(b[:])
	if err := adminExec(ctx, admin, "CREATE DATABASE "+name); err != nil {
		return "", "", err
	}
	u.Path = "/" + name
	return name, u.String(), nil
}

func dropDatabase(ctx context.Context, admin, name string) error {
	return adminExec(ctx, admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
}

// adminExec runs one statement outside a transaction (CREATE/DROP
// DATABASE) on a connection of its own.
func adminExec(ctx context.Context, dsn, stmt string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("loadgen: connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("loadgen: %s: %w", stmt, err)
	}
	return nil
}

// findPGBench looks for pgbench in PATH, then in the newest
// /usr/lib/postgresql/*/bin.
func findPGBench() string {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	best, bestV := "", -1
	for _, d := range dirs {
		v, err := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(d))))
		if err == nil && v > bestV {
			best, bestV = d, v
		}
	}
	return best
}

// pgbench runs pgbench's built-in simple-update script (-N: one UPDATE of
// pgbench_accounts, a SELECT, an INSERT into pgbench_history per
// transaction) on a scratch database.
type pgbench struct {
	bin, admin, db, dsn string
	progress            io.Writer
}

func newPGBench(ctx context.Context, bin, admin string, progress io.Writer) (*pgbench, error) {
	name, dsn, err := createDatabase(ctx, admin, "vc_pgbench_")
	if err != nil {
		return nil, err
	}
	p := &pgbench{bin: bin, admin: admin, db: name, dsn: dsn, progress: progress}
	if out, err := exec.CommandContext(ctx, bin, "-i", "-q", dsn).CombinedOutput(); err != nil {
		_ = dropDatabase(ctx, admin, name)
		return nil, fmt.Errorf("loadgen: pgbench -i: %w: %s", err, lastLine(out))
	}
	return p, nil
}

var tpsLine = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)

func (p *pgbench) run(ctx context.Context, cfg BenchConfig) (float64, error) {
	secs := int(math.Ceil(cfg.Duration.Seconds()))
	out, err := exec.CommandContext(ctx, p.bin, "-N", "-c", strconv.Itoa(cfg.PGBenchClients), "-j", "2",
		"-T", strconv.Itoa(max(secs, 1)), p.dsn).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("loadgen: pgbench: %w: %s", err, lastLine(out))
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		return 0, errors.New("loadgen: pgbench printed no tps line")
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

func (p *pgbench) close(ctx context.Context) { _ = dropDatabase(ctx, p.admin, p.db) }

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
