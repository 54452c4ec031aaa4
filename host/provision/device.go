package provision

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/valuechip/valuechip/apdu"
	gpwire "github.com/valuechip/valuechip/apdu/gp"
	wire "github.com/valuechip/valuechip/apdu/purse"
	"github.com/valuechip/valuechip/apdu/tlv"
	"github.com/valuechip/valuechip/reader"
)

// Device is the holder's side: it reads the chip's identification,
// registers it, then relays the server's commands to the card and the
// card's responses back until the server is done. It never interprets the
// commands; the secure channel is between the server and the card.
type Device struct {
	// Server is the provisioning server's base URL (http or https).
	Server string
	// Holder is the holder's account, sent at registration.
	Holder string
	// PIN is the cardholder PIN to personalise; empty lets the server
	// choose one (returned in Result.PIN).
	PIN string
	// Client makes the HTTP requests; nil means a client with a one-minute
	// timeout per request.
	Client *http.Client
	// Trace, when set, receives every APDU exchanged with the card, one
	// line each: "> " command, "< " response, hex. It is what the relay
	// sees.
	Trace io.Writer

	traceMu sync.Mutex
}

// tagKDD is GET DATA 'CF': the key diversification data (Amd D Table 7-2).
const tagKDD tlv.Tag = 0xCF

// Result is the outcome of a provisioning.
type Result struct {
	Registration string
	CardID       wire.CardID
	TerminalID   string
	// PIN is the PIN the server chose, when Device.PIN was empty.
	PIN string
	// Exchanges counts the command/response round trips of the session.
	Exchanges int
}

// Relay registers the card behind t for holder with the server at
// serverURL and relays the installation until the card is issued.
func Relay(ctx context.Context, serverURL string, t reader.Transceiver, holder string) (*Result, error) {
	d := &Device{Server: serverURL, Holder: holder}
	return d.Provision(ctx, t)
}

// Provision registers the card and installs the purse on it.
func (d *Device) Provision(ctx context.Context, t reader.Transceiver) (*Result, error) {
	reg, err := d.Register(ctx, t)
	if err != nil {
		return nil, err
	}
	return d.Install(ctx, t, reg)
}

// ReadCard reads what registration needs from the card's ISD, outside any
// secure channel: SELECT, GET DATA 9F7F (CPLC), CF (KDD) and 45 (CIN, if
// the card has one).
func (d *Device) ReadCard(ctx context.Context, t reader.Transceiver) (RegisterRequest, error) {
	var req RegisterRequest
	r, err := d.transmit(ctx, t, gpwire.Select(gpwire.DefaultISDAID()))
	if err != nil {
		return req, fmt.Errorf("SELECT ISD: %w", err)
	}
	if r.SW != apdu.SWNoError && !r.SW.IsWarning() {
		return req, fmt.Errorf("SELECT ISD %X: %w", gpwire.DefaultISDAID(), r.SW)
	}
	get := func(tag tlv.Tag, optional bool) ([]byte, error) {
		r, err := d.transmit(ctx, t, gpwire.GetData(tag))
		if err != nil {
			return nil, fmt.Errorf("GET DATA %s: %w", tag, err)
		}
		if r.SW != apdu.SWNoError {
			if optional {
				return nil, nil
			}
			return nil, fmt.Errorf("GET DATA %s: %w", tag, r.SW)
		}
		// A GP class returns the whole TLV (GPCS §11.3.3).
		if o, _, err := tlv.ParseOne(r.Data); err == nil && o.Tag == tag {
			return o.Value, nil
		}
		return r.Data, nil
	}
	cplc, err := get(gpwire.TagCPLC, false)
	if err != nil {
		return req, err
	}
	kdd, err := get(tagKDD, false)
	if err != nil {
		return req, err
	}
	cin, err := get(gpwire.TagCIN, true)
	if err != nil {
		return req, err
	}
	return RegisterRequest{CPLC: hexUpper(cplc), KDD: hexUpper(kdd), CIN: hexUpper(cin), Holder: d.Holder}, nil
}

// Register reads the card and registers it.
func (d *Device) Register(ctx context.Context, t reader.Transceiver) (RegisterResponse, error) {
	var resp RegisterResponse
	req, err := d.ReadCard(ctx, t)
	if err != nil {
		return resp, err
	}
	if _, err := req.validate(); err != nil {
		return resp, fmt.Errorf("the card's identification: %w", err)
	}
	u, err := d.url(PathRegister)
	if err != nil {
		return resp, err
	}
	if err := d.post(ctx, u, "", req, &resp); err != nil {
		return resp, fmt.Errorf("register: %w", err)
	}
	if !validID(resp.Registration) || resp.Token == "" {
		return resp, fmt.Errorf("register: %w: no registration ID or token", ErrMalformed)
	}
	if _, err := cardIDOf(resp.CardID); err != nil {
		return resp, fmt.Errorf("register: %w", err)
	}
	return resp, nil
}

