package main

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/applet/purse"
	hostgp "github.com/valuechip/valuechip/host/gp"
	"github.com/valuechip/valuechip/host/link"
	"github.com/valuechip/valuechip/host/terminal"
	"github.com/valuechip/valuechip/internal/atomicfile"
	"github.com/valuechip/valuechip/reader"
	"github.com/valuechip/valuechip/reader/connect"
)

// purseOptions are the flags every `purse` subcommand shares.
type purseOptions struct {
	reader     string
	trace      bool
	asJSON     bool
	journal    string
	devKeys    bool
	keyFile    string
	terminalID string
	// terminalFile is the terminal file of `valuechip terminal register`
	// (--terminal): load, pay, recover and settle then talk to the money
	// server over ISO 8583 (host/link) instead of the in-process
	// authority.
	terminalFile string
}

func newPurse() *cobra.Command {
	o := &purseOptions{}
	cmd := &cobra.Command{
		Use:   "purse",
		Short: "Issue a stored-value purse and run terminal transactions on it (docs/purse.md)",
		Long: `Issue the valuechip purse on a card through its issuer security domain, and
act as a payment terminal: balance, transaction log, offline payments (debits
authorised by the terminal's security module) and online loads.

With --terminal FILE (written by ` + "`valuechip terminal register`" + `) the terminal is
a real one of the money server: loads are authorised online over ISO 8583,
payments are offline and their advices wait in the terminal's durable queue
until ` + "`valuechip purse settle`" + ` sends them and reconciles the batch
(docs/terminal.md). Without it, --dev-keys or --issuer-key-file select an
in-process stand-in for the money server, for offline experiments only.

Amounts are integers in minor units of the purse currency (cents for EUR).

Issuer master keys (the in-process SAM and load authority, without --terminal):
  --issuer-key-file FILE   JSON {"load","debit","tc": HEX, "kvn": "01"}
  --dev-keys               the public development keys of docs/purse.md §10
  $VALUECHIP_ISSUER_KEY_FILE

pay and load first resolve a transaction left pending in the terminal's
journal (--journal) by an interrupted exchange (docs/purse.md §9.4).`,
		Example: `  valuechip purse issue --reader emu:card.json --test-key --dev-keys --card-id 1122334455667788 --pin 1234
  valuechip purse load 5000 --reader emu:card.json --dev-keys
  valuechip purse pay 350 --reader emu:card.json --dev-keys
  valuechip purse log --reader emu:card.json --dev-keys --json
  valuechip purse load 5000 --reader emu:card.json --terminal term.json
  valuechip purse pay 350 --reader emu:card.json --terminal term.json
  valuechip purse settle --terminal term.json`,
		Args: cobra.NoArgs,
	}
	f := cmd.PersistentFlags()
	f.StringVarP(&o.reader, "reader", "r", "", "reader: PC/SC index or name fragment, emu:PATH, tcp:HOST:PORT, replay:FILE (default $VALUECHIP_READER, else the reader holding a card)")
	f.BoolVar(&o.trace, "trace", false, "trace every exchange on the wire on stderr (secrets masked)")
	f.BoolVar(&o.asJSON, "json", false, "print JSON")
	f.StringVar(&o.journal, "journal", "", "terminal recovery journal file (default: in the terminal's state directory with --terminal, else <user cache dir>/valuechip/purse-journal.json)")
	f.BoolVar(&o.devKeys, "dev-keys", false, "use the public development issuer master keys (never for real value)")
	f.StringVar(&o.keyFile, "issuer-key-file", "", "issuer master key file (JSON)")
	f.StringVar(&o.terminalID, "terminal-id", "VCTERM01", "terminal ID: 8 ASCII characters or 16 hex digits")
	cmd.AddCommand(newPurseIssue(o), newPurseInfo(o, "info"), newPurseInfo(o, "balance"), newPurseLog(o),
		newPurseValue(o, "pay"), newPurseValue(o, "load"), newPurseVerifyPIN(o), newPurseRecover(o), newPurseSettle(o))
	return cmd
}

