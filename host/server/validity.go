package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/registry"
	"github.com/valuechip/valuechip/host/validity"
)

// Validity is the card hotlist and terminal whitelist the server checks
// every request against before any database read (seed 002,
// docs/validity.md), including the messages that carry no card (sign-on,
// echo, reconciliation) and an unknown terminal before its registry lookup.
// Create it with NewValidityLists (the registry as source) or NewValidity,
// and close it after the server has stopped.
type Validity struct {
	lists *validity.Lists
}

// NewValidity creates the lists of cfg without loading them; Start loads
// them.
func NewValidity(cfg validity.Config) (*Validity, error) {
	l, err := validity.New(cfg)
	if err != nil {
		return nil, err
	}
	return &Validity{lists: l}, nil
}

// NewValidityLists loads the lists of mode from the registry, refreshing
// them every interval (0: validity.DefaultInterval; < 0: only on Notify),
// and returns them started. The uncached side of ModeCards and
// ModeTerminals is read from the same registry.
func NewValidityLists(ctx context.Context, reg *registry.Store, mode validity.Mode, interval time.Duration, logger *slog.Logger) (*Validity, error) {
	src := validity.Registry{Store: reg}
	v, err := NewValidity(validity.Config{Mode: mode, Source: src, DB: src, Interval: interval, Logger: logger})
	if err != nil {
		return nil, err
	}
	if err := v.Start(ctx); err != nil {
		_ = v.Close()
		return nil, err
	}
	return v, nil
}

// Start loads the lists and starts their refresher (validity.Lists.Start).
func (v *Validity) Start(ctx context.Context) error { return v.lists.Start(ctx) }

// Lists returns the underlying lists (Stats, Refresh).
func (v *Validity) Lists() *validity.Lists { return v.lists }

// Mode returns the variant of seed 002 in use.
func (v *Validity) Mode() validity.Mode { return v.lists.Mode() }

// Notify asks for a refresh now; it never blocks. Whoever changes a status
// in this process calls it (Server.SetCardStatus does).
func (v *Validity) Notify() { v.lists.Notify() }

// Close stops the refresher and waits for the late checks still running.
func (v *Validity) Close() error { return v.lists.Close() }

// terminal reports whether tid is on the whitelist, from memory; ok is
// false when the whitelist is not held (ModeCards) or not loaded yet.
func (v *Validity) terminal(tid string) (permitted, ok bool, err error) {
	k, err := validity.ParseTerminalKey(tid)
	if err != nil {
		return false, true, err
	}
	permitted, ok = v.lists.CheckTerminal(k)
	return permitted, ok, nil
}

// StatusStore changes the status of cards and terminals (registry.Store).
type StatusStore interface {
	SetCardStatus(ctx context.Context, id string, st registry.Status, reason string) error
	SetTerminalStatus(ctx context.Context, id string, st registry.Status, reason string) error
}

// ErrNoStatusStore: SetCardStatus or SetTerminalStatus without
// Config.Statuses.
var ErrNoStatusStore = errors.New("server: no status store configured")

// SetCardStatus changes a card's status in the registry and makes it take
// effect in this process at once: the cached registry entry is dropped and
// the validity lists refresh now (Notify) instead of at their next period.
func (s *Server) SetCardStatus(ctx context.Context, id string, st registry.Status, reason string) error {
	if s.cfg.Statuses == nil {
		return ErrNoStatusStore
	}
	if err := s.cfg.Statuses.SetCardStatus(ctx, id, st, reason); err != nil {
		return err
	}
	if c, ok := s.cfg.Registry.(*CachedRegistry); ok {
		c.forgetCard(strings.ToUpper(id))
	}
	if s.cfg.Validity != nil {
		s.cfg.Validity.Notify()
	}
	s.log.Info("card status changed", "card", strings.ToUpper(id), "status", string(st), "reason", reason)
	return nil
}

// SetTerminalStatus blocks or unblocks a terminal, with the same immediate
// effect in this process as SetCardStatus.
func (s *Server) SetTerminalStatus(ctx context.Context, id string, st registry.Status, reason string) error {
	if s.cfg.Statuses == nil {
		return ErrNoStatusStore
	}
	if err := s.cfg.Statuses.SetTerminalStatus(ctx, id, st, reason); err != nil {
		return err
	}
	if c, ok := s.cfg.Registry.(*CachedRegistry); ok {
		c.forget(id)
	}
	if s.cfg.Validity != nil {
		s.cfg.Validity.Notify()
	}
	s.log.Info("terminal status changed", "terminal", id, "status", string(st), "reason", reason)
	return nil
}

func (c *CachedRegistry) forgetCard(id string) {
	c.mu.Lock()
	delete(c.cards, id)
	c.mu.Unlock()
}

