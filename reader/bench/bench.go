// Package bench measures APDU round trips on each path a card can be reached
// by — in-process, and through pcscd + vpcd — always against a baseline
// taken in the same run on the same path (a bare echo card, and vsmartcard's
// own Python card when it is installed), because these machines are noisy:
// only ratios measured side by side mean anything.
//
// Runs of the card under test and of its baseline are interleaved, and each
// figure is the median of the runs.
package bench

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/valuechip/valuechip/applet"
	"github.com/valuechip/valuechip/applet/profile"
	"github.com/valuechip/valuechip/applet/testcard"
	"github.com/valuechip/valuechip/reader"
	"github.com/valuechip/valuechip/reader/emu"
	"github.com/valuechip/valuechip/reader/pcsc"
	"github.com/valuechip/valuechip/reader/vpcd"
)

// Config says what to measure.
type Config struct {
	Runs         int           // runs per path (median taken); default 5
	InProcessFor time.Duration // length of one in-process run; default 300ms
	VPCDAPDUs    int           // APDUs per run through pcscd; default 2000
	VPCD         bool          // measure through pcscd + vpcd
	VICC         bool          // add vsmartcard's vicc as a baseline (slow: ~21 APDU/s)
	VICCAPDUs    int           // APDUs per vicc run; default 40
	Slot         int           // vpcd slot to use; default 0
	Progress     io.Writer     // progress lines; nil for none
}

func (c *Config) defaults() {
	if c.Runs <= 0 {
		c.Runs = 5
	}
	if c.InProcessFor <= 0 {
		c.InProcessFor = 300 * time.Millisecond
	}
	if c.VPCDAPDUs <= 0 {
		c.VPCDAPDUs = 2000
	}
	if c.VICCAPDUs <= 0 {
		c.VICCAPDUs = 40
	}
}

// Result is one measured path.
type Result struct {
	Name     string    `json:"name"`
	Baseline string    `json:"baseline,omitempty"` // name of the result this one is compared to
	Rates    []float64 `json:"rates_per_s"`        // one per run
	Median   float64   `json:"median_per_s"`
	Ratio    float64   `json:"ratio,omitempty"` // Median / baseline's Median
	Note     string    `json:"note,omitempty"`
}

// MicrosPerAPDU is the median round trip in microseconds.
func (r Result) MicrosPerAPDU() float64 {
	if r.Median == 0 {
		return 0
	}
	return 1e6 / r.Median
}

var (
	selectTest = mustHex("00A4040008F056435445535401")
	// echo5 is the "simple APDU": ECHO of 5 bytes with Le.
	echo5 = mustHex("80100000050102030405" + "00")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// Run measures every configured path.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	cfg.defaults()
	var out []Result
	progress := func(format string, a ...any) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, format+"\n", a...)
		}
	}

	progress("in-process: %d runs of %v", cfg.Runs, cfg.InProcessFor)
	ip, err := inProcess(ctx, cfg)
	if err != nil {
		return nil, err
	}
	out = append(out, ip...)
	if !cfg.VPCD {
		return out, nil
	}
	progress("pcscd + vpcd slot %d: %d runs of %d APDUs", cfg.Slot, cfg.Runs, cfg.VPCDAPDUs)
	vp, err := throughVPCD(ctx, cfg)
	if err != nil {
		return out, err
	}
	out = append(out, vp...)
	if cfg.VICC {
		progress("vicc on slot %d: %d runs of %d APDUs", cfg.Slot, cfg.Runs, cfg.VICCAPDUs)
		vr, err := vicc(ctx, cfg)
		if err != nil {
			out = append(out, Result{Name: "vpcd: vicc (vsmartcard)", Note: "not measured: " + err.Error()})
		} else {
			out = append(out, vr)
			finish(out)
			// vicc is a baseline to beat, not a floor: say how many times
			// faster the test card is on the same path.
			v := &out[len(out)-1] // medians are in out, not in vr
			for i := range out {
				if out[i].Name == "vpcd: test card" && v.Median > 0 {
					v.Note = fmt.Sprintf("%.0f APDU/s (%.0f µs/APDU); the test card is %.0f× faster", v.Median, v.MicrosPerAPDU(), out[i].Median/v.Median)
				}
			}
		}
	}
	finish(out)
	return out, nil
}

// finish fills medians and ratios.
func finish(rs []Result) {
	byName := map[string]float64{}
	for i := range rs {
		rs[i].Median = median(rs[i].Rates)
		byName[rs[i].Name] = rs[i].Median
	}
	for i := range rs {
		if b := byName[rs[i].Baseline]; b > 0 {
			rs[i].Ratio = rs[i].Median / b
		}
	}
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

// inProcess measures the test card behind the in-process backend, bare and
// under the host's full middleware stack, against the echo card.
func inProcess(ctx context.Context, cfg Config) ([]Result, error) {
	echo := emu.Connect(testcard.Echo{}, "emu:echo")
	chip, err := profile.Build(profile.Sample())
	if err != nil {
		return nil, err
	}
	card := emu.Connect(chip, "emu:test")
	defer echo.Close()
	defer card.Close()
	if _, err := card.Transceive(ctx, selectTest); err != nil {
		return nil, err
	}
	stack := reader.Stack(card, reader.GetResponse(), reader.WrongLength(), reader.Chaining(65535))
	rs := []Result{
		{Name: "in-process: echo card"},
		{Name: "in-process: test card", Baseline: "in-process: echo card"},
		{Name: "in-process: test card + middleware", Baseline: "in-process: echo card"},
	}
	paths := []reader.Transceiver{echo, card, stack}
	for run := 0; run < cfg.Runs; run++ {
		for i, t := range paths {
			r, err := timed(ctx, t, echo5, cfg.InProcessFor, 0)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", rs[i].Name, err)
			}
			rs[i].Rates = append(rs[i].Rates, r)
		}
	}
	finish(rs)
	return rs, nil
}