func cardIDOf(s string) (wire.CardID, error) {
	var id wire.CardID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%w: card ID %q", ErrMalformed, s)
	}
	copy(id[:], b)
	return id, nil
}

// Install runs an installation session for a registration: it posts the
// card's responses and forwards the server's commands until the server
// reports the outcome.
func (d *Device) Install(ctx context.Context, t reader.Transceiver, reg RegisterResponse) (*Result, error) {
	u, err := d.url(PathSession + url.PathEscape(reg.Registration))
	if err != nil {
		return nil, err
	}
	res := &Result{Registration: reg.Registration, TerminalID: reg.TerminalID}
	req := SessionRequest{PIN: d.PIN}
	for range maxExchanges {
		var raw json.RawMessage
		if err := d.post(ctx, u, reg.Token, req, &raw); err != nil {
			return nil, err
		}
		resp, cmds, err := parseSessionResponse(bytes.NewReader(raw))
		if err != nil {
			return nil, err
		}
		switch resp.Status {
		case StatusIssued:
			if res.CardID, err = cardIDOf(resp.CardID); err != nil {
				return nil, err
			}
			res.TerminalID, res.PIN = resp.TerminalID, resp.PIN
			return res, nil
		case StatusFailed:
			if rest, ok := strings.CutPrefix(resp.Error, ErrAborted.Error()); ok {
				return nil, fmt.Errorf("%w%s", ErrAborted, rest)
			}
			return nil, fmt.Errorf("%w: %s", ErrAborted, resp.Error)
		}
		if req.Session != "" && resp.Session != req.Session {
			return nil, fmt.Errorf("%w: the server switched sessions", ErrMalformed)
		}
		req = SessionRequest{Session: resp.Session, Seq: resp.Seq, Nonce: resp.Nonce}
		for _, c := range cmds {
			r, err := d.transceive(ctx, t, c)
			if err != nil {
				// Tell the server, so it aborts now rather than at its
				// timeout; the card error is what the caller needs.
				req.Error = err.Error()
				_ = d.post(ctx, u, reg.Token, req, new(json.RawMessage))
				return nil, fmt.Errorf("card: %w", err)
			}
			req.Responses = append(req.Responses, hexUpper(r))
		}
		res.Exchanges++
	}
	return nil, fmt.Errorf("%w: the server sent commands for more than %d exchanges", ErrAborted, maxExchanges)
}

// maxExchanges bounds a session on the device's side: an installation
// takes about ten.
const maxExchanges = 4096

func (d *Device) url(path string) (string, error) {
	base, err := url.Parse(d.Server)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return "", fmt.Errorf("provision: server URL %q: want http(s)://host[:port]", d.Server)
	}
	return strings.TrimSuffix(base.String(), "/") + path, nil
}

func (d *Device) client() *http.Client {
	if d.Client != nil {
		return d.Client
	}
	return &http.Client{Timeout: time.Minute}
}

// post sends body as JSON and decodes a 200 answer into out; other
// statuses become errors wrapping the sentinel of their code.
func (d *Device) post(ctx context.Context, u, token string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ContentType)
	req.Header.Set("Accept", ContentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := d.client().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var eb ErrorBody
		if err := decodeJSON(resp.Body, &eb); err != nil || eb.Code == "" {
			return fmt.Errorf("provision: server answered %s", resp.Status)
		}
		if s := errOfCode(eb.Code); s != nil {
			// The server's message starts with the sentinel's text.
			if rest, ok := strings.CutPrefix(eb.Error, s.Error()); ok {
				return fmt.Errorf("%w%s", s, rest)
			}
			return fmt.Errorf("%w: server: %s", s, eb.Error)
		}
		return fmt.Errorf("provision: server answered %s: %s", resp.Status, eb.Error)
	}
	if err := decodeJSON(resp.Body, out); err != nil {
		return fmt.Errorf("server answer: %w", err)
	}
	return nil
}

func (d *Device) transmit(ctx context.Context, t reader.Transceiver, cmd apdu.Command) (apdu.Response, error) {
	b, err := cmd.Bytes()
	if err != nil {
		return apdu.Response{}, err
	}
	raw, err := d.transceive(ctx, t, b)
	if err != nil {
		return apdu.Response{}, err
	}
	return apdu.ParseResponse(raw)
}

// transceive forwards one APDU to the card and traces it.
func (d *Device) transceive(ctx context.Context, t reader.Transceiver, cmd []byte) ([]byte, error) {
	d.trace("> ", cmd)
	r, err := t.Transceive(ctx, cmd)
	if err != nil {
		d.traceLine("! " + err.Error())
		return nil, err
	}
	if len(r) < 2 {
		return nil, errors.New("provision: the card's response has no status word")
	}
	d.trace("< ", r)
	return r, nil
}

func (d *Device) trace(prefix string, b []byte) { d.traceLine(prefix + hexUpper(b)) }

func (d *Device) traceLine(s string) {
	if d.Trace == nil {
		return
	}
	d.traceMu.Lock()
	defer d.traceMu.Unlock()
	_, _ = io.WriteString(d.Trace, s+"\n")
}