// cachedKey is the key that MACs a response to tid if the cache holds it,
// without a lookup: a request the whitelist refuses costs no database read,
// and a terminal blocked while its keys are still cached gets a refusal it
// can verify (an unknown one gets none, as before: there is no key).
func (c *CachedRegistry) cachedKey(network bool, tid string) iso8583.Key {
	c.mu.Lock()
	defer c.mu.Unlock()
	if network {
		if e, ok := c.terms[tid]; ok {
			return e.v.TMK
		}
		return nil
	}
	if e, ok := c.wks[tid]; ok {
		return e.v
	}
	return nil
}

// validityMetrics count what the lists decide.
type validityMetrics struct {
	refusals *prometheus.CounterVec
	flagged  *prometheus.CounterVec
}

func newValidityMetrics(m *Metrics) *validityMetrics {
	v := &validityMetrics{
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "valuechip_server_validity_refusals_total",
			Help: "Requests refused from the validity lists before any database read, by response code (58, 62; 91 when the lists could not decide).",
		}, []string{"code"}),
		flagged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "valuechip_server_validity_flagged_total",
			Help: "Approved transactions flagged for review: late_hotlisted (ModeTerminals: the card check found the card hotlisted after the approval), late_unchecked (that check failed), hotlisted_card_advice (an advice or reversal of a hotlisted card, posted).",
		}, []string{"reason"}),
	}
	v.refusals = registerOnce(m.Registry, v.refusals)
	v.flagged = registerOnce(m.Registry, v.flagged)
	return v
}

// registerOnce registers c, or returns the collector already registered
// under its name (a Metrics shared by two servers, e.g. a restart in tests).
func registerOnce(r *prometheus.Registry, c *prometheus.CounterVec) *prometheus.CounterVec {
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if prev, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return prev
			}
		}
		panic(err)
	}
	return c
}

// registerListGauges exposes the lists' freshness: a refresh that keeps
// failing leaves the server deciding from an old version (docs/validity.md
// §3), which the operator must see.
func registerListGauges(m *Metrics, v *Validity) {
	for _, g := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "valuechip_server_validity_age_seconds",
			Help: "Seconds since the validity lists last loaded or refreshed successfully.",
		}, func() float64 {
			at := v.lists.Stats().LastRefresh
			if at.IsZero() {
				return -1
			}
			return time.Since(at).Seconds()
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "valuechip_server_validity_refresh_errors_total",
			Help: "Failed refreshes of the validity lists (the previous version kept serving).",
		}, func() float64 { return float64(v.lists.Stats().RefreshErrors) }),
	} {
		_ = m.Registry.Register(g) // a second server on the same Metrics keeps the first's
	}
}

// Flag reasons (the label of valuechip_server_validity_flagged_total).
const (
	FlagLateHotlisted = "late_hotlisted"
	FlagLateUnchecked = "late_unchecked"
	FlagHotlistedCard = "hotlisted_card_advice"
)

// Flag is an approved transaction that needs review: the card was (or
// could not be checked whether it was) hotlisted.
type Flag struct {
	At         time.Time
	Reason     string // FlagLateHotlisted, FlagLateUnchecked, FlagHotlistedCard
	MTI, STAN  string
	TerminalID string
	CardID     string
	Txn        string // ledger/advice key when the request made one
	Err        string // FlagLateUnchecked: why
}

// maxFlags bounds the flags kept in memory; the log and the counter have
// them all.
const maxFlags = 1024

type flagRing struct {
	mu    sync.Mutex
	flags []Flag
}

func (f *flagRing) add(fl Flag) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.flags) == maxFlags {
		f.flags = append(f.flags[:0], f.flags[1:]...)
	}
	f.flags = append(f.flags, fl)
}

// Flags returns the most recent flagged transactions (at most 1024),
// oldest first.
func (s *Server) Flags() []Flag {
	s.flags.mu.Lock()
	defer s.flags.mu.Unlock()
	return append([]Flag(nil), s.flags.flags...)
}

// admitTerminal is the first check of every request when the whitelist is
// held (ModeBoth, ModeTerminals): a terminal not on it — unknown or
// blocked — is refused 58 before its registry lookup. It returns "" when
// the request may go on (also when the whitelist is not held: then the
// registry lookup decides, as without lists).
func (s *Server) admitTerminal(tid string) (code, reason string) {
	if s.cfg.Validity == nil {
		return "", ""
	}
	ok, held, err := s.cfg.Validity.terminal(tid)
	switch {
	case err != nil:
		code, reason = iso8583.RCFormatError, err.Error()
	case !held:
		if s.cfg.Validity.Mode() != validity.ModeCards { // held but not loaded: cannot decide
			code, reason = iso8583.RCIssuerUnavailable, "validity lists not loaded"
		} else {
			return "", ""
		}
	case !ok:
		code, reason = iso8583.RCNotPermittedTerm, "terminal not on the whitelist"
	default:
		return "", ""
	}
	s.vm.refusals.WithLabelValues(code).Inc()
	return code, reason
}