func (o *purseOptions) masters(stderr io.Writer, required bool) (*wire.Keys, error) {
	file := o.keyFile
	if file == "" && !o.devKeys {
		file = os.Getenv("VALUECHIP_ISSUER_KEY_FILE")
	}
	switch {
	case o.devKeys && o.keyFile != "":
		return nil, usagef("give --dev-keys or --issuer-key-file, not both")
	case o.devKeys:
		fmt.Fprintln(stderr, terminal.DevMastersWarning)
		k := terminal.DevMasters()
		return &k, nil
	case file != "":
		k, err := terminal.LoadMasters(file)
		if err != nil {
			return nil, err
		}
		return &k, nil
	case required:
		return nil, usagef("no issuer keys: give --issuer-key-file FILE, set $VALUECHIP_ISSUER_KEY_FILE, or use --dev-keys on a test card")
	}
	return nil, nil
}

func (o *purseOptions) journalPath() (string, error) {
	if o.journal != "" {
		return o.journal, nil
	}
	if o.terminalFile != "" {
		// Each terminal keeps its journal with its queue.
		return filepath.Join(link.StateDir(o.terminalFile), "purse-journal.json"), nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no --journal and no user cache directory: %w", err)
	}
	return filepath.Join(dir, "valuechip", "purse-journal.json"), nil
}

func parseTerminalID(s string) (wire.TerminalID, error) {
	var id wire.TerminalID
	if len(s) == 2*len(id) {
		if b, err := hex.DecodeString(s); err == nil {
			copy(id[:], b)
			return id, nil
		}
	}
	if len(s) != len(id) {
		return id, usagef("--terminal-id %q: want 8 ASCII characters or 16 hex digits", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return id, usagef("--terminal-id %q: not printable ASCII", s)
		}
	}
	copy(id[:], s)
	return id, nil
}

// parseAmount reads an amount in minor units: a positive integer that
// fits the card's 32-bit fields.
func parseAmount(s string) (uint32, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 0 {
		return 0, usagef("amount %q: want a whole number of minor units from 1 to %d (e.g. 350 for 3.50)", s, uint32(wire.MaxATC))
	}
	return uint32(v), nil
}

// session holds an open reader and a terminal.
type purseSession struct {
	tr    reader.Transceiver
	term  *terminal.Terminal
	sam   *terminal.SoftwareSAM
	auth  *terminal.LocalAuthority
	link  *link.Link // with --terminal
	seq   string     // file keeping the SAM's TSM sequence
	close func()
}

// openLink reads the terminal file of --terminal and opens its link to
// the money server; it connects on the first online request.
func (o *purseOptions) openLink(cmd *cobra.Command) (*link.Link, error) {
	if o.devKeys || o.keyFile != "" {
		return nil, usagef("--terminal talks to the money server; --dev-keys and --issuer-key-file select the in-process authority instead: give one or the other")
	}
	cfg, err := link.LoadConfig(o.terminalFile)
	if err != nil {
		return nil, err
	}
	if cmd.Flags().Changed("terminal-id") && o.terminalID != cfg.TerminalID {
		return nil, usagef("--terminal-id %q differs from the terminal file's %q", o.terminalID, cfg.TerminalID)
	}
	return link.Open(cfg, link.Options{StateDir: link.StateDir(o.terminalFile), Progress: settleProgress(cmd, o.asJSON)})
}

// settleProgress shows a progress bar on stderr while a long queue of
// advices goes out (batch settlement, issue 6 "a progress bar on long jobs");
// short queues and --json output get none.
func settleProgress(cmd *cobra.Command, quiet bool) func(done, total int) {
	if quiet {
		return nil
	}
	var bar *progressbar.ProgressBar
	return func(done, total int) {
		if int64(total) < progressMin {
			return
		}
		if bar == nil {
			bar = newBar(cmd, int64(total), "advices")
		}
		_ = bar.Set(done)
	}
}

