package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/valuechip/valuechip/applet"
	"github.com/valuechip/valuechip/applet/chip"
	"github.com/valuechip/valuechip/applet/profile"
	"github.com/valuechip/valuechip/applet/testcard"
	"github.com/valuechip/valuechip/internal/atomicfile"
	"github.com/valuechip/valuechip/reader/pcsc"
	"github.com/valuechip/valuechip/reader/vpcd"
)

func newEmulate() *cobra.Command {
	var (
		addr      string
		slot      int
		listen    string
		cardFile  string
		readyFile string
		t0        bool
		echo      bool
		verbose   bool
		tapGap    time.Duration
		prof      string
		create    bool
	)
	cmd := &cobra.Command{
		Use:   "emulate",
		Short: "Attach an emulated card to vsmartcard's virtual reader (vpcd), or serve it on a socket",
		Long: `Attach an emulated card to vpcd, so that pcscd and every PC/SC tool see it in
"Virtual PCD 00 00" (--slot 0) or "Virtual PCD 00 01" (--slot 1). The card
connects out to vpcd and reconnects by itself when pcscd restarts.

With --listen ADDR the card instead waits for a reader speaking the vpcd
protocol on ADDR (valuechip's own --reader tcp:ADDR, or a vpcd in reverse
mode).

Once pcscd has powered the card, a line "ready: ..." goes to stdout and
--ready-file is written, so scripts and tests wait for that instead of
sleeping. Control: SIGUSR1 removes the card, SIGUSR2 inserts it, SIGHUP taps
it (remove + insert); the words remove, insert, tap and quit on stdin do the
same.`,
		Example: `  valuechip emulate --card-file card.json &
  valuechip emulate --create --profile empty --card-file chip.card   # then --reader emu:chip.card
  valuechip emulate --slot 1 --ready-file /tmp/ready
  valuechip emulate --listen 127.0.0.1:35999`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if slot < 0 || slot > 1 {
				return usagef("--slot %d: vpcd has slots 0 and 1", slot)
			}
			if create {
				// Only make the image: in-process readers (--reader
				// emu:FILE) then use it without pcscd or a socket.
				if cardFile == "" {
					return usagef("--create makes the image of --card-file FILE: give one")
				}
				if _, err := os.Stat(cardFile); err == nil {
					return usagef("--create: %s already exists (a card image is never overwritten)", cardFile)
				}
			}
			card, desc, testKeys, err := emulatedCard(cardFile, prof, t0, echo)
			if err != nil {
				return err
			}
			if create {
				fmt.Fprintf(cmd.OutOrStdout(), "card: %s\n", desc)
				return nil
			}
			if testKeys {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning: this card's security domain holds the public GlobalPlatform test keys (404142…4F), like a developer sample card; never let it hold value (use --profile FILE with your own keys)")
			}
			out := cmd.OutOrStdout()
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelInfo
			}
			logger := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			fmt.Fprintf(out, "card: %s\n", desc)

			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			onState := stateReporter(ctx, out, readyFile, fmt.Sprintf("Virtual PCD 00 %02X", slot), logger)

			if listen != "" {
				l, err := net.Listen("tcp", listen)
				if err != nil {
					return fmt.Errorf("listen on %s: %w", listen, err)
				}
				// Ready as soon as readers can connect.
				fmt.Fprintf(out, "ready: listening on %s (use --reader tcp:%s)\n", l.Addr(), l.Addr())
				if readyFile != "" {
					if err := atomicfile.Write(readyFile, []byte(l.Addr().String()+"\n")); err != nil {
						return err
					}
				}
				return vpcd.Serve(ctx, l, card, vpcd.WithLogger(logger), vpcd.WithOnState(func(e vpcd.Event) {
					if e.State == vpcd.Connected || e.State == vpcd.Removed {
						logger.Info("reader " + e.String())
					}
				}))
			}
			att := vpcd.New(card, vpcd.WithAddr(addr), vpcd.WithSlot(slot),
				vpcd.WithOnState(onState), vpcd.WithLogger(logger), vpcd.WithTapGap(tapGap))
			go controlLoop(ctx, cmd.InOrStdin(), att, cancel)
			return att.Run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "vpcd", vpcd.DefaultAddr, "vpcd address (HOST:PORT of slot 0)")
	f.IntVar(&slot, "slot", 0, "vpcd slot: 0 or 1 (port + slot)")
	f.StringVar(&listen, "listen", "", "serve the card on this address instead of connecting to vpcd")
	f.StringVar(&cardFile, "card-file", "", "file holding the card's persistent state (created on first use; default: in memory)")
	f.StringVar(&readyFile, "ready-file", "", "write this file once pcscd has powered the card")
	f.BoolVar(&create, "create", false, "only create the --card-file image from --profile and exit (for --reader emu:FILE)")
	f.StringVar(&prof, "profile", "sample", "profile for a new chip: sample (ISD + test applet), empty (ISD only) or a profile JSON file")
	f.BoolVar(&t0, "t0", false, "answer like a T=0 card: response data of case-4 commands through 61xx + GET RESPONSE")
	f.BoolVar(&echo, "echo", false, "emulate a bare echo card (answers every command with its data and 9000): a baseline for benchmarks")
	f.BoolVar(&verbose, "verbose", false, "log connections and power changes")
	f.DurationVar(&tapGap, "tap-gap", vpcd.DefaultTapGap, "how long a tap keeps the card out of the reader (pcscd polls presence every 400 ms)")
	cmd.MarkFlagsMutuallyExclusive("listen", "slot")
	cmd.MarkFlagsMutuallyExclusive("echo", "card-file")
	return cmd
}