// hotPolicy says what a hotlisted card means for a message.
type hotPolicy int

const (
	// refuseHot: 0100 and 0200, where the issuer still decides → 62.
	refuseHot hotPolicy = iota
	// flagHot: completion and debit advices and reversals. The value has
	// already moved — an offline debit with a genuine TC, a load the card
	// credited — or goes back to the funding account; refusing would only
	// leave the ledger out of step with the card (docs/server.md §2, §3).
	// The transaction is posted and flagged.
	flagHot
)

// checkCard validates a parsed card message against the lists right after
// parsing, before the registry's card lookup and any ledger or load read
// (docs/validity.md §4): 62 hotlisted card (refuseHot), 58 terminal not
// permitted, 91 when the lists cannot decide. In ModeTerminals an approval
// may carry a late card check, which the request looks at before its first
// write (lateVerdict) and the server follows after the response (watchLate).
func (s *Server) checkCard(ctx context.Context, r *request, card string, pol hotPolicy) error {
	if s.cfg.Validity == nil {
		return nil
	}
	d, err := s.cfg.Validity.lists.CheckIDs(ctx, card, r.term.ID)
	if err != nil {
		s.vm.refusals.WithLabelValues(iso8583.RCIssuerUnavailable).Inc()
		return fmt.Errorf("%w: validity lists: %w", ErrUnavailable, err)
	}
	switch {
	case d.Approved():
		r.late = d.Late
		return nil
	case pol == flagHot && errors.Is(d.Err, validity.ErrCardHotlisted):
		r.hotlisted = true
		return nil
	}
	s.vm.refusals.WithLabelValues(d.Code).Inc()
	return refuse(d.Code, "%v", d.Err)
}

// lateVerdict looks, without waiting, at the late card check of
// ModeTerminals just before a request's first write (or its answer): if the
// check has already found the card hotlisted, the request is refused 62 and
// nothing is written. Otherwise the request goes on and watchLate follows
// the check.
func (s *Server) lateVerdict(r *request) error {
	if r.late == nil {
		return nil
	}
	select {
	case <-r.late.Done():
	default:
		return nil
	}
	res, _ := r.late.Wait(context.Background())
	switch {
	case res.Hotlisted:
		r.late = nil
		s.vm.refusals.WithLabelValues(iso8583.RCRestrictedCard).Inc()
		return refuse(iso8583.RCRestrictedCard, "card hotlisted (database check finished before the first write)")
	case res.Err == nil:
		r.late = nil // checked: nothing to follow
	}
	return nil
}

// afterValidity runs once a request is answered: it flags an approved
// advice or reversal of a hotlisted card, and follows a late card check
// still running (ModeTerminals) on its own goroutine, bounded by the lists'
// LateTimeout. A refused request needs neither: nothing was approved, and
// the lists remember a card the check found hotlisted.
func (s *Server) afterValidity(r *request, code string) {
	if code != iso8583.RCApproved {
		return
	}
	if r.hotlisted {
		s.flag(r, FlagHotlistedCard, nil)
	}
	if r.late == nil {
		return
	}
	late := r.late
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		res, _ := late.Wait(context.Background())
		switch {
		case res.Hotlisted:
			s.flag(r, FlagLateHotlisted, nil)
		case res.Err != nil:
			s.flag(r, FlagLateUnchecked, res.Err)
		}
	}()
}

// flag logs, counts and keeps a transaction for review. What the flag
// means for the transaction (ModeTerminals, docs/validity.md §4.3):
//
//   - 0200 load: the 0210 with S2 has gone out and the load is in progress.
//     If the card did not credit, the terminal's reversal (0400/0420)
//     reverses it — the reversal path; if it did, the completion advice is
//     accepted, since the card holds the value. Either way the card's next
//     request is refused 62 from memory.
//   - 0220 debit advice: the money was spent offline and the TC is genuine;
//     the merchant is paid (posted), the flag is for the fraud review.
//   - 0100: a shadow balance was disclosed; nothing else happened.
func (s *Server) flag(r *request, reason string, err error) {
	s.vm.flagged.WithLabelValues(reason).Inc()
	stan, _ := r.msg.GetString(iso8583.DESTAN)
	fl := Flag{At: s.cfg.Now(), Reason: reason, MTI: r.mti, STAN: stan, TerminalID: r.term.ID, CardID: r.card, Txn: r.txn}
	if err != nil {
		fl.Err = err.Error()
		r.log.Error("validity: the card of an approved transaction could not be checked; flagged", "flag", reason, "txn", r.txn, "err", err)
	} else {
		r.log.Warn("validity: approved transaction of a hotlisted card; flagged for review", "flag", reason, "txn", r.txn)
	}
	s.flags.add(fl)
}