// open connects to the reader and builds the terminal: with --terminal a
// software SAM holding the terminal file's debit key and the money server
// as authority; otherwise a software SAM and an in-process authority when
// issuer keys are given.
func (o *purseOptions) open(cmd *cobra.Command, needKeys bool) (*purseSession, error) {
	s := &purseSession{close: func() {}}
	var keys *wire.Keys
	var err error
	if o.terminalFile != "" {
		if s.link, err = o.openLink(cmd); err != nil {
			return nil, err
		}
		o.terminalID = s.link.Config().TerminalID
	} else if keys, err = o.masters(cmd.ErrOrStderr(), needKeys); err != nil {
		return nil, err
	}
	fail := func(err error) (*purseSession, error) {
		if s.link != nil {
			_ = s.link.Close()
		}
		return nil, err
	}
	tid, err := parseTerminalID(o.terminalID)
	if err != nil {
		return fail(err)
	}
	jp, err := o.journalPath()
	if err != nil {
		return fail(err)
	}
	s.seq = jp + ".tsmseq"
	cfg := terminal.Config{Journal: terminal.FileJournal{Path: jp}, TerminalID: tid}
	if s.link != nil {
		c := s.link.Config()
		if s.sam, err = terminal.NewSoftwareSAM(c.SAM.Key, c.SAM.Version); err != nil {
			return fail(err)
		}
		if b, err := os.ReadFile(s.seq); err == nil && len(b) == 4 {
			s.sam.SetSequence(binary.BigEndian.Uint32(b))
		}
		cfg.SAM, cfg.Authority = s.sam, s.link
	} else if keys != nil {
		if s.sam, err = terminal.NewSoftwareSAM(keys.Debit.Key, keys.Debit.Version); err != nil {
			return nil, err
		}
		if b, err := os.ReadFile(s.seq); err == nil && len(b) == 4 {
			s.sam.SetSequence(binary.BigEndian.Uint32(b))
		}
		if s.auth, err = terminal.NewLocalAuthority(keys.Load, keys.TC); err != nil {
			return nil, err
		}
		cfg.SAM, cfg.Authority = s.sam, s.auth
	}
	s.term = terminal.New(cfg)
	ctx := cmd.Context()
	conn, err := connect.Open(ctx, o.reader, connect.Options{})
	if err != nil {
		return fail(err)
	}
	opts := connect.StackOptions{}
	if o.trace {
		opts.Trace = cmd.ErrOrStderr()
	}
	s.tr = connect.Stack(conn, opts)
	s.close = func() {
		_ = conn.Close()
		if s.link != nil {
			_ = s.link.Close()
		}
	}
	return s, nil
}

// serverState says where the money server stands on a record made through
// the link: its advice is still queued, or the server acknowledged it.
func (s *purseSession) serverState(id wire.CardID, r wire.LogRecord) string {
	if s.link == nil {
		return ""
	}
	for _, e := range s.link.Queued() {
		if e.CardID == hexs(id[:]) && e.ATC == r.ATC {
			return fmt.Sprintf("advice queued for the money server, %d waiting", len(s.link.Queued()))
		}
	}
	return "accepted by the money server"
}

// saveSequence keeps the SAM's TSM sequence so debits are numbered without
// repeats across runs (docs/purse.md §12).
func (s *purseSession) saveSequence() error {
	if s.sam == nil {
		return nil
	}
	return atomicfile.Write(s.seq, binary.BigEndian.AppendUint32(nil, s.sam.Sequence()))
}

