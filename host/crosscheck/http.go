package crosscheck

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"

	"github.com/valuechip/valuechip/apdu/purse"
)

// UploadPath is the route of a log upload; {cardID} is 16 hex digits.
const UploadPath = "/v1/cards/{cardID}/log"

// maxBody bounds an upload body: MaxRecords hex records with JSON framing.
const maxBody = MaxRecords*(2*purse.LogRecordLen+8) + 1024

// UploadRequest is the body of POST /v1/cards/{cardID}/log.
type UploadRequest struct {
	// Records are the log records as READ RECORD returned them
	// (docs/purse.md §6), hex, any order.
	Records []string `json:"records"`
}

// errorBody is the body of every non-2xx answer.
type errorBody struct {
	Error string `json:"error"`
}

// Submitter is what the handler needs; *Service implements it.
type Submitter interface {
	Submit(ctx context.Context, id purse.CardID, recs []purse.LogRecord) (*Result, error)
}

// Handler serves POST /v1/cards/{cardID}/log (docs/crosscheck.md §2):
// 200 with the Result when every record was accepted, 422 with the Result
// when some were refused (the others are stored), 400 for a malformed
// upload (nothing stored), 503 when the keys are unavailable.
func Handler(s Submitter, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+UploadPath, func(w http.ResponseWriter, r *http.Request) {
		id, err := ParseCardID(r.PathValue("cardID"))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
			return
		}
		var req UploadRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{fmt.Sprintf("%v: body: %v", ErrMalformed, err)})
			return
		}
		raw := make([][]byte, len(req.Records))
		for i, h := range req.Records {
			if raw[i], err = hex.DecodeString(h); err != nil {
				writeJSON(w, http.StatusBadRequest, errorBody{fmt.Sprintf("%v: record %d: %v", ErrMalformed, i, err)})
				return
			}
		}
		recs, err := ParseRecords(raw)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
			return
		}
		res, err := s.Submit(r.Context(), id, recs)
		switch {
		case errors.Is(err, ErrMalformed):
			writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
			return
		case errors.Is(err, ErrKeys):
			log.Error("log upload: keys", "card", cardHex(id), "err", err)
			writeJSON(w, http.StatusServiceUnavailable, errorBody{"keys unavailable, retry later"})
			return
		case err != nil:
			log.Error("log upload", "card", cardHex(id), "err", err)
			writeJSON(w, http.StatusInternalServerError, errorBody{"internal error"})
			return
		}
		status := http.StatusOK
		if len(res.Refused) > 0 {
			status = http.StatusUnprocessableEntity
		}
		log.Info("log upload", "card", res.CardID, "accepted", res.Accepted, "stored", res.Stored,
			"refused", len(res.Refused), "discrepancies", len(res.Discrepancies))
		writeJSON(w, status, res)
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ErrServer is returned by Upload for an answer other than 200 and 422.
var ErrServer = errors.New("crosscheck: server refused the upload")

// Client uploads card logs; the zero value uses http.DefaultClient.
type Client struct {
	HTTP *http.Client
}

// Upload posts a card's log to the server at base (e.g.
// "https://money.example"): the device side of the second channel.
func Upload(ctx context.Context, base string, id purse.CardID, recs []purse.LogRecord) (*Result, error) {
	return Client{}.Upload(ctx, base, id, recs)
}

// Upload posts a card's log to the server at base. A result with refused
// records (HTTP 422) is returned without error: the caller reports it.
func (c Client) Upload(ctx context.Context, base string, id purse.CardID, recs []purse.LogRecord) (*Result, error) {
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	req := UploadRequest{Records: make([]string, len(recs))}
	for i, r := range recs {
		req.Records[i] = strings.ToUpper(hex.EncodeToString(r.Bytes()))
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	u, err := url.JoinPath(base, "v1", "cards", cardHex(id), "log")
	if err != nil {
		return nil, fmt.Errorf("crosscheck: server URL %q: %w", base, err)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("crosscheck: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	rsp, err := hc.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("crosscheck: upload: %w", err)
	}
	defer rsp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(rsp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("crosscheck: upload: reading the answer: %w", err)
	}
	if rsp.StatusCode != http.StatusOK && rsp.StatusCode != http.StatusUnprocessableEntity {
		var e errorBody
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		return nil, fmt.Errorf("%w: %s: %s", ErrServer, rsp.Status, e.Error)
	}
	var res Result
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("crosscheck: upload: answer: %w", err)
	}
	return &res, nil
}
