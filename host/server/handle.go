package server

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	moov "github.com/moov-io/iso8583"

	"github.com/valuechip/valuechip/host/iso8583"
	"github.com/valuechip/valuechip/host/ledger"
	"github.com/valuechip/valuechip/host/validity"
)

// refusal is a handler's negative answer: the response code of
// docs/iso8583.md §9 and why (for the log, never sent).
type refusal struct {
	code   string
	reason string
}

func (r *refusal) Error() string { return "refused " + r.code + ": " + r.reason }

func refuse(code, format string, args ...any) error {
	return &refusal{code: code, reason: fmt.Sprintf(format, args...)}
}

// codeOf maps a handler error to DE 39.
func codeOf(err error) string {
	var r *refusal
	switch {
	case err == nil:
		return iso8583.RCApproved
	case errors.As(err, &r):
		return r.code
	case errors.Is(err, ErrUnavailable):
		return iso8583.RCIssuerUnavailable
	case errors.Is(err, ErrInsufficientFunds), errors.Is(err, ledger.ErrInsufficientFunds):
		return iso8583.RCInsufficientFunds
	case errors.Is(err, iso8583.ErrMalformed):
		return iso8583.RCFormatError
	}
	return iso8583.RCSystemMalfunction
}

// request is a parsed and authenticated request.
type request struct {
	mti     string
	respMTI string
	msg     *moov.Message
	term    Terminal
	tn      string // DE 62 in hex ("" for 08xx): identifies the transaction (docs/iso8583.md §7)
	now     time.Time
	log     *slog.Logger

	// Validity (validity.go): the card (hex) and transaction key for the
	// log and flags, the late card check still running (ModeTerminals),
	// and whether the lists found the card hotlisted on an advice.
	card      string
	txn       string
	late      *validity.Late
	hotlisted bool
}

// Data elements echoed by responses (docs/iso8583.md §2).
var (
	echoNetwork = []int{iso8583.DETransmission, iso8583.DESTAN, iso8583.DETerminalID, iso8583.DENetworkCode}
	echoCard    = []int{iso8583.DEPAN, iso8583.DEProcessingCode, iso8583.DEAmount, iso8583.DETransmission,
		iso8583.DESTAN, iso8583.DETerminalID, iso8583.DEMerchantID, iso8583.DECurrency}
	echoRecon = []int{iso8583.DETransmission, iso8583.DESTAN, iso8583.DETerminalID, iso8583.DEMerchantID,
		iso8583.DECurrency, iso8583.DECreditsCount, iso8583.DECreditRevCount, iso8583.DEDebitsCount,
		iso8583.DEDebitRevCount, iso8583.DECreditsAmount, iso8583.DECreditRevAmount, iso8583.DEDebitsAmount,
		iso8583.DEDebitRevAmount, iso8583.DENetSettlement}
)

// newResponse starts the response to req: the response MTI and the echoed
// fields present in req.
func newResponse(req *moov.Message, mti string, echo []int) *moov.Message {
	out := iso8583.NewMessage()
	out.MTI(mti)
	fields := req.GetFields()
	for _, id := range echo {
		f, ok := fields[id]
		if !ok {
			continue
		}
		if v, err := f.String(); err == nil {
			_ = out.Field(id, v)
		}
	}
	return out
}

// knownMTI are the request MTIs of the profile (docs/iso8583.md §2).
var knownMTI = map[string]bool{"0100": true, "0200": true, "0220": true, "0221": true, "0400": true,
	"0420": true, "0421": true, "0500": true, "0800": true}

// setter adds the fields of an approval to a response.
type setter func(*moov.Message) error