func newPurseIssue(o *purseOptions) *cobra.Command {
	g := &gpOptions{getenv: os.Getenv}
	var (
		cardID, digest, pin                          string
		currency                                     int
		maxBalance, maxLoad, maxDebit, pinFree, offl uint32
		pinTries                                     uint8
		skipLoad                                     bool
	)
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Load, install and personalise the purse through the card's ISD (SCP03)",
		Long: `Open an SCP03 secure channel (C-MAC + C-DECRYPTION at least) to the issuer
security domain, load the purse load file, install the instance and
personalise it by STORE DATA with the card keys diversified from the issuer
master keys by the CardID (docs/purse.md §2, §5.2, §8).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			keys, err := o.masters(cmd.ErrOrStderr(), true)
			if err != nil {
				return err
			}
			var p terminal.IssueParams
			b, err := hex.DecodeString(cardID)
			if err != nil || len(b) != wire.CardIDLen {
				return usagef("--card-id %q: want 16 hex digits", cardID)
			}
			copy(p.CardID[:], b)
			if p.Currency, err = wire.CurrencyOf(currency); err != nil {
				return usagef("--currency %d: want an ISO 4217 numeric code 1..999 (978 for EUR)", currency)
			}
			p.Limits = wire.Limits{MaxBalance: maxBalance, MaxLoad: maxLoad, MaxDebit: maxDebit, PINFreeLimit: pinFree, OfflineLimit: offl}
			if _, err := wire.ParseLimits(p.Limits.Bytes()); err != nil {
				return usageError{err}
			}
			if _, err := wire.EncodePIN(pin); err != nil {
				return usagef("--pin: %v", err)
			}
			if pinTries < 1 || pinTries > wire.MaxPINTries {
				return usagef("--pin-tries %d: want 1..%d", pinTries, wire.MaxPINTries)
			}
			p.PIN, p.PINTries, p.Masters, p.SkipLoad = pin, pinTries, *keys, skipLoad
			p.Digest = purse.Module.Digest()
			if digest != "" {
				d, err := hex.DecodeString(digest)
				if err != nil || len(d) != 32 {
					return usagef("--digest: want 64 hex digits")
				}
				copy(p.Digest[:], d)
			}
			g.reader, g.trace = o.reader, o.trace
			return g.run(cmd, func(ctx context.Context, s *hostgp.Session) error {
				if err := terminal.Issue(ctx, s, p); err != nil {
					return err
				}
				if o.asJSON {
					return writeJSON(cmd.OutOrStdout(), map[string]any{"card_id": hexs(p.CardID[:]), "aid": hexs(wire.AID()),
						"currency": p.Currency.String(), "limits": p.Limits, "key_versions": []byte{keys.Load.Version, keys.Debit.Version, keys.TC.Version}})
				}
				fmt.Fprintf(cmd.OutOrStdout(), "purse %X issued: card %X, currency %s, max balance %d, PIN-free limit %d\n",
					wire.AID(), p.CardID[:], p.Currency, maxBalance, pinFree)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cardID, "card-id", "", "CardID, 16 hex digits (required)")
	f.IntVar(&currency, "currency", 978, "ISO 4217 numeric currency code")
	f.Uint32Var(&maxBalance, "max-balance", 100000, "maximum balance (minor units)")
	f.Uint32Var(&maxLoad, "max-load", 50000, "largest single load")
	f.Uint32Var(&maxDebit, "max-debit", 10000, "largest single debit")
	f.Uint32Var(&pinFree, "pin-free-limit", 2500, "debits above it need the PIN (4294967295: never)")
	f.Uint32Var(&offl, "offline-limit", 50000, "total of debits between two loads (4294967295: none)")
	f.StringVar(&pin, "pin", "", "cardholder PIN, 4 to 12 digits (required)")
	f.Uint8Var(&pinTries, "pin-tries", 3, "PIN try limit")
	f.StringVar(&digest, "digest", "", "purse module digest (hex) for the load file (default: this build's)")
	f.BoolVar(&skipLoad, "skip-load", false, "the load file is already on the card: install and personalise only")
	_ = cmd.MarkFlagRequired("card-id")
	_ = cmd.MarkFlagRequired("pin")
	// The GP key flags, as for `valuechip gp`.
	f.StringVar(&g.key, "key", "", "ISD: one AES key (hex) for Key-ENC, Key-MAC and Key-DEK")
	f.StringVar(&g.keyENC, "key-enc", "", "ISD Key-ENC (hex), with --key-mac and --key-dek")
	f.StringVar(&g.keyMAC, "key-mac", "", "ISD Key-MAC (hex)")
	f.StringVar(&g.keyDEK, "key-dek", "", "ISD Key-DEK (hex)")
	f.StringVar(&g.keyFile, "key-file", "", "ISD JSON key file (see docs/gp.md)")
	f.StringVar(&g.masterKey, "master-key", "", "ISD master key (hex), diversified by the card's KDD")
	f.BoolVar(&g.testKey, "test-key", false, "ISD: the well-known GlobalPlatform test key 404142...4F (test cards only)")
	f.StringVar(&g.kvn, "kvn", "", "ISD key version number in hex")
	f.StringVar(&g.level, "level", "cdec", "security level: cdec or renc (personalisation needs C-DECRYPTION)")
	f.StringVar(&g.sd, "sd", "", "security domain AID (default the ISD)")
	return cmd
}

type purseInfoJSON struct {
	AID          string `json:"aid"`
	Version      string `json:"version"`
	LifeCycle    string `json:"life_cycle"`
	CardID       string `json:"card_id,omitempty"`
	Currency     string `json:"currency,omitempty"`
	KeyVersions  string `json:"key_versions,omitempty"`
	PINFreeLimit uint32 `json:"pin_free_limit"`
	Balance      uint32 `json:"balance"`
	MaxBalance   uint32 `json:"max_balance"`
	ATC          uint32 `json:"atc"`
	Flags        string `json:"flags"`
	PINTries     byte   `json:"pin_tries"`
	OfflineTotal uint32 `json:"offline_total"`
	Pending      string `json:"pending,omitempty"`
}

var lifeCycles = map[byte]string{wire.StatePersonalising: "PERSONALISING", wire.StateActive: "ACTIVE", wire.StateBlocked: "BLOCKED"}

func flagNames(f byte) string {
	var s []string
	for _, v := range []struct {
		bit  byte
		name string
	}{{wire.FlagJournalPending, "journal-pending"}, {wire.FlagRecovered, "recovered"}, {wire.FlagPINVerified, "pin-verified"}, {wire.FlagSessionOpen, "session-open"}} {
		if f&v.bit != 0 {
			s = append(s, v.name)
		}
	}
	return strings.Join(s, ",")
}

func newPurseInfo(o *purseOptions, name string) *cobra.Command {
	short := "Show the purse's FCI and data"
	if name == "balance" {
		short = "Show the purse balance"
	}
	return &cobra.Command{
		Use:   name,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := o.open(cmd, false)
			if err != nil {
				return err
			}
			defer s.close()
			info, err := s.term.Info(cmd.Context(), s.tr)
			if err != nil {
				return err
			}
			f := info.FCI
			j := purseInfoJSON{AID: hexs(f.AID), Version: fmt.Sprintf("%04X", f.Version), LifeCycle: lifeCycles[f.LifeCycle]}
			if info.Data != nil {
				d := info.Data
				j.CardID, j.Currency, j.KeyVersions, j.PINFreeLimit = hexs(f.CardID[:]), f.Currency.String(), hexs(f.KeyVersions[:]), f.PINFreeLimit
				j.Balance, j.MaxBalance, j.ATC, j.Flags, j.PINTries, j.OfflineTotal = d.Balance, d.MaxBalance, d.ATC, flagNames(d.Flags), d.PINTries, d.OfflineTotal
			}
			if p, err := s.term.Journal().Load(); err == nil && p != nil {
				j.Pending = fmt.Sprintf("%s of %d on card %X, ATC %d", p.Kind, p.Amount, p.CardID[:], p.ATC)
			}
			out := cmd.OutOrStdout()
			if name == "balance" && info.Data == nil {
				return terminal.ErrNotPersonalised
			}
			if o.asJSON {
				return writeJSON(out, j)
			}
			if name == "balance" {
				fmt.Fprintf(out, "%d (currency %s, minor units)\n", j.Balance, j.Currency)
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintf(tw, "AID\t%s\nversion\t%s\nlife cycle\t%s\n", j.AID, j.Version, j.LifeCycle)
			if info.Data != nil {
				fmt.Fprintf(tw, "card ID\t%s\ncurrency\t%s\nkey versions\t%s\nPIN-free limit\t%d\nbalance\t%d\nmax balance\t%d\nATC\t%d\nflags\t%s\nPIN tries left\t%d\noffline total\t%d\n",
					j.CardID, j.Currency, j.KeyVersions, j.PINFreeLimit, j.Balance, j.MaxBalance, j.ATC, j.Flags, j.PINTries, j.OfflineTotal)
			}
			if j.Pending != "" {
				fmt.Fprintf(tw, "terminal journal\tpending %s\n", j.Pending)
			}
			return tw.Flush()
		},
	}
}

type recordJSON struct {
	ATC          uint32 `json:"atc"`
	Type         string `json:"type"`
	Amount       uint32 `json:"amount"`
	BalanceAfter uint32 `json:"balance_after"`
	Currency     string `json:"currency"`
	DateTime     string `json:"date_time"`
	TerminalID   string `json:"terminal_id"`
	Reference    uint32 `json:"reference"`
	HostMAC      string `json:"host_mac"`
	CardMAC      string `json:"card_mac"`
	TC           string `json:"tc"`
	TCVerified   *bool  `json:"tc_verified,omitempty"`
	Recovered    bool   `json:"recovered,omitempty"`
	Server       string `json:"server,omitempty"` // with --terminal: queued or accepted
}

func recordOf(r wire.LogRecord, auth *terminal.LocalAuthority, id wire.CardID) recordJSON {
	typ := "load"
	if r.Type == wire.TypeDebit {
		typ = "debit"
	}
	j := recordJSON{ATC: r.ATC, Type: typ, Amount: r.Amount, BalanceAfter: r.BalanceAfter, Currency: r.Currency.String(),
		DateTime: hexs(r.DateTime[:]), TerminalID: hexs(r.TerminalID[:]), Reference: r.Reference,
		HostMAC: hexs(r.HostMAC[:]), CardMAC: hexs(r.CardMAC[:]), TC: hexs(r.TC[:])}
	if auth != nil {
		ok := auth.VerifyTC(id, r) == nil
		j.TCVerified = &ok
	}
	return j
}

func verified(j recordJSON) string {
	switch {
	case j.TCVerified == nil && j.Server != "":
		return j.Server
	case j.TCVerified == nil:
		return "not checked"
	case *j.TCVerified:
		return "verified"
	}
	return "INVALID"
}

func newPurseLog(o *purseOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "log",
		Short: "Read the purse's transaction log, newest first, and check its certificates",
		Long: `Read the purse's cyclic transaction log (READ RECORD, docs/purse.md §3.10,
§6). With issuer keys, every record's transaction certificate (TC) is
verified as the money server would.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := o.open(cmd, false)
			if err != nil {
				return err
			}
			defer s.close()
			info, err := s.term.Balance(cmd.Context(), s.tr)
			if err != nil {
				return err
			}
			recs, err := s.term.Log(cmd.Context(), s.tr)
			if err != nil {
				return err
			}
			rows := make([]recordJSON, 0, len(recs))
			for _, r := range recs {
				rows = append(rows, recordOf(r, s.auth, info.FCI.CardID))
			}
			out := cmd.OutOrStdout()
			if o.asJSON {
				return writeJSON(out, rows)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ATC\tTYPE\tAMOUNT\tBALANCE\tDATE-TIME\tTERMINAL\tREF\tTC")
			for i, r := range rows {
				fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\t%s\t%d\t%s (%s)\n", r.ATC, r.Type, r.Amount, r.BalanceAfter,
					recs[i].DateTime, printableID(recs[i].TerminalID), r.Reference, r.TC, verified(r))
			}
			return tw.Flush()
		},
	}
}

