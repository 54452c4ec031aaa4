package script

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/valuechip/valuechip/apdu"
	"github.com/valuechip/valuechip/apdu/scp03"
	"github.com/valuechip/valuechip/reader"
)

// SecureParams are the evaluated parameters of a "secure PROTOCOL ..."
// directive. Values holds every key=value but level, each evaluated to
// bytes; key material is marked secret and must never be printed.
type SecureParams struct {
	Protocol string
	Values   map[string][]byte
	// Level is the level= text as written ("mac+enc", "33"), "" if absent.
	Level string
}

// SecureChannel opens a secure channel over t (the card's transport, with
// GET RESPONSE and friends below it) and returns the layer that protects
// every following command.
type SecureChannel interface {
	Open(ctx context.Context, t reader.Transceiver, p SecureParams) (SecureLayer, error)
}

// SecureLayer protects commands and checks responses: Wrap returns a
// Transceiver that does so over next. Close ends the session and wipes its
// keys.
type SecureLayer interface {
	Wrap(next reader.Transceiver) reader.Transceiver
	Describe() string
	Close()
}

// ErrSecureUnavailable reports a secure channel protocol this build has no
// implementation for.
var ErrSecureUnavailable = errors.New("script: secure channel not available in this build")

// secureParamKeys lists the parameters each protocol takes; the parser
// rejects others.
var secureParamKeys = map[string][]string{
	"scp03": {"key", "enc", "mac", "dek", "kvn", "level", "sd"},
}

// secureSecretParam reports parameters that hold key material.
func secureSecretParam(k string) bool {
	switch k {
	case "key", "enc", "mac", "dek":
		return true
	}
	return false
}

// DefaultSecureChannels returns the built-in protocols: scp03 (GlobalPlatform
// Amendment D, S8 mode, through apdu/scp03).
func DefaultSecureChannels() map[string]SecureChannel {
	return map[string]SecureChannel{"scp03": SCP03{}}
}

// SCP03 opens GlobalPlatform SCP03 sessions:
//
//	secure scp03 key=K [kvn=30] [level=mac+enc] [sd=AID]
//	secure scp03 enc=K1 mac=K2 dek=K3 ...
//
// key= gives one AES key used as Key-ENC, Key-MAC and Key-DEK (the usual
// test-card setup); enc=, mac= and dek= give them apart. kvn is the key
// version (P1 of INITIALIZE UPDATE; 00 = the card's first key set). level is
// the security level of EXTERNAL AUTHENTICATE: words joined by "+" (mac,
// enc, rmac, renc; "none"), or the hex value of Amd D Table 7-3 (01, 03,
// 11, 13, 33); mac+enc by default. sd, the Security Domain's AID, makes the
// host check pseudo-random card challenges.
type SCP03 struct {
	// Rand supplies host challenges; nil means crypto/rand. Tests set it
	// to replay sessions byte for byte.
	Rand io.Reader
}