// Handle answers one framed message and returns the packed response, or nil
// when nothing must be sent (a response MTI sent to the server). hangUp is
// true for a message whose MTI and STAN cannot be recovered: nothing can
// answer it and the connection should be closed (docs/iso8583.md §8). It
// never panics: a panic in a handler is answered with 96 (§9) and logged
// with its stack.
func (s *Server) Handle(ctx context.Context, raw []byte) (out []byte, hangUp bool) {
	start := time.Now()
	mti, code := "", ""
	defer func() {
		if p := recover(); p != nil {
			s.m.panics.Inc()
			s.log.Error("panic while handling a request", "mti", mti, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			out, mti, code = s.fallback(ctx, raw, iso8583.RCSystemMalfunction)
			hangUp = out == nil
		}
		if !knownMTI[mti] {
			mti = "other" // bounded label values whatever arrives
		}
		if code == "" {
			code = "none"
		}
		s.m.requests.WithLabelValues(mti, code).Inc()
		s.m.latency.WithLabelValues(mti).Observe(time.Since(start).Seconds())
	}()
	msg, err := iso8583.Unpack(raw)
	if err != nil {
		s.log.Info("malformed message", "err", err, "bytes", len(raw))
		out, mti, code = s.fallback(ctx, raw, iso8583.RCFormatError)
		return out, out == nil
	}
	mti, _ = msg.GetMTI()
	var resp *moov.Message
	var key iso8583.Key
	resp, key, code = s.handle(ctx, mti, msg, raw)
	if resp == nil {
		return nil, false
	}
	b, err := iso8583.Pack(resp, key)
	if err != nil {
		s.log.Error("packing a response", "mti", mti, "err", err)
		out, _, code = s.fallback(ctx, raw, iso8583.RCSystemMalfunction)
		return out, false
	}
	return b, false
}

// handle authenticates msg (docs/iso8583.md §6, §7) and runs its handler.
// It returns the response, the key to MAC it with (nil: no MAC, when the
// terminal or its key is unknown) and the response code.
func (s *Server) handle(ctx context.Context, mti string, msg *moov.Message, raw []byte) (*moov.Message, iso8583.Key, string) {
	if iso8583.IsResponse(mti) {
		s.log.Info("dropping a response MTI sent to the server", "mti", mti)
		return nil, nil, ""
	}
	respMTI, err := iso8583.ResponseMTI(mti)
	if err != nil {
		return nil, nil, ""
	}
	network := mti[:2] == "08"
	echo := echoCard
	switch {
	case network:
		echo = echoNetwork
	case mti == iso8583.MTIReconRequest:
		echo = echoRecon
	}
	stan, _ := msg.GetString(iso8583.DESTAN)
	tid, _ := msg.GetString(iso8583.DETerminalID)
	log := s.log.With("mti", mti, "stan", stan, "terminal", tid)
	answer := func(code string, key iso8583.Key, reason string) (*moov.Message, iso8583.Key, string) {
		log.Info("refused", "code", code, "reason", reason)
		r := newResponse(msg, respMTI, echo)
		_ = r.Field(iso8583.DEResponseCode, code)
		return r, key, code
	}
	if len(stan) != 6 || tid == "" {
		return answer(iso8583.RCFormatError, nil, "DE 11 or DE 41 missing")
	}
	// The whitelist first, from memory: an unknown or blocked terminal
	// costs no database read (docs/validity.md §4). Its refusal is MACed
	// only if the cache happens to hold the terminal's key.
	if code, reason := s.admitTerminal(tid); code != "" {
		var key iso8583.Key
		if c, ok := s.cfg.Registry.(*CachedRegistry); ok {
			key = c.cachedKey(network, tid)
		}
		return answer(code, key, reason)
	}
	term, err := s.cfg.Registry.Terminal(ctx, tid)
	switch {
	case errors.Is(err, ErrNotFound):
		return answer(iso8583.RCNotPermittedTerm, nil, "unknown terminal")
	case err != nil:
		log.Error("registry: terminal lookup", "err", err)
		return answer(iso8583.RCSystemMalfunction, nil, "registry unavailable")
	}
	if !term.Active {
		return answer(iso8583.RCNotPermittedTerm, s.bestEffortKey(ctx, mti, tid), "terminal not active")
	}
	nmi, _ := msg.GetString(iso8583.DENetworkCode)
	signOn := network && nmi == iso8583.NMISignOn
	var key iso8583.Key
	if signOn {
		key = term.TMK
	} else {
		key, err = s.cfg.Registry.WorkingKey(ctx, tid)
		switch {
		case errors.Is(err, ErrNotFound):
			return answer(iso8583.RCSecurityViolation, nil, "not signed on")
		case err != nil:
			log.Error("registry: working key", "err", err)
			return answer(iso8583.RCSystemMalfunction, nil, "registry unavailable")
		}
	}
	if err := iso8583.VerifyMAC(msg, raw, key); err != nil {
		return answer(iso8583.RCSecurityViolation, key, err.Error())
	}
	now := s.cfg.Now()
	r := &request{mti: mti, respMTI: respMTI, msg: msg, term: term, now: now}
	if !network {
		if code, reason := s.checkTxnNumber(ctx, msg, tid, now); code != "" {
			return answer(code, key, reason)
		}
		tn, _ := msg.GetBytes(iso8583.DETxnNumber)
		r.tn = hex.EncodeToString(tn)
		if mid, err := msg.GetString(iso8583.DEMerchantID); err == nil && mid != "" &&
			subtle.ConstantTimeCompare([]byte(mid), []byte(term.MerchantID)) != 1 {
			return answer(iso8583.RCNotPermittedTerm, key, "DE 42 is not the terminal's merchant")
		}
	}
	r.log = log
	var h func(context.Context, *request) (setter, error)
	pc, _ := msg.GetString(iso8583.DEProcessingCode)
	switch {
	case network:
		h = s.network
	case mti == iso8583.MTIAuthRequest && pc == iso8583.PCBalance:
		h = s.balance
	case mti == iso8583.MTIFinancialRequest && pc == iso8583.PCLoad:
		h = s.load
	case (mti == iso8583.MTIFinancialAdvice || mti == iso8583.MTIFinancialAdviceRe) && pc == iso8583.PCLoad:
		h = s.completion
	case (mti == iso8583.MTIFinancialAdvice || mti == iso8583.MTIFinancialAdviceRe) && pc == iso8583.PCPurchase:
		h = s.debitAdvice
	case (mti == iso8583.MTIReversalRequest || mti == iso8583.MTIReversalAdvice || mti == iso8583.MTIReversalAdviceRe) && pc == iso8583.PCLoad:
		h = s.reversal
	case mti == iso8583.MTIReconRequest:
		h = s.reconcile
	default:
		return answer(iso8583.RCInvalidTransaction, key, "MTI/processing code not supported")
	}
	set, err := h(ctx, r)
	code := codeOf(err)
	resp := newResponse(msg, respMTI, echo)
	if err != nil {
		var rf *refusal
		if errors.As(err, &rf) {
			log.Info("refused", "code", code, "reason", rf.reason)
		} else {
			log.Error("request failed", "code", code, "err", err)
		}
		set = nil
	}
	if set != nil {
		if err := set(resp); err != nil {
			log.Error("building the response", "err", err)
			code, resp = iso8583.RCSystemMalfunction, newResponse(msg, respMTI, echo)
		}
	}
	s.afterValidity(r, code)
	_ = resp.Field(iso8583.DEResponseCode, code)
	return resp, key, code
}

// checkTxnNumber verifies DE 62 (docs/iso8583.md §7): a seed the registry
// knows, issued to this terminal, not expired, and a number that matches the
// transaction data. Any failure is 63.
func (s *Server) checkTxnNumber(ctx context.Context, msg *moov.Message, tid string, now time.Time) (string, string) {
	id, err := iso8583.TxnSeedID(msg)
	if err != nil {
		return iso8583.RCSecurityViolation, "DE 62 missing"
	}
	si, err := s.cfg.Registry.Seed(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
		return iso8583.RCSecurityViolation, fmt.Sprintf("seed %d unknown", id)
	case err != nil:
		s.log.Error("registry: seed lookup", "err", err)
		return iso8583.RCSystemMalfunction, "registry unavailable"
	}
	if subtle.ConstantTimeCompare([]byte(si.TerminalID), []byte(tid)) != 1 {
		return iso8583.RCSecurityViolation, fmt.Sprintf("seed %d belongs to another terminal", id)
	}
	if err := si.Seed.VerifyTxnNumber(msg, now); err != nil {
		return iso8583.RCSecurityViolation, err.Error()
	}
	return "", ""
}

// fallback answers a message the server could not handle normally
// (malformed, or a panic) with code, when the MTI and STAN can be recovered
// from raw (docs/iso8583.md §8); otherwise it returns nil and the message is
// dropped. The response is MACed under the terminal's key when DE 41 can be
// read and the terminal has one, so the terminal accepts it.
func (s *Server) fallback(ctx context.Context, raw []byte, code string) ([]byte, string, string) {
	h, ok := recoverHeader(raw)
	if !ok || iso8583.IsResponse(h.mti) {
		return nil, h.mti, ""
	}
	respMTI, err := iso8583.ResponseMTI(h.mti)
	if err != nil {
		return nil, h.mti, ""
	}
	out := iso8583.NewMessage()
	out.MTI(respMTI)
	_ = out.Field(iso8583.DESTAN, h.stan)
	if h.de7 != "" {
		_ = out.Field(iso8583.DETransmission, h.de7)
	}
	var key iso8583.Key
	if h.tid != "" {
		_ = out.Field(iso8583.DETerminalID, h.tid)
		key = s.bestEffortKey(ctx, h.mti, h.tid)
	}
	_ = out.Field(iso8583.DEResponseCode, code)
	b, err := iso8583.Pack(out, key)
	if err != nil {
		return nil, h.mti, ""
	}
	return b, h.mti, code
}

func (s *Server) bestEffortKey(ctx context.Context, mti, tid string) (key iso8583.Key) {
	defer func() {
		if recover() != nil {
			key = nil
		}
	}()
	if mti[:2] == "08" {
		if t, err := s.cfg.Registry.Terminal(ctx, tid); err == nil {
			return t.TMK
		}
		return nil
	}
	k, err := s.cfg.Registry.WorkingKey(ctx, tid)
	if err != nil {
		return nil
	}
	return k
}

type header struct{ mti, de7, stan, tid string }

// recoverHeader reads the MTI, DE 7, DE 11 and DE 41 of a message that does
// not parse, walking the fields before DE 41 with the profile's formats
// (docs/iso8583.md §3.1). It never panics and reports false when the MTI or
// STAN cannot be read.
func recoverHeader(raw []byte) (h header, ok bool) {
	if len(raw) < 12 {
		return h, false
	}
	mti := string(raw[:4])
	if !isDigits(mti) || mti[0] != '0' {
		return h, false
	}
	h.mti = mti
	bm := raw[4:12]
	p := 12
	if bm[0]&0x80 != 0 {
		p += 8
	}
	isSet := func(n int) bool { return bm[(n-1)/8]&(0x80>>((n-1)%8)) != 0 }
	fixed := map[int]int{3: 6, 4: 12, 7: 10, 11: 6, 22: 3, 37: 12, 38: 6, 39: 2, 41: 8}
	for n := 2; n <= 41; n++ {
		if !isSet(n) {
			continue
		}
		var l int
		switch {
		case n == 2:
			if p+2 > len(raw) || !isDigits(string(raw[p:p+2])) {
				return h, h.stan != ""
			}
			l = int(raw[p]-'0')*10 + int(raw[p+1]-'0')
			p += 2
		case fixed[n] > 0:
			l = fixed[n]
		default:
			return h, h.stan != ""
		}
		if p+l > len(raw) {
			return h, h.stan != ""
		}
		v := string(raw[p : p+l])
		p += l
		switch n {
		case 7:
			if isDigits(v) {
				h.de7 = v
			}
		case 11:
			if !isDigits(v) {
				return h, false
			}
			h.stan = v
		case 41:
			if isPrintable(v) {
				h.tid = v
			}
		}
	}
	return h, h.stan != ""
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return false
		}
	}
	return true
}