// resume resolves a pending transaction and says what happened.
func resume(cmd *cobra.Command, s *purseSession) (*terminal.Resolution, error) {
	res, err := s.term.Recover(cmd.Context(), s.tr)
	if err != nil {
		return nil, fmt.Errorf("resolving the pending transaction: %w", err)
	}
	if res.Outcome != terminal.OutcomeNone {
		p := res.Pending
		fmt.Fprintf(cmd.ErrOrStderr(), "resumed the pending %s of %d on card %X (ATC %d): %s\n", p.Kind, p.Amount, p.CardID[:], p.ATC, res.Outcome)
	}
	return res, nil
}

func newPurseValue(o *purseOptions, name string) *cobra.Command {
	var pin string
	short, long := "Pay AMOUNT (minor units) from the purse: an offline debit", `Debit AMOUNT minor units: SELECT, INITIALIZE DEBIT, M1 from the terminal's
security module, DEBIT, M2 checked (docs/purse.md §3.7, §3.8). Above the
PIN-free limit give --pin (or $VALUECHIP_PIN).`
	if name == "load" {
		short, long = "Load AMOUNT (minor units) into the purse: an online load", `Load AMOUNT minor units: INITIALIZE LOAD, S1 to the load authority, S2 back,
CREDIT LOAD, the TC to the authority (docs/purse.md §3.5, §3.6).`
	}
	cmd := &cobra.Command{
		Use:   name + " AMOUNT",
		Short: short,
		Long:  long + "\n\nA transaction left pending by an interrupted exchange is resolved first.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			amount, err := parseAmount(args[0])
			if err != nil {
				return err
			}
			if pin == "" {
				pin = os.Getenv("VALUECHIP_PIN")
			}
			s, err := o.open(cmd, true)
			if err != nil {
				return err
			}
			defer s.close()
			res, err := resume(cmd, s)
			if err != nil {
				return err
			}
			var rc *terminal.Receipt
			if name == "load" {
				rc, err = s.term.Load(cmd.Context(), s.tr, amount)
			} else {
				rc, err = s.term.Pay(cmd.Context(), s.tr, amount, terminal.PayOptions{PIN: pin})
				if serr := s.saveSequence(); serr != nil {
					err = errors.Join(err, serr)
				}
			}
			if errors.Is(err, terminal.ErrInterrupted) {
				return fmt.Errorf("%w\nthe transaction is kept in the journal; present the card again and rerun (or `valuechip purse recover`)", err)
			}
			if err != nil {
				return err
			}
			j := recordOf(rc.Record, s.auth, rc.CardID)
			j.Server = s.serverState(rc.CardID, rc.Record)
			out := cmd.OutOrStdout()
			if o.asJSON {
				v := map[string]any{"card_id": hexs(rc.CardID[:]), "record": j}
				if res.Outcome != terminal.OutcomeNone {
					v["resumed"] = map[string]any{"kind": res.Pending.Kind, "amount": res.Pending.Amount, "atc": res.Pending.ATC, "outcome": res.Outcome}
				}
				return writeJSON(out, v)
			}
			fmt.Fprintf(out, "%s of %d done: balance %d, ATC %d, certificate TC %s (%s)\n", j.Type, j.Amount, j.BalanceAfter, j.ATC, j.TC, verified(j))
			return nil
		},
	}
	if name == "pay" {
		cmd.Flags().StringVar(&pin, "pin", "", "cardholder PIN, for amounts above the PIN-free limit (or $VALUECHIP_PIN)")
	}
	terminalFlag(cmd, o)
	return cmd
}

