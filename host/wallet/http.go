package wallet

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
)

// PurchasePath is the route of an online purchase.
const PurchasePath = "/v1/wallets/{holder}/purchases"

// PurchaseRequest is the body of POST /v1/wallets/{holder}/purchases.
type PurchaseRequest struct {
	// Key makes the purchase idempotent: the same key and content again
	// returns the original approval; another content is code 94.
	Key      string `json:"key"`
	Merchant string `json:"merchant"`
	Amount   int64  `json:"amount"` // minor units
}

// API is what the handler needs; *Service implements it.
type API interface {
	Purchase(ctx context.Context, holder, merchant string, amount int64, key string) (Outcome, error)
	Show(ctx context.Context, holder string) (Wallet, error)
}

// Handler serves the wallet API (docs/wallet.md §4):
//
//	POST /v1/wallets/{holder}/purchases  {"key","merchant","amount"} → Outcome
//	GET  /v1/wallets/{holder}                                        → Wallet
//
// The Outcome's code is ISO 8583 DE 39; the HTTP status follows it:
// 00 → 200, 51 → 402, 14 → 404, 13/30 → 400, 94 → 409, 96 → 500.
func Handler(s API, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PurchasePath, func(w http.ResponseWriter, r *http.Request) {
		holder := r.PathValue("holder")
		var req PurchaseRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, Outcome{Code: CodeFormatError, Holder: holder})
			return
		}
		out, err := s.Purchase(r.Context(), holder, req.Merchant, req.Amount, req.Key)
		if out.Code == CodeSystemError {
			log.Error("wallet purchase", "holder", holder, "merchant", req.Merchant, "amount", req.Amount, "err", err)
		} else {
			log.Info("wallet purchase", "holder", holder, "merchant", req.Merchant, "amount", req.Amount,
				"code", out.Code, "replayed", out.Replayed)
		}
		writeJSON(w, httpStatus(out.Code), out)
	})
	mux.HandleFunc("GET /v1/wallets/{holder}", func(w http.ResponseWriter, r *http.Request) {
		wl, err := s.Show(r.Context(), r.PathValue("holder"))
		if err != nil {
			code := ResponseCode(err)
			if code == CodeSystemError {
				log.Error("wallet show", "err", err)
			}
			writeJSON(w, httpStatus(code), map[string]string{"code": code, "error": publicError(err)})
			return
		}
		writeJSON(w, http.StatusOK, wl)
	})
	return mux
}

// publicError hides internal errors from clients.
func publicError(err error) string {
	for _, e := range []error{ErrInsufficientFunds, ErrUnknownWallet, ErrInvalidAmount, ErrInvalid, ErrDuplicate} {
		if errors.Is(err, e) {
			return err.Error()
		}
	}
	return "internal error"
}

func httpStatus(code string) int {
	switch code {
	case CodeApproved:
		return http.StatusOK
	case CodeInsufficientFunds:
		return http.StatusPaymentRequired
	case CodeUnknownWallet:
		return http.StatusNotFound
	case CodeInvalidAmount, CodeFormatError:
		return http.StatusBadRequest
	case CodeDuplicate:
		return http.StatusConflict
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