// emulatedCard opens the chip image in file (or makes one in memory),
// creating new chips from the named profile: "sample" (the ISD and the
// test applet), "empty" (the ISD alone, as sold to a holder) or a profile
// JSON file.
func emulatedCard(file, profName string, t0, echo bool) (card applet.Card, desc string, testKeys bool, err error) {
	if echo {
		return testcard.Echo{}, "bare echo card", false, nil
	}
	var p *profile.Profile
	switch profName {
	case "", "sample":
		p = profile.Sample()
	case "empty":
		p = profile.Empty()
	default:
		if p, err = profile.Load(profName); err != nil {
			return nil, "", false, usageError{fmt.Errorf("--profile: %w", err)}
		}
	}
	var opts []chip.Option
	if t0 {
		opts = append(opts, chip.WithT0())
	}
	var c *chip.Chip
	created := true
	if file != "" {
		c, created, err = profile.Open(file, p, opts...)
	} else {
		c, err = profile.Build(p, opts...)
	}
	if err != nil {
		return nil, "", false, err
	}
	where := "in memory only"
	if file != "" {
		where = "image " + file
	}
	if created {
		testKeys = p.TestKeys
		return c, fmt.Sprintf("new chip, serial %X, %d application(s), %s", p.Serial, len(c.Applications()), where), testKeys, nil
	}
	return c, fmt.Sprintf("chip loaded from %s, %d application(s)", where, len(c.Applications())), false, nil
}

// stateReporter prints the card's presence changes and signals readiness:
// a "ready:" line on out and the ready file, once per insertion, when
// PC/SC clients can connect. The card has answered pcscd's power-up at the
// Powered event, but pcscd publishes the card to clients a moment later, so
// readiness is confirmed by asking pcscd (SCardGetStatusChange) for the
// card in the slot's reader. Without PC/SC (a binary built without cgo,
// or vpcd on another machine) Powered is the best signal there is.
func stateReporter(ctx context.Context, out io.Writer, readyFile, readerName string, log *slog.Logger) func(vpcd.Event) {
	var mu sync.Mutex
	insertion := 0 // counts insertions, so a late confirmation of an old one is dropped
	announce := func(n int, addr string) {
		mu.Lock()
		defer mu.Unlock()
		if n != insertion {
			return
		}
		if readyFile != "" {
			if err := atomicfile.Write(readyFile, []byte(addr+"\n")); err != nil {
				log.Error("writing the ready file", "file", readyFile, "err", err)
			}
		}
		fmt.Fprintf(out, "ready: card in %q (vpcd %s)\n", readerName, addr)
	}
	return func(e vpcd.Event) {
		switch e.State {
		case vpcd.Powered:
			mu.Lock()
			insertion++
			n := insertion
			mu.Unlock()
			go func() {
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if err := waitSeen(wctx, readerName); err != nil {
					log.Info("could not confirm the card with pcscd; announcing it anyway", "reader", readerName, "err", err)
				}
				announce(n, e.Addr)
			}()
		case vpcd.Removed:
			mu.Lock()
			insertion++
			if readyFile != "" {
				_ = os.Remove(readyFile)
			}
			fmt.Fprintf(out, "removed: %s\n", e)
			mu.Unlock()
		case vpcd.Connecting:
			if e.Err != nil && e.Attempt == 2 {
				// Say it once per outage, not at every backoff step.
				log.Warn("vpcd not reachable, retrying (is pcscd running with the vpcd driver?)", "addr", e.Addr, "err", e.Err)
			}
		}
	}
}

// waitSeen blocks until pcscd reports a card in the reader.
func waitSeen(ctx context.Context, readerName string) error {
	pc, err := pcsc.Open()
	if err != nil {
		return err
	}
	defer pc.Close()
	_, err = pc.WaitForCard(ctx, readerName)
	return err
}

// controlLoop turns signals and stdin words into card movements.
func controlLoop(ctx context.Context, in io.Reader, att *vpcd.Attacher, quit context.CancelFunc) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGHUP)
	defer signal.Stop(sigs)
	words := make(chan string)
	go func() {
		sc := bufio.NewScanner(in)
		for sc.Scan() {
			select {
			case words <- strings.ToLower(strings.TrimSpace(sc.Text())):
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-sigs:
			switch s {
			case syscall.SIGUSR1:
				att.Remove()
			case syscall.SIGUSR2:
				att.Insert()
			case syscall.SIGHUP:
				att.Tap()
			}
		case w := <-words:
			switch w {
			case "remove":
				att.Remove()
			case "insert":
				att.Insert()
			case "tap":
				att.Tap()
			case "quit", "exit":
				quit()
				return
			}
		}
	}
}