func terminalFlag(cmd *cobra.Command, o *purseOptions) {
	cmd.Flags().StringVar(&o.terminalFile, "terminal", "", "terminal `FILE` written by 'valuechip terminal register': use the money server (ISO 8583) instead of the in-process authority")
}

func newPurseVerifyPIN(o *purseOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "verify-pin [PIN]",
		Short: "Check the cardholder PIN (VERIFY); the PIN may come from $VALUECHIP_PIN",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pin := os.Getenv("VALUECHIP_PIN")
			if len(args) == 1 {
				pin = args[0]
			}
			if _, err := wire.EncodePIN(pin); err != nil {
				return usagef("PIN: %v", err)
			}
			s, err := o.open(cmd, false)
			if err != nil {
				return err
			}
			defer s.close()
			err = s.term.VerifyPIN(cmd.Context(), s.tr, pin)
			var ce *terminal.CardError
			if errors.As(err, &ce) {
				if n, ok := ce.SW.Retries(); ok {
					return fmt.Errorf("wrong PIN: %d tries left", n)
				}
			}
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "PIN correct")
			return nil
		},
	}
}

func newPurseRecover(o *purseOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Resolve the transaction pending in the terminal's journal (docs/purse.md §9.4)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := o.open(cmd, true)
			if err != nil {
				return err
			}
			defer s.close()
			res, err := resume(cmd, s)
			if err != nil {
				return err
			}
			if o.asJSON {
				v := map[string]any{"outcome": res.Outcome}
				if res.Receipt != nil {
					j := recordOf(res.Receipt.Record, s.auth, res.Receipt.CardID)
					j.Server = s.serverState(res.Receipt.CardID, res.Receipt.Record)
					v["record"] = j
				}
				return writeJSON(cmd.OutOrStdout(), v)
			}
			if res.Outcome == terminal.OutcomeNone {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing pending")
			}
			return nil
		},
	}
	terminalFlag(cmd, o)
	return cmd
}