// Open runs INITIALIZE UPDATE and EXTERNAL AUTHENTICATE over t.
func (s SCP03) Open(ctx context.Context, t reader.Transceiver, p SecureParams) (SecureLayer, error) {
	cfg := scp03.HostConfig{Rand: s.Rand, Level: scp03.LevelCMAC | scp03.LevelCDEC}
	key := p.Values["key"]
	pick := func(name string) scp03.Key {
		if v, ok := p.Values[name]; ok {
			return scp03.Key(append([]byte{}, v...))
		}
		return scp03.Key(append([]byte{}, key...))
	}
	cfg.Keys = scp03.StaticKeys{ENC: pick("enc"), MAC: pick("mac"), DEK: pick("dek")}
	if len(cfg.Keys.ENC) == 0 || len(cfg.Keys.MAC) == 0 || len(cfg.Keys.DEK) == 0 {
		return nil, fmt.Errorf("scp03 needs key=K, or enc=, mac= and dek=")
	}
	if v, ok := p.Values["kvn"]; ok {
		if len(v) != 1 {
			return nil, fmt.Errorf("kvn must be one byte, got %d", len(v))
		}
		cfg.KeyVersion = v[0]
	}
	if p.Level != "" {
		l, err := ParseSecurityLevel(p.Level)
		if err != nil {
			return nil, err
		}
		cfg.Level = l
	}
	if v, ok := p.Values["sd"]; ok {
		cfg.AID = v
	}
	h, err := scp03.NewHost(cfg)
	if err != nil {
		return nil, err
	}
	layer := &scp03Layer{h: h, desc: fmt.Sprintf("SCP03 level %s", cfg.Level)}
	ok := false
	defer func() {
		if !ok {
			h.Close()
		}
	}()
	cmd, err := h.InitializeUpdate()
	if err != nil {
		return nil, err
	}
	resp, err := transceiveCommand(ctx, t, cmd)
	if err != nil {
		return nil, fmt.Errorf("INITIALIZE UPDATE: %w", err)
	}
	if cmd, err = h.ExternalAuthenticate(resp); err != nil {
		return nil, err
	}
	if resp, err = transceiveCommand(ctx, t, cmd); err != nil {
		return nil, fmt.Errorf("EXTERNAL AUTHENTICATE: %w", err)
	}
	if err := h.Complete(resp); err != nil {
		return nil, err
	}
	info := h.CardInfo()
	layer.desc = fmt.Sprintf("SCP03 key version %02X, level %s", info.KeyInfo.Version, cfg.Level)
	ok = true
	return layer, nil
}

func transceiveCommand(ctx context.Context, t reader.Transceiver, cmd apdu.Command) ([]byte, error) {
	b, err := cmd.Bytes()
	if err != nil {
		return nil, err
	}
	return t.Transceive(ctx, b)
}

type scp03Layer struct {
	h    *scp03.Host
	desc string
}

func (l *scp03Layer) Describe() string { return l.desc }
func (l *scp03Layer) Close()           { l.h.Close() }

func (l *scp03Layer) Wrap(next reader.Transceiver) reader.Transceiver {
	return reader.TransceiverFunc(func(ctx context.Context, raw []byte) ([]byte, error) {
		cmd, err := apdu.ParseCommand(raw)
		if err != nil {
			return nil, fmt.Errorf("scp03: %w", err)
		}
		wrapped, err := l.h.Wrap(cmd)
		if err != nil {
			return nil, err
		}
		resp, err := transceiveCommand(ctx, next, wrapped)
		if err != nil {
			return nil, err
		}
		return l.h.Unwrap(resp)
	})
}

// ParseSecurityLevel reads a level as level= takes it: "mac", "mac+enc",
// "mac+enc+rmac", "mac+enc+rmac+renc", "mac+rmac", "none" (also C-MAC,
// C-DEC, cenc, R-MAC, R-ENC and commas), or the hex of Amd D Table 7-3.
func ParseSecurityLevel(s string) (scp03.SecurityLevel, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if n, err := strconv.ParseUint(strings.TrimPrefix(t, "0x"), 16, 8); err == nil && len(strings.TrimPrefix(t, "0x")) <= 2 {
		l := scp03.SecurityLevel(n)
		if !l.Valid() {
			return 0, fmt.Errorf("security level %02X is not one of 00, 01, 03, 11, 13, 33", n)
		}
		return l, nil
	}
	var l scp03.SecurityLevel
	for _, w := range strings.FieldsFunc(t, func(r rune) bool { return r == '+' || r == ',' }) {
		switch strings.ReplaceAll(w, "-", "") {
		case "none":
		case "mac", "cmac":
			l |= scp03.LevelCMAC
		case "enc", "cenc", "cdec", "cdecryption":
			l |= scp03.LevelCDEC
		case "rmac":
			l |= scp03.LevelRMAC
		case "renc", "rencryption":
			l |= scp03.LevelRENC
		default:
			return 0, fmt.Errorf("unknown security level word %q (mac, enc, rmac, renc, none)", w)
		}
	}
	if !l.Valid() {
		return 0, fmt.Errorf("security level %q (%02X) is not valid: C-DEC and R-MAC need C-MAC, R-ENC needs C-DEC and R-MAC", s, byte(l))
	}
	return l, nil
}