// timed sends cmd repeatedly, for d or n times (whichever is set), and
// returns the rate per second. Every answer must be 9000.
func timed(ctx context.Context, t reader.Transceiver, cmd []byte, d time.Duration, n int) (float64, error) {
	start := time.Now()
	count := 0
	for {
		if n > 0 && count >= n {
			break
		}
		if n == 0 && count%1024 == 0 && time.Since(start) >= d {
			break
		}
		rsp, err := t.Transceive(ctx, cmd)
		if err != nil {
			return 0, err
		}
		if len(rsp) < 2 || rsp[len(rsp)-2] != 0x90 || rsp[len(rsp)-1] != 0x00 {
			return 0, fmt.Errorf("unexpected answer %X", rsp)
		}
		count++
	}
	return float64(count) / time.Since(start).Seconds(), nil
}

// throughVPCD attaches the echo card and the test card in turn to a vpcd
// slot (in this process) and measures through pcscd with ebfe/scard.
func throughVPCD(ctx context.Context, cfg Config) ([]Result, error) {
	pc, err := pcsc.Open()
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	rs := []Result{
		{Name: "vpcd: echo card"},
		{Name: "vpcd: test card", Baseline: "vpcd: echo card"},
	}
	cards := []func() applet.Card{
		func() applet.Card { return testcard.Echo{} },
		func() applet.Card { c, _ := profile.Build(profile.Sample()); return c },
	}
	for run := 0; run < cfg.Runs; run++ {
		for i, mk := range cards {
			rate, err := onSlot(ctx, pc, cfg.Slot, mk(), func(conn reader.Conn) (float64, error) {
				if _, err := conn.Transceive(ctx, selectTest); err != nil {
					return 0, err
				}
				return timed(ctx, conn, echo5, 0, cfg.VPCDAPDUs)
			})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", rs[i].Name, err)
			}
			rs[i].Rates = append(rs[i].Rates, rate)
		}
	}
	finish(rs)
	return rs, nil
}

// onSlot attaches card to a vpcd slot, waits for pcscd to report it, runs
// f on a connection, then removes the card and waits for pcscd to see that.
func onSlot(ctx context.Context, pc *pcsc.Context, slot int, card applet.Card, f func(reader.Conn) (float64, error)) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	name := fmt.Sprintf("Virtual PCD 00 %02X", slot)
	att := vpcd.New(card, vpcd.WithSlot(slot))
	done := make(chan error, 1)
	actx, stop := context.WithCancel(ctx)
	go func() { done <- att.Run(actx) }()
	defer func() {
		stop()
		<-done
		// Wait until pcscd has noticed the removal, so the next card's
		// insertion is not mistaken for this one.
		_ = pc.WaitForRemoval(ctx, name)
	}()
	if _, err := pc.WaitForCard(ctx, name); err != nil {
		return 0, err
	}
	conn, err := pc.Connect(ctx, name, pcsc.ConnectOptions{})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return f(conn)
}

// vicc measures vsmartcard's Python card on the same slot with SELECT MF,
// which its default file system answers 9000. Debian's package needs two
// workarounds (shared/research/vsmartcard.md §2): its module directory on
// PYTHONPATH, and the Cryptodome package visible as Crypto.
func vicc(ctx context.Context, cfg Config) (Result, error) {
	res := Result{Name: "vpcd: vicc (vsmartcard)"}
	bin, err := exec.LookPath("vicc")
	if err != nil {
		return res, errors.New("vicc is not installed (apt-get install vsmartcard-vpicc python3-virtualsmartcard python3-pycryptodome)")
	}
	shim, err := os.MkdirTemp("", "valuechip-vicc")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(shim)
	if err := os.Symlink("/usr/lib/python3/dist-packages/Cryptodome", filepath.Join(shim, "Crypto")); err != nil {
		return res, err
	}
	pc, err := pcsc.Open()
	if err != nil {
		return res, err
	}
	defer pc.Close()
	name := fmt.Sprintf("Virtual PCD 00 %02X", cfg.Slot)
	selectMF := mustHex("00A4000C023F00")
	for run := 0; run < cfg.Runs; run++ {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		cmd := exec.CommandContext(rctx, bin, "--type", "iso7816", "--hostname", "127.0.0.1", "--port", fmt.Sprint(35963+cfg.Slot))
		cmd.Env = append(os.Environ(), "PYTHONPATH=/usr/lib/python3/site-packages/virtualsmartcard:"+shim)
		if err := cmd.Start(); err != nil {
			cancel()
			return res, err
		}
		rate, err := func() (float64, error) {
			if _, err := pc.WaitForCard(rctx, name); err != nil {
				return 0, fmt.Errorf("vicc never appeared in %s: %w", name, err)
			}
			conn, err := pc.Connect(rctx, name, pcsc.ConnectOptions{})
			if err != nil {
				return 0, err
			}
			defer conn.Close()
			return timed(rctx, conn, selectMF, 0, cfg.VICCAPDUs)
		}()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = pc.WaitForRemoval(rctx, name)
		cancel()
		if err != nil {
			return res, err
		}
		res.Rates = append(res.Rates, rate)
	}
	return res, nil
}