// printableID shows a terminal ID as ASCII when it is printable, else hex.
func printableID(id wire.TerminalID) string {
	for _, c := range id {
		if c < 0x20 || c > 0x7E {
			return hexs(id[:])
		}
	}
	return string(id[:])
}

type settleJSON struct {
	Batch     uint64        `json:"batch"`
	InBalance bool          `json:"in_balance"`
	Sent      int           `json:"advices_sent"`
	Acked     int           `json:"advices_acknowledged"`
	Rejected  []link.Entry  `json:"advices_rejected,omitempty"`
	Queued    int           `json:"advices_queued"`
	Terminal  []link.Totals `json:"terminal_totals,omitempty"`
	Server    []link.Totals `json:"server_totals,omitempty"` // only when the server sent different totals
	Error     string        `json:"error,omitempty"`
}

func newPurseSettle(o *purseOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "settle",
		Short: "Send the queued advices to the money server and reconcile the batch (0500)",
		Long: `Send every advice waiting in the terminal's store-and-forward queue (offline
debits, unanswered load completions and reversals; ISO 8583 0220/0420), then
send the batch totals (0500, docs/iso8583.md §2.6). The server closes its
batch either way, and so does the terminal: when the totals disagree (out of
balance) the terminal's are printed and kept in its state for an operator,
and the command fails (docs/terminal.md §5). No card is needed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.terminalFile == "" {
				return usagef("--terminal FILE is required: the terminal file of 'valuechip terminal register'")
			}
			lk, err := o.openLink(cmd)
			if err != nil {
				return err
			}
			defer lk.Close()
			res, rerr := lk.Reconcile(cmd.Context())
			j := settleJSON{Batch: res.Batch, InBalance: res.InBalance, Sent: len(res.Flush.Results),
				Acked: res.Flush.Acknowledged, Rejected: lk.Rejected(), Queued: len(lk.Queued()),
				Terminal: res.Terminal}
			// The 0510 echoes the terminal's totals; the server's own are
			// shown only when they differ and the server sent them.
			var oob *link.OutOfBalanceError
			if errors.As(rerr, &oob) && oob.Server != nil {
				j.Server = []link.Totals{*oob.Server}
			}
			if rerr != nil {
				j.Error = rerr.Error()
			}
			out := cmd.OutOrStdout()
			if o.asJSON {
				if err := writeJSON(out, j); err != nil {
					return err
				}
				return rerr
			}
			fmt.Fprintf(out, "advices: %d sent, %d acknowledged, %d rejected, %d still queued\n",
				j.Sent, j.Acked, len(j.Rejected), j.Queued)
			for _, e := range j.Rejected {
				fmt.Fprintf(out, "  rejected: %s of %d on card %s ATC %d: response code %s (%s)\n",
					e.Kind, e.Amount, e.CardID, e.ATC, e.Code, link.CodeText(e.Code))
			}
			if len(j.Terminal) > 0 {
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintf(tw, "batch %d\tCURRENCY\tLOADS\tREVERSALS\tDEBITS\tNET\n", j.Batch)
				row := func(who string, t link.Totals) {
					fmt.Fprintf(tw, "%s\t%s\t%d / %d\t%d / %d\t%d / %d\t%s\n", who, t.Currency, t.Loads, t.LoadAmount,
						t.LoadReversals, t.LoadReversalAmount, t.Debits, t.DebitAmount, link.NetSettlement(t))
				}
				for _, t := range j.Terminal {
					row("terminal", t)
				}
				for _, t := range j.Server {
					row("server", t)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			switch {
			case oob != nil:
				fmt.Fprintf(out, "batch %d OUT OF BALANCE with the server: its totals are kept for an operator; batch %d opened\n", j.Batch, j.Batch+1)
				return rerr
			case rerr != nil:
				return rerr
			}
			fmt.Fprintf(out, "batch %d in balance with the server; batch %d opened\n", j.Batch, j.Batch+1)
			return nil
		},
	}
	terminalFlag(cmd, o)
	return cmd
}
